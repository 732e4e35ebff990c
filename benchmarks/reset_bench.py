"""How long ``cluster.reset()`` takes against a fresh boot of the same shape, in the same
run: 3 machines each, per provider (loopback processes, processes in network namespaces,
nspawn containers; Vagrant VMs when asked for).

    scripts/run python benchmarks/reset_bench.py [--providers loopback netns nspawn vagrant]
        [--runs 11] [--vm-runs 3]

Each provider gets, interleaved so that the machine's load touches both alike:

- a fresh boot: ``coreos_cluster_factory(instances=3)`` from start to ready, then closed;
- a reset after a test that wrote (v2 keys, a directory, v3 keys on a lease): what a
  test gets between two tests of a suite;
- a reset after a test that also wrote a key etcd hides from listings (as fleet does):
  every member's data folder is put back, no machine restarted;
- a reset after a fault test: the same writes, one machine killed and one paused.

Each sample is timed from the call to its return (the reset waits until the cluster is
healthy). A reset after writes alone deletes the keys through etcd's API ("in place"); one
after a fault puts every member's data folder back ("restore"); the JSON says which each
sample took. Medians of ``--runs`` (``--vm-runs`` for VMs); the load average is printed next
to them, as every figure on a shared 2-core machine depends on it. Results go to
``benchmarks/reset_bench.json`` and, as the Markdown rows of docs/benchmarks.md, to the
terminal. Machines in network labs are reached only inside the labs this run made.

Vagrant VMs (root, nothing else booting VMs on the machine) are measured as the Vagrant e2e
runs them: each run is an inner pytest inside a network namespace with libvirtd in it
(``tests/e2e/conftest.py``'s lab, one for every run, through ``vagrant_phases.py``) that
boots 3 VMs of the stand-in box from the plugin's Vagrantfile and runs the e2e's reset
check (``tests/e2e/vagrant_reset_checks.py``), which prints how long each of its resets
took: after a key, a lease and a unit deployed on every VM (in place, the unit removed);
after a key etcd hides (restore); after a key and a VM suspended (resumed, then in place).
The fresh boot is ``vagrant up`` plus ready; the first run's includes adding the box to
Vagrant and libvirt.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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
SCENARIOS: dict[str, Callable[[Cluster, int], None]] = {}  # filled below
# The e2e's reset check, run on VMs by an inner pytest; it prints its resets' times.
VAGRANT_CHECK = "tests/e2e/vagrant_reset_checks.py"
VAGRANT_TIMES = re.compile(r"vagrant reset: (\{.*\})")
TARGETS = {"loopback": 0.05, "netns": 0.05, "nspawn": 0.3, "vagrant": 10.0}


def write_as_a_test_would(cluster: Cluster, number: int) -> None:
    cluster.etcd.set(f"/bench/{number}/key", "value")
    cluster.etcd.mkdir(f"/bench/{number}/dir")
    lease = cluster.etcd.v3.lease(600)
    cluster.etcd.v3.put(f"/bench/{number}/leased", "value", lease=lease)


def hide_as_fleet_would(cluster: Cluster, number: int) -> None:
    write_as_a_test_would(cluster, number)
    cluster.etcd.set(f"/_hidden/{number}", "value")  # only the restore finds it


def fault_as_a_test_would(cluster: Cluster, number: int) -> None:
    write_as_a_test_would(cluster, number)
    cluster["core-01"].kill()
    cluster["core-02"].pause()


SCENARIOS.update(
    {
        "reset after writes": write_as_a_test_would,
        "reset after a hidden key": hide_as_fleet_would,
        "reset after faults": fault_as_a_test_would,
    }
)


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def boot_once(factory: ClusterFactory) -> float:
    started = time.perf_counter()
    cluster = factory(instances=3)
    elapsed = time.perf_counter() - started
    cluster.close()
    return elapsed


def measure(shape: str, runs: int) -> dict[str, Any]:
    spec = ClusterSpec().replace(instances=3, boot_timeout=300, **SHAPES[shape])
    factory = ClusterFactory(spec)
    samples: dict[str, list[float]] = {name: [] for name in ("boot", *SCENARIOS)}
    loads: list[float] = []
    ways: dict[str, list[str]] = {name: [] for name in SCENARIOS}
    try:
        cluster = factory(instances=3, resettable=True)
        for number in range(runs):
            loads.append(os.getloadavg()[0])
            # Resets follow resets, as between the tests of a suite; the fresh boot (and
            # its teardown's work) comes after them.
            for name, dirty in SCENARIOS.items():
                dirty(cluster, number)
                samples[name].append(timed(cluster.reset))
                ways[name].append(cluster.last_reset)
                assert cluster.etcd.ls("/") == [], "a reset left keys behind"
            samples["boot"].append(boot_once(factory))
            print(
                f"{shape:8} run {number + 1}/{runs}: boot {samples['boot'][-1]:.3f} s, "
                + ", ".join(f"{name} {samples[name][-1]:.3f} s" for name in SCENARIOS)
                + f" (load {loads[-1]:.2f})",
                file=sys.stderr,
            )
    finally:
        factory.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "samples": samples,
        "median_s": medians,
        "max_s": {name: max(values) for name, values in samples.items()},
        "load_average": {"min": min(loads), "max": max(loads)},
        # How each reset went: "in place" (keys deleted through the API) or "restore".
        "ways": ways,
        "runs": runs,
    }


def measure_vagrant(runs: int) -> dict[str, Any]:
    """3 VMs, ``runs`` times, each an inner pytest in the e2e's lab (see the docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import vagrant_phases  # beside this file: the lab, and its parser of the boot's lines

    helpers = vagrant_phases.e2e_lab()
    helpers.check_prerequisites()
    box, _, _ = helpers.build_box()
    args = [*helpers.cluster_args(box, 3), VAGRANT_CHECK]
    samples: dict[str, list[float]] = {"boot": []}
    loads: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="pytest-coreos-reset-bench-") as scratch,
        helpers.open_lab() as lab,
    ):
        for number in range(runs):
            loads.append(os.getloadavg()[0])
            log = Path(scratch) / f"run-{number + 1}.log"
            status, lines = lab.run_inner(args, log)
            texts = [line for _, line in lines]
            found = [match for text in texts if (match := VAGRANT_TIMES.search(text))]
            if status != 0 or not found:
                print(log.read_text()[-4000:], file=sys.stderr)
                raise SystemExit(f"vagrant: the inner run failed (status {status})")
            samples["boot"].append(vagrant_phases.run_phases(texts)["up to ready"])
            for name, seconds in json.loads(found[0].group(1)).items():
                samples.setdefault(name, []).append(seconds)
            print(
                f"vagrant  run {number + 1}/{runs}: "
                + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in samples.items())
                + f" (load {loads[-1]:.2f})",
                file=sys.stderr,
            )
    return {
        "samples": samples,
        "median_s": {name: statistics.median(values) for name, values in samples.items()},
        "max_s": {name: max(values) for name, values in samples.items()},
        "load_average": {"min": min(loads), "max": max(loads)},
        "runs": runs,
    }


