"""The local provider: each machine is a real etcd member plus its own real OpenSSH sshd,
on its own loopback address, with no VM.

The machine's etcd is configured from the rendered user-data the way CoreOS did it: each
key of the etcd section becomes an ``ETCD_*`` variable (:func:`etcd_env.etcd_environment`),
with ``$private_ipv4``/``$public_ipv4`` being the machine's loopback address. A machine's
interfaces are that address: ``0.0.0.0``, ``127.0.0.1`` and ``localhost`` in its listen
URLs mean it, so that every member can use etcd's usual ports.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import paramiko

from pytest_coreos.config import etcd_env
from pytest_coreos.errors import ProcessError, ResetError
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.host import datadir
from pytest_coreos.host.addresses import AddressBlock, can_bind, claim_block
from pytest_coreos.host.binaries import find_sshd
from pytest_coreos.host.netns import MachineNetwork
from pytest_coreos.host.process import ManagedProcess, kill_all, wait_stopped
from pytest_coreos.host.sshd import (
    SshdSettings,
    ensure_privilege_separation_dir,
    generate_ed25519_key,
    openssh_version,
    public_key_line,
    render_sshd_config,
    ssh_port_for_current_user,
    sshd_command,
)
from pytest_coreos.providers.lab import Lab, LabDeploymentBase
from pytest_coreos.providers.protocol import BootContext, MachineDescription

_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104 - rewritten, never bound
_LOCAL_HOSTS = {*_WILDCARD_HOSTS, "127.0.0.1", "localhost"}
_LISTEN_KEYS = ("ETCD_LISTEN_CLIENT_URLS", "ETCD_LISTEN_PEER_URLS")
_ADVERTISE_KEYS = ("ETCD_ADVERTISE_CLIENT_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS")
_UNIT_NAMES_RUN_HERE = {"etcd.service", "etcd2.service"}


# The cluster's own settings where the user-data does not give them. Heartbeat 25 ms,
# election 250 ms and pre-vote converge in well under a second on loopback, where etcd's
# 100/1000 defaults cost seconds and 10/100 caused election storms at 9 members.
def _default_environment(name: str, address: str) -> dict[str, str]:
    return {
        "ETCD_NAME": name,
        "ETCD_LISTEN_CLIENT_URLS": f"http://{address}:2379,http://{address}:4001",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{address}:2379",
        "ETCD_LISTEN_PEER_URLS": f"http://{address}:2380",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{address}:2380",
        "ETCD_HEARTBEAT_INTERVAL": "25",
        "ETCD_ELECTION_TIMEOUT": "250",
        "ETCD_PRE_VOTE": "true",
    }


def _rewrite_local_hosts(urls: str, address: str, *, wildcard: bool) -> str:
    """Point URLs at the machine's address where they name "this host"."""
    rewritten = []
    for url in urls.split(","):
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        if host in _LOCAL_HOSTS and (wildcard or host not in _WILDCARD_HOSTS):
            netloc = address if parts.port is None else f"{address}:{parts.port}"
            url = urlunsplit(parts._replace(netloc=netloc))
        rewritten.append(url.strip())
    return ",".join(rewritten)


def machine_etcd_environment(
    user_data: Mapping[str, Any], *, name: str, address: str, data_dir: Path
) -> tuple[dict[str, str], list[str]]:
    """The ``ETCD_*`` environment of one local machine, and notices about what the user's
    etcd section asked for that the local provider changes."""
    converted = etcd_env.etcd_environment(user_data, private_ipv4=address, public_ipv4=address)
    notices = [f"etcd key {key!r} has no etcd 3 equivalent; ignored" for key in converted.dropped]
    env = _default_environment(name, address)
    env.update(converted.env)
    for key in _LISTEN_KEYS:
        env[key] = _rewrite_local_hosts(env[key], address, wildcard=True)
    for key in _ADVERTISE_KEYS:
        env[key] = _rewrite_local_hosts(env[key], address, wildcard=False)
    if "ETCD_DATA_DIR" in converted.env:
        notices.append("etcd data-dir from the user-data is replaced by the machine's own folder")
    # The plugin's handles need the v2 API; a member that finds its token full must exit
    # rather than run on as a proxy that looks healthy.
    env.update(ETCD_DATA_DIR=str(data_dir), ETCD_ENABLE_V2="true", ETCD_DISCOVERY_FALLBACK="exit")
    return env, notices


