"""Machines in network namespaces (--coreos-network=netns, and the nspawn provider's
containers): their own hostname and addresses, quorum under faults, and partitions a test
makes and heals. Needs root, as CI is; every request to a machine goes over the cluster's
own network lab's host link."""

from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest

from pytest_coreos import Cluster, CoreOSError, EtcdError
from pytest_coreos.host.addresses import LAB_NETWORK


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


@pytest.fixture(params=[{"network": "netns"}, {"provider": "nspawn"}], ids=["netns", "nspawn"])
def lab_cluster(coreos_cluster_factory, request):
    """Three machines in a network lab: processes in namespaces, or containers (whose
    namespaces come from the same lab, so partitions work the same way)."""
    with coreos_cluster_factory(instances=3, **request.param) as cluster:
        yield cluster


def _agree_on_every_key(cluster: Cluster, timeout: float = 15.0) -> dict[str, str]:
    """Each member's view of every key under /p, once they all agree."""
    deadline = time.monotonic() + timeout
    while True:
        views = []
        for machine in cluster:
            node = machine.etcd.get_node("/p", recursive=True)
            views.append({child["key"]: child["value"] for child in node.get("nodes", [])})
        if all(view == views[0] for view in views) or time.monotonic() > deadline:
            assert all(view == views[0] for view in views), views
            return views[0]
        time.sleep(0.05)


def test_machines_have_their_own_names_and_addresses(lab_cluster: Cluster) -> None:
    for machine in lab_cluster:
        assert machine.ssh.run("hostname").stdout == machine.name + "\n"
        assert ipaddress.ip_address(machine.private_ipv4) in LAB_NETWORK
        assert machine.etcd.health()


def test_quorum_survives_one_killed_member_of_three(lab_cluster: Cluster) -> None:
    lab_cluster["core-01"].kill()
    lab_cluster.wait_until_healthy()
    lab_cluster["core-02"].etcd.set("/p/after-kill", "written")
    assert lab_cluster["core-03"].etcd.get("/p/after-kill") == "written"


def test_a_minority_cannot_write_while_the_majority_can_and_heal_reconciles(
    lab_cluster: Cluster,
) -> None:
    lonely, *majority = lab_cluster.machines
    lab_cluster.etcd.set("/p/before", "1")
    lab_cluster.partition([lonely], majority)
    # Without a leader, its handle sends the write again until the deadline it is given.
    lonely_writer = lonely.etcd_client(lonely.etcd_endpoints, timeout=2, deadline=2)
    with pytest.raises(EtcdError, match=r"deadline \(2s"):
        lonely_writer.set("/p/minority", "must not be accepted")
    lonely_writer.close()
    deadline = time.monotonic() + 15
    while True:  # the majority elects a leader of its own if the lonely one led
        try:
            majority[0].etcd.set("/p/majority", "accepted")
            break
        except EtcdError:
            assert time.monotonic() < deadline, "the majority never accepted a write"
            time.sleep(0.1)
    assert majority[1].etcd.get("/p/majority") == "accepted"
    # Refused, not merely unanswered: while cut off, no member of the majority has it.
    for machine in majority:
        assert not machine.etcd.exists("/p/minority"), f"{machine.name} has the write"

    lab_cluster.heal()
    lab_cluster.wait_until_healthy()
    keys = _agree_on_every_key(lab_cluster)
    assert {"/p/before": "1", "/p/majority": "accepted"}.items() <= keys.items()
    # The minority's write was never acknowledged, but a timed-out proposal is not a
    # rejected one: etcd may still deliver it to the leader once the network heals. What
    # must hold is that every member then agrees.
    assert set(keys) <= {"/p/before", "/p/majority", "/p/minority"}


def test_partition_names_unknown_machines(lab_cluster: Cluster) -> None:
    with pytest.raises(KeyError, match="core-09"):
        lab_cluster.partition(["core-09"], ["core-01"])


def test_the_lab_is_gone_after_the_cluster(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1, network="netns") as cluster:
        # Its own, from its record: other tests may make and remove labs meanwhile.
        own = set(cluster.describe()["namespaces"])
        assert len(own) == 2  # the hub and one machine
        assert own <= _namespaces()
        pids = cluster.pids
    assert not own & _namespaces()
    assert not cluster.pids
    for pid in pids:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_partitions_need_network_namespaces(coreos_cluster: Cluster) -> None:
    with pytest.raises(CoreOSError, match="--coreos-network=netns"):
        coreos_cluster.partition(["core-01"], ["core-02"])
