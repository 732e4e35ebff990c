"""The ssh provider: attach to machines that already run (a Flatcar or CoreOS cluster in
a cloud, on a lab's libvirt host, or a cluster kept by an earlier run) and boot nothing.

This module only declares the provider; the deployment is
:mod:`pytest_coreos.providers.ssh.attached`, imported when a cluster attaches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pytest_coreos.errors import ConfigError
from pytest_coreos.providers.common import reach_over_ssh
from pytest_coreos.providers.protocol import Capabilities

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import BootContext, Deployment


class SSHProvider:
    """Machines that already run, reached over SSH; nothing is booted or destroyed."""

    name = "ssh"
    capabilities = Capabilities(
        boots=False,
        systemd=True,
        partitions=False,
        faults=True,
        ignition=False,
        attach=False,
        reset=False,
    )
    default_discovery = "static"
    options = frozenset({"hosts", "ssh_key", "known_hosts", "allow_faults"})

    def check(self, spec: ClusterSpec) -> None:
        if spec.config == "ignition":
            raise ConfigError(
                "--coreos-config",
                "the ssh provider attaches to machines that run already: nothing is booted "
                "to take an Ignition config",
                "leave --coreos-config out with --coreos-provider=ssh",
            )

    def settle(self, spec: ClusterSpec, *, instances_given: bool) -> ClusterSpec:
        """The ssh provider boots nothing: it needs machines and a key, and the cluster's
        size is the number of machines given."""
        if not spec.hosts:
            raise ConfigError(
                "--coreos-hosts",
                "the ssh provider needs the machines to attach to",
                "e.g. --coreos-hosts=core@10.0.0.1,core@10.0.0.2,core@10.0.0.3",
            )
        if spec.ssh_key is None:
            raise ConfigError("--coreos-ssh-key", "the ssh provider needs a private key to log in")
        if not spec.ssh_key.is_file():
            raise ConfigError(f"--coreos-ssh-key {spec.ssh_key}", "no such file")
        if instances_given and spec.instances != len(spec.hosts):
            raise ConfigError(
                "--coreos-instances",
                f"{spec.instances} does not match the {len(spec.hosts)} machines of --coreos-hosts",
                "leave it out with the ssh provider",
            )
        return replace(spec, instances=len(spec.hosts))

    def report_header(self, spec: ClusterSpec) -> str:
        return ""

    def discovery_address(self, spec: ClusterSpec) -> str | None:
        return None

    def prepare(self, context: BootContext) -> Deployment:
        from pytest_coreos.providers.ssh.attached import SSHDeployment

        return SSHDeployment(context)

    def attach(self, context: BootContext, record: Mapping[str, Any]) -> Deployment:
        """Refused: attached machines are never kept."""
        raise ConfigError("--coreos-reuse", "machines of the ssh provider are never kept")

    def reap(self, record: Mapping[str, Any]) -> list[str]:
        return []  # nothing of the machines is the plugin's

    def how_to_reach(self, cluster: Cluster) -> list[str]:
        return reach_over_ssh(cluster)
