"""The provider contract: what every provider declares and does, and what it is given.

A :class:`Provider` is one kind of machine (``local``, ``nspawn``, ``ssh``, ``vagrant``),
registered by name in :mod:`pytest_coreos.providers`. It declares its
:class:`Capabilities`, refuses the specs it cannot serve when pytest configures
(:meth:`Provider.check`), and makes one :class:`Deployment` per cluster: the machines it
boots (or attaches to), described as plain :class:`MachineDescription` objects that the
session turns into :class:`~pytest_coreos.handles.machine.Machine` handles. Kept apart
from the providers so that each is imported only when a run asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_coreos.config.paths import ClusterPaths

if TYPE_CHECKING:
    import paramiko
    import requests

    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.handles.machine import MachineControl
    from pytest_coreos.handles.ssh import SSHClient
    from pytest_coreos.host.binaries import EtcdBinary
    from pytest_coreos.options import ClusterSpec

__all__ = [
    "BootContext",
    "Capabilities",
    "Deployment",
    "MachineDescription",
    "Provider",
]


@dataclass(frozen=True)
class Capabilities:
    """What a provider's machines can do; :meth:`Provider.check` refuses the rest."""

    boots: bool  # it starts machines (False: it attaches to machines that already run)
    systemd: bool  # the machines run systemd: units, journal, fleet
    partitions: bool  # it can cut the network between machines (in a network lab)
    faults: bool  # tests may stop, kill and pause machines (ssh: with --coreos-allow-faults)
    ignition: bool  # the machines apply an Ignition config (--coreos-ignition)
    attach: bool  # a kept cluster can be attached to again (--coreos-reuse, xdist sharing)
    reset: bool  # a cluster can be returned to its state at ready (Cluster.reset)


@dataclass
class MachineDescription:
    """One machine as a provider made it: what the session needs for its handle."""

    name: str
    private_ipv4: str
    public_ipv4: str
    ssh: SSHClient
    etcd_endpoints: Sequence[str]
    control: MachineControl
    # Where the machine is reached through something other than this host's own network
    # (a network lab's namespace), every HTTP session must come from here.
    http_session: Callable[[], requests.Session] | None = None
    systemd: bool = True


class Deployment(Protocol):
    """The machines a provider made for one cluster, from boot to teardown."""

    notices: list[str]

    @property
    def pids(self) -> list[int]:
        """The process IDs of everything it runs on this host (empty for VMs)."""

    @property
    def faults_allowed(self) -> bool:
        """Whether tests may stop, kill and pause its machines."""

    def discovery_url(self) -> str | None:
        """A discovery URL from a service of its own where its machines cannot reach the
        session's (a network lab), else None; called before the config is written."""

    def boot(self) -> list[MachineDescription]:
        """Start every machine at once and describe them, without waiting (an attached
        deployment starts nothing: it describes the machines its record names)."""

    def describe(self) -> dict[str, Any]:
        """Its part of the cluster's state record: ``processes`` (records of every process
        it started), ``namespaces`` (network namespaces), ``machines`` (what ``attach``
        needs), and anything its provider's ``reap(record)`` needs."""

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Cut the network between groups of machine names; an error where it cannot."""

    def heal(self) -> None:
        """Undo :meth:`partition`."""

    def close(self) -> None:
        """Destroy everything :meth:`boot` made; safe to call twice or after a failed boot."""

    def detach(self) -> None:
        """Leave everything running (a kept cluster) and let go of it."""

    def save_ready(self) -> None:
        """Keep what :meth:`restore` returns etcd to, once the cluster is ready (a copy of
        every member's data); a ResetError where the provider cannot reset."""

    def revive(self) -> list[str]:
        """Heal partitions, let paused machines run on and start stopped or killed ones
        (their etcd on the data they had); the names of the machines it started."""

    def restore(self) -> None:
        """Stop every member's etcd, put back the data :meth:`save_ready` kept, all
        members together (raft sees no split history), and start them again, without
        waiting; a ResetError where it cannot, with nothing left half-restored."""

    def wait_for_images(self, timeout: float) -> None:
        """Wait until the images of ``--coreos-images`` are served to the machines (the
        registry the deployment started is filled); at once where none are given."""

    def shell_prefix(self) -> list[str]:
        """The command under which a shell command on this host reaches the machines'
        addresses (``ip netns exec HUB`` for a network lab); empty where it reaches them
        as it is."""


class Provider(Protocol):
    """One kind of machine, registered by name; see :mod:`pytest_coreos.providers`."""

    name: str
    capabilities: Capabilities
    # --coreos-discovery where it is not given.
    default_discovery: str
    # The provider-specific options it uses (ClusterSpec field names, of
    # options.PROVIDER_SPECIFIC_OPTIONS); given for another provider they are refused.
    options: frozenset[str]

    def check(self, spec: ClusterSpec) -> None:
        """Raise :class:`~pytest_coreos.errors.ConfigError` naming the options where
        ``spec`` asks for something its machines cannot do; run when pytest configures
        and for every spec the factory is given, before anything boots."""

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        """The session's spec as this provider serves it (the ssh provider's size is the
        number of hosts given); ``instances_given``: --coreos-instances was set."""

    def report_header(self, spec: ClusterSpec) -> str:
        """What pytest's header adds about this provider (", etcd 3.5.17"), or ""."""

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        """Where the session's private discovery service must listen for the machines to
        reach it, or None for a loopback block of its own."""

    def prepare(self, context: BootContext) -> Deployment:
        """A deployment for one cluster, checked and ready to boot (nothing runs yet)."""

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        """A deployment over machines that already run, described by ``record`` (a
        ConfigError naming --coreos-reuse where it cannot)."""

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        """Remove what only it knows how to remove (VMs, cgroups) of a cluster whose run
        died, from its state record; what it removed, one line each."""

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        """The lines that tell a person how to reach a kept cluster's machines and how to
        remove them."""


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
        # Where every file of the cluster goes: the rendered config is already there.
        self.paths = ClusterPaths(workdir)
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
        from pytest_coreos.host.binaries import find_etcd

        return find_etcd(self.spec.etcd_binary)
