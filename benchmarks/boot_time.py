"""Time from fixture start to a ready cluster, for the local provider.

Each run builds a fresh factory, as a new pytest session would: the private discovery
service, the session key pair, every machine, and the wait until etcd lists all members
and every machine accepts an SSH login. Prints a table and writes JSON.

    scripts/run python benchmarks/boot_time.py --sizes 1 3 5 9 --runs 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from pytest_coreos.binaries import find_etcd
from pytest_coreos.cluster import ClusterFactory
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers import get_provider


def one_boot(instances: int) -> tuple[float, float]:
    """Seconds to ready, and seconds to tear down, for one fresh session."""
    factory = ClusterFactory(
        ClusterSpec(instances=instances, boot_timeout=60), provider_factory=get_provider
    )
    started = time.perf_counter()
    try:
        cluster = factory.default()
        ready = time.perf_counter() - started
        assert len(cluster.etcd.members()) == instances
    finally:
        closing = time.perf_counter()
        factory.close()
        teardown = time.perf_counter() - closing
    return ready, teardown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 5, 9])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/boot_time.json"))
    args = parser.parse_args()
    etcd = find_etcd()
    rows = []
    for size in args.sizes:
        one_boot(size)  # warm the page cache; not counted
        samples = [one_boot(size) for _ in range(args.runs)]
        ready = [sample[0] for sample in samples]
        teardown = [sample[1] for sample in samples]
        rows.append(
            {
                "instances": size,
                "runs": args.runs,
                "ready_median_s": statistics.median(ready),
                "ready_min_s": min(ready),
                "ready_max_s": max(ready),
                "teardown_median_s": statistics.median(teardown),
            }
        )
    print(f"etcd {etcd.version_text}, {platform.node()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"{'N':>3} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'teardown s':>10}")
    for row in rows:
        print(
            f"{row['instances']:>3} {row['runs']:>4} {row['ready_median_s']:>9.3f} "
            f"{row['ready_min_s']:>7.3f} {row['ready_max_s']:>7.3f} "
            f"{row['teardown_median_s']:>10.3f}"
        )
    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cores": __import__("os").cpu_count(),
                    "python": platform.python_version(),
                },
                "etcd": etcd.version_text,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
