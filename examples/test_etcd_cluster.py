"""What a user of pytest-coreos writes: tests against a real etcd cluster.

Run with ``pytest --coreos-instances=3 examples/``.
"""

import uuid

import pytest

from pytest_coreos import EtcdKeyNotFoundError, SSHCommandError


@pytest.fixture
def key(coreos_cluster) -> str:
    """A key of this test's own, so tests sharing the session's cluster never meet; under
    the session's prefix, which is cleaned up on machines the plugin did not boot."""
    return f"{coreos_cluster.prefix}/{uuid.uuid4().hex}"


def test_every_member_sees_a_write(coreos_cluster, key):
    coreos_cluster.etcd.set(key, "hello")
    for machine in coreos_cluster.machines:
        assert machine.etcd.get(key) == "hello"


def test_write_on_one_member_read_on_another(coreos_cluster, key):
    first, *others = coreos_cluster.machines
    first.etcd.set(key, "from " + first.name)
    for machine in others or [first]:
        assert machine.etcd.get(key) == "from " + first.name


def test_members_list_names_every_machine(coreos_cluster):
    members = coreos_cluster.etcd.members()
    assert sorted(member.name for member in members) == sorted(
        machine.name for machine in coreos_cluster
    )
    assert all(member.client_urls for member in members)
    assert coreos_cluster.etcd.leader() is not None


def test_each_machine_answers_over_ssh(coreos_cluster):
    for machine in coreos_cluster:
        assert machine.ssh.run(["echo", machine.name]).stdout == machine.name + "\n"


def test_a_failing_command_reports_its_status(coreos_cluster):
    machine = coreos_cluster["core-01"]
    with pytest.raises(SSHCommandError) as raised:
        machine.ssh.run("echo oops >&2; exit 3")
    assert raised.value.result.exit_status == 3
    assert "oops" in str(raised.value)


def test_ttl_keys_expire(coreos_cluster, key):
    node = coreos_cluster.etcd.set(key, "short-lived", ttl=1)
    assert (node["value"], node["ttl"]) == ("short-lived", 1)
    # From the index after the set: an expiry before the watch begins is still seen.
    event = coreos_cluster.etcd.watch(key, index=node["modifiedIndex"] + 1, timeout=10)
    assert event["action"] == "expire"
    assert event["node"]["key"] == key
    with pytest.raises(EtcdKeyNotFoundError):
        coreos_cluster.etcd.get(key)


def test_losing_one_member_of_three_keeps_the_cluster_writable(coreos_cluster, key):
    # Last in the module: it takes a member down, and brings it back for whoever follows.
    if len(coreos_cluster) < 3:
        pytest.skip("losing a member keeps a quorum only with 3 or more machines")
    if not coreos_cluster.faults_allowed:
        pytest.skip("faults on attached machines need --coreos-allow-faults")
    victim = coreos_cluster.machines[-1]
    victim.kill()
    # At once: if the victim led, the handle rides out the election of a new leader.
    survivors = [machine for machine in coreos_cluster if machine is not victim]
    survivors[0].etcd.set(key, "still writable")
    assert survivors[1].etcd.get(key) == "still writable"
    assert coreos_cluster.etcd.get(key) == "still writable"  # fails over past the dead one

    victim.start()
    coreos_cluster.wait_until_healthy()
    assert victim.etcd.get(key) == "still writable"
