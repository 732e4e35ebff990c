"""The nspawn provider's machines: each a systemd-nspawn container booting the Debian
stand-in rootfs the Vagrant box is built from (``python -m pytest_coreos.image --rootfs``),
with systemd as PID 1, sshd and etcd inside, and the user-data applied by the image's own
coreos-agent.

Each container lives in a network namespace of a :class:`NetworkLab` (its ``eth0`` has
its address already: no DHCP), reached only through the lab's hub. What differs between
machines is bind-mounted over the read-only image (``--volatile=overlay`` keeps every
write in a tmpfs of the container's own): its hostname, its pinned SSH host key, root's
``authorized_keys`` (the session's key), the user-data the agent applies, and an etcd
data folder of its own, kept across ``stop()``/``start()``; with ``--coreos-fleet``, fleetd
and fleetctl in ``/usr/bin``.

Docker Engine runs inside each container as it would on a machine of its own: its data
(``/var/lib/docker``) in a folder of this host, kept like etcd's (overlay2 does not mount on
the container's overlay root); the keyring system calls runc uses allowed; CAP_NET_ADMIN,
for docker's bridge and rules in the machine's own network namespace; and, where this
host has cgroup v1 controllers (which systemd-nspawn mounts read-only), a subtree of each
made for the machine, that the image's ``container-cgroups.service`` puts where runc
writes. docker's bridge, its iptables rules and its port proxies live in the machine's
network namespace only.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko

from pytest_coreos.config import cloud_config
from pytest_coreos.config.images import docker_daemon_config
from pytest_coreos.errors import ConfigError, ProcessError, ResetError
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.host import datadir, fleet_release
from pytest_coreos.host.images import read_archives
from pytest_coreos.host.netns import NAMESPACE_PREFIX, write_sysctl
from pytest_coreos.host.process import (
    ManagedProcess,
    descendants_of,
    kill_all,
    process_start_time,
    wait_stopped,
)
from pytest_coreos.host.sshd import generate_ed25519_key
from pytest_coreos.image import builder
from pytest_coreos.providers.common import ETCD_JOURNAL_UNITS
from pytest_coreos.providers.lab import Lab, LabDeploymentBase, LabMachine, machine_record
from pytest_coreos.providers.protocol import BootContext, MachineDescription

OPTION = "--coreos-provider"
# Where a finished rootfs may be named directly (skips the image build).
ROOTFS_ENVIRONMENT = "PYTEST_COREOS_ROOTFS"
USER_DATA = "/var/lib/coreos-vagrant/vagrantfile-user-data"
IGNITION = "/usr/share/oem/config.ign"  # where the stand-in's agent looks for one
# Where the container finds its cgroup v1 controllers' subtrees (see container-cgroups).
CONTROLLERS_STAGING = "/var/lib/pytest-coreos/cgroup"
# runc joins each container to a session keyring: systemd-nspawn's filter refuses those calls.
SYSTEM_CALLS = "@keyring"
# docker makes its bridge and iptables rules in the machine's network namespace, which a
# container given one it did not make may not change without this capability.
CAPABILITIES = "CAP_NET_ADMIN"
# docker's configuration, and the folder of the images' marker (see wait-for-images).
DOCKER_DAEMON_CONFIG = "/etc/docker/daemon.json"
IMAGES_FOLDER = "/var/lib/pytest-coreos/images"
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
# What a container has no use for is masked (/dev/null bind-mounted where systemd looks, as
# `systemctl mask` would link it): the serial console's getty (it would wait 90 s for a
# serial line) and ifupdown's networking.service (the lab configured eth0 and lo already;
# it only held back network.target, which the agent that starts etcd waits for).
MASKED_UNITS = ("serial-getty@ttyS0.service", "networking.service")
# The image's systemd generators look for disks, fstab entries, kernel command-line
# options and SysV scripts, none of which a container has; systemd runs each of them at
# boot and again at every daemon-reload (the agent's among them), so they are masked too.
GENERATORS = Path("usr/lib/systemd/system-generators")
# A container's host key and keys are bound in before it boots: its sshd need not wait for
# the agent, as a VM's does (the image's drop-in ordering it after the agent is masked).
MASKED_FILES = ("/etc/systemd/system/ssh.service.d/10-after-coreos-agent.conf",)


def masked_paths(rootfs: Path) -> list[str]:
    """Where the container gets /dev/null bind-mounted: the units and the rootfs's
    generators it has no use for (see MASKED_UNITS and GENERATORS)."""
    generators = rootfs / GENERATORS
    names = sorted(path.name for path in generators.iterdir()) if generators.is_dir() else []
    return [
        *(f"/etc/systemd/system/{unit}" for unit in MASKED_UNITS),
        *MASKED_FILES,
        *(f"/etc/systemd/system-generators/{name}" for name in names),
    ]


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
    """The stand-in rootfs: ``$PYTEST_COREOS_ROOTFS``, or what the package's image builder
    (``python -m pytest_coreos.image --rootfs``) builds (about a minute, once) or finds in
    its cache, its progress shown as it goes."""
    given = os.environ.get(ROOTFS_ENVIRONMENT)
    if given:
        path = Path(given)
        if not (path / "usr/lib/systemd/systemd").exists():
            raise ConfigError(ROOTFS_ENVIRONMENT, f"{path} is not a rootfs with systemd")
        return path
    return builder.build("--rootfs", context.paths.image_log, context.progress)


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


def controller_cgroups(name: str) -> dict[str, Path]:
    """A cgroup of container ``name``'s own in each of this host's cgroup v1 controller
    hierarchies (``cpu``, ``memory``, ``cpu,cpuacct``...), by the hierarchy's folder name
    under /sys/fs/cgroup; none on a host with the unified hierarchy alone."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" or not controllers or controllers.startswith("name="):
            continue
        mount = CGROUPS / controllers
        if (mount / "cgroup.procs").exists():
            found[controllers] = mount / path.lstrip("/") / name
    return found


