"""Returning a cluster of VMs to its state at ready (``Cluster.reset``), over SSH: shared
by the providers whose machines are VMs (vagrant, qemu), each of which starts its halted
machines again itself (``revive``).

At ready every VM's etcd is frozen (SIGSTOP, all VMs before any copy), its data folder
copied beside it inside the VM (``cp --sparse=always``: etcd's preallocated log segments
are not written out), and thawed. A restore stops every member's etcd unit, puts every
copy back, then starts them all: no member runs on restored data while another still
runs on the old. What a VM runs is learnt from the running etcd itself: its unit (from its
cgroup) and its data folder (``--data-dir`` or ``ETCD_DATA_DIR``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from pytest_coreos.errors import CoreOSError, ResetError

if TYPE_CHECKING:
    from pytest_coreos.handles.ssh import SSHClient
    from pytest_coreos.providers.protocol import BootContext

T = TypeVar("T")


class VM(Protocol):
    """A machine reached over SSH (None until it booted)."""

    name: str

    @property
    def ssh(self) -> SSHClient | None: ...


class VMDeployment(Protocol):
    """A deployment of such machines."""

    context: BootContext

    @property
    def machines(self) -> Sequence[VM]: ...


# Prints "PID UNIT DATA_DIR" of the VM's etcd.
_FIND_ETCD = r"""
pid=$(pgrep -o -x etcd) || { echo "no etcd runs" >&2; exit 1; }
setting() {
  value=$(tr '\0' '\n' < /proc/$pid/cmdline | sed -n "s/^--$1=//p")
  [ -n "$value" ] || value=$(tr '\0' '\n' < /proc/$pid/environ | sed -n "s/^$2=//p")
  echo "$value"
}
unit=$(sed -n 's#.*/\([^/]*\.service\).*#\1#p' /proc/$pid/cgroup | tail -n 1)
dir=$(setting data-dir ETCD_DATA_DIR)
[ -n "$dir" ] || { name=$(setting name ETCD_NAME); dir=${name:-default}.etcd; }
case $dir in /*) ;; *) dir=$(readlink -f /proc/$pid/cwd)/$dir ;; esac
[ -n "$unit" ] && [ -d "$dir" ] || { echo "etcd $pid: unit '$unit', data '$dir'" >&2; exit 1; }
echo "$pid $unit $dir"
"""
_COPY = 'rm -rf "$1.at-ready" && cp -a --sparse=always "$1" "$1.at-ready"'
_CHECK_COPY = (
    '[ -d "$1.at-ready" ] || { echo "no saved copy of the etcd data at $1.at-ready" >&2; exit 1; }'
)
_STOP = 'systemctl kill --signal=SIGKILL "$1"; systemctl stop "$1" && ! pgrep -x etcd >/dev/null'
_PUT_BACK = (
    'find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} + && '
    'cp -a --sparse=always "$1.at-ready/." "$1/"'
)
_START = 'systemctl reset-failed "$1"; systemctl start --no-block "$1"'


@dataclass(frozen=True)
class EtcdInVM:
    """One VM's etcd as found at ready."""

    unit: str
    data_dir: str


def _run(machine: VM, script: str, *args: str) -> str:
    """``script`` as root on the VM, with ``args`` as $1...; its output, or a ResetError."""
    ssh = machine.ssh
    if ssh is None:
        raise ResetError(machine.name, "it has no SSH handle")
    argv = ["sh", "-c", script, "sh", *args]
    if ssh.username != "root":
        argv = ["sudo", "-n", *argv]
    try:
        result = ssh.run(argv, check=False, timeout=120)
    except CoreOSError as error:
        raise ResetError(machine.name, str(error)) from error
    if not result.ok:
        raise ResetError(machine.name, result.stderr.strip() or f"status {result.exit_status}")
    return result.stdout


def _each(machines: Sequence[VM], step: Callable[[VM], T]) -> list[T]:
    """``step`` on every VM at once; the first error is raised once all are done."""
    with ThreadPoolExecutor(len(machines), thread_name_prefix="coreos-vm-reset") as pool:
        futures = [pool.submit(step, machine) for machine in machines]
    return [future.result() for future in futures]


# Each deployment's etcd per VM, as found at ready.
_SAVED: weakref.WeakKeyDictionary[VMDeployment, dict[str, EtcdInVM]] = weakref.WeakKeyDictionary()


def save_ready(deployment: VMDeployment) -> None:
    """Copy every VM's etcd data folder inside the VM, all members frozen meanwhile."""
    machines = deployment.machines
    found = _each(machines, lambda machine: _run(machine, _FIND_ETCD).split())
    etcds = {
        m.name: EtcdInVM(unit, data_dir)
        for m, (_, unit, data_dir) in zip(machines, found, strict=True)
    }
    pids = {m.name: pid for m, (pid, _, _) in zip(machines, found, strict=True)}
    _each(machines, lambda machine: _run(machine, 'kill -STOP "$1"', pids[machine.name]))
    try:
        _each(machines, lambda m: _run(m, _COPY, etcds[m.name].data_dir))
    finally:
        _each(machines, lambda machine: _run(machine, 'kill -CONT "$1"', pids[machine.name]))
    _SAVED[deployment] = etcds


def wait_for_etcd(machines: Sequence[VM], timeout: float) -> None:
    """Wait until every machine, booted again, runs etcd (restore() stops it: one that
    started only then would run on the data half put back); a ResetError naming the first
    that runs none within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for machine in machines:
        while True:
            try:
                _run(machine, _FIND_ETCD)
                break
            except ResetError as error:
                if time.monotonic() > deadline:
                    raise ResetError(
                        machine.name, f"started again but runs no etcd: {error}"
                    ) from error
                time.sleep(0.5)


def restore(deployment: VMDeployment) -> None:
    """Stop every VM's etcd, put every copy back, then start them all."""
    etcds = _SAVED.get(deployment, {})
    machines = deployment.machines
    if len(etcds) != len(machines):
        raise ResetError(deployment.context.workdir.name, "no copy of etcd's data taken at ready")
    _each(machines, lambda m: _run(m, _CHECK_COPY, etcds[m.name].data_dir))
    _each(machines, lambda m: _run(m, _STOP, etcds[m.name].unit))
    _each(machines, lambda m: _run(m, _PUT_BACK, etcds[m.name].data_dir))
    _each(machines, lambda m: _run(m, _START, etcds[m.name].unit))
