"""The benchmark's own arithmetic: it runs with either etcd the set-up provides (3.4 logs
text, 3.5 JSON) and reports a figure it cannot take as not measured instead of crashing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import ModuleType

import pytest

# Real lines, as each etcd logs that a member serves clients.
ETCD_34_READY = "2026-11-30 08:37:54.383197 I | embed: ready to serve client requests"
ETCD_35_READY = (
    '{"level":"info","ts":"2026-11-30T08:37:54.383Z","caller":"embed/serve.go:98",'
    '"msg":"ready to serve client requests"}'
)


@pytest.fixture(scope="module")
def bench(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("bench")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (ETCD_34_READY, datetime(2026, 11, 30, 8, 37, 54, 383197).timestamp()),
        (ETCD_35_READY, datetime.fromisoformat("2026-11-30T08:37:54.383+00:00").timestamp()),
    ],
    ids=["etcd 3.4 text", "etcd 3.5 JSON"],
)
def test_the_ready_time_is_read_from_either_log_format(
    bench: ModuleType, line: str, expected: float
) -> None:
    assert bench.last_ready_ts([f"some earlier line\n{line}\n", line]) == pytest.approx(expected)


def test_a_lag_no_sample_gave_is_reported_as_not_measured(bench: ModuleType) -> None:
    sample = {
        "ready_s": 0.3,
        "detection_lag_ms": None,
        "rss": {"per_machine_mib": 45.0, "etcd_max_mib": 27.0},
        "load": 1.0,
        "others_cpu": 0.1,
        **dict.fromkeys(("discovery_s", "config_s", "spawn_s", "wait_s", "etcd_converged_s"), 0.1),
        **dict.fromkeys(("ssh_ready_s", "teardown_s"), 0.1),
    }
    row = bench.aggregate(3, [sample, sample], [sample])
    assert row["plugin"]["detection_lag_ms"]["median"] is None
    assert row["plugin"]["detection_lag_ms"]["not_measured"]
    (lag,) = [v for v in bench.verdicts({"boot": [row]}) if v["target"].startswith("detection")]
    assert (lag["value"], lag["met"]) == (None, False)
    assert bench.figure(None, "10.1f") == "       n/m"
