"""pytest-coreos fleet benchmark: a 3-machine nspawn cluster running real fleet.

Each run is a fresh ``ClusterFactory`` (as a new pytest session) booting nspawn machines
from the seed's user-data with ``--coreos-fleet``; it is ready when etcd has every member,
every machine takes an SSH login, and fleet lists every machine (the plugin waits for
that itself when the user-data starts fleet). Each run then checks, with one more
``fleetctl list-machines``, that fleet does list them all. The same clusters without
fleet are measured in between, for comparison. Prints median, min and max, and writes
JSON.

    scripts/run python benchmarks/fleet_bench.py --fleet PATH|URL [--runs 7] [--size 3]

The release defaults to ``$PYTEST_COREOS_FLEET``. Root only (containers); everything talks
to the containers' own network lab, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import add_quiet_options, load, private_root, run_header, summary, wait_for_quiet

from pytest_coreos.options import ClusterSpec
from pytest_coreos.session.factory import ClusterFactory

TARGET_READY_S = 3.0


def one_run(size: int, fleet: str | None) -> dict[str, Any]:
    """One fresh session's cluster: time to ready (fleet included), phases, teardown."""
    spec = ClusterSpec().replace(provider="nspawn", instances=size, fleet=fleet)
    factory = ClusterFactory(spec)
    sample: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        cluster = factory.default()
        sample["ready_s"] = time.perf_counter() - started
        sample["timings"] = dict(cluster.timings)
        if fleet is not None:
            listed = cluster.fleet.list_machines()
            if len(listed) != size:
                raise AssertionError(f"ready, but fleet lists {len(listed)}/{size} machines")
    finally:
        closing = time.perf_counter()
        factory.close()
        sample["teardown_s"] = time.perf_counter() - closing
    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", default=os.environ.get("PYTEST_COREOS_FLEET"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--size", type=int, default=3)
    add_quiet_options(parser, "before each pair of runs", 120.0)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "fleet.json")
    args = parser.parse_args(argv)
    if not args.fleet:
        parser.error("give --fleet PATH|URL (fleet's release) or set PYTEST_COREOS_FLEET")
    results = run_header(size=args.size, runs=args.runs)
    samples: dict[str, list[dict[str, Any]]] = {"fleet": [], "no fleet": []}
    with private_root("pytest-coreos-fleet-bench-"):
        one_run(args.size, args.fleet)  # warm-up: builds the rootfs, unpacks the release
        for index in range(args.runs):
            busy = wait_for_quiet(args.quiet, args.quiet_wait)
            for kind, fleet in (("fleet", args.fleet), ("no fleet", None)):
                sample = one_run(args.size, fleet)
                sample["others_cpu_before"] = busy
                samples[kind].append(sample)
                print(
                    f"[fleet-bench {index + 1}/{args.runs} load {load():.2f}] {kind}: ready "
                    f"{sample['ready_s']:.3f}s {sample['timings']}",
                    file=sys.stderr,
                )
    results["load_end"] = load()
    for kind, runs in samples.items():
        phases = runs[0]["timings"].keys()
        results[kind] = {
            "ready_s": summary([run["ready_s"] for run in runs]),
            "teardown_s": summary([run["teardown_s"] for run in runs]),
            "others_cpu_before": summary([run["others_cpu_before"] for run in runs]),
            "phases_median_s": {
                phase: sorted(run["timings"][phase] for run in runs)[len(runs) // 2]
                for phase in phases
            },
        }
    machine = results["machine"]
    print(f"{results['date']}, {machine.get('cpu', '')}, {machine.get('nproc', '')} CPUs")
    print(
        f"| nspawn N={args.size} | ready median | min | max | teardown median "
        "| others' CPU before (median) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in samples:
        ready, teardown = results[kind]["ready_s"], results[kind]["teardown_s"]
        print(
            f"| {kind} | {ready['median']:.3f} s | {ready['min']:.3f} s | {ready['max']:.3f} s "
            f"| {teardown['median']:.3f} s | {results[kind]['others_cpu_before']['median']:.0%} |"
        )
    for kind in samples:
        phases = ", ".join(f"{k} {v:.3f}s" for k, v in results[kind]["phases_median_s"].items())
        print(f"{kind} phases (median): {phases}")
    met = results["fleet"]["ready_s"]["median"] <= TARGET_READY_S
    print(
        f"target: fleet N={args.size} ready median <= {TARGET_READY_S:g} s: "
        + ("met" if met else "NOT met")
    )
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
