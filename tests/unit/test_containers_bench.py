"""The containers benchmark's own arithmetic: its comparisons, its verdicts, and its
report, from samples shaped as one_run() makes them."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def containers_bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("containers_bench")


def sample(ready: float, *, docker: bool = False, engine: str = "inactive") -> dict[str, Any]:
    run: dict[str, Any] = {
        "load": 0.1,
        "ready_s": ready,
        "teardown_s": 0.5,
        "timings": {"ready": ready - 1.0, "images": 0.001} if docker else {"ready": ready - 1.0},
        "docker_at_ready": {"core-01": ["active", engine], "core-02": ["active", "inactive"]},
    }
    if docker:
        run.update(ssh_true_s=0.01, pull_s=0.6, first_run_s=0.4, second_run_s=0.35)
    return run


def test_the_comparisons_are_of_the_medians(containers_bench: ModuleType) -> None:
    found = containers_bench.aggregate(
        {
            "no images": [sample(10.0), sample(11.0), sample(12.0)],
            "images": [
                sample(10.5, docker=True),
                sample(11.5, docker=True),
                sample(13.0, docker=True),
            ],
            "before docker": [sample(10.0), sample(10.0), sample(20.0)],
        }
    )
    comparisons = found["comparisons"]
    assert comparisons["images_add_s"] == pytest.approx(0.5)
    assert comparisons["before_ratio"] == pytest.approx(1.1)
    assert comparisons["before_ready_lap_ratio"] == pytest.approx(10.0 / 9.0)
    assert comparisons["first_run_s"] == pytest.approx(0.4)
    assert found["kinds"]["images"]["phases_median_s"]["images"] == pytest.approx(0.001)


def test_a_running_engine_at_ready_fails_its_verdict(containers_bench: ModuleType) -> None:
    found = containers_bench.aggregate(
        {"no images": [sample(10.0), sample(10.0, engine="active")], "images": []}
    )
    verdicts = {v["target"]: v for v in containers_bench.verdicts(found)}
    assert verdicts["engine_idle_at_ready"]["value"] == 1
    assert verdicts["engine_idle_at_ready"]["met"] is False
    # Without a cluster with images or a before-rootfs, only that verdict is given.
    assert set(verdicts) == {"engine_idle_at_ready"}


def test_the_report_shows_every_kind_and_every_target(containers_bench: ModuleType) -> None:
    results: dict[str, Any] = containers_bench.aggregate(
        {"no images": [sample(10.0)], "images": [sample(10.4, docker=True)]}
    )
    results.update(
        date="2026-12-07 14:00 UTC",
        machine={"nproc": 2, "cpu": "test cpu", "kernel": "6.1"},
        load_start=0.1,
        load_end=0.2,
        size=3,
        left_running=[],
    )
    results["targets"] = containers_bench.verdicts(results)
    report = containers_bench.render(results)
    assert "| no images | 1 | 10.000 s |" in report
    assert "| --coreos-images busybox | 1 | 10.400 s |" in report
    assert "first `docker run --rm busybox true` | 0.400 s" in report
    assert (
        "what --coreos-images adds (median with images - median without): 0.400 (<= 1) met"
        in report
    )
    assert "left running: nothing" in report
