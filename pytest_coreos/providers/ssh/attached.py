"""The ssh provider's deployment: attach to machines that already run (a Flatcar or
CoreOS cluster in a cloud, on a lab's libvirt host, or a cluster kept by an earlier run)
and boot nothing.

Each host of ``--coreos-hosts`` is logged in to with ``--coreos-ssh-key``, its host key
checked against ``--coreos-known-hosts`` (or ``~/.ssh/known_hosts``): no blind trust. Its
etcd is found on etcd's usual client ports and each machine is matched to its member by
client URL. At the end nothing on the machines is destroyed; only the keys written under
the session's own prefix are removed. Faults are refused unless ``--coreos-allow-faults``
is given, and then act on etcd's systemd unit.
"""

from __future__ import annotations

import contextlib
import getpass
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paramiko

from pytest_coreos.config.hosts import split_host
from pytest_coreos.errors import ConfigError, CoreOSError, EtcdError, ResetError
from pytest_coreos.handles.etcd import EtcdClient, Member
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.providers.protocol import BootContext, MachineDescription

ETCD_CLIENT_PORTS = (2379, 4001)
ETCD_UNITS = ("etcd-member.service", "etcd2.service", "etcd.service")


def load_private_key(path: Path) -> paramiko.PKey:
    """The private key at ``path``, whatever its type (ed25519, ECDSA, RSA)."""
    errors = []
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key: paramiko.PKey = key_class.from_private_key_file(str(path))
        except (paramiko.SSHException, ValueError) as error:
            errors.append(f"{key_class.__name__}: {error}")
            continue
        return key
    raise ConfigError(
        f"--coreos-ssh-key {path}", "not a private key paramiko can read", "; ".join(errors)
    )


def member_for(host: str, members: list[Member]) -> Member | None:
    """The member whose client URLs name ``host``."""
    for member in members:
        if any(urlsplit(url).hostname == host for url in member.client_urls):
            return member
    return None


class AttachedControl:
    """Faults on an attached machine: refused unless allowed, then etcd's systemd unit."""

    def __init__(self, name: str, ssh: SSHClient, allowed: bool) -> None:
        self.name = name
        self.ssh = ssh
        self.allowed = allowed
        self._unit: str | None = None
        self._stopped = False

    def _systemctl(self, *verb: str) -> None:
        if not self.allowed:
            raise CoreOSError(
                f"{self.name}: faults on machines the plugin did not boot are refused; "
                "pass --coreos-allow-faults to let tests stop, kill and pause them"
            )
        if self._unit is None:
            listing = self.ssh.run(
                ["systemctl", "list-unit-files", "--no-legend", *ETCD_UNITS], check=False
            ).stdout
            found = [line.split()[0] for line in listing.splitlines() if line.strip()]
            if not found:
                raise CoreOSError(f"{self.name}: no etcd systemd unit ({', '.join(ETCD_UNITS)})")
            self._unit = found[0]
        self.ssh.run(shlex.join(["sudo", "-n", "systemctl", *verb, self._unit]))

    @property
    def running(self) -> bool:
        """False after a fault stopped its etcd."""
        return not self._stopped

    def start(self) -> None:
        """Start etcd's unit."""
        self._systemctl("start")
        self._stopped = False

    def stop(self) -> None:
        """Stop etcd's unit."""
        self._systemctl("stop")
        self._stopped = True

    def kill(self) -> None:
        """SIGKILL etcd through its unit."""
        self._systemctl("kill", "--signal=SIGKILL")
        self._stopped = True

    def pause(self) -> None:
        """SIGSTOP etcd through its unit."""
        self._systemctl("kill", "--signal=SIGSTOP")

    def resume(self) -> None:
        """SIGCONT etcd through its unit."""
        self._systemctl("kill", "--signal=SIGCONT")

    def logs(self, lines: int) -> str:
        """The tail of etcd's journal."""
        unit = self._unit or "etcd*"
        result = self.ssh.run(
            ["journalctl", "--no-pager", "-n", str(lines), "-u", unit], check=False
        )
        return result.stdout or result.stderr

    def check_alive(self) -> None:
        """Nothing to check: the machine's own init looks after its etcd."""


