"""Where `vagrant up` of 3 VMs goes, phase by phase, from the plugin's own Vagrantfile and
from a coreos-vagrant checkout of 2016 (``tests/e2e/data/checkout-2016``), with the stand-in
box under QEMU's TCG.

Each run is an inner pytest inside a network namespace with libvirtd in it (one for the
whole benchmark, its Vagrant home kept from run to run as a user's is), as the Vagrant e2e
test runs (``tests/e2e/conftest.py``: its lab, box build and cluster
arguments), and Vagrant's home inside a 0700 home. The plugin's progress lines give each
machine's steps (Vagrant's machine-readable timestamps, whole seconds); its timings give
the rest. Per run, for the slowest machine:

- boot to SSH: "starting" to "booted";
- hostname: "setting the hostname" to the next step (only where the Vagrantfile sets one);
- network: "configuring the network" to the first provisioner;
- provisioners: the first provisioner to "running";
and for the cluster: ``vagrant up``, ready after ``up`` (etcd lists 3 members with a leader,
SSH logins work), and the plugin's own work on top of ``vagrant up`` (its folder, keys,
libvirt network, ``vagrant ssh-config``: the boot's spawn phase less ``vagrant up``, plus
its discovery and config phases).

Root only; run it alone (nothing else booting VMs on the machine):

    scripts/run python benchmarks/vagrant_phases.py --runs 3 --json vagrant-phases.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
E2E = REPO / "tests" / "e2e"
CHECKS = "tests/e2e/vagrant_checkout_checks.py::test_etcd_lists_every_machine_with_a_leader"
VARIANTS = {
    "plugin": [f"--coreos-user-data={E2E / 'data' / 'user-data'}"],
    "checkout-2016": [
        f"--coreos-vagrant-dir={E2E / 'data' / 'checkout-2016'}",
        f"--coreos-user-data={E2E / 'data' / 'checkout-2016' / 'user-data'}",
    ],
}
STEP = re.compile(r"coreos: (core-\d+): (.+?) \(\+(\d+)s\)")
UP = re.compile(r"coreos: vagrant up finished in ([\d.]+)s")
TIMINGS = re.compile(r"\bready: (discovery .*)")


def e2e_lab() -> ModuleType:
    """The e2e test's lab helpers (a network namespace with libvirtd, the box build).

    From here on SIGTERM ends the benchmark as Ctrl-C does: the lab's namespace, daemons,
    VMs and host changes (``/dev/kvm``'s mode, libvirt's runtime folder) are undone, where
    Python's default would leave them, and a virtlogd left running stops the next e2e."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    spec = importlib.util.spec_from_file_location("e2e_lab", E2E / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine_phases(steps: Sequence[tuple[str, int]]) -> dict[str, float]:
    """One machine's phases (seconds) from its (step, +seconds) progress lines."""
    first: dict[str, int] = {}
    order: list[str] = []
    for step, at in steps:
        key = "provisioning" if step.startswith("provisioning") else step
        if key not in first:
            first[key] = at
            order.append(key)

    def after(step: str) -> int | None:
        index = order.index(step)
        return first[order[index + 1]] if index + 1 < len(order) else None

    phases: dict[str, float] = {}
    if "starting" in first and "booted" in first:
        phases["boot to SSH"] = first["booted"] - first["starting"]
    for step, name in (
        ("setting the hostname", "hostname"),
        ("configuring the network", "network"),
        ("provisioning", "provisioners"),
    ):
        end = after(step) if step in first else None
        if end is not None:
            phases[name] = end - first[step]
    return phases


def run_phases(lines: Sequence[str]) -> dict[str, float]:
    """A run's figures: each phase of its slowest machine, and the cluster's."""
    steps: dict[str, list[tuple[str, int]]] = {}
    figures: dict[str, float] = {}
    laps: dict[str, float] = {}
    for line in lines:
        if match := STEP.search(line):
            steps.setdefault(match.group(1), []).append((match.group(2), int(match.group(3))))
        elif match := UP.search(line):
            figures["vagrant up"] = float(match.group(1))
        elif match := TIMINGS.search(line):
            for part in match.group(1).split(", "):
                name, _, value = part.rpartition(" ")
                laps[name] = float(value.rstrip("s"))
    for machine in steps.values():
        for name, value in machine_phases(machine).items():
            figures[name] = max(figures.get(name, 0.0), value)
    if "vagrant up" in figures and "spawn" in laps:
        figures["ready after up"] = laps.get("ready", float("nan"))
        figures["plugin's own work"] = (
            laps["spawn"] - figures["vagrant up"] + laps.get("discovery", 0) + laps.get("config", 0)
        )
        figures["up to ready"] = figures["vagrant up"] + figures["ready after up"]
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (network namespaces, libvirtd)")
    lab_helpers = e2e_lab()
    lab_helpers.check_prerequisites()
    box, _, _ = lab_helpers.build_box()
    base = [a for a in lab_helpers.cluster_args(box, 3) if not a.startswith("--coreos-user-data")]
    results: dict[str, list[dict[str, float]]] = {}
    loads: list[float] = []
    # One lab (one Vagrant home) for every run, as a user's: the first run adds the box to
    # Vagrant and uploads it to libvirt's pool; it is reported apart, not in the medians.
    plan = [("cold", options.variants[0])] + [
        (str(run + 1), variant) for run in range(options.runs) for variant in options.variants
    ]
    cold: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="pytest-coreos-vagrant-bench-") as scratch,
        lab_helpers.open_lab() as lab,
    ):
        for run, variant in plan:
            loads.append(os.getloadavg()[0])
            log = Path(scratch) / f"{variant}-{run}.log"
            status, lines = lab.run_inner([*base, *VARIANTS[variant], CHECKS], log)
            if status != 0:
                print(log.read_text()[-4000:], file=sys.stderr)
                raise SystemExit(f"{variant}: the inner run failed (status {status})")
            figures = run_phases([line for _, line in lines])
            if run == "cold":
                cold = figures
            else:
                results.setdefault(variant, []).append(figures)
            print(f"{variant} run {run}: " + json.dumps(figures), flush=True)
    report: dict[str, Any] = {
        "load_average_1m_at_each_start": loads,
        "cold_run_adding_the_box": {options.variants[0]: cold},
        "runs": results,
        "median": {
            variant: {
                name: statistics.median(run[name] for run in runs if name in run)
                for name in runs[0]
            }
            for variant, runs in results.items()
        },
    }
    if options.json is not None:
        options.json.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["median"], indent=1))
    print(f"load average (1 min) at the start of each run: {loads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
