"""Cluster.reset on real clusters: loopback processes, processes in network namespaces,
and nspawn containers (these two need root, as CI is). Each test leaves its mark on one
cluster of three (keys, leases, faults, partitions, units, files) and checks that reset
takes it back to the state it had when it became ready."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_coreos import Cluster, ClusterFactory, EtcdKeyNotFoundError, FleetError, ResetError

LAB = pytest.mark.needs_root("network namespaces")
SHAPES = [
    pytest.param({}, id="local"),
    pytest.param({"network": "netns"}, id="netns", marks=LAB),
    pytest.param({"provider": "nspawn"}, id="nspawn", marks=pytest.mark.needs_root),
]
UNIT = """\
[Unit]
Description=left behind by a test

[Service]
ExecStart=/bin/sleep 3600
"""


def state_of(cluster: Cluster) -> dict[str, Any]:
    """What a reset must give back: members, addresses, discovery URL, keys, leases."""
    return {
        "members": sorted(
            (member.id, member.name, member.peer_urls, member.client_urls)
            for member in cluster.etcd.members()
        ),
        "addresses": [(m.name, m.private_ipv4, m.etcd_endpoints) for m in cluster],
        "discovery_url": cluster.discovery_url,
        "v2": cluster.etcd.ls("/", recursive=True),
        "v3": cluster.etcd.v3.get_prefix("/"),
        "leases": cluster.etcd.v3.leases(),
    }


@pytest.fixture(scope="module", params=SHAPES)
def resettable(
    coreos_cluster_factory: ClusterFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, dict[str, Any]]]:
    """One cluster of three per kind of machine, made resettable, and its state at ready."""
    with coreos_cluster_factory(instances=3, resettable=True, **request.param) as cluster:
        yield cluster, state_of(cluster)


@pytest.mark.parametrize("killed", [False, True], ids=["in place", "restored"])
def test_keys_directories_and_leases_written_are_gone(resettable, killed) -> None:
    cluster, at_ready = resettable
    cluster.etcd.set("/reset/key", "dirty")
    cluster.etcd.mkdir("/reset/dir")
    cluster.etcd.set("/reset/dir/inside", "dirty")
    lease = cluster.etcd.v3.lease(600)
    cluster.etcd.v3.put("/reset/leased", "dirty", lease=lease)
    cluster.etcd.v3.put("/reset/v3", "dirty")
    cluster.etcd.v3.put("no-slash", "dirty")
    if killed:  # a machine down: the data folders are put back
        cluster["core-03"].kill()
    assert state_of(cluster) != at_ready
    cluster.reset()
    assert cluster.last_reset == ("restore" if killed else "in place")
    assert state_of(cluster) == at_ready
    with pytest.raises(EtcdKeyNotFoundError):
        cluster["core-03"].etcd.get("/reset/key")
    assert cluster.etcd.v3.get("no-slash") is None
    assert cluster.etcd.v3.leases() == []


def test_a_key_etcd_hides_from_listings_is_gone_too(resettable) -> None:
    cluster, at_ready = resettable
    cluster.etcd.set("/_hidden/key", "dirty")
    assert "/_hidden" not in cluster.etcd.ls("/")  # no listing shows it
    cluster.reset()
    assert cluster.last_reset == "restore"  # so the API cannot be trusted to find it
    assert not cluster.etcd.exists("/_hidden/key")
    assert state_of(cluster) == at_ready
    cluster.etcd.set("/visible", "dirty")
    cluster.reset()  # the history since the last reset is read, not since ready
    assert cluster.last_reset == "in place"


@pytest.mark.parametrize("faults", [("kill", "stop", "pause"), ("pause", "kill", "stop")])
def test_killed_stopped_and_paused_machines_run_again(resettable, faults) -> None:
    cluster, at_ready = resettable
    for machine, fault in zip(cluster, faults, strict=True):
        getattr(machine, fault)()
    cluster.reset()
    for machine in cluster:
        assert machine.running
        assert machine.etcd.health()
        assert machine.ssh.run(["hostname"]).ok
    cluster.etcd.set("/after-reset", "written")  # a quorum again
    assert state_of(cluster)["members"] == at_ready["members"]
    cluster.reset()


def test_member_ids_addresses_and_discovery_url_stay_the_same(resettable) -> None:
    cluster, at_ready = resettable
    cluster["core-02"].kill()
    cluster.reset()
    after = state_of(cluster)
    for key in ("members", "addresses", "discovery_url"):
        assert after[key] == at_ready[key]


def test_wait_until_healthy_passes_at_once_after_a_reset(resettable) -> None:
    cluster, _ = resettable
    cluster["core-01"].kill()
    cluster.reset()
    cluster.wait_until_healthy(timeout=2.0)  # the reset waited; nothing is left to wait for
    assert all(machine.etcd.leader() is not None for machine in cluster)


def test_files_written_through_the_handles_are_gone_and_others_stay(resettable, tmp_path) -> None:
    cluster, _ = resettable
    machine = cluster["core-01"]
    home = machine.ssh.run("echo $HOME").stdout.strip()
    created = f"{home}/.coreos-reset-test-{cluster.name}"
    machine.ssh.write_text(created, "dirty")
    local = tmp_path / "payload"
    local.write_text("payload")
    put = f"{created}.put"
    machine.ssh.put(local, put)
    # A file that existed already is not the test's to remove.
    kept = f"{created}.kept"
    machine.ssh.run(["sh", "-c", f"echo before > {kept}"])
    machine.ssh.write_text(kept, "overwritten")
    cluster.reset()
    left = machine.ssh.run(["ls", "-a", home]).stdout.split()
    assert created.rsplit("/", 1)[1] not in left
    assert put.rsplit("/", 1)[1] not in left
    assert machine.ssh.read_text(kept) == "overwritten"
    machine.ssh.run(["rm", "-f", kept])


@LAB
@pytest.mark.parametrize("shape", [{"network": "netns"}, {"provider": "nspawn"}], ids=str)
def test_a_partition_is_healed(coreos_cluster_factory: ClusterFactory, shape) -> None:
    with coreos_cluster_factory(instances=3, resettable=True, **shape) as cluster:
        lonely, *majority = cluster.machines
        cluster.partition([lonely], majority)
        cluster.reset()
        # The lonely member takes part in a quorum write and reads the majority's.
        lonely.etcd.set("/healed", "yes")
        assert majority[1].etcd.get("/healed") == "yes"
        majority[0].etcd.set("/healed", "both ways")
        assert lonely.etcd.get("/healed") == "both ways"


@pytest.mark.needs_root
def test_a_deployed_unit_is_gone(coreos_cluster_factory: ClusterFactory) -> None:
    with coreos_cluster_factory(instances=3, resettable=True, provider="nspawn") as cluster:
        cluster.units.deploy("left-behind.service", UNIT)
        cluster["core-02"].systemd.install("runtime-only.service", UNIT, runtime=True)
        cluster.reset()
        for machine in cluster:
            status = machine.systemd.status("left-behind.service")
            assert status.load_state == "not-found", status
            assert not machine.systemd.is_active("left-behind.service")
        assert cluster["core-02"].systemd.status("runtime-only").load_state == "not-found"
        # A machine killed with a unit on it comes back without it (a fresh overlay) too.
        cluster["core-03"].systemd.install("left-behind.service", UNIT)
        cluster["core-03"].kill()
        cluster.reset()
        assert cluster["core-03"].systemd.status("left-behind").load_state == "not-found"


def test_a_reset_that_cannot_restore_fails_loudly_and_changes_nothing(
    coreos_cluster_factory: ClusterFactory,
) -> None:
    with coreos_cluster_factory(instances=3, resettable=True) as cluster:
        cluster.etcd.set("/written", "before the failed reset")
        cluster["core-01"].kill()  # a machine down: the data folders must be put back
        shutil.rmtree(cluster.paths.etcd_at_ready("core-02"))
        with pytest.raises(ResetError, match=r"no saved copy of the etcd data at .*core-02"):
            cluster.reset()
        assert cluster.reset_failed
        # Nothing was stopped or restored half-way: every member still has the key (the
        # killed one, started again before the restore was tried, as soon as it serves).
        cluster.wait_until_healthy()
        for machine in cluster:
            assert machine.etcd.get("/written") == "before the failed reset"


def test_a_cluster_not_made_resettable_says_how_to_get_one(coreos_cluster: Cluster) -> None:
    with pytest.raises(ResetError, match="coreos_fresh_cluster"):
        coreos_cluster.reset()


FRESH_SESSION = """
import json, os, shutil

