"""What runs where, written down so that nothing outlives a dead pytest.

Every session (one ClusterFactory) keeps a JSON record in a per-user registry folder:
its owner (PID and start time), its folder, and per cluster the processes, network
namespaces, network labs' links on this host and provider resources it made. A later run reaps the records whose owner is
dead (``reap_dead``, at every session start), and ``pytest --coreos-reap`` reaps them
all, kept clusters included. The same records let a later session attach to a kept
cluster (``--coreos-reuse``) and xdist workers share one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_coreos.process import descendants_of, is_same_process, process_start_time

ProviderReaper = Callable[[Mapping[str, Any]], list[str]]


STATE_DIRECTORY_VARIABLE = "PYTEST_COREOS_STATE_DIR"


def registry_directory() -> Path:
    """The per-user folder of session records, at a fixed place so that runs with
    different ``TMPDIR`` settings still find each other's leftovers. Setting
    ``PYTEST_COREOS_STATE_DIR`` gives a run (a CI job, a test of this plugin) a registry
    of its own: it then reaps, reuses and shares only within it."""
    given = os.environ.get(STATE_DIRECTORY_VARIABLE)
    path = Path(given) if given else Path("/tmp") / f"pytest-coreos-registry-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def registry_lock() -> Iterator[None]:
    """Serialise changes to the registry between processes (xdist workers, two runs)."""
    fd = os.open(registry_directory() / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_path(session_id: str) -> Path:
    """Where session ``session_id`` keeps its record."""
    return registry_directory() / f"{session_id}.json"


def write_record(session_id: str, record: Mapping[str, Any]) -> None:
    """Write a session's record atomically (a reader never sees half of it)."""
    path = record_path(session_id)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(temporary, path)


def read_records() -> list[dict[str, Any]]:
    """Every session record in the registry (unreadable ones skipped)."""
    records = []
    for path in sorted(registry_directory().glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now, or not ours
    return records


def remove_record(session_id: str) -> None:
    """Remove a session's record, if any."""
    with contextlib.suppress(FileNotFoundError):
        record_path(session_id).unlink()


def owner_record(pid: int | None = None) -> dict[str, Any]:
    """The fields that name the process owning a session: ``pid``, by default this one
    (an xdist worker names its controller, which outlives every worker)."""
    pid = os.getpid() if pid is None else pid
    return {"owner_pid": pid, "owner_start_time": process_start_time(pid)}


def owner_alive(record: Mapping[str, Any]) -> bool:
    """True while the process that owns the record runs."""
    return is_same_process(record["owner_pid"], record.get("owner_start_time"))


def kill_recorded(processes: list[Mapping[str, Any]]) -> list[str]:
    """SIGKILL the recorded processes that still are those processes, with their groups
    and descendants; return a line for each one killed."""
    killed = []
    live = [p for p in processes if p.get("pid") and is_same_process(p["pid"], p["start_time"])]
    descendants = descendants_of([p["pid"] for p in live])
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process["pid"], signal.SIGKILL)
        killed.append(f"process {process['pid']} ({process['name']})")
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed


def delete_namespaces(names: list[str]) -> list[str]:
    """Delete the named network namespaces that exist; return what was deleted."""
    deleted = []
    for name in names:
        if Path("/run/netns", name).exists():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            deleted.append(f"network namespace {name}")
    return deleted


def delete_host_links(names: list[str]) -> list[str]:
    """Delete the named links of network labs from this namespace (with the routes
    through them); return what was deleted."""
    if not names:
        return []
    from pytest_coreos.netns import delete_host_links as delete_links  # only where labs were

    return [f"host link {name}" for name in delete_links(names)]


def reap_cluster(cluster: Mapping[str, Any], provider_reaper: ProviderReaper | None) -> list[str]:
    """Remove what one recorded cluster left: its provider's resources (VMs), its
    processes, its network namespaces and its network lab's host link."""
    removed: list[str] = []
    if provider_reaper is not None:
        removed += provider_reaper(cluster)
    removed += kill_recorded(cluster.get("processes", []))
    removed += delete_host_links(cluster.get("host_links", []))
    removed += delete_namespaces(cluster.get("namespaces", []))
    return removed


