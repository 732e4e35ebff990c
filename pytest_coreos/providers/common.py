"""Rules and lines more than one provider shares; light (no third-party imports), since
providers' checks run when pytest configures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_coreos.errors import ConfigError

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster

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


def reach_over_ssh(cluster: Cluster) -> list[str]:
    """How to reach machines whose SSH and etcd answer on this host, and remove them by
    their process IDs: for the providers whose machines are processes here."""
    lines = [f"cluster kept running (--coreos-keep): {cluster.workdir}"]
    key = cluster.workdir.parent / "id_ed25519"  # the key of the session that booted it
    for machine in cluster.machines:
        ssh = machine.ssh
        lines.append(
            f"  {machine.name}: ssh -i {key} -p {ssh.port} {ssh.username}@{ssh.host}; "
            f"etcd {','.join(machine.etcd_endpoints)}"
        )
    pids = [str(pid) for pid in cluster.pids]
    lines.append(
        f"  remove it: pytest --coreos-reap (or: kill {' '.join(pids)}; "
        f"rm -rf {cluster.workdir.parent})"
    )
    return lines
