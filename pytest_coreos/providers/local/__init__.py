"""The local provider (the default): each machine is a real etcd member plus its own real
OpenSSH sshd on this host, on a loopback address of its own or, with
``--coreos-network=netns``, in a network namespace of its own. No VM, no systemd.

This module only declares the provider; what boots its machines is
:mod:`pytest_coreos.providers.local.machines`, imported when a cluster boots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_coreos.errors import ConfigError, CoreOSError
from pytest_coreos.providers.common import check_lab_discovery, reach_over_ssh
from pytest_coreos.providers.protocol import Capabilities

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import BootContext, Deployment


class LocalProvider:
    """Machines that are etcd and sshd processes of this run."""

    name = "local"
    capabilities = Capabilities(
        boots=True,
        systemd=False,
        partitions=True,
        faults=True,
        ignition=False,
        attach=True,
        reset=True,
    )
    default_discovery = "local"
    options = frozenset({"network", "sshd_binary"})

    def check(self, spec: ClusterSpec) -> None:
        if spec.ignition is not None:
            raise ConfigError(
                "--coreos-ignition",
                "the local provider runs etcd and sshd as processes, with no systemd to apply "
                "an Ignition config",
                "use --coreos-provider=nspawn, qemu or vagrant (--coreos-config=ignition alone "
                "works here: etcd runs from the user-data the .ign files are rendered from)",
            )
        if spec.network == "netns":
            check_lab_discovery(spec.discovery, "use local or static with --coreos-network=netns")

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        return spec

    def report_header(self, spec: ClusterSpec) -> str:
        from pytest_coreos.host.binaries import find_etcd

        try:
            return f", etcd {find_etcd(spec.etcd_binary).version_text}"
        except CoreOSError:
            return ", etcd not found"

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        return None

    def prepare(self, context: BootContext) -> Deployment:
        from pytest_coreos.providers.local.machines import NewLocalDeployment

        return NewLocalDeployment(context)

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        if record.get("namespaces"):
            raise ConfigError(
                "--coreos-network",
                "a cluster in network namespaces cannot be attached to (reuse, xdist sharing)",
                "use --coreos-network=loopback for that",
            )
        from pytest_coreos.providers.local.machines import AttachedLocalDeployment

        return AttachedLocalDeployment(context, record)

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        return []  # processes and namespaces only: the reaper removes those itself

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        return reach_over_ssh(cluster)