def reap_session(
    record: dict[str, Any],
    *,
    include_kept: bool,
    provider_reaper: Callable[[str], ProviderReaper | None],
) -> list[str]:
    """Reap one dead session's clusters (kept ones only if ``include_kept``) and, once
    nothing of it is kept, its discovery service, folder and record."""
    removed: list[str] = []
    clusters = record.get("clusters", {})
    for name, cluster in list(clusters.items()):
        if cluster.get("keep") and not include_kept:
            continue
        removed += reap_cluster(cluster, provider_reaper(cluster.get("provider", "local")))
        del clusters[name]
    removed += kill_recorded(record.get("discovery", []))
    record["discovery"] = []
    if clusters:
        write_record(record["session_id"], record)
        return removed
    root = Path(record["root"])
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"folder {root}")
    remove_record(record["session_id"])
    return removed


def reap(
    *, include_kept: bool, provider_reaper: Callable[[str], ProviderReaper | None]
) -> list[str]:
    """Reap every session whose owner is dead. ``include_kept`` also removes clusters
    left running on purpose (``--coreos-keep``): that is what ``--coreos-reap`` does."""
    removed: list[str] = []
    with registry_lock():
        for record in read_records():
            if owner_alive(record) or "session_id" not in record:
                continue
            removed += reap_session(
                record, include_kept=include_kept, provider_reaper=provider_reaper
            )
    return removed


_NOT_COMPARED = ("keep", "reuse", "boot_timeout")


def kept_clusters(spec: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner session id, cluster record) of each kept cluster of ``spec`` whose session
    has ended: those a new session may reuse."""
    wanted = {key: value for key, value in spec.items() if key not in _NOT_COMPARED}
    for record in read_records():
        if "session_id" not in record or owner_alive(record):
            continue
        for cluster in record.get("clusters", {}).values():
            recorded = cluster.get("spec", {})
            same = {k: v for k, v in recorded.items() if k not in _NOT_COMPARED} == wanted
            if cluster.get("keep") and same:
                yield record["session_id"], cluster


def update_cluster(session_id: str, name: str, cluster: Mapping[str, Any] | None) -> None:
    """Replace (or, with None, drop) one cluster's entry in another session's record."""
    with registry_lock():
        try:
            record = json.loads(record_path(session_id).read_text())
        except (OSError, ValueError):
            return
        if cluster is None:
            record["clusters"].pop(name, None)
        else:
            record["clusters"][name] = dict(cluster)
        if record["clusters"] or record.get("discovery"):
            write_record(session_id, record)
        else:
            root = Path(record["root"])
            shutil.rmtree(root, ignore_errors=True)
            remove_record(session_id)


def finish_record(session_id: str, record: Mapping[str, Any], handed_over: Collection[str]) -> None:
    """Write the last record of a closing session that keeps something, except that the
    entries of ``handed_over`` clusters (shared ones another xdist worker tears down) are
    left as that worker last wrote them: it may have dropped them already. With nothing
    left, the record and its folder go, as :func:`update_cluster` does."""
    with registry_lock():
        try:
            on_disk = json.loads(record_path(session_id).read_text())
        except (OSError, ValueError):
            on_disk = {"clusters": {}}
        clusters = {
            name: cluster for name, cluster in record["clusters"].items() if name not in handed_over
        }
        clusters |= {
            name: cluster
            for name, cluster in on_disk.get("clusters", {}).items()
            if name in handed_over
        }
        merged = {**record, "clusters": clusters}
        if clusters or merged.get("discovery"):
            write_record(session_id, merged)
        else:
            shutil.rmtree(Path(record["root"]), ignore_errors=True)
            remove_record(session_id)


# -- clusters shared by the workers of one xdist run ------------------------------------


def _share_path(key: str) -> Path:
    return registry_directory() / f"share-{key}.state"


@contextlib.contextmanager
def share_lock(key: str) -> Iterator[None]:
    """Held while a worker boots or attaches to the shared cluster ``key``, so exactly
    one boots it and the others wait, then attach."""
    fd = os.open(registry_directory() / f"share-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_share(key: str) -> dict[str, Any] | None:
    """The shared cluster's users count and whereabouts, if it exists."""
    try:
        share: dict[str, Any] = json.loads(_share_path(key).read_text())
    except (OSError, ValueError):
        return None
    return share


def write_share(key: str, share: Mapping[str, Any] | None) -> None:
    """Write (or, with None, remove) the shared cluster's users count and whereabouts."""
    path = _share_path(key)
    if share is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (path.parent / f"share-{key}.lock").unlink()
        return
    path.write_text(json.dumps(share))


def find_cluster(session_id: str, name: str) -> dict[str, Any] | None:
    """One cluster's entry in a session's record, if both exist."""
    try:
        record = json.loads(record_path(session_id).read_text())
    except (OSError, ValueError):
        return None
    cluster: dict[str, Any] | None = record.get("clusters", {}).get(name)
    return cluster