def _ports(env: Mapping[str, str]) -> set[int]:
    ports = set()
    for key in _LISTEN_KEYS:
        for url in env[key].split(","):
            port = urlsplit(url.strip()).port
            if port is not None:
                ports.add(port)
    return ports


def not_applied_here(user_data: Mapping[str, Any]) -> list[str]:
    """The parts of a cloud-config that the local provider cannot apply (it runs only etcd
    and sshd, as processes), named so the user is told once."""
    skipped = [key for key in user_data if key != "coreos"]
    coreos = user_data.get("coreos") or {}
    skipped += [f"coreos.{key}" for key in coreos if key not in ("etcd", "etcd2", "units")]
    units = [
        unit.get("name", "?")
        for unit in coreos.get("units") or []
        if isinstance(unit, Mapping) and unit.get("name") not in _UNIT_NAMES_RUN_HERE
    ]
    if units:
        skipped.append("coreos.units (" + ", ".join(str(name) for name in units) + ")")
    return skipped


V2_DISCOVERY_REMOVED = (3, 6)


def joins_statically(discovery: str, etcd_version: tuple[int, int, int]) -> bool:
    """Whether members get a static initial-cluster instead of a discovery URL: when
    asked to, or when their etcd no longer speaks v2 discovery."""
    return discovery == "static" or etcd_version >= V2_DISCOVERY_REMOVED


def join_statically(environments: list[dict[str, str]], token: str) -> None:
    """Turn discovery into a static ``initial-cluster`` of every member's peer URL: for
    ``--coreos-discovery=static``, and for etcd 3.6+, which dropped v2 discovery."""
    members = ",".join(
        f"{env['ETCD_NAME']}={url}"
        for env in environments
        for url in env["ETCD_INITIAL_ADVERTISE_PEER_URLS"].split(",")
    )
    for env in environments:
        env.pop("ETCD_DISCOVERY", None)
        env.pop("ETCD_DISCOVERY_FALLBACK", None)
        env.update(
            ETCD_INITIAL_CLUSTER=members,
            ETCD_INITIAL_CLUSTER_STATE="new",
            ETCD_INITIAL_CLUSTER_TOKEN=token,
        )


class LocalMachine:
    """The processes of one local machine: its etcd and its sshd."""

    def __init__(self, name: str, etcd: ManagedProcess, sshd: ManagedProcess) -> None:
        self.name = name
        self.etcd = etcd
        self.sshd = sshd

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.etcd, self.sshd]

    @property
    def running(self) -> bool:
        return self.etcd.running

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()

    def kill(self) -> None:
        kill_all(self.processes)

    def pause(self) -> None:
        for process in self.processes:
            process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        for process in self.processes:
            process.signal(signal.SIGCONT)

    def logs(self, lines: int) -> str:
        return self.etcd.log_tail(lines)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.started and not process.running:
                status = process.exit_status
                raise ProcessError(
                    f"{self.name} {process.name}",
                    "exited" if status is None else f"exited with status {status}",
                    process.log_tail(),
                )


