"""The nspawn provider: each machine is a systemd-nspawn container booting the Debian
stand-in rootfs the Vagrant box is built from (``box/build-box --rootfs``), with systemd
as PID 1, sshd and etcd inside, and the user-data applied by the box's own coreos-agent.

Each container lives in a network namespace of a :class:`NetworkLab` (its ``eth0`` has
its address already: no DHCP), reached only through the lab's hub. What differs between
machines is bind-mounted over the read-only image (``--volatile=overlay`` keeps every
write in a tmpfs of the container's own): its hostname, its pinned SSH host key, root's
``authorized_keys`` (the session's key), the user-data the agent applies, and an etcd
data folder of its own, kept across ``stop()``/``start()``; with ``--coreos-fleet``, fleetd
and fleetctl in ``/usr/bin``.

Root only: namespaces and containers need it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko

import pytest_coreos
from pytest_coreos import fleet_release, render
from pytest_coreos.cluster import Machine, machine_names
from pytest_coreos.discovery import DiscoveryService
from pytest_coreos.errors import ConfigError, ProcessError
from pytest_coreos.netns import NAMESPACE_PREFIX, NetworkLab
from pytest_coreos.process import (
    ManagedProcess,
    descendants_of,
    kill_all,
    process_start_time,
    tail,
)
from pytest_coreos.providers.base import BootContext
from pytest_coreos.providers.local import LabProvider, new_lab
from pytest_coreos.sshd import generate_ed25519_key

OPTION = "--coreos-provider"
# Where a finished rootfs may be named directly (skips build-box).
ROOTFS_ENVIRONMENT = "PYTEST_COREOS_ROOTFS"
BUILD_BOX = Path(pytest_coreos.__file__).resolve().parent.parent / "box" / "build-box"
USER_DATA = "/var/lib/coreos-vagrant/vagrantfile-user-data"
IGNITION = "/usr/share/oem/config.ign"  # where the stand-in's agent looks for one
# The container's init: found among systemd-nspawn's children once it has exec'ed.
LEADER_WAIT = 10.0
STOP_GRACE = 15.0
CGROUPS = Path("/sys/fs/cgroup")
# Moves the shell into each cgroup named before "--", then runs the rest in its place.
_ENTER_CGROUPS = (
    'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 1; shift; done; shift; exec "$@"'
)
# Debian's ifupdown would bring up lo (already up) and fail: the container has no
# CAP_NET_ADMIN in a namespace it did not make. eth0 is configured by the lab.
INTERFACES = "# eth0 and lo are configured by pytest-coreos's network lab.\n"


def etcd_client_urls(user_data: Mapping[str, Any], address: str) -> list[str]:
    """Where the machine at ``address`` serves etcd's clients, as its user-data says."""
    env = render.etcd_environment(user_data, private_ipv4=address, public_ipv4=address).env
    urls = env.get("ETCD_ADVERTISE_CLIENT_URLS", f"http://{address}:2379")
    return [url.strip() for url in urls.split(",") if url.strip()]


def _nspawn() -> str:
    path = shutil.which("systemd-nspawn")
    if path is None:
        raise ConfigError(
            OPTION,
            "nspawn: systemd-nspawn is not installed",
            "install Debian's systemd-container package",
        )
    return path


def find_rootfs(context: BootContext) -> Path:
    """The stand-in rootfs: ``$PYTEST_COREOS_ROOTFS``, or what ``box/build-box --rootfs``
    builds (about a minute, once) or finds in its cache, its progress shown as it goes."""
    given = os.environ.get(ROOTFS_ENVIRONMENT)
    if given:
        path = Path(given)
        if not (path / "usr/lib/systemd/systemd").exists():
            raise ConfigError(ROOTFS_ENVIRONMENT, f"{path} is not a rootfs with systemd")
        return path
    if not BUILD_BOX.is_file():
        raise ConfigError(OPTION, f"nspawn: {BUILD_BOX} not found (a source checkout is needed)")
    log_path = context.workdir / "build-box.log"
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            [str(BUILD_BOX), "--rootfs"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        ) as process,
    ):
        assert process.stderr is not None
        assert process.stdout is not None
        for line in process.stderr:
            log.write(line)
            if not line.startswith("build-box: cached"):
                context.progress(line.rstrip())
        output = process.stdout.read()
        status = process.wait()
    if status != 0:
        raise ProcessError("box/build-box --rootfs", f"exited with status {status}", tail(log_path))
    return Path(output.strip().splitlines()[-1])


