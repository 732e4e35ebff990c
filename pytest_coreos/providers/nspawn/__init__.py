"""The nspawn provider (root only): each machine is a systemd-nspawn container of the
stand-in image's rootfs, with systemd, sshd and etcd inside, in a network lab of its own.

This module only declares the provider; what boots its machines is
:mod:`pytest_coreos.providers.nspawn.containers`, imported when a cluster boots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_coreos.errors import ConfigError
from pytest_coreos.providers.common import check_lab_discovery, reach_over_ssh
from pytest_coreos.providers.protocol import Capabilities

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import BootContext, Deployment

HINT = "use --coreos-discovery=local with --coreos-provider=nspawn"


class NspawnProvider:
    """Containers of the stand-in image, booted with systemd-nspawn."""

    name = "nspawn"
    capabilities = Capabilities(
        boots=True,
        systemd=True,
        partitions=True,
        faults=True,
        ignition=True,
        attach=False,
        reset=True,
    )
    default_discovery = "local"
    options = frozenset({"network", "fleet", "images"})  # its machines always live in a network lab

    def check(self, spec: ClusterSpec) -> None:
        if spec.discovery == "static":
            raise ConfigError(
                "--coreos-discovery", "static is not supported by the nspawn provider", HINT
            )
        check_lab_discovery(spec.discovery, HINT)

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        return spec

    def report_header(self, spec: ClusterSpec) -> str:
        return ""

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        return None

    def prepare(self, context: BootContext) -> Deployment:
        from pytest_coreos.providers.nspawn.containers import NspawnDeployment

        return NspawnDeployment(context)

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        raise ConfigError(
            "--coreos-reuse",
            "a cluster of nspawn containers cannot be attached to (reuse, xdist sharing)",
            "its machines live in network namespaces of the session that made them",
        )

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        from pytest_coreos.providers.nspawn.containers import reap_cgroups

        return reap_cgroups(record)

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        return reach_over_ssh(cluster)
