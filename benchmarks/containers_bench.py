"""pytest-coreos containers benchmark: what Docker Engine and ``--coreos-images`` cost an
nspawn cluster.

Each run is a fresh ``ClusterFactory`` (as a new pytest session) booting 3 nspawn machines
from the seed's user-data, timed from just before ``factory.default()`` to its return.
Interleaved in every run, in a rotating order:

- **no images**: the cluster as it boots for tests that use no container;
- **images**: the same with ``images=(busybox archive,)`` (``busybox_image``, built once):
  the lab's registry filled by skopeo while the machines boot, ready once it serves them
  (the ``images`` lap of ``cluster.timings``). On core-01 of that cluster, each over SSH
  from this process: a trivial ``true`` (the SSH round trip, median of 3), ``docker pull
  busybox`` (it starts the engine from its socket), the first ``docker run --rm busybox
  true`` after it, and a second one;
- **before docker** (with ``--before-rootfs PATH``): the cluster without images booted
  from a rootfs built before Docker Engine was in the image, given to the nspawn provider
  through ``$PYTEST_COREOS_ROOTFS`` for those runs only. The other kinds are then given
  today's rootfs the same way (the image builder's, found once before the runs), so that
  no kind pays the builder's cache check and the others not.

At ready, every run asks every machine for ``systemctl is-active docker.socket
docker.service``: the engine is socket-activated, so no dockerd may run at boot. One
warm-up run of each kind is not counted. Prints medians, min and max as Markdown rows and
writes every sample, the load average per run and the machine's facts as JSON.

    scripts/run python benchmarks/containers_bench.py [--runs 11] [--size 3] [--json PATH]
        [--quiet FRACTION] [--quiet-wait SECONDS] [--before-rootfs PATH]

A before-rootfs: the image as of f9aa7fc (the last commit before docker was added), built
into a cache folder of its own (build-box deletes the other trees in its cache folder):

    git -C /work/main worktree add /tmp/before-docker f9aa7fc
    ROOTFS_CACHE=/var/cache/pytest-coreos/rootfs-before \\
        bash /tmp/before-docker/pytest_coreos/image/build-box --rootfs   # prints its path
    git -C /work/main worktree remove /tmp/before-docker

Root only (containers). Machines are reached only through the plugin's handles, which go
through the containers' network lab. Exits with status 1 if it left a container, a
registry or a dockerd running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench
from bench import (
    ProcessCensus,
    add_quiet_options,
    load,
    private_root,
    run_header,
    summary,
    wait_for_quiet,
)

from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.image.archive import busybox_image
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers.nspawn.containers import ROOTFS_ENVIRONMENT
from pytest_coreos.session.factory import ClusterFactory

KINDS = ("no images", "images", "before docker")
# What a census counts as this benchmark's: containers, the lab's registry, the engines.
CONTAINER_PROGRAMS = {"systemd-nspawn", "docker-registry", "dockerd", "containerd"}
TARGETS = {
    "images_add_s": 1.0,  # ready with images minus ready without (medians)
    "first_run_s": 2.0,  # the first docker run after the pull
    "before_ratio": 1.0,  # no images / before docker (medians): no slower
}
# The docker commands timed on core-01, in order, each over the cluster's SSH handle.
DOCKER_STEPS = {
    "pull_s": ["docker", "pull", "busybox"],
    "first_run_s": ["docker", "run", "--rm", "busybox", "true"],
    "second_run_s": ["docker", "run", "--rm", "busybox", "true"],
}


def timed_ssh(cluster: Cluster, argv: Sequence[str]) -> float:
    started = time.perf_counter()
    cluster.machines[0].ssh.run(list(argv), timeout=300)
    return time.perf_counter() - started


def docker_states(cluster: Cluster) -> dict[str, list[str]]:
    """``systemctl is-active`` of docker's socket and service on every machine (a unit the
    image lacks is ``inactive``)."""
    command = ["systemctl", "is-active", "docker.socket", "docker.service"]
    return {
        machine.name: machine.ssh.run(command, check=False).stdout.split()
        for machine in cluster.machines
    }


def docker_steps(cluster: Cluster) -> dict[str, float]:
    """The SSH round trip (median of 3 ``true``), then each of DOCKER_STEPS, in seconds."""
    sample = {"ssh_true_s": statistics.median(timed_ssh(cluster, ["true"]) for _ in range(3))}
    sample.update({name: timed_ssh(cluster, argv) for name, argv in DOCKER_STEPS.items()})
    return sample


@contextlib.contextmanager
def rootfs(path: Path | None) -> Iterator[None]:
    """``$PYTEST_COREOS_ROOTFS`` set to ``path`` inside, as it was outside (None: as is)."""
    if path is None:
        yield
        return
    previous = os.environ.get(ROOTFS_ENVIRONMENT)
    os.environ[ROOTFS_ENVIRONMENT] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ROOTFS_ENVIRONMENT, None)
        else:
            os.environ[ROOTFS_ENVIRONMENT] = previous


def one_run(size: int, images: tuple[Path, ...], before: Path | None) -> dict[str, Any]:
    """One fresh session's cluster: time to ready, its timings, docker's state on every
    machine at ready, the docker steps when it has images, and its teardown."""
    spec = ClusterSpec().replace(
        provider="nspawn", instances=size, discovery="local", images=images, boot_timeout=300
    )
    sample: dict[str, Any] = {"load": load()}
    with rootfs(before):
        factory = ClusterFactory(spec)
        try:
            started = time.perf_counter()
            cluster = factory.default()
            sample["ready_s"] = time.perf_counter() - started
            sample["timings"] = dict(cluster.timings)
            sample["docker_at_ready"] = docker_states(cluster)
            if images:
                sample.update(docker_steps(cluster))
        finally:
            closing = time.perf_counter()
            factory.close()
            sample["teardown_s"] = time.perf_counter() - closing
    return sample


def engine_idle(sample: dict[str, Any]) -> bool:
    """Whether no machine's docker.service was running at ready."""
    return all(states[-1:] == ["inactive"] for states in sample["docker_at_ready"].values())


