"""Rules and lines more than one provider shares; light (no third-party imports), since
providers' checks run when pytest configures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pytest_coreos.errors import ConfigError

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster

# The systemd units that run etcd on the machines of the stand-in image: etcd.service for
# cloud-config, etcd-member.service for Ignition (as on Flatcar).
ETCD_JOURNAL_UNITS = ("etcd.service", "etcd-member.service")

# The discovery modes machines in a lab can use: the lab's own service, or none.
LAB_DISCOVERY = ("local", "static")


def check_lab_discovery(discovery: str, hint: str) -> None:
    """A ConfigError naming --coreos-discovery where machines in a lab could not reach the
    discovery service ``discovery`` names (only the lab's own is reachable from inside)."""
    if discovery not in LAB_DISCOVERY:
        raise ConfigError(
            "--coreos-discovery",
            f"{discovery!r} cannot be reached from machines in network namespaces",
            hint,
        )


def ssh_lines(cluster: Cluster) -> list[str]:
    """Shell lines that reach a kept cluster's machines with OpenSSH (``ssh -F`` with the
    workdir's ssh_config) and attach another run to it through the ssh provider; each
    starts with what runs it where the machines' addresses are (a network lab's hub)."""
    from pytest_coreos.config.ssh_access import attach_command, shell_line

    deployment = cluster.deployment
    prefix = deployment.shell_prefix() if deployment is not None else []
    run_here = shell_line(prefix) + " " if prefix else ""
    lines = [f"cluster kept running (--coreos-keep): {cluster.workdir}"]
    for machine in cluster.machines:
        lines.append(
            f"  {machine.name}: {run_here}ssh -F {cluster.paths.ssh_config} {machine.name}; "
            f"etcd {','.join(machine.etcd_endpoints)}"
        )
    attach = attach_command(cluster.ssh_access(), cluster.paths.known_hosts)
    lines.append(f"  attach another run: {run_here}{shell_line(attach)}")
    return lines


def reach_over_ssh(cluster: Cluster) -> list[str]:
    """How to reach machines whose processes run on this host, and remove them by their
    process IDs: for the providers whose machines are processes here."""
    pids = [str(pid) for pid in cluster.pids]
    return [
        *ssh_lines(cluster),
        f"  remove it: pytest --coreos-reap (or: kill {' '.join(pids)}; "
        f"rm -rf {cluster.workdir.parent})",
    ]


def etcd_client_urls(user_data: Mapping[str, Any], address: str) -> list[str]:
    """Where the machine at ``address`` serves etcd's clients, as its user-data says (for
    the providers whose machines apply the user-data themselves)."""
    from pytest_coreos.config import etcd_env

    env = etcd_env.etcd_environment(user_data, private_ipv4=address, public_ipv4=address).env
    urls = env.get("ETCD_ADVERTISE_CLIENT_URLS", f"http://{address}:2379")
    return [url.strip() for url in urls.split(",") if url.strip()]
