"""Writes right after a member is lost, as users write them: kill, stop or pause the leader
or a follower of three, then at once write through a surviving machine's handle (or the
cluster's), then read on every running machine. The handles ride out the election
themselves; the test never waits. On the local provider (loopback and netns) and on nspawn
containers, 20 rounds of each fault and role, one cluster per provider, made whole again
between rounds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pytest_coreos import Cluster, EtcdClient, Machine

SHAPES = {
    "loopback": {},
    "netns": {"network": "netns"},
    "nspawn": {"provider": "nspawn"},
}
ROUNDS = 20


@dataclass(frozen=True)
class Operation:
    """A key operation done right after the fault (``act``), with what it needs done
    before (``prepare``) and how every running member is asked about it (``check``)."""

    name: str
    prepare: Callable[[EtcdClient, str], None]
    act: Callable[[EtcdClient, str], None]
    check: Callable[[EtcdClient, str], None]


def _nothing(etcd: EtcdClient, key: str) -> None:
    pass


def _put_value(etcd: EtcdClient, key: str) -> None:
    etcd.set(key, "value")


def _has_value(etcd: EtcdClient, key: str) -> None:
    assert etcd.get(key) == "value"


def _v3_put_value(etcd: EtcdClient, key: str) -> None:
    etcd.v3.put(key, "value")


def _v3_has_value(etcd: EtcdClient, key: str) -> None:
    assert etcd.v3.get(key) == "value"


def _is_gone(etcd: EtcdClient, key: str) -> None:
    assert not etcd.exists(key)


def _v3_is_gone(etcd: EtcdClient, key: str) -> None:
    assert etcd.v3.get(key) is None


def _is_directory(etcd: EtcdClient, key: str) -> None:
    assert etcd.get_node(key)["dir"] is True


def _lists_one_child(etcd: EtcdClient, key: str) -> None:
    assert etcd.ls(key) == [f"{key}/child"]


OPERATIONS = [
    Operation("set", _nothing, _put_value, _has_value),
    Operation("get", _put_value, _has_value, _has_value),
    Operation("delete", _put_value, lambda etcd, key: etcd.delete(key), _is_gone),
    Operation("mkdir", _nothing, lambda etcd, key: etcd.mkdir(key), _is_directory),
    Operation(
        "ls",
        lambda etcd, key: etcd.set(f"{key}/child", "1"),
        _lists_one_child,
        _lists_one_child,
    ),
    Operation("v3 put", _nothing, _v3_put_value, _v3_has_value),
    Operation("v3 get", _v3_put_value, _v3_has_value, _v3_has_value),
    Operation("v3 delete", _v3_put_value, lambda etcd, key: etcd.v3.delete(key), _v3_is_gone),
]


def _needs_root(shape: str) -> list[pytest.MarkDecorator]:
    if shape == "loopback":
        return []
    return [pytest.mark.needs_root("network labs")]


@pytest.fixture(
    scope="module",
    params=[pytest.param(shape, marks=_needs_root(shape)) for shape in SHAPES],
)
def cluster(request: pytest.FixtureRequest, coreos_cluster_factory) -> Iterator[Cluster]:
    """Three machines per provider, for every test of this module."""
    with coreos_cluster_factory(instances=3, **SHAPES[request.param]) as booted:
        yield booted


def _restore(machine: Machine, fault: str) -> None:
    if fault == "pause":
        machine.resume()
    else:
        machine.start()


@pytest.mark.parametrize("role", ["leader", "follower"])
@pytest.mark.parametrize("fault", ["kill", "stop", "pause"])
def test_a_write_at_once_after_losing_a_member_succeeds_and_every_member_reads_it(
    cluster: Cluster, fault: str, role: str
) -> None:
    prefix = f"/ride-out/{fault}-{role}-{uuid.uuid4().hex[:8]}"
    done: list[tuple[Operation, str]] = []
    for round_number in range(ROUNDS):
        leader = cluster.etcd.leader()
        assert leader is not None, "the cluster has no leader before the fault"
        victim = cluster[leader.name]
        if role == "follower":
            victim = next(machine for machine in cluster if machine.name != leader.name)
        survivors = [machine for machine in cluster if machine is not victim]
        operation = OPERATIONS[round_number % len(OPERATIONS)]
        # Through a surviving machine's own handle, and every third round the cluster's
        # (which lists the lost member's endpoint too).
        handle = cluster.etcd if round_number % 3 == 2 else survivors[round_number % 2].etcd
        key = f"{prefix}/{round_number}"
        operation.prepare(cluster.etcd, key)
        getattr(victim, fault)()
        try:
            operation.act(handle, key)
            for machine in survivors:
                operation.check(machine.etcd, key)
        except Exception as error:
            error.add_note(
                f"round {round_number}: {operation.name} through {handle!r} after "
                f"{fault}() of the {role} {victim.name}"
            )
            raise
        finally:
            _restore(victim, fault)
            cluster.wait_until_healthy()
        done.append((operation, key))
    for machine in cluster:  # the members lost meanwhile caught up once back
        for operation, key in done:
            operation.check(machine.etcd, key)


def test_every_provider_runs_etcd_with_fast_elections(cluster: Cluster) -> None:
    """Heartbeat 25 ms, election 250 ms and pre-vote on every provider (the user-data
    sets none), so that a lost leader is replaced in well under a second everywhere."""
    wanted = {"ETCD_HEARTBEAT_INTERVAL=25", "ETCD_ELECTION_TIMEOUT=250", "ETCD_PRE_VOTE=true"}
    for machine in cluster:
        if cluster.spec.provider == "nspawn":
            run = machine.ssh.run
            pid = run("systemctl show -p MainPID --value etcd.service").stdout.strip()
            environment = run(["cat", f"/proc/{pid}/environ"]).stdout
        else:  # the machine's etcd is a process of this host: its own environment file
            environment = (cluster.workdir / "machines" / machine.name / "etcd.env").read_text()
        assert wanted <= set(environment.replace("\0", "\n").splitlines()), machine.name
