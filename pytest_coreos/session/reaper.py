"""The reaper: removes what runs of a dead pytest left (processes, network namespaces,
VMs, folders), found through their records in the state registry."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_coreos.errors import ConfigError
from pytest_coreos.host.process import descendants_of, is_same_process
from pytest_coreos.providers import DEFAULT_PROVIDER, get_provider
from pytest_coreos.session.registry import (
    owner_alive,
    read_records,
    registry_lock,
    remove_record,
    write_record,
)


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


def provider_leftovers(cluster: Mapping[str, Any]) -> list[str]:
    """What the cluster's provider alone knows how to remove (VMs, cgroups); nothing
    where that provider cannot be loaded here."""
    try:
        return get_provider(cluster.get("provider", DEFAULT_PROVIDER)).reap(cluster)
    except (ImportError, ConfigError):
        return []


def delete_host_links(names: list[str]) -> list[str]:
    """Delete the named links of network labs from this namespace (with the routes
    through them); return what was deleted."""
    if not names:
        return []
    from pytest_coreos.host.netns import delete_host_links as delete_links  # only where labs were

    return [f"host link {name}" for name in delete_links(names)]


def reap_cluster(cluster: Mapping[str, Any]) -> list[str]:
    """Remove what one recorded cluster left: its provider's resources (VMs), its
    processes, its network namespaces and its network lab's host link."""
    removed = provider_leftovers(cluster)
    removed += kill_recorded(cluster.get("processes", []))
    removed += delete_host_links(cluster.get("host_links", []))
    removed += delete_namespaces(cluster.get("namespaces", []))
    return removed


def reap_session(
    record: dict[str, Any],
    *,
    include_kept: bool,
) -> list[str]:
    """Reap one dead session's clusters (kept ones only if ``include_kept``) and, once
    nothing of it is kept, its discovery service, folder and record."""
    removed: list[str] = []
    clusters = record.get("clusters", {})
    for name, cluster in list(clusters.items()):
        if cluster.get("keep") and not include_kept:
            continue
        removed += reap_cluster(cluster)
        del clusters[name]
    removed += kill_recorded(record.get("discovery", []))
    record["discovery"] = []
    if clusters or (not include_kept and _keeps_failed_boot_logs(record)):
        write_record(record["session_id"], record)
        return removed
    root = Path(record["root"])
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
        removed.append(f"folder {root}")
    remove_record(record["session_id"])
    return removed


# A boot that failed leaves its folder, whose logs are the diagnosis, for this long (or
# until ``pytest --coreos-reap``).
FAILED_BOOT_KEPT_DAYS = 7


def _keeps_failed_boot_logs(record: Mapping[str, Any]) -> bool:
    failed_at = record.get("failed_boot_at")
    return failed_at is not None and time.time() - failed_at < FAILED_BOOT_KEPT_DAYS * 86400


def reap(*, include_kept: bool) -> list[str]:
    """Reap every session whose owner is dead. ``include_kept`` also removes clusters
    left running on purpose (``--coreos-keep``): that is what ``--coreos-reap`` does."""
    removed: list[str] = []
    with registry_lock():
        for record in read_records():
            if owner_alive(record) or "session_id" not in record:
                continue
            removed += reap_session(record, include_kept=include_kept)
    return removed