SEEN = []


def test_first_dirties_everything(coreos_fresh_cluster):
    SEEN.append(str(coreos_fresh_cluster.workdir))
    coreos_fresh_cluster.etcd.set("/dirty", "yes")
    coreos_fresh_cluster["core-01"].kill()
    coreos_fresh_cluster["core-02"].pause()


def test_second_gets_a_clean_cluster_the_same_one(coreos_fresh_cluster):
    SEEN.append(str(coreos_fresh_cluster.workdir))
    assert SEEN[0] == SEEN[1]
    assert coreos_fresh_cluster.etcd.ls("/") == []
    assert all(machine.running for machine in coreos_fresh_cluster)
    assert coreos_fresh_cluster["core-02"].etcd.health()
    # A machine down and the saved copy gone: the next reset cannot complete.
    coreos_fresh_cluster.etcd.set("/dirty", "again")
    coreos_fresh_cluster["core-01"].kill()
    shutil.rmtree(coreos_fresh_cluster.paths.etcd_at_ready("core-03"))


def test_third_gets_a_new_cluster_after_the_failed_reset(coreos_fresh_cluster):
    SEEN.append(str(coreos_fresh_cluster.workdir))
    assert SEEN[2] != SEEN[1]
    assert coreos_fresh_cluster.etcd.ls("/") == []
    assert len(coreos_fresh_cluster) == 3
    with open(os.environ["RECORD"], "w") as record:
        json.dump(SEEN, record)
