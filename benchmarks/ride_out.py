"""How long a write waits after a member of three is lost: from the fault to the first
acknowledged write through a surviving machine's own etcd handle, per provider, fault
(kill, stop, pause) and role (leader, follower).

    scripts/run python benchmarks/ride_out.py --providers loopback netns nspawn --runs 11

Each provider gets one 3-machine cluster; each sample faults one member, writes at once
through a survivor (the handle rides out the election; the script never waits), then
makes the cluster whole again (start or resume, then ``wait_until_healthy``) before the
next sample. The clock starts when the fault call returns, which is when a test would
write; the fault call's own time is reported next to it. Results go to
``benchmarks/ride_out.json`` (every sample) and to the terminal as the Markdown rows of
docs/benchmarks.md. The machines of netns and nspawn clusters live in network labs of
this run; nothing is sent anywhere else.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.options import ClusterSpec
from pytest_coreos.session.factory import ClusterFactory

SHAPES: dict[str, dict[str, Any]] = {
    "loopback": {},
    "netns": {"network": "netns"},
    "nspawn": {"provider": "nspawn", "discovery": "local"},
}
FAULTS = ("kill", "stop", "pause")
ROLES = ("leader", "follower")


def sample(cluster: Cluster, fault: str, role: str, number: int) -> dict[str, float]:
    """One fault and the first write after it; the cluster is whole again on return."""
    leader = cluster.etcd.leader()
    if leader is None:
        raise RuntimeError("no leader before the fault")
    victim = cluster[leader.name]
    if role == "follower":
        victim = next(machine for machine in cluster if machine.name != leader.name)
    writer = next(machine for machine in cluster if machine is not victim)
    started = time.perf_counter()
    getattr(victim, fault)()
    faulted = time.perf_counter()
    try:
        writer.etcd.set(f"/ride-out-bench/{fault}-{role}-{number}", "written")
        acknowledged = time.perf_counter()
    finally:
        if fault == "pause":
            victim.resume()
        else:
            victim.start()
        cluster.wait_until_healthy()
    return {"fault_s": faulted - started, "write_s": acknowledged - faulted}


def measure(shape: str, runs: int) -> dict[str, Any]:
    spec = ClusterSpec().replace(instances=3, boot_timeout=60, **SHAPES[shape])
    factory = ClusterFactory(spec)
    results: dict[str, Any] = {}
    try:
        cluster = factory.default()
        for fault in FAULTS:
            for role in ROLES:
                samples = [sample(cluster, fault, role, number) for number in range(runs)]
                writes = [s["write_s"] for s in samples]
                results[f"{fault} {role}"] = {
                    "samples": samples,
                    "write_median_s": statistics.median(writes),
                    "write_max_s": max(writes),
                    "fault_median_s": statistics.median(s["fault_s"] for s in samples),
                }
                print(
                    f"{shape:8} {fault:5} {role:8} write median "
                    f"{results[f'{fault} {role}']['write_median_s']:.3f} s, max "
                    f"{max(writes):.3f} s",
                    file=sys.stderr,
                )
    finally:
        factory.close()
    return results


def rows(measured: dict[str, dict[str, Any]], date: str) -> list[str]:
    lines = [
        "| date | provider | fault | role | runs | fault call (median) | write after fault "
        "(median) | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shape, results in measured.items():
        for name, result in results.items():
            fault, role = name.split()
            lines.append(
                f"| {date} | {shape} | {fault} | {role} | {len(result['samples'])} | "
                f"{result['fault_median_s']:.3f} s | {result['write_median_s']:.3f} s | "
                f"{result['write_max_s']:.3f} s |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--runs", type=int, default=11, help="samples per fault and role")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).resolve().parent / "ride_out.json"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and set(args.providers) - {"loopback"}:
        parser.error("netns and nspawn need root; use --providers loopback")
    # A registry of its own: this run never reaps or reuses other runs' clusters.
    # (removed at the end: every session of this run has reaped its own entries by then)
    state = tempfile.TemporaryDirectory(prefix="pytest-coreos-ride-out-")
    os.environ["PYTEST_COREOS_STATE_DIR"] = state.name
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured = {shape: measure(shape, args.runs) for shape in args.providers}
    args.json.write_text(json.dumps({"date": date, "runs": args.runs, "results": measured}))
    print("\n".join(rows(measured, date)))
    state.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