def vagrant_rows(result: dict[str, Any], date: str) -> list[str]:
    resets = [name for name in result["median_s"] if name != "boot"]
    median, most, load = result["median_s"], result["max_s"], result["load_average"]
    return [
        "| date | runs | fresh boot (median) | "
        + " | ".join(f"{name} (median, max)" for name in resets)
        + " | target | load average |",
        "| --- " * (len(resets) + 5) + "|",
        f"| {date} | {result['runs']} | {median['boot']:.1f} s | "
        + "".join(f"{median[name]:.1f} s ({most[name]:.1f} s) | " for name in resets)
        + f"≤ {TARGETS['vagrant']:g} s | {load['min']:.2f}-{load['max']:.2f} |",
    ]


def rows(measured: dict[str, dict[str, Any]], date: str) -> list[str]:
    lines = [
        "| date | provider | runs | fresh boot (median) | reset after writes (median, max) | "
        "after a hidden key | after kill + pause | target | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shape, result in measured.items():
        if shape == "vagrant":
            continue  # resets of their own: vagrant_rows
        median, most, load = result["median_s"], result["max_s"], result["load_average"]
        lines.append(
            f"| {date} | {shape} | {result['runs']} | {median['boot']:.3f} s | "
            + "".join(f"{median[name]:.3f} s ({most[name]:.3f} s) | " for name in SCENARIOS)
            + f"≤ {TARGETS[shape]:g} s | {load['min']:.2f}-{load['max']:.2f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=[*SHAPES, "vagrant"],
        default=["loopback", "netns", "nspawn"],
    )
    parser.add_argument("--runs", type=int, default=11, help="samples per figure")
    parser.add_argument("--vm-runs", type=int, default=3, help="samples per figure for VMs")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).resolve().parent / "reset_bench.json"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and set(args.providers) - {"loopback"}:
        parser.error("netns, nspawn and vagrant need root; use --providers loopback")
    providers = [*SHAPES, "vagrant"]
    args.providers.sort(key=providers.index)
    # A registry of its own: this run never reaps or reuses other runs' clusters.
    # (removed at the end: every session of this run has reaped its own entries by then)
    state = tempfile.TemporaryDirectory(prefix="pytest-coreos-reset-bench-")
    os.environ["PYTEST_COREOS_STATE_DIR"] = state.name
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    measured = {
        shape: measure_vagrant(args.vm_runs) if shape == "vagrant" else measure(shape, args.runs)
        for shape in args.providers
    }
    args.json.write_text(json.dumps({"date": date, "results": measured}, indent=1))
    if set(measured) - {"vagrant"}:
        print("\n".join(rows(measured, date)))
    if "vagrant" in measured:
        print("\n".join(vagrant_rows(measured["vagrant"], date)))
    state.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
