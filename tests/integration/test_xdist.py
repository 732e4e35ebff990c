"""pytest-xdist: the workers of one run share a single cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_coreos.session import registry as state

WORKER_TESTS = """
import json, os, pytest

@pytest.mark.parametrize("n", range(8))
def test_share(coreos_cluster, n):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "none")
    coreos_cluster.etcd.set(f"/seen/{worker}/{n}", "1")
    out = os.path.join(os.environ["RECORD_DIR"], f"{worker}-{n}.json")
    with open(out, "w") as handle:
        json.dump({"pids": sorted(coreos_cluster.pids),
                   "root": str(coreos_cluster.workdir.parent),
                   "seen": coreos_cluster.etcd.ls("/seen")}, handle)
"""


def test_workers_share_one_cluster_and_the_last_tears_it_down(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, assert_nothing_left
) -> None:
    records = inner.path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    inner.makepyfile(WORKER_TESTS)
    result = inner.runpytest_subprocess("-n", "2", "--coreos-instances=3")
    result.assert_outcomes(passed=8)
    seen = [json.loads(path.read_text()) for path in sorted(records.glob("*.json"))]
    workers = {path.name.split("-")[0] for path in records.glob("*.json")}
    assert workers == {"gw0", "gw1"}, "both workers ran tests"
    assert len({tuple(record["pids"]) for record in seen}) == 1, "one cluster for all"
    assert len(seen[0]["pids"]) == 6
    assert {record["root"] for record in seen} == {seen[0]["root"]}
    assert not Path(seen[0]["root"]).exists()
    assert_nothing_left(inner.path)


@pytest.mark.parametrize("other_worker_first", [True, False], ids=["dropped-first", "after"])
def test_a_shared_cluster_handed_over_leaves_no_folder_whoever_closes_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_worker_first: bool
) -> None:
    """The booting worker leaves first and hands the cluster over; the last worker tears
    it down and drops its entry from the booting worker's record. Whether that happens
    before or after the booting worker writes its closing record, the folder goes."""
    monkeypatch.setenv(state.STATE_DIRECTORY_VARIABLE, str(tmp_path / "state"))
    root = tmp_path / "session"
    (root / "cluster-1").mkdir(parents=True)
    cluster = {"name": "cluster-1", "workdir": str(root / "cluster-1"), "keep": True}
    # What the booting worker holds in memory when it closes: the entry it wrote when it
    # handed the cluster over, its discovery service stopped.
    closing = {"session": "a", "root": str(root), "clusters": {"cluster-1": cluster}}
    with state.registry_lock():
        state.write_record("a", {**closing, "discovery": [{"pid": 1}]})

    if other_worker_first:
        state.update_cluster("a", "cluster-1", None)
    state.finish_record("a", {**closing, "discovery": []}, {"cluster-1"})
    if not other_worker_first:
        assert root.exists()  # the other worker's cluster still runs from it
        state.update_cluster("a", "cluster-1", None)

    assert not root.exists()
    assert not state.record_path("a").exists()


PIDS_TEST = """
import json, os

def test_a(coreos_cluster):
    with open(os.path.join(os.environ["RECORD_DIR"], "a.json"), "w") as out:
        json.dump(sorted(coreos_cluster.pids), out)

def test_b(coreos_cluster):
    with open(os.path.join(os.environ["RECORD_DIR"], "b.json"), "w") as out:
        json.dump(sorted(coreos_cluster.pids), out)
"""


def test_keep_under_xdist_keeps_one_cluster_and_the_controller_says_how_to_reach_it(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = inner.path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    inner.makepyfile(PIDS_TEST)
    try:
        result = inner.runpytest_subprocess("-n", "2", "--coreos-instances=1", "--coreos-keep")
        result.assert_outcomes(passed=2)
        pids = {tuple(json.loads(path.read_text())) for path in records.glob("*.json")}
        assert len(pids) == 1, "one cluster for both workers"
        text = result.stdout.str()
        assert text.count("cluster kept running (--coreos-keep)") == 1, text
        assert text.count("attach another run: ") == 1
        assert text.count("remove it: pytest --coreos-reap") == 1
        assert all(_alive(pid) for pid in next(iter(pids)))
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0


def test_reuse_under_xdist_boots_one_cluster_and_the_next_run_reuses_it(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = inner.path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    inner.makepyfile(PIDS_TEST)
    try:
        runs = []
        for _ in range(2):
            result = inner.runpytest_subprocess("-n", "2", "--coreos-instances=1", "--coreos-reuse")
            result.assert_outcomes(passed=2)
            runs.append({tuple(json.loads(path.read_text())) for path in records.glob("*.json")})
        assert len(runs[0]) == 1, "one cluster for both workers"
        assert runs[1] == runs[0], "the second run reuses the first run's cluster"
        result.stdout.fnmatch_lines(["reusing kept cluster *"])
        kept = [folder for folder in (inner.path / "tmp").glob("pytest-coreos-*")]
        assert len(kept) == 1, kept
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0
    assert not [pid for pid in next(iter(runs[0])) if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
    except OSError:
        return False
