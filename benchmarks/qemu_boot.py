"""How fast the qemu provider gets 3 VMs ready, beside the box's own boot floor and
``vagrant up`` of the same box, interleaved in one run.

Each round, one after another on an otherwise idle machine:

- **floor**: ``box_boot.py``'s batch: the stand-in box booted 3 at once straight under QEMU
  (TCG), timed to each machine's SSH banner, nothing of the cluster;
- **qemu**: a whole pytest session (``--coreos-provider=qemu --coreos-instances=3``) whose
  one test runs once the cluster is ready (etcd lists every member with a leader, every
  SSH login works): seconds from starting pytest to that test;
- **vagrant**: ``vagrant_phases.py``'s run of the plugin's own Vagrantfile (the e2e's lab:
  libvirtd in a network namespace), its ``vagrant up`` and its ready after ``up``.

Medians of ``--runs`` rounds (5 by default); the qemu figure's ratio to the floor beside it.
The accelerator the qemu provider chose (KVM where it works, else TCG) is printed; the
floor and Vagrant always run under TCG, as the plugin's Vagrantfile asks libvirt.

    scripts/run python benchmarks/qemu_boot.py [--runs 5] [--no-vagrant] [--json PATH]

Root only; run it alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
SIZE = 3
READY_TEST = """
import json, os, time

def test_ready(coreos_cluster):
    ready = time.monotonic()
    coreos_cluster.wait_until_healthy(timeout=5)
    for machine in coreos_cluster:
        assert machine.ssh.run(["true"]).exit_status == 0
    with open(os.environ["QEMU_BENCH_READY"], "w") as out:
        json.dump({"ready": ready}, out)
"""


def load(name: str) -> ModuleType:
    """A sibling benchmark script, as a module."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def qemu_ready(folder: Path) -> float:
    """Seconds from starting a pytest session of a 3-VM qemu cluster to its ready test."""
    (folder / "test_ready.py").write_text(READY_TEST)
    marker = folder / "ready.json"
    marker.unlink(missing_ok=True)
    env = {
        **os.environ,
        "QEMU_BENCH_READY": str(marker),
        "PYTEST_COREOS_STATE_DIR": str(folder / "state"),
        "TMPDIR": str(folder),
    }
    env.pop("PYTEST_ADDOPTS", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-v",
         "--coreos-provider=qemu", f"--coreos-instances={SIZE}",
         "--coreos-boot-timeout=300", str(folder / "test_ready.py")],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not marker.exists():
        raise SystemExit(f"the qemu session failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    return float(json.loads(marker.read_text())["ready"]) - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-vagrant", action="store_true", help="leave vagrant up out")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("run as root (network labs, libvirtd)")
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    box_boot = load("box_boot")
    phases = load("vagrant_phases")
    from pytest_coreos.providers.qemu.image import unpack_box
    from pytest_coreos.providers.qemu.machines import choose_accelerator, find_qemu

    accelerator, why = choose_accelerator(find_qemu())
    box = box_boot.find_box()
    unpack_box(box)  # once, as any first session does: not in the figures
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix=box_boot.PREFIX) as tmp:
        folder = Path(tmp)
        (folder / "pid").write_text(f"{os.getpid()}\n")
        for name in ("box", "qemu"):
            (folder / name).mkdir()
        cmd_line = box_boot.unpack(box, folder / "box")
        lab = None
        if not options.no_vagrant:
            helpers = phases.e2e_lab()
            helpers.check_prerequisites()
            built, _, _ = helpers.build_box()
            base = [a for a in helpers.cluster_args(built, SIZE) if "--coreos-user-data" not in a]
            vagrant_args = [*base, *phases.VARIANTS["plugin"], phases.CHECKS]
            lab = helpers.open_lab()
            lab_handle = lab.__enter__()
        try:
            if lab is not None:  # the first run adds the box to Vagrant: not counted
                lab_handle.run_inner(vagrant_args, folder / "vagrant-cold.log")
            for run in range(options.runs):
                figures = {"load": os.getloadavg()[0]}
                figures["floor"] = box_boot.one_batch(folder / "box", cmd_line, SIZE)[-1]
                figures["qemu ready"] = qemu_ready(folder / "qemu")
                if lab is not None:
                    status, lines = lab_handle.run_inner(vagrant_args, folder / f"v{run}.log")
                    if status != 0:
                        raise SystemExit(f"vagrant: the inner run failed (status {status})")
                    vagrant = phases.run_phases([line for _, line in lines])
                    figures["vagrant up"] = vagrant.get("vagrant up", float("nan"))
                    figures["vagrant up to ready"] = vagrant.get("up to ready", float("nan"))
                rounds.append(figures)
                print(f"round {run + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
        finally:
            if lab is not None:
                lab.__exit__(None, None, None)
    median = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    report: dict[str, Any] = {
        "accelerator": accelerator,
        "why": why,
        "rounds": rounds,
        "median": median,
        "ratio_to_floor": median["qemu ready"] / median["floor"],
    }
    print(f"\nqemu provider under {accelerator.upper()} ({why}); medians of {options.runs}:")
    print("| | 3 machines |")
    print("| --- | --- |")
    print(f"| the box's boot floor (SSH banners) | {median['floor']:.1f} s |")
    print(f"| qemu provider: session start to ready | {median['qemu ready']:.1f} s "
          f"({report['ratio_to_floor']:.2f}x the floor) |")  # fmt: skip
    if "vagrant up" in median:
        print(f"| `vagrant up` | {median['vagrant up']:.1f} s |")
        print(f"| `vagrant up` to ready | {median['vagrant up to ready']:.1f} s |")
    print(f"load average (1 min) at each round's start: {[r['load'] for r in rounds]}")
    if options.json:
        options.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