def container_cgroups(name: str) -> list[Path]:
    """A cgroup of container ``name``'s own (its network namespace's name, which starts
    with ``pytest-coreos-``) under this process's, in systemd's hierarchies (the named v1
    ``systemd`` one and the unified one, or the one v2 tree).

    systemd-nspawn, unregistered, keeps its caller's cgroup: containers started from one
    process would share it, and with it every unit's cgroup (a unit of the same name in
    two containers would be one cgroup, each systemd creating and removing it under the
    other's feet: units failing with status 219/CGROUP).
    """
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if controllers == "name=systemd":
            mount = CGROUPS / "systemd"
        elif hierarchy == "0" and not controllers:
            unified = CGROUPS / "unified"
            mount = unified if (unified / "cgroup.procs").exists() else CGROUPS
        else:
            continue
        found.append(mount / path.lstrip("/") / name)
    return found


def remove_cgroups(cgroups: Sequence[Path], timeout: float = 5.0) -> None:
    """Remove the cgroups, deepest first, once the processes that were in them are gone
    (the kernel ends a container's processes shortly after its init)."""
    deadline = time.monotonic() + timeout
    for cgroup in cgroups:
        while cgroup.exists():
            try:
                for folder, _, _ in sorted(os.walk(cgroup), key=lambda e: -len(e[0])):
                    os.rmdir(folder)
            except FileNotFoundError:
                continue
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)


def _ids(rootfs: Path, user: str) -> tuple[int, int]:
    """The uid and gid of ``user`` inside the rootfs."""
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ConfigError(OPTION, f"nspawn: the rootfs {rootfs} has no user {user!r}")


