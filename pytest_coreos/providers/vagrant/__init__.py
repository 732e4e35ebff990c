"""The vagrant provider: a CoreOS cluster the coreos-vagrant way, ``vagrant up`` from a
Vagrantfile, ``config.rb`` and ``user-data``, driven through python-vagrant.

This module only declares the provider. Its parts are small modules: :mod:`.settings`
(what the spec and environment say; its checks), :mod:`.files` (the cluster's Vagrant
folder), :mod:`.addresses` (private addresses), :mod:`.libvirt` (``virsh``),
:mod:`.output` (parsing Vagrant's output) and :mod:`.machines` (booting, faults,
destroying and reaping the VMs), imported when a cluster boots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_coreos.providers.common import ssh_lines
from pytest_coreos.providers.protocol import Capabilities
from pytest_coreos.providers.vagrant import settings

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import BootContext, Deployment


class VagrantProvider:
    """VMs made by Vagrant (libvirt by default), from the stand-in box or a CoreOS box."""

    name = "vagrant"
    capabilities = Capabilities(
        boots=True,
        systemd=True,
        partitions=False,
        faults=True,
        ignition=True,
        attach=True,
        reset=True,
    )
    # VMs reach discovery.etcd.io like a user would.
    default_discovery = "public"
    options = frozenset(
        {"vagrant_dir", "box", "vagrant_provider", "vagrant_options", "fleet", "images"}
    )

    def check(self, spec: ClusterSpec) -> None:
        settings.check_ignition_support(spec)
        settings.check_discovery(spec)
        settings.check_images(spec)

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        return spec

    def report_header(self, spec: ClusterSpec) -> str:
        return ""

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        """With ``--coreos-discovery=local``, the host's address on the private network
        (172.17.8.1), which the machines reach; it exists once libvirt's network does, so
        the network is made here (vagrant-libvirt reuses it)."""
        settings.check_discovery(spec)
        if spec.discovery != "local":
            return None
        from pytest_coreos.providers.vagrant.libvirt import ensure_libvirt_network

        network = settings.private_network(spec)
        ensure_libvirt_network(network)
        return f"{network}.1"

    def prepare(self, context: BootContext) -> Deployment:
        from pytest_coreos.providers.vagrant.machines import VagrantDeployment

        return VagrantDeployment(context)

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        from pytest_coreos.providers.vagrant.machines import AttachedVagrantDeployment

        return AttachedVagrantDeployment(context, record)

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        from pytest_coreos.providers.vagrant.machines import reap

        return reap(record)

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        return [
            *ssh_lines(cluster),
            f"  or: cd {cluster.paths.vagrant} && vagrant ssh core-01",
            "  remove it: pytest --coreos-reap (or: vagrant destroy -f in that folder)",
        ]