class LocalDeployment(LabDeploymentBase):
    """A cluster of local machines on a loopback block of its own, or in a network lab."""

    def __init__(self, context: BootContext) -> None:
        self.context = context
        self.notices: list[str] = []
        self.block: AddressBlock | None = None
        self.machines: list[LocalMachine] = []
        self._descriptions: list[dict[str, Any]] = []
        self.binaries: tuple[Path, Path] = (Path(), Path())  # sshd, etcd
        self.lab = Lab(context)  # a network lab with --coreos-network=netns
        self.etcd_version: tuple[int, int, int] = (0, 0, 0)

    # -- reset -------------------------------------------------------------------
    def _data_dirs(self) -> list[tuple[LocalMachine, Path, Path]]:
        """Each machine, its etcd data folder and the copy of it taken at ready."""
        paths = self.context.paths
        return [
            (machine, paths.machine(machine.name) / "etcd", paths.etcd_at_ready(machine.name))
            for machine in self.machines
        ]

    def save_ready(self) -> None:
        # Consistent without a restart: every member is frozen for the milliseconds the
        # copies take (a heartbeat or two, no election), so each copy is a state its
        # member could have crashed in, which etcd recovers from on every start.
        members = [machine.etcd for machine in self.machines]
        for process in members:
            process.signal(signal.SIGSTOP)
        try:
            wait_stopped([process.pid for process in members if process.pid is not None])
            for _, data_dir, copy in self._data_dirs():
                datadir.save(data_dir, copy)
        finally:
            for process in members:
                process.signal(signal.SIGCONT)

    def revive(self) -> list[str]:
        self.lab.heal()
        started = []
        for machine in self.machines:
            machine.resume()
            if not all(process.running for process in machine.processes):
                machine.start()  # what still runs is left alone
                started.append(machine.name)
        return started

    def restore(self) -> None:
        dirs = self._data_dirs()
        try:
            staged = [datadir.stage(copy, data_dir) for _, data_dir, copy in dirs]
        except OSError as error:
            raise ResetError(self.context.workdir.name, str(error)) from error
        # Killed, not stopped: SIGTERM to every member at once stalls in leader transfer.
        kill_all([machine.etcd for machine in self.machines])
        for (_, data_dir, _), copy in zip(dirs, staged, strict=True):
            datadir.swap_in(copy, data_dir)
        for machine, _, _ in dirs:
            machine.etcd.start()

    def boot(self) -> list[MachineDescription]:
        context = self.context
        spec = context.spec
        sshd, etcd = self.binaries
        sshd_version = openssh_version(sshd)
        user = pwd.getpwuid(os.getuid()).pw_name
        ssh_port = ssh_port_for_current_user()
        ensure_privilege_separation_dir()
        names = machine_names(spec.instances)
        if self.lab.active:
            # Each machine its own namespace: the usual ports, on addresses of the lab's own.
            networks: dict[str, MachineNetwork] = {
                name: self.lab.add_machine(name, index) for index, name in enumerate(names, 1)
            }
            addresses = {name: networks[name].address for name in names}
        else:
            if ssh_port == 22 and not can_bind("127.254.254.254", 22):
                ssh_port = 2222  # something holds 0.0.0.0:22 on this host
            probe_env, _ = machine_etcd_environment(
                context.user_data, name="probe", address="127.0.0.1", data_dir=context.workdir
            )
            self.block = claim_block(spec.instances, {*_ports(probe_env), ssh_port})
            addresses = {name: self.block.host(index) for index, name in enumerate(names, 1)}
        self.notices.extend(self._notices())
        authorized_keys = context.paths.authorized_keys
        authorized_keys.write_text(public_key_line(context.ssh_key) + "\n")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        die_with_parent = not spec.keep
        plans = []
        for name in names:
            address = addresses[name]
            directory = context.paths.machine(name)
            env, notices = machine_etcd_environment(
                context.user_data, name=name, address=address, data_dir=directory / "etcd"
            )
            self.notices.extend(n for n in notices if n not in self.notices)
            plans.append((name, address, directory, env))
            if context.write_ignition is not None:
                # Written to be read: no systemd here applies it; etcd runs from the same
                # user-data it is rendered from.
                context.write_ignition(name, address, address)
        if joins_statically(spec.discovery, self.etcd_version):
            if spec.discovery != "static":
                self.notices.append(
                    f"etcd {'.'.join(map(str, self.etcd_version))} has no v2 discovery: its "
                    "members join by a static initial-cluster"
                )
            join_statically([env for *_, env in plans], context.workdir.name)
        for name, address, directory, env in plans:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            (directory / "etcd.env").write_text(
                "".join(f"{key}={value}\n" for key, value in sorted(env.items()))
            )
            host_key_path = directory / "ssh_host_ed25519_key"
            generate_ed25519_key(host_key_path)
            config_path = directory / "sshd_config"
            config_path.write_text(
                render_sshd_config(
                    SshdSettings(
                        address=address,
                        port=ssh_port,
                        host_key=host_key_path,
                        authorized_keys=authorized_keys,
                        login_user=user,
                        pid_file=directory / "sshd.pid",
                        openssh_version=sshd_version,
                    )
                )
            )
            inside = networks[name].command if self.lab.active else list
            self.machines.append(
                LocalMachine(
                    name,
                    ManagedProcess(
                        "etcd",
                        inside([str(etcd)]),
                        log_path=directory / "etcd.log",
                        env={**base_env, **env},
                        cwd=directory,
                        die_with_parent=die_with_parent,
                    ),
                    ManagedProcess(
                        "sshd",
                        inside(sshd_command(sshd, config_path, directory / "sshd.log")),
                        log_path=directory / "sshd.out",
                        die_with_parent=die_with_parent,
                    ),
                )
            )
            self._descriptions.append(
                {
                    "name": name,
                    "address": address,
                    "ssh": {
                        "port": ssh_port,
                        "user": user,
                        "host_key": str(host_key_path),
                        "key": str(context.ssh_public_key_path.with_suffix("")),
                    },
                    "etcd_endpoints": _client_urls(env),
                }
            )
        # Every process is started only once all are configured, so that they come up
        # together: members find each other through discovery within milliseconds.
        for machine in self.machines:
            machine.start()
        return self.handles(context.ssh_key, context.ssh_public_key_path.with_suffix(""))

    def handles(self, key: paramiko.PKey, identity_file: Path) -> list[MachineDescription]:
        """This provider's machines, logging in with ``key`` (kept in ``identity_file``)."""
        return [
            self.lab.describe_machine(
                description,
                port=description["ssh"]["port"],
                user=description["ssh"]["user"],
                host_key=description["ssh"]["host_key"],
                key=key,
                identity_file=identity_file,
                control=machine,
                systemd=False,  # its etcd and sshd are processes on this host
            )
            for description, machine in zip(self._descriptions, self.machines, strict=True)
        ]

    def machine_processes(self) -> list[ManagedProcess]:
        return [process for machine in self.machines for process in machine.processes]

    def describe(self) -> dict[str, Any]:
        return {
            **self.lab_record(),
            "machines": [
                {**description, "processes": [p.to_record() for p in machine.processes]}
                for description, machine in zip(self._descriptions, self.machines, strict=True)
            ],
        }

    def _notices(self) -> list[str]:
        # Said of the user's own file only: the seed's user-data is the plugin's choice.
        if self.context.spec.user_data is None:
            return []
        skipped = not_applied_here(self.context.user_data)
        if not skipped:
            return []
        return [
            "the local provider runs only etcd and sshd; not applied from user-data: "
            + ", ".join(skipped)
        ]

    def close(self) -> None:
        kill_all(self.machine_processes())
        self.lab.close()
        self._release_block()

    def detach(self) -> None:
        """Leave the machines running (a kept cluster) and let go of them."""
        for process in self.machine_processes():
            process.detach()
        self._release_block()

    def _release_block(self) -> None:
        if self.block is not None:
            self.block.close()
            self.block = None