def aggregate(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per kind: ready, teardown and load summaries, median phases, how many runs had no
    engine at ready; for ``images`` the docker steps too; and the comparisons."""
    kinds: dict[str, Any] = {}
    for kind, runs in samples.items():
        if not runs:
            continue
        phases = dict.fromkeys(phase for run in runs for phase in run["timings"])
        row = {
            "runs": len(runs),
            "ready_s": summary([run["ready_s"] for run in runs]),
            "teardown_s": summary([run["teardown_s"] for run in runs]),
            "load": summary([run["load"] for run in runs]),
            "phases_median_s": {
                phase: statistics.median(
                    run["timings"][phase] for run in runs if phase in run["timings"]
                )
                for phase in phases
            },
            "engine_idle_at_ready": sum(engine_idle(run) for run in runs),
        }
        for step in ("ssh_true_s", *DOCKER_STEPS):
            if step in runs[0]:
                row[step] = summary([run[step] for run in runs])
        kinds[kind] = row
    medians = {kind: row["ready_s"]["median"] for kind, row in kinds.items()}
    comparisons = {}
    if "images" in medians and "no images" in medians:
        comparisons["images_add_s"] = medians["images"] - medians["no images"]
    if "before docker" in medians and "no images" in medians:
        comparisons["before_ratio"] = medians["no images"] / medians["before docker"]
        # The boot alone (the ``ready`` lap: the containers' systemd, etcd and sshd).
        laps = [kinds[kind]["phases_median_s"]["ready"] for kind in ("no images", "before docker")]
        comparisons["before_ready_lap_ratio"] = laps[0] / laps[1]
    if "images" in kinds:
        comparisons["first_run_s"] = kinds["images"]["first_run_s"]["median"]
    return {"kinds": kinds, "comparisons": comparisons}


def verdicts(aggregated: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target against its figure, and whether the engine was idle at every ready."""
    found = aggregated["comparisons"]
    out: list[dict[str, Any]] = [
        {"target": name, "value": found[name], "limit": limit, "met": found[name] <= limit}
        for name, limit in TARGETS.items()
        if name in found
    ]
    kinds = aggregated["kinds"]
    idle = sum(row["engine_idle_at_ready"] for row in kinds.values())
    runs = sum(row["runs"] for row in kinds.values())
    out.append(
        {"target": "engine_idle_at_ready", "value": idle, "limit": runs, "met": idle == runs}
    )
    return out


TARGET_TEXT = {
    "images_add_s": "what --coreos-images adds (median with images - median without)",
    "first_run_s": "first docker run --rm busybox true after the pull (median)",
    "before_ratio": "no images / before docker (medians): no slower",
    "engine_idle_at_ready": "docker.service inactive at ready on every machine (runs)",
}
FIGURE_TEXT = {
    "before_ready_lap_ratio": "no images / before docker, the ready lap alone (medians)",
}
ROW_TEXT = {
    "no images": "no images",
    "images": "--coreos-images busybox",
    "before docker": "before docker (rootfs of f9aa7fc)",
}
STEP_TEXT = {
    "ssh_true_s": "`true` (the SSH round trip, median of 3 per run)",
    "pull_s": "`docker pull busybox` (engine started from its socket)",
    "first_run_s": "first `docker run --rm busybox true`",
    "second_run_s": "second `docker run --rm busybox true`",
}


def render(results: dict[str, Any]) -> str:
    """The report: Markdown rows for docs/benchmarks.md, then the targets."""
    kinds = results["kinds"]
    size = results["size"]
    machine = results["machine"]
    lines = [
        f"{results['date']}, {machine['nproc']} cores ({machine['cpu']}), kernel "
        f"{machine['kernel']}; load average {results['load_start']:.2f} at the start, "
        f"{results['load_end']:.2f} at the end",
        "",
        f"| nspawn N={size} | runs | ready median | min | max | images lap (median) "
        "| teardown median | load (median, max) | docker.service inactive at ready |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, row in kinds.items():
        ready, spread = row["ready_s"], row["load"]
        images_lap = row["phases_median_s"].get("images")
        lap = "-" if images_lap is None else f"{images_lap:.3f} s"
        lines.append(
            f"| {ROW_TEXT[kind]} | {row['runs']} | {ready['median']:.3f} s "
            f"| {ready['min']:.3f} s | {ready['max']:.3f} s | {lap} "
            f"| {row['teardown_s']['median']:.3f} s "
            f"| {spread['median']:.2f}, {spread['max']:.2f} "
            f"| {row['engine_idle_at_ready']}/{row['runs']} runs |"
        )
    for kind, row in kinds.items():
        phases = ", ".join(f"{k} {v:.3f}s" for k, v in row["phases_median_s"].items())
        lines.append(f"{ROW_TEXT[kind]} phases (median): {phases}")
    if "images" in kinds:
        images = kinds["images"]
        lines += [
            "",
            f"| on core-01 of a cluster with images, over SSH ({images['runs']} runs) "
            "| median | min | max |",
            "| --- | --- | --- | --- |",
        ]
        for step, text in STEP_TEXT.items():
            figures = images[step]
            lines.append(
                f"| {text} | {figures['median']:.3f} s | {figures['min']:.3f} s "
                f"| {figures['max']:.3f} s |"
            )
    lines += ["", "Targets:"]
    for verdict in results["targets"]:
        name, value, limit = verdict["target"], verdict["value"], verdict["limit"]
        shown = (
            f"{value}/{limit}" if name == "engine_idle_at_ready" else f"{value:.3f} (<= {limit:g})"
        )
        lines.append(f"  {TARGET_TEXT[name]}: {shown} " + ("met" if verdict["met"] else "NOT met"))
    for name, text in FIGURE_TEXT.items():
        if name in results["comparisons"]:
            lines.append(f"  {text}: {results['comparisons'][name]:.3f}")
    left = results["left_running"]
    lines.append("left running: " + ("nothing" if not left else "; ".join(left)))
    return "\n".join(lines)


def current_rootfs() -> Path:
    """Today's stand-in rootfs, as the image builder finds (or builds) it."""
    built = subprocess.run(
        [sys.executable, "-m", "pytest_coreos.image", "--rootfs"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(built.stdout.strip().splitlines()[-1])


def measure(
    runs: int,
    size: int,
    images: tuple[Path, ...],
    before: Path | None,
    quiet: Callable[[], float],
) -> dict[str, list[dict[str, Any]]]:
    """``runs`` interleaved runs of each kind after one warm-up each, the order rotating
    from run to run so that no kind always follows another."""
    today = None if before is None else current_rootfs()
    plans: dict[str, tuple[tuple[Path, ...], Path | None]] = {
        "no images": ((), today),
        "images": (images, today),
    }
    if before is not None:
        plans["before docker"] = ((), before)
    for given, rootfs_path in plans.values():
        one_run(size, given, rootfs_path)
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in plans}
    order = list(plans)
    for index in range(runs):
        busy = quiet()
        for kind in order[index % len(order) :] + order[: index % len(order)]:
            sample = {**one_run(size, *plans[kind]), "others_cpu_before": busy}
            samples[kind].append(sample)
            print(
                f"[containers-bench {index + 1}/{runs} load {load():.2f}] {kind}: ready "
                f"{sample['ready_s']:.3f}s {sample['timings']}"
                + "".join(
                    f" {s} {sample[s]:.3f}s" for s in ("ssh_true_s", *DOCKER_STEPS) if s in sample
                ),
                file=sys.stderr,
            )
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "containers.json")
    add_quiet_options(parser, "before each round of runs", 300.0)
    parser.add_argument(
        "--before-rootfs",
        type=Path,
        default=None,
        metavar="PATH",
        help="a rootfs built before docker was in the image (see the docstring)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("nspawn containers need root")
    bench.PROGRAMS.update(CONTAINER_PROGRAMS)  # this process's census only
    results = run_header(
        size=args.size,
        runs=args.runs,
        before_rootfs=None if args.before_rootfs is None else str(args.before_rootfs),
        targets_set=TARGETS,
    )
    with private_root("pytest-coreos-containers-bench-") as root:
        census = ProcessCensus(root)
        try:
            archive = busybox_image(root / "busybox.tar")
            samples = measure(
                args.runs,
                args.size,
                (archive,),
                args.before_rootfs,
                lambda: wait_for_quiet(args.quiet, args.quiet_wait),
            )
        finally:
            results["left_running"] = census.leftovers()
    results["load_end"] = load()
    results.update(aggregate(samples))
    results["targets"] = verdicts(results)
    results["samples"] = samples
    print(render(results))
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 1 if results["left_running"] else 0


if __name__ == "__main__":
    sys.exit(main())