class SSHDeployment:
    """Machines that already run, reached over SSH; nothing is booted or destroyed."""

    def __init__(self, context: BootContext) -> None:
        self.context = context
        spec = context.spec
        assert spec.ssh_key is not None  # options.attach_spec checked it
        self.key = load_private_key(spec.ssh_key)
        self.known_hosts = spec.known_hosts or Path.home() / ".ssh" / "known_hosts"
        if not self.known_hosts.is_file():
            raise ConfigError(
                f"--coreos-known-hosts {self.known_hosts}",
                "no such file: host keys must be checked against known ones",
                "ssh-keyscan the machines into a file you trust and pass it",
            )
        self._faults_allowed = spec.allow_faults
        self.notices = [
            f"attached to {len(spec.hosts)} running machine(s); nothing on them is destroyed, "
            f"keys under {context.key_prefix} are removed at the end"
        ]
        self.machines: list[MachineDescription] = []

    @property
    def pids(self) -> list[int]:
        """None: the machines' processes are not this host's."""
        return []

    @property
    def faults_allowed(self) -> bool:
        """Only with --coreos-allow-faults: the machines are not the plugin's."""
        return self._faults_allowed

    def discovery_url(self) -> str:
        """None needed: the machines already form a cluster."""
        return ""  # the machines are already a cluster

    def boot(self) -> list[MachineDescription]:
        """Log in to each host and match it to its etcd member; start nothing."""
        spec = self.context.spec
        user = getpass.getuser()
        targets = [split_host(entry, user) for entry in spec.hosts]
        members = self._members([host for _, host, _ in targets])
        for index, (login, host, port) in enumerate(targets, 1):
            member = member_for(host, members)
            if member is None:
                raise CoreOSError(
                    f"{login}@{host}:{port}: no etcd member advertises a client URL on {host} "
                    f"(members: {[m.client_urls for m in members]})"
                )
            name = member.name or f"machine-{index:02d}"
            ssh = SSHClient(
                host,
                port,
                login,
                self.key,
                known_hosts=self.known_hosts,
                identity_file=spec.ssh_key,
                name=name,
            )
            self.machines.append(
                MachineDescription(
                    name,
                    private_ipv4=host,
                    public_ipv4=host,
                    ssh=ssh,
                    etcd_endpoints=list(member.client_urls),
                    control=AttachedControl(name, ssh, spec.allow_faults),
                )
            )
        return self.machines

    def _members(self, hosts: list[str]) -> list[Member]:
        endpoints = [f"http://{host}:{port}" for host in hosts for port in ETCD_CLIENT_PORTS]
        with EtcdClient(endpoints, timeout=2.0) as client:
            try:
                return client.members()
            except EtcdError as error:
                raise CoreOSError(
                    f"no etcd answers on {', '.join(hosts)} (ports "
                    f"{', '.join(map(str, ETCD_CLIENT_PORTS))}): {error.problem}"
                ) from error

    def describe(self) -> dict[str, Any]:
        """What the state record needs: the hosts, nothing to reap."""
        return {"processes": [], "namespaces": [], "hosts": list(self.context.spec.hosts)}

    def close(self) -> None:
        """Remove the session's keys (v2 and v3) and let go; the machines keep running."""
        endpoints = [url for machine in self.machines for url in machine.etcd_endpoints]
        if not endpoints:
            return
        prefix = self.context.key_prefix
        with EtcdClient(endpoints) as client:
            with contextlib.suppress(EtcdError):
                client.delete(prefix, recursive=True)
            with contextlib.suppress(EtcdError):
                client.v3.delete(prefix, prefix=True)

    def detach(self) -> None:
        """The same as close: nothing is kept or destroyed."""
        self.close()

    def wait_for_images(self, timeout: float) -> None:
        return None  # it serves no images: --coreos-images is refused for it

    def shell_prefix(self) -> list[str]:
        return []

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Refused: the machines are not the plugin's to cut apart."""
        raise CoreOSError("the ssh provider cannot partition machines it does not own")

    def heal(self) -> None:
        """Nothing was cut."""

    def save_ready(self) -> None:
        """Refused: machines the plugin did not boot have no state at ready to return to."""
        raise ResetError(
            "the ssh provider's cluster",
            "machines the plugin did not boot cannot be reset (the ssh provider declares "
            "reset=False); use --coreos-provider=local, nspawn, qemu or vagrant",
        )

    def revive(self) -> list[str]:
        """Refused, as :meth:`save_ready` is."""
        self.save_ready()
        return []

    def restore(self) -> None:
        """Refused, as :meth:`save_ready` is."""
        self.save_ready()