class Container:
    """One machine: its systemd-nspawn process and, once booted, the container's init."""

    def __init__(self, name: str, process: ManagedProcess, cgroups: Sequence[Path] = ()) -> None:
        self.name = name
        self.process = process
        self.cgroups = list(cgroups)  # its own (see container_cgroups)
        self.leader: ManagedProcess | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.process] + ([self.leader] if self.leader is not None else [])

    @property
    def running(self) -> bool:
        return self.process.running

    def start(self) -> None:
        if self.running:
            return
        self.process.start()
        self.leader = None
        self.find_leader()

    def find_leader(self) -> None:
        """Note the container's init (a child of systemd-nspawn), so that it is reaped
        even if systemd-nspawn alone dies: it would outlive it."""
        pid = self.process.pid
        deadline = time.monotonic() + LEADER_WAIT
        while pid is not None and self.process.running and time.monotonic() < deadline:
            for child in descendants_of([pid]):
                try:
                    comm = Path(f"/proc/{child}/comm").read_text().strip()
                except OSError:
                    continue
                if comm == "systemd":
                    self.leader = ManagedProcess.from_record(
                        {
                            "name": f"{self.name} init",
                            "argv": [],
                            "log_path": str(self.process.log_path),
                            "env": None,
                            "cwd": None,
                            "pid": child,
                            "start_time": process_start_time(child),
                        },
                        die_with_parent=False,
                    )
                    return
            time.sleep(0.01)

    def stop(self) -> None:
        """A clean shutdown: systemd-nspawn asks the container's systemd to power off."""
        if self.process.running and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)
            if self.process.wait(STOP_GRACE):
                self._wait_leader()
                return
        self.kill()

    def _wait_leader(self) -> None:
        if self.leader is not None:
            self.leader.wait(5.0)

    def kill(self) -> None:
        self.resume()
        kill_all(self.processes)

    def _signal_all(self, signum: int) -> None:
        pids = [p.pid for p in self.processes if p.pid is not None and p.running]
        for pid in [*pids, *descendants_of(pids)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def pause(self) -> None:
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def logs(self, lines: int) -> str:
        """The container's journal (read with nsenter, no network), else its console."""
        leader = self.leader
        if leader is not None and leader.running and leader.pid is not None:
            result = subprocess.run(
                ["nsenter", "-t", str(leader.pid), "-m", "-p", "-u", "--",
                 "journalctl", "--no-pager", "-q", "-n", str(lines)],
                capture_output=True,
                text=True,
                check=False,
                timeout=20,
            )  # fmt: skip
            if result.returncode == 0:
                return result.stdout
        return self.process.log_tail(lines)

    def check_alive(self) -> None:
        if self.process.started and not self.process.running:
            status = self.process.exit_status
            raise ProcessError(
                f"{self.name} systemd-nspawn",
                "exited" if status is None else f"exited with status {status}",
                self.process.log_tail(),
            )


class NspawnProvider(LabProvider):
    """Boots a cluster of systemd-nspawn containers in a network lab of its own."""

    discovery_hint = "use --coreos-discovery=local with --coreos-provider=nspawn"

    def __init__(self, context: BootContext) -> None:
        self.context = context
        self.notices: list[str] = []
        self.containers: list[Container] = []
        self._descriptions: list[dict[str, Any]] = []
        self.discovery: DiscoveryService | None = None
        self.lab: NetworkLab | None = None
        spec = context.spec
        if os.geteuid() != 0:
            raise ConfigError(
                OPTION,
                "nspawn needs root (containers in network namespaces)",
                "run pytest as root, or use --coreos-provider=local",
            )
        if spec.discovery == "static":
            raise ConfigError(
                "--coreos-discovery",
                "static is not supported by the nspawn provider",
                self.discovery_hint,
            )
        self.nspawn = _nspawn()
        self.fleet = None if spec.fleet is None else fleet_release.prepare(spec.fleet)
        context.workdir.mkdir(parents=True, exist_ok=True)
        self.rootfs = find_rootfs(context)
        self.lab = new_lab(context, OPTION, "use --coreos-provider=local")

    def boot(self) -> list[Machine]:
        context = self.context
        lab = self.lab
        assert lab is not None
        etcd_ids = _ids(self.rootfs, "etcd")
        user_data = context.workdir / "user-data"
        if context.write_ignition is None and not user_data.is_file():
            user_data.write_text(render.render_user_data(context.user_data))
        notice = fleet_release.missing_fleet_notice(context.spec.fleet, context.user_data)
        if notice is not None and context.write_ignition is None:
            self.notices.append(notice)
        die_with_parent = not context.spec.keep
        for index, name in enumerate(machine_names(context.spec.instances), 1):
            network = lab.add_machine(name, index)
            directory = context.workdir / "machines" / name
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            (directory / "hostname").write_text(name + "\n")
            (directory / "interfaces").write_text(INTERFACES)
            (directory / "environment").write_text(
                f"COREOS_PRIVATE_IPV4={network.address}\nCOREOS_PUBLIC_IPV4={network.address}\n"
            )
            host_key = directory / "ssh_host_ed25519_key"
            generate_ed25519_key(host_key, comment=name)
            etcd_dir = directory / "etcd"
            etcd_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(etcd_dir, *etcd_ids)
            binds = {
                directory / "hostname": "/etc/hostname",
                directory / "interfaces": "/etc/network/interfaces",
                directory / "environment": "/etc/environment",
                host_key: "/etc/ssh/ssh_host_ed25519_key",
                context.ssh_public_key_path: "/root/.ssh/authorized_keys",
                user_data: USER_DATA,
                # No serial console in a container: its getty would wait 90 s for one.
                Path("/dev/null"): "/etc/systemd/system/serial-getty@ttyS0.service",
            }
            if self.fleet is not None:  # the same binaries for every machine, read-only
                binds[self.fleet.fleetd] = "/usr/bin/fleetd"
                binds[self.fleet.fleetctl] = "/usr/bin/fleetctl"
            if context.write_ignition is not None:
                # The machine's Ignition config instead of user-data.
                del binds[user_data]
                binds[context.write_ignition(name, network.address, network.address)] = IGNITION
            cgroups = container_cgroups(network.netns)
            for cgroup in cgroups:
                try:
                    cgroup.mkdir(exist_ok=True)
                except OSError as error:
                    raise ProcessError(
                        f"{name} systemd-nspawn", f"no cgroup of its own: {error}"
                    ) from error
            argv = [
                "sh",
                "-c",
                _ENTER_CGROUPS,
                "sh",
                *map(str, cgroups),
                "--",
                self.nspawn,
                "--boot",
                f"--directory={self.rootfs}",
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                f"--machine={name}",
                f"--network-namespace-path={network.netns_path}",
                "--console=pipe",
                *(f"--bind-ro={source}:{target}" for source, target in binds.items()),
                f"--bind={etcd_dir}:/var/lib/etcd",
            ]
            process = ManagedProcess(
                "systemd-nspawn",
                argv,
                log_path=directory / "console.log",
                cwd=directory,
                die_with_parent=die_with_parent,
            )
            self.containers.append(Container(name, process, cgroups))
            self._descriptions.append(
                {
                    "name": name,
                    "address": network.address,
                    "host_key": str(host_key),
                    "etcd_endpoints": etcd_client_urls(context.user_data, network.address),
                }
            )
        for container in self.containers:
            container.process.start()
        for container in self.containers:
            container.find_leader()
        context.remember(self.describe())
        return self.handles(context.ssh_key)

    def handles(self, key: paramiko.PKey) -> list[Machine]:
        """Machine handles whose every connection is made from the lab's hub."""
        return [
            self.machine_handle(
                description,
                port=22,
                user="root",
                host_key=description["host_key"],
                key=key,
                control=container,
            )
            for description, container in zip(self._descriptions, self.containers, strict=True)
        ]

    def machine_processes(self) -> list[ManagedProcess]:
        return [process for container in self.containers for process in container.processes]

    def describe(self) -> dict[str, Any]:
        return {
            **self._running_record(),
            "machines": self._descriptions,
            "rootfs": str(getattr(self, "rootfs", "")),
            "cgroups": [
                str(cgroup) for container in self.containers for cgroup in container.cgroups
            ],
        }

    def close(self) -> None:
        for container in self.containers:
            container.resume()
        kill_all(self.machine_processes())
        remove_cgroups([cgroup for container in self.containers for cgroup in container.cgroups])
        if self.discovery is not None:
            self.discovery.close()
        if self.lab is not None:
            self.lab.destroy()


def create(context: BootContext) -> NspawnProvider:
    return NspawnProvider(context)


def reap(record: Mapping[str, Any]) -> list[str]:
    """The cgroups of a dead run's containers: what still runs in them is killed (a
    container's init outlives a killed pytest), then they are removed."""
    cgroups = [
        Path(path)
        for path in record.get("cgroups", [])
        if Path(path).is_relative_to(CGROUPS) and Path(path).name.startswith(NAMESPACE_PREFIX)
    ]
    removed = []
    for cgroup in cgroups:
        if not cgroup.is_dir():
            continue
        for folder, _, _ in os.walk(cgroup):
            with contextlib.suppress(OSError):
                for pid in (Path(folder) / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        removed.append(f"cgroup {cgroup}")
    remove_cgroups(cgroups)
    return removed


def attach(context: BootContext, record: Mapping[str, Any]) -> NspawnProvider:
    raise ConfigError(
        "--coreos-reuse",
        "a cluster of nspawn containers cannot be attached to (reuse, xdist sharing)",
        "its machines live in network namespaces of the session that made them",
    )
