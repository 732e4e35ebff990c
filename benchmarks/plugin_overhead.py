"""What the installed plugin costs a pytest run that asks for no cluster.

Runs a one-test suite, in a fresh interpreter each time, alternately with the plugin
disabled (``-p no:coreos``) and with it (the default: pytest loads it from its entry
point), ``--runs`` times each, and reports each side's median wall time and the
difference of the medians. The target is at most 20 ms.

    scripts/run python benchmarks/plugin_overhead.py [--runs 11] [--json PATH]

It also reports ``python -X importtime -c "import pytest_coreos.plugin"``'s cumulative
time for the plugin, and the heavy modules (paramiko, requests, yaml) that import loads.
Nothing is started: the suite's one test needs no cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MS = 20.0
SUITE = "def test_one():\n    assert 1 + 1 == 2\n"


def one_run(folder: Path, with_plugin: bool) -> float:
    """Seconds one ``pytest -q`` of the one-test suite takes, start to exit."""
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)]
    if not with_plugin:
        argv[4:4] = ["-p", "no:coreos"]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the one-test suite failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def import_time() -> dict[str, Any]:
    """The plugin's cumulative import time (µs) by ``-X importtime``, and what it loads."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys, pytest_coreos.plugin; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cumulative = 0
    for line in done.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "pytest_coreos.plugin":
            cumulative = int(fields[1])
    loaded = done.stdout
    heavy = [name for name in ("paramiko", "requests", "yaml") if f"'{name}'" in loaded]
    return {"plugin_cumulative_us": cumulative, "heavy_modules_loaded": heavy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="runs of each side")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pytest-coreos-overhead-") as name:
        folder = Path(name)
        (folder / "test_one.py").write_text(SUITE)
        # A registry of its own: the plugin's run must not reap other runs' leftovers.
        os.environ["PYTEST_COREOS_STATE_DIR"] = str(folder / "state")
        one_run(folder, True)  # warm the disk cache and bytecode of both sides
        one_run(folder, False)
        without: list[float] = []
        with_plugin: list[float] = []
        for _ in range(args.runs):
            without.append(one_run(folder, False))
            with_plugin.append(one_run(folder, True))
    median_without = statistics.median(without) * 1000
    median_with = statistics.median(with_plugin) * 1000
    results = {
        "runs": args.runs,
        "load": os.getloadavg()[0],
        "without_plugin_ms": {"median": median_without, "all": [t * 1000 for t in without]},
        "with_plugin_ms": {"median": median_with, "all": [t * 1000 for t in with_plugin]},
        "difference_ms": median_with - median_without,
        "target_ms": TARGET_MS,
        **import_time(),
    }
    print(f"one-test suite, {args.runs} interleaved runs each (load {results['load']:.2f})")
    print(f"  -p no:coreos   median {median_without:7.1f} ms")
    print(f"  with plugin    median {median_with:7.1f} ms")
    verdict = "met" if results["difference_ms"] <= TARGET_MS else "missed"
    print(
        f"  difference     {results['difference_ms']:7.1f} ms (target <= {TARGET_MS:g}: {verdict})"
    )
    print(
        f"  import pytest_coreos.plugin: {results['plugin_cumulative_us'] / 1000:.1f} ms "
        f"cumulative; heavy modules loaded: {results['heavy_modules_loaded'] or 'none'}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
