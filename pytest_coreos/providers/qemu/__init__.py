"""The qemu provider (root only): each machine a QEMU VM of its own, booted from a QEMU
image the way kola and Flatcar's launch script boot it (Ignition through the firmware
config, cloud-config on a ``config-2`` share), with no libvirt and no Vagrant, in a
network lab of its own.

This module only declares the provider; :mod:`.machines` (QEMU, its command line and
faults), :mod:`.image` (the disk) and :mod:`.qmp` are imported when a cluster boots.
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

HINT = "use --coreos-discovery=local with --coreos-provider=qemu"


class QemuProvider:
    """VMs of a QEMU image (the stand-in box by default), one QEMU process each."""

    name = "qemu"
    capabilities = Capabilities(
        boots=True,
        systemd=True,
        partitions=True,
        faults=True,
        ignition=True,
        attach=True,
        reset=True,
    )
    default_discovery = "local"
    options = frozenset({"image", "fleet"})

    def check(self, spec: ClusterSpec) -> None:
        from pytest_coreos.providers.qemu.image import check_image

        check_lab_discovery(spec.discovery, HINT)
        check_image(spec.image)

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        return spec

    def report_header(self, spec: ClusterSpec) -> str:
        from pytest_coreos.providers.qemu.machines import choose_accelerator, find_qemu

        try:
            accelerator, why = choose_accelerator(find_qemu())
        except ConfigError:
            return ""
        return f", qemu {accelerator.upper()} ({why})"

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        return None

    def prepare(self, context: BootContext) -> Deployment:
        from pytest_coreos.providers.qemu.machines import QemuDeployment

        return QemuDeployment(context)

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        from pytest_coreos.providers.qemu.machines import QemuDeployment

        return QemuDeployment(context, record)

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        return []  # its QEMU processes and namespaces are in the record: reaped as such

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        return reach_over_ssh(cluster)
