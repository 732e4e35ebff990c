"""What every provider implements, and what it is given: kept apart from the providers
themselves so that each of them is imported only when a cluster asks for it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import paramiko

from pytest_coreos.binaries import EtcdBinary, find_etcd
from pytest_coreos.options import ClusterSpec

if TYPE_CHECKING:
    from pytest_coreos.cluster import Machine


# The systemd units that run etcd on the machines of the stand-in image: etcd.service for
# cloud-config, etcd-member.service for Ignition (as on Flatcar).
ETCD_JOURNAL_UNITS = ("etcd.service", "etcd-member.service")


class MachineControl(Protocol):
    """What a provider does to one of its machines; :class:`Machine` delegates to it."""

    @property
    def running(self) -> bool:
        """True while the machine runs."""

    def start(self) -> None:
        """Start the machine (again)."""

    def stop(self) -> None:
        """Stop the machine cleanly."""

    def kill(self) -> None:
        """Stop the machine at once, as a power cut would."""

    def pause(self) -> None:
        """Freeze the machine."""

    def resume(self) -> None:
        """Let a frozen machine run on."""

    def logs(self, lines: int) -> str:
        """The tail of the machine's etcd log."""

    def check_alive(self) -> None:
        """Raise :class:`ProcessError` if the machine's etcd has exited on its own."""


class Provider(Protocol):
    """Boots the machines of one cluster and destroys them; one implementation a file in
    :mod:`pytest_coreos.providers`."""

    notices: list[str]

    @property
    def pids(self) -> list[int]:
        """The process IDs of everything the provider runs (empty for VMs)."""

    def boot(self) -> list[Machine]:
        """Start every machine at once and return their handles, without waiting. (A
        provider made by a module's ``attach(context, record)`` starts nothing: it returns
        handles to the machines the record describes.)"""

    def describe(self) -> dict[str, Any]:
        """Its part of the cluster's state record: ``processes`` (records of every process
        it started), ``namespaces`` (network namespaces), ``machines`` (what ``attach``
        needs), and anything its module's ``reap(record)`` needs."""

    def close(self) -> None:
        """Destroy everything :meth:`boot` made; safe to call twice or after a failed boot."""

    def detach(self) -> None:
        """Leave everything running (a kept cluster) and let go of it."""

    def shell_prefix(self) -> list[str]:
        """The command under which a shell command on this host reaches the machines'
        addresses (``ip netns exec HUB`` for a network lab); empty where it reaches them
        as it is."""

    # Optional, found with getattr: ``discovery_url() -> str | None``, a discovery URL from
    # a service of the provider's own when its machines cannot reach the session's
    # (called before the config is written); ``partition(groups)`` and ``heal()``.


class ProviderFactory(Protocol):
    """A provider module's ``create(context)``."""

    def __call__(self, context: BootContext) -> Provider:
        """A provider for one cluster."""


class BootContext:
    """What a provider is given to boot one cluster."""

    def __init__(
        self,
        *,
        spec: ClusterSpec,
        workdir: Path,
        user_data: Mapping[str, Any],
        ssh_key: paramiko.Ed25519Key,
        ssh_public_key_path: Path,
        progress: Callable[[str], None] | None = None,
        remember: Callable[[Mapping[str, Any]], None] | None = None,
        key_prefix: str = "/pytest-coreos",
        session_id: str = "",
        write_ignition: Callable[[str, str, str], Path] | None = None,
    ) -> None:
        self.spec = spec
        self.workdir = workdir
        self.user_data = user_data
        self.ssh_key = ssh_key
        self.ssh_public_key_path = ssh_public_key_path
        # One short line per step a person would want to see while a slow boot runs
        # (a VM's state change); the plugin shows them on the terminal.
        self.progress: Callable[[str], None] = progress or (lambda line: None)
        # Merges into the cluster's state record and writes it at once: call it BEFORE
        # making anything processes alone do not account for (a namespace, a VM), with
        # its name, so that a run killed right then is still reaped.
        self.remember: Callable[[Mapping[str, Any]], None] = remember or (lambda extra: None)
        # The etcd key prefix that is this session's own (see Cluster.prefix).
        self.key_prefix = key_prefix
        # The pytest session's id: providers name what they make after it (VMs, networks).
        self.session_id = session_id
        # With --coreos-config=ignition: writes machine NAME's Ignition config for its
        # (private, public) addresses and returns its path; None with cloud-config.
        self.write_ignition = write_ignition

    @property
    def etcd(self) -> EtcdBinary:
        """The etcd to run on this host, looked up only by providers that run one."""
        return find_etcd(self.spec.etcd_binary)