"""


def test_the_fixture_resets_between_tests_and_boots_anew_when_a_reset_fails(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, assert_nothing_left
) -> None:
    record = inner.path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    inner.makepyfile(textwrap.dedent(FRESH_SESSION))
    result = inner.runpytest_subprocess("--coreos-instances=3", "-v")
    result.assert_outcomes(passed=3)
    output = result.stdout.str()
    assert "resetting cluster-1 failed: no saved copy of the etcd data" in output
    assert "it was destroyed and a new cluster booted in its place" in output
    assert record.exists()
    assert_nothing_left(inner.path)


XDIST_SESSION = """
import json, os, pytest

@pytest.mark.parametrize("n", range(6))
def test_fresh(coreos_fresh_cluster, n):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    assert coreos_fresh_cluster.etcd.ls("/") == []  # nothing of another test, either worker's
    coreos_fresh_cluster.etcd.set(f"/{worker}-{n}", "dirty")
    with open(os.path.join(os.environ["RECORD_DIR"], f"{worker}-{n}"), "w") as out:
        out.write(str(coreos_fresh_cluster.workdir))
"""


def test_each_xdist_worker_resets_a_cluster_of_its_own(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, assert_nothing_left
) -> None:
    records = inner.path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    inner.makepyfile(XDIST_SESSION)
    result = inner.runpytest_subprocess("-n", "2", "--coreos-instances=3")
    result.assert_outcomes(passed=6)
    clusters: dict[str, set[str]] = {}
    for path in records.iterdir():
        clusters.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    assert set(clusters) == {"gw0", "gw1"}, "both workers ran tests"
    assert all(len(workdirs) == 1 for workdirs in clusters.values()), "one cluster each"
    assert clusters["gw0"] != clusters["gw1"]
    assert_nothing_left(inner.path)


@pytest.mark.needs_root
def test_fleet_works_after_a_reset_puts_etcd_back(
    coreos_cluster_factory: ClusterFactory, fleet_release: str
) -> None:
    # fleetd keeps in memory what it read from etcd: a restore starts it again.
    with coreos_cluster_factory(
        instances=3, resettable=True, provider="nspawn", fleet=fleet_release
    ) as cluster:
        cluster.fleet.wait_for_machines()
        cluster.fleet.submit(("before-reset.service", UNIT))
        cluster.fleet.start("before-reset.service")
        cluster.reset()
        assert cluster.last_reset == "restore"  # fleet's own keys are hidden ones
        assert sorted(m.ip for m in cluster.fleet.list_machines()) == sorted(
            m.public_ipv4 for m in cluster
        )
        assert all(row.unit != "before-reset.service" for row in cluster.fleet.list_units())
        cluster.fleet.submit(("after-reset.service", UNIT))
        cluster.fleet.start("after-reset.service")
        rows = [row for row in cluster.fleet.list_units() if row.unit == "after-reset.service"]
        assert [row.sub for row in rows] == ["running"], rows
        # fleet still reports what the machines' systemd says: a failing unit is an error.
        cluster.fleet.submit(("fails.service", "[Service]\nExecStart=/bin/false\n"))
        with pytest.raises(FleetError, match=r"fails\.service"):
            cluster.fleet.start("fails.service")