class NewLocalDeployment(LocalDeployment):
    """A local provider about to boot: its programs are found before anything starts, so
    a missing one is reported as such, with nothing to clean up."""

    def __init__(self, context: BootContext) -> None:
        super().__init__(context)
        etcd = context.etcd
        self.binaries = (find_sshd(context.spec.sshd_binary), etcd.path)
        self.etcd_version = etcd.version
        if context.spec.network == "netns":
            self.lab = Lab.create(context)


class AttachedLocalDeployment(LocalDeployment):
    """Local machines that another session started, adopted from its state record."""

    def __init__(self, context: BootContext, record: Mapping[str, Any]) -> None:
        super().__init__(context)
        for described in record["machines"]:
            etcd, sshd = described["processes"]
            self.machines.append(
                LocalMachine(
                    described["name"],
                    ManagedProcess.from_record(etcd, die_with_parent=False),
                    ManagedProcess.from_record(sshd, die_with_parent=False),
                )
            )
            self._descriptions.append(
                {key: value for key, value in described.items() if key != "processes"}
            )

    def boot(self) -> list[MachineDescription]:
        key_path = self._descriptions[0]["ssh"]["key"]
        return self.handles(paramiko.Ed25519Key.from_private_key_file(key_path), Path(key_path))

    def close(self) -> None:
        kill_all([process for machine in self.machines for process in machine.processes])


def _client_urls(env: Mapping[str, str]) -> list[str]:
    return [url.strip() for url in re.split(r"\s*,\s*", env["ETCD_ADVERTISE_CLIENT_URLS"]) if url]
