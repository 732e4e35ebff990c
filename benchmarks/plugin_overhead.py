"""What the installed plugin costs a pytest run that asks for no cluster.

Runs a one-test suite, in a fresh interpreter each time, alternately with the plugin
disabled (``-p no:coreos``) and with it (the default: pytest loads it from its entry
point), ``--runs`` times each, and reports each side's median wall time and the
difference of the medians. The target is at most 20 ms.

The runs are plain ``pytest`` runs, header included, as a user starts them. The plugin's
bytecode is compiled first, as ``pip install`` leaves a wheel (an editable install, or
``PYTHONDONTWRITEBYTECODE=1``, would otherwise make every run compile the plugin's source).

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


def one_run(folder: Path, with_plugin: bool) -> tuple[float, float]:
    """Seconds one ``pytest -q`` of the one-test suite takes, start to exit: wall time,
    and the CPU time (user + system) it used, which other processes' load changes less."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(folder)]
    if not with_plugin:
        argv[3:3] = ["-p", "no:coreos"]
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=folder, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            output.seek(0)
            raise SystemExit(f"the one-test suite failed:\n{output.read()}")
    return elapsed, usage.ru_utime + usage.ru_stime


def compile_plugin() -> Path:
    """Compile the installed plugin's modules to bytecode, as installing its wheel does."""
    done = subprocess.run(
        [sys.executable, "-c", "import pytest_coreos; print(pytest_coreos.__path__[0])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    package = Path(done.stdout.strip())
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    return package


def import_time() -> dict[str, Any]:
    """The plugin's cumulative import time (µs) by ``-X importtime``, pytest imported first
    (every run has it already), and what it loads."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c",
         "import sys, pytest; import pytest_coreos.plugin; print(sorted(sys.modules))"],
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
        package = compile_plugin()
        one_run(folder, True)  # warm the disk cache (and the plugin's etcd version cache)
        one_run(folder, False)
        load_before = os.getloadavg()[0]
        without: list[tuple[float, float]] = []
        with_plugin: list[tuple[float, float]] = []
        for _ in range(args.runs):
            without.append(one_run(folder, False))
            with_plugin.append(one_run(folder, True))

    def side(samples: list[tuple[float, float]]) -> dict[str, Any]:
        walls = [wall * 1000 for wall, _ in samples]
        cpus = [cpu * 1000 for _, cpu in samples]
        return {
            "wall_median": statistics.median(walls),
            "cpu_median": statistics.median(cpus),
            "wall_all": walls,
            "cpu_all": cpus,
        }

    off, on = side(without), side(with_plugin)
    difference = on["wall_median"] - off["wall_median"]
    cpu = on["cpu_median"] - off["cpu_median"]
    load_after = os.getloadavg()[0]
    results = {
        "runs": args.runs,
        "package": str(package),
        "load": [load_before, load_after],
        "without_plugin_ms": off,
        "with_plugin_ms": on,
        "difference_ms": difference,
        "cpu_difference_ms": cpu,
        "target_ms": TARGET_MS,
        **import_time(),
    }
    print(
        f"one-test suite, {args.runs} interleaved runs each "
        f"(load {load_before:.2f} before, {load_after:.2f} after)"
    )
    print("                 wall median   CPU median")
    print(f"  -p no:coreos   {off['wall_median']:8.1f} ms  {off['cpu_median']:8.1f} ms")
    print(f"  with plugin    {on['wall_median']:8.1f} ms  {on['cpu_median']:8.1f} ms")
    verdict = "met" if difference <= TARGET_MS else "missed"
    print(
        f"  difference     {difference:8.1f} ms  {cpu:8.1f} ms (target <= {TARGET_MS:g}: {verdict})"
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