def make_cgroup(cgroup: Path) -> None:
    """Make ``cgroup``; a cpuset one gets its parent's CPUs and memory nodes, without which
    no process can join it."""
    cgroup.mkdir(exist_ok=True)
    for setting in ("cpuset.cpus", "cpuset.mems"):
        mine = cgroup / setting
        if mine.exists() and not mine.read_text().strip():
            mine.write_text((cgroup.parent / setting).read_text())


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


def allow_forwarding(netns_path: Path) -> None:
    """Let the machine's network namespace forward IPv4, as a machine of its own does:
    docker publishes ports to its containers through it, and a container given a namespace
    it did not make cannot set it from inside (its /proc/sys is read-only)."""
    write_sysctl(netns_path, "net.ipv4.ip_forward", "1")


def _ids(rootfs: Path, user: str) -> tuple[int, int]:
    """The uid and gid of ``user`` inside the rootfs."""
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ConfigError(OPTION, f"nspawn: the rootfs {rootfs} has no user {user!r}")


class Container(LabMachine):
    """One machine: its systemd-nspawn process and, once booted, the container's init."""

    kind = "systemd-nspawn"

    def __init__(self, name: str, process: ManagedProcess, cgroups: Sequence[Path] = ()) -> None:
        super().__init__(name, process)
        self.cgroups = list(cgroups)  # its own (see container_cgroups)
        self.leader: ManagedProcess | None = None

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.process] + ([self.leader] if self.leader is not None else [])

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

    def etcd_pids(self) -> list[int]:
        """The container's etcd processes, seen from this host."""
        leader = self.leader
        if leader is None or not leader.running or leader.pid is None:
            return []
        found = []
        for pid in descendants_of([leader.pid]):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "etcd":
                    found.append(pid)
            except OSError:
                continue
        return found

    def etcd_unit(self) -> str:
        """The unit that runs the container's etcd (etcd, etcd2 or etcd-member, as its
        config chose), read from the cgroup of its process; "" if none runs."""
        for pid in self.etcd_pids():
            try:
                cgroups = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:
                continue
            for part in reversed(cgroups.replace(":", "/").split("/")):
                if part.strip().endswith(".service"):
                    return part.strip()
        return ""

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` run by the container's own systemd (through nsenter: no
        network, no SSH)."""
        leader = self.leader.pid if self.leader is not None else None
        if leader is None:
            raise ProcessError(f"{self.name} systemd-nspawn", "its init is not known")
        return subprocess.run(
            ["nsenter", "-t", str(leader), "-m", "-p", "-u", "--", "systemctl", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=STOP_GRACE,
        )

    def logs(self, lines: int) -> str:
        """etcd's journal in the container (read with nsenter, no network), else the
        container's console."""
        leader = self.leader
        if leader is not None and leader.running and leader.pid is not None:
            units = [arg for unit in ETCD_JOURNAL_UNITS for arg in ("-u", unit)]
            result = subprocess.run(
                ["nsenter", "-t", str(leader.pid), "-m", "-p", "-u", "--",
                 "journalctl", "--no-pager", "-q", "-n", str(lines), *units],
                capture_output=True,
                text=True,
                check=False,
                timeout=20,
            )  # fmt: skip
            if result.returncode == 0:
                return result.stdout
        return self.process.log_tail(lines)


class NspawnDeployment(LabDeploymentBase):
    """A cluster of systemd-nspawn containers in a network lab of its own."""

    def __init__(self, context: BootContext) -> None:
        self.context = context
        self.notices: list[str] = []
        self.containers: list[Container] = []
        self._descriptions: list[dict[str, Any]] = []
        self.rootfs: Path | None = None
        self._etcd_units: dict[str, str] = {}  # the unit that runs each machine's etcd
        if os.geteuid() != 0:
            raise ConfigError(
                OPTION,
                "nspawn needs root (containers in network namespaces)",
                "run pytest as root, or use --coreos-provider=local",
            )
        self.nspawn = _nspawn()
        fleet = context.spec.fleet
        self.fleet = None if fleet is None else fleet_release.prepare(fleet)
        context.workdir.mkdir(parents=True, exist_ok=True)
        self.rootfs = find_rootfs(context)
        self.lab = Lab.create(context, OPTION, "use --coreos-provider=local")

    # -- reset -------------------------------------------------------------------
    def save_ready(self) -> None:
        # Each container's etcd data lives in a folder of this host, bind-mounted: the
        # members are frozen for the milliseconds the copies take (no election), so each
        # copy is a state its member could have crashed in, which etcd recovers from.
        self._etcd_units = {}
        for container in self.containers:
            unit = container.etcd_unit()
            if not unit:
                raise ResetError(self.context.workdir.name, f"no etcd runs on {container.name}")
            self._etcd_units[container.name] = unit
        pids = [pid for container in self.containers for pid in container.etcd_pids()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        try:
            wait_stopped(pids)
            for container in self.containers:
                directory = self.context.paths.machine(container.name)
                datadir.save(directory / "etcd", self.context.paths.etcd_at_ready(container.name))
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def revive(self) -> list[str]:
        self.lab.heal()
        started = []
        for container in self.containers:
            if container.running:
                container.resume()
            else:
                container.start()  # a fresh boot: its volatile overlay starts empty
                started.append(container.name)
        # A container just started has its etcd started by its agent: it must be running
        # before restore() stops it, or it would start on the restored data half-copied.
        deadline = time.monotonic() + self.context.spec.boot_timeout
        for container in (c for c in self.containers if c.name in started):
            while not container.etcd_pids():
                if time.monotonic() > deadline or not container.running:
                    raise ResetError(
                        self.context.workdir.name,
                        f"{container.name} was started again but runs no etcd",
                    )
                time.sleep(0.02)
        return started

    def restore(self) -> None:
        paths = self.context.paths
        units = self._etcd_units
        if len(units) != len(self.containers):
            raise ResetError(self.context.workdir.name, "no copy of etcd's data taken at ready")
        try:
            staged = {
                c.name: datadir.stage(paths.etcd_at_ready(c.name), paths.machine(c.name) / "etcd")
                for c in self.containers
            }
        except OSError as error:
            raise ResetError(self.context.workdir.name, str(error)) from error

        def stop(container: Container) -> None:
            # Killed first: SIGTERM to every member at once stalls in leader transfer;
            # the stop then cancels the restart systemd would schedule.
            unit = units[container.name]
            container.systemctl("kill", "--signal=SIGKILL", unit)
            result = container.systemctl("stop", unit)
            if result.returncode != 0 or container.etcd_pids():
                raise ResetError(
                    self.context.workdir.name,
                    f"{unit} on {container.name} did not stop: {result.stderr.strip()}",
                )

        def start(container: Container) -> None:
            unit = units[container.name]
            container.systemctl("reset-failed", unit)
            result = container.systemctl("start", "--no-block", unit)
            if result.returncode != 0:
                raise ResetError(
                    self.context.workdir.name,
                    f"{unit} on {container.name} did not start: {result.stderr.strip()}",
                )

        with ThreadPoolExecutor(len(self.containers)) as pool:
            list(pool.map(stop, self.containers))
            for container in self.containers:
                datadir.swap_in(staged[container.name], paths.machine(container.name) / "etcd")
            list(pool.map(start, self.containers))

    def detach(self) -> None:
        """Leave the containers running (a kept cluster) and let go of them."""
        for process in self.machine_processes():
            process.detach()

    def boot(self) -> list[MachineDescription]:
        context = self.context
        lab = self.lab
        assert self.rootfs is not None
        etcd_ids = _ids(self.rootfs, "etcd")
        user_data = context.paths.user_data
        if context.write_ignition is None and not user_data.is_file():
            user_data.write_text(cloud_config.render_user_data(context.user_data))
        notice = fleet_release.missing_fleet_notice(context.spec.fleet, context.user_data)
        if notice is not None and context.write_ignition is None:
            self.notices.append(notice)
        die_with_parent = not context.spec.keep
        masks = masked_paths(self.rootfs)
        shared_binds = self.serve_images()
        for index, name in enumerate(machine_names(context.spec.instances), 1):
            network = lab.add_machine(name, index)
            allow_forwarding(network.netns_path)
            directory = context.paths.machine(name)
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
            }
            binds.update(shared_binds)
            if self.fleet is not None:  # the same binaries for every machine, read-only
                binds[self.fleet.fleetd] = "/usr/bin/fleetd"
                binds[self.fleet.fleetctl] = "/usr/bin/fleetctl"
            if context.write_ignition is not None:
                # The machine's Ignition config instead of user-data.
                del binds[user_data]
                binds[context.write_ignition(name, network.address, network.address)] = IGNITION
            docker_dir = directory / "docker"
            docker_dir.mkdir(mode=0o710, exist_ok=True)
            cgroups = container_cgroups(network.netns)
            controllers = controller_cgroups(network.netns)
            for cgroup in [*cgroups, *controllers.values()]:
                try:
                    make_cgroup(cgroup)
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
                *(f"--bind-ro=/dev/null:{target}" for target in masks),
                f"--bind={etcd_dir}:/var/lib/etcd",
                f"--bind={docker_dir}:/var/lib/docker",
                f"--system-call-filter={SYSTEM_CALLS}",
                f"--capability={CAPABILITIES}",
                *(
                    f"--bind={cgroup}:{CONTROLLERS_STAGING}/{hierarchy}"
                    for hierarchy, cgroup in controllers.items()
                ),
            ]
            process = ManagedProcess(
                "systemd-nspawn",
                argv,
                log_path=directory / "console.log",
                cwd=directory,
                die_with_parent=die_with_parent,
            )
            self.containers.append(Container(name, process, [*cgroups, *controllers.values()]))
            self._descriptions.append(machine_record(context, network, host_key))
        for container in self.containers:
            container.process.start()
        for container in self.containers:
            container.find_leader()
        context.remember(self.describe())
        return self.handles(context.ssh_key, context.ssh_public_key_path.with_suffix(""))

    def serve_images(self) -> dict[Path, str]:
        """With ``--coreos-images``: the lab's registry, started and filling while the
        machines boot, and what every machine gets bound for it: docker's configuration
        (the registry as its Docker Hub mirror) and the folder whose ``filling`` marker
        holds its engine back until the images are served."""
        spec = self.context.spec
        if not spec.images:
            return {}
        archives = read_archives(tuple(str(path) for path in spec.images))
        folder = self.context.workdir / "images"
        folder.mkdir(mode=0o755, exist_ok=True)
        marker = folder / "filling"
        marker.touch()
        host = self.lab.serve_images(
            archives,
            lambda: self.context.remember(self.describe()),
            done=lambda: marker.unlink(missing_ok=True),
        )
        daemon = folder / "daemon.json"
        daemon.write_text(docker_daemon_config(host))
        return {daemon: DOCKER_DAEMON_CONFIG, folder: IMAGES_FOLDER}

    def handles(self, key: paramiko.PKey, identity_file: Path) -> list[MachineDescription]:
        """Its machines, every connection to them made from the lab's hub."""
        return [
            self.lab.describe_machine(
                description,
                port=22,
                user="root",
                host_key=description["host_key"],
                key=key,
                identity_file=identity_file,
                control=container,
            )
            for description, container in zip(self._descriptions, self.containers, strict=True)
        ]

    def machine_processes(self) -> list[ManagedProcess]:
        return [process for container in self.containers for process in container.processes]

    def describe(self) -> dict[str, Any]:
        return {
            **self.lab_record(),
            "machines": self._descriptions,
            "rootfs": str(self.rootfs or ""),
            "cgroups": [
                str(cgroup) for container in self.containers for cgroup in container.cgroups
            ],
        }

    def close(self) -> None:
        self.notices.extend(self.lab.registry_notices())
        for container in self.containers:
            container.resume()
        kill_all(self.machine_processes())
        remove_cgroups([cgroup for container in self.containers for cgroup in container.cgroups])
        self.lab.close()


def reap_cgroups(record: Mapping[str, Any]) -> list[str]:
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
