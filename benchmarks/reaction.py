"""How soon pytest-coreos reports a failure or a timeout: the speed side of checks that the
tests make only as behaviour (with wide slack, so that a loaded machine does not fail them).

One run measures, on real clusters, and prints as a table and writes as JSON:

- an etcd watch with ``timeout=0.2`` on a key nobody changes: seconds until EtcdError;
- an SSH command (``sleep``) with ``timeout=3``: seconds until SSHError;
- as root, on a cluster of three nspawn containers:
  - ``wait_until(unit, "active", timeout=60)`` on a unit that fails at once: seconds until
    UnitError (failed is final, so not the timeout);
  - ``wait_until(unit, "active", timeout=1)`` on a unit whose start takes 60 s: seconds
    until UnitError (the timeout, and how far past it);
  - ``cluster.units.deploy`` of a unit that fails, ``timeout=60``: seconds until the
    UnitsError naming all three machines.

    scripts/run python benchmarks/reaction.py [--runs 5] [--json PATH] [--no-nspawn]

Everything talks to loopback or to the run's own network namespaces, and each cluster is
torn down before the next section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import private_root

from pytest_coreos import EtcdError, SSHError, UnitError, UnitsError
from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.options import ClusterSpec
from pytest_coreos.session.factory import ClusterFactory

REPO = Path(__file__).resolve().parent.parent
# What the timed tests once asserted as their upper bounds, in seconds: the speed kept
# here, the behaviour in tests/ (with bounds of their own, far wider).
TARGETS = {
    "watch_timeout_0.2s": 2.0,
    "ssh_timeout_3s": 10.0,
    "failed_unit_wait": 10.0,
    "slow_unit_timeout_1s": 10.0,
    "failing_deploy_3": 15.0,
}
FAILING = "[Service]\nExecStart=/bin/sh -c 'echo giving up; exit 3'\n"
SLOW = "[Service]\nExecStartPre=/bin/sleep 60\nExecStart=/bin/sh -c 'while sleep 1; do :; done'\n"


def timed(action: Callable[[], object], expected: type[BaseException]) -> float:
    """Seconds until ``action`` raises ``expected`` (anything else is a broken run)."""
    started = time.perf_counter()
    try:
        action()
    except expected:
        return time.perf_counter() - started
    raise RuntimeError(f"{action} did not raise {expected.__name__}")


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def local_reactions(runs: int) -> dict[str, list[float]]:
    factory = ClusterFactory(ClusterSpec(instances=3, boot_timeout=60))
    try:
        cluster = factory.default()
        machine = cluster["core-01"]
        quiet = f"/reaction/{uuid.uuid4().hex}"
        return {
            "watch_timeout_0.2s": [
                timed(lambda: cluster.etcd.watch(quiet, timeout=0.2), EtcdError)
                for _ in range(runs)
            ],
            "ssh_timeout_3s": [
                timed(lambda: machine.ssh.run("sleep 1000", timeout=3), SSHError)
                for _ in range(runs)
            ],
        }
    finally:
        factory.close()


def nspawn_reactions(runs: int) -> dict[str, list[float]]:
    factory = ClusterFactory(ClusterSpec().replace(provider="nspawn", instances=3))
    samples: dict[str, list[float]] = {
        "failed_unit_wait": [],
        "slow_unit_timeout_1s": [],
        "failing_deploy_3": [],
    }
    try:
        cluster = factory.default()
        for _ in range(runs):
            one_run(cluster, samples)
    finally:
        factory.close()
    return samples


def one_run(cluster: Cluster, samples: dict[str, list[float]]) -> None:
    systemd = cluster["core-01"].systemd
    failing = f"reaction-{uuid.uuid4().hex[:8]}.service"
    slow = f"reaction-{uuid.uuid4().hex[:8]}.service"
    deployed = f"reaction-{uuid.uuid4().hex[:8]}.service"
    try:
        systemd.install(failing, FAILING)
        systemd.start(failing)
        samples["failed_unit_wait"].append(
            timed(lambda: systemd.wait_until(failing, "active", timeout=60), UnitError)
        )
        systemd.install(slow, SLOW)
        cluster["core-01"].ssh.run(["systemctl", "--no-block", "start", slow])
        samples["slow_unit_timeout_1s"].append(
            timed(lambda: systemd.wait_until(slow, "active", timeout=1), UnitError)
        )
        samples["failing_deploy_3"].append(
            timed(lambda: cluster.units.deploy(deployed, FAILING, timeout=60), UnitsError)
        )
    finally:
        for unit in (failing, slow, deployed):
            cluster.units.remove(unit)


def render(results: dict[str, Any]) -> str:
    lines = [f"{'reaction':<24} {'median':>8} {'min':>8} {'max':>8} {'target':>8}  met"]
    for name, target in TARGETS.items():
        measured = results["reactions"].get(name)
        if measured is None:
            lines.append(f"{name:<24} {'not measured':>26} {target:>8.1f}")
            continue
        met = "yes" if measured["median"] <= target else "NO"
        lines.append(
            f"{name:<24} {measured['median']:>8.3f} {measured['min']:>8.3f} "
            f"{measured['max']:>8.3f} {target:>8.1f}  {met}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="samples of each reaction")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "reaction.json")
    parser.add_argument(
        "--no-nspawn", action="store_true", help="skip the systemd reactions (root only)"
    )
    args = parser.parse_args(argv)
    samples: dict[str, list[float]] = {}
    with private_root("pytest-coreos-reaction-"):
        samples.update(local_reactions(args.runs))
        if os.geteuid() == 0 and not args.no_nspawn:
            samples.update(nspawn_reactions(args.runs))
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": os.getloadavg()[0],
        "targets": TARGETS,
        "samples": samples,
        "reactions": {name: summary(values) for name, values in samples.items()},
    }
    print(render(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
