"""Processes the plugin starts: each in its own session, logged to a file, ended by group.

Each process runs under ``setpriv --pdeathsig SIGKILL`` where available, so that when
pytest itself dies (even by ``kill -9``) the kernel ends the process too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_coreos.errors import ProcessError

_SETPRIV = shutil.which("setpriv")


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file, or "" when it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat), or
    None if no such live process: with the PID, it names a process unambiguously even
    after PIDs are reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == b"Z":
        return None  # a zombie is dead; it only waits for its parent
    return int(fields[19])


def is_same_process(pid: int, start_time: int | None) -> bool:
    """True if ``pid`` is alive and is the process that started at ``start_time``."""
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


class ManagedProcess:
    """One long-running program of a machine (etcd, sshd, the discovery service).

    It is either started here (``start``) or adopted from a record written by another
    pytest process (``from_record``): a kept cluster reused, or one shared by xdist
    workers. Either way it is controlled by PID and process group.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self.start_time: int | None = None

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int | None:
        """The program's process ID, once started or adopted."""
        return self._pid

    @property
    def started(self) -> bool:
        """True once the program was started (or adopted) here."""
        return self._pid is not None

    def to_record(self) -> dict[str, Any]:
        """What another pytest process needs to adopt, restart or reap this program."""
        return {
            "name": self.name,
            "argv": self.argv,
            "log_path": str(self.log_path),
            "env": self.env,
            "cwd": str(self.cwd) if self.cwd is not None else None,
            "pid": self._pid,
            "start_time": self.start_time,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, die_with_parent: bool) -> ManagedProcess:
        """Adopt a program another pytest started, from its record."""
        process = cls(
            record["name"],
            record["argv"],
            log_path=Path(record["log_path"]),
            env=record["env"],
            cwd=Path(record["cwd"]) if record["cwd"] is not None else None,
            die_with_parent=die_with_parent,
        )
        if record["pid"] is not None and is_same_process(record["pid"], record["start_time"]):
            process._pid = record["pid"]
            process.start_time = record["start_time"]
        return process

    def start(self) -> None:
        """Start the program; its output is appended to its log file."""
        if self.running:
            return
        argv = self.argv
        if self.die_with_parent and _SETPRIV is not None:
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        # A bare descriptor, not a file object: an interrupt (Ctrl-C during boot) landing
        # between opening and handing it over must not leave a half-owned file behind.
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            raise ProcessError(self.name, f"could not start {argv[0]}: {error}") from error
        finally:
            os.close(log)
        self._pid = self.popen.pid
        self.start_time = process_start_time(self.popen.pid)

    @property
    def running(self) -> bool:
        """True while the program runs (by PID and start time when adopted)."""
        if self._pid is None:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        return is_same_process(self._pid, self.start_time)

    @property
    def exit_status(self) -> int | None:
        """Its exit status once exited, when it is our child; else None."""
        return self.popen.poll() if self.popen is not None else None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the program's whole process group."""
        if self._pid is None or not self.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._pid, signum)

    def kill(self) -> None:
        """SIGKILL the group and every descendant at once, and reap the program."""
        kill_all([self])

    def terminate(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL what is still running after ``grace`` seconds."""
        descendants = descendants_of([self._pid] if self.running and self._pid else [])
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        _signal_pids(descendants, signal.SIGTERM)
        if not self.wait(grace):
            self.kill()
        _signal_pids(descendants, signal.SIGKILL)

    def wait(self, timeout: float) -> bool:
        """Wait for the program to exit; True if it did within ``timeout``."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.running:  # adopted: not our child, so poll /proc
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def detach(self) -> None:
        """Let the program outlive this pytest (``--coreos-keep``): forget the Popen, so
        that it is neither waited for nor reported as a leak, and go on by PID."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.returncode = 0  # Popen's finaliser would warn of a running child
        self.popen = None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of its log."""
        return tail(self.log_path, lines)


def descendants_of(pids: Sequence[int]) -> list[int]:
    """Every live descendant of ``pids``, found in one pass over /proc. Needed because
    some children leave their parent's process group (sshd's per-connection processes call
    setsid), so killing the group alone would miss them."""
    if not pids:
        return []
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = list(pids)
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def wait_stopped(pids: Sequence[int], timeout: float = 1.0) -> bool:
    """Wait until every thread of ``pids`` is stopped (SIGSTOP returns before the threads
    that are inside a system call have stopped); True if they all did within ``timeout``.
    A process that is gone counts as stopped."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                break
            states = []
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/stat", "rb") as stat:
                        states.append(stat.read().rsplit(b")", 1)[1].split()[0])
                except OSError:
                    continue
            if all(state in (b"T", b"t", b"Z", b"X") for state in states):
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
    return True


def _signal_pids(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def kill_all(processes: Sequence[ManagedProcess]) -> None:
    """SIGKILL every group and descendant first, then reap, so no member waits for another
    (SIGTERM to all members at once can stall for seconds in leader transfer)."""
    live = [p.pid for p in processes if p.pid is not None and p.running]
    descendants = descendants_of(live)
    for process in processes:
        process.signal(signal.SIGCONT)  # a paused group must not keep its children stopped
        process.signal(signal.SIGKILL)
    _signal_pids(descendants, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    for process in processes:
        process.wait(max(0.0, deadline - time.monotonic()))
