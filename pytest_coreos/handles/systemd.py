"""systemd units on a cluster's machines, over SSH: one machine's units through
:class:`Systemd` (``machine.systemd``), one unit on many machines at once through
:class:`Units` (``cluster.units``).

Only machines that run systemd have units: nspawn containers, Vagrant VMs and attached
machines. The local provider's machines are processes on this host, so their handles
refuse every call rather than reach this host's own systemd.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pytest_coreos.config.units import UNIT_NAME
from pytest_coreos.errors import BootTimeoutError, CoreOSError, UnitError, UnitsError
from pytest_coreos.handles.ssh import CommandResult, SSHClient
from pytest_coreos.waiting import NotReady, poll

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.handles.machine import Machine

T = TypeVar("T")

PERSISTENT_UNITS = "/etc/systemd/system"
RUNTIME_UNITS = "/run/systemd/system"
# What ``systemctl show`` is asked for: the fields of UnitStatus.
PROPERTIES = (
    "Id",
    "Description",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "Result",
    "UnitFileState",
    "ExecMainStatus",
)
# The values of a unit's ActiveState (systemd 252; "maintenance" and "refreshing" came
# later): waiting for anything else would only ever time out.
ACTIVE_STATES = frozenset(
    {
        "active",
        "reloading",
        "inactive",
        "failed",
        "activating",
        "deactivating",
        "maintenance",
        "refreshing",
    }
)
# Load states a unit stays in until its file is fixed and systemd reloaded: a wait for
# any active state fails at once on them.
BROKEN_LOAD_STATES = frozenset({"error", "bad-setting", "masked"})
# systemd's own default start and stop timeout (DefaultTimeoutStartSec).
JOB_TIMEOUT = 90.0
# systemctl's own limit for daemon-reload (twice the default job timeout): a reload runs
# every generator and reads every unit again, which takes seconds on an emulated VM.
RELOAD_TIMEOUT = 2 * JOB_TIMEOUT
QUERY_TIMEOUT = 30.0
ERROR_JOURNAL_LINES = 20
NO_SYSTEMD = (
    "the local provider runs no systemd (its machines are etcd and sshd processes on this "
    "host); use --coreos-provider=nspawn or --coreos-provider=vagrant to test systemd units"
)
_SUFFIXED = re.compile(r"\.[a-z]+$")


def unit_name(name: str) -> str:
    """``name`` as a full unit name: ``.service`` is added to a name without a unit
    type, as systemctl does. Names are checked by the rule the box's agent applies to
    ``coreos.units``; anything else is a ValueError."""
    full = name if _SUFFIXED.search(name) else f"{name}.service"
    if not UNIT_NAME.fullmatch(full):
        raise ValueError(
            f"{name!r} is not a systemd unit name (letters, digits and :_.\\@- followed by "
            ".service, .timer, .socket, ...)"
        )
    return full


@dataclass(frozen=True)
class UnitStatus:
    """What systemd says about one unit of one machine (``systemctl show``)."""

    name: str
    description: str
    load_state: str  # loaded, not-found, bad-setting, error, masked
    active_state: str  # active, inactive, failed, activating, deactivating, reloading
    sub_state: str  # running, exited, dead, failed, auto-restart, ... (by unit type)
    main_pid: int | None  # None when no main process runs
    result: str  # success, exit-code, signal, timeout, core-dump, ...
    unit_file_state: str  # enabled, disabled, static, ... ("" for a unit with no file)
    exit_status: int | None  # of the last main process (services only)

    @property
    def active(self) -> bool:
        """True while the unit is active (running, or a oneshot that remains)."""
        return self.active_state == "active"

    @property
    def failed(self) -> bool:
        """True once the unit has failed (until it is started again or reset)."""
        return self.active_state == "failed"

    def __str__(self) -> str:
        text = f"{self.name} {self.active_state} ({self.sub_state})"
        if self.load_state != "loaded":
            text += f", {self.load_state}"
        if self.result not in ("", "success"):
            text += f", result {self.result}"
        if self.exit_status:
            text += f", exit status {self.exit_status}"
        return text


def parse_unit_status(text: str, unit: str = "") -> UnitStatus:
    """A :class:`UnitStatus` from the ``KEY=value`` lines of ``systemctl show
    --property=...`` for one unit (systemd prints them in an order of its own).
    ``unit`` names it if the output has no ``Id``; missing fields stay empty."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value
    name = values.get("Id") or unit
    if not name or "ActiveState" not in values:
        raise ValueError(f"not the output of systemctl show for a unit: {text[:200]!r}")

    def number(key: str) -> int | None:
        value = values.get(key, "")
        return int(value) if value.isdigit() else None

    return UnitStatus(
        name=name,
        description=values.get("Description", ""),
        load_state=values.get("LoadState", ""),
        active_state=values["ActiveState"],
        sub_state=values.get("SubState", ""),
        main_pid=number("MainPID") or None,  # 0: no main process
        result=values.get("Result", ""),
        unit_file_state=values.get("UnitFileState", ""),
        exit_status=number("ExecMainStatus"),
    )


def journal_text(output: str) -> str:
    """journalctl's output without its ``-- No entries --`` line."""
    return "" if output.strip() == "-- No entries --" else output


class Systemd:
    """The systemd of one machine, driven with ``systemctl`` and ``journalctl`` over the
    machine's SSH handle (through ``sudo -n`` unless it logs in as root)."""

    def __init__(self, ssh: SSHClient, machine: str, *, available: bool = True) -> None:
        self.ssh = ssh
        self.machine = machine
        # False where the machine runs no systemd (the local provider): every call says so
        # rather than reach whatever systemd runs on the machine's host.
        self.available = available

    def __repr__(self) -> str:
        return f"<Systemd of {self.machine}>"

    # -- running commands ------------------------------------------------------------
    def _require(self) -> None:
        if not self.available:
            raise UnitError(self.machine, NO_SYSTEMD)

    def _privileged(self, argv: Sequence[str]) -> list[str]:
        return list(argv) if self.ssh.username == "root" else ["sudo", "-n", *argv]

    def _run(
        self, argv: Sequence[str], *, timeout: float = QUERY_TIMEOUT, input: str | None = None
    ) -> CommandResult:
        self._require()
        return self.ssh.run(self._privileged(argv), check=False, timeout=timeout, input=input)

    def _systemctl(self, *args: str, unit: str = "", timeout: float = QUERY_TIMEOUT) -> None:
        """``systemctl ARGS``; a non-zero exit raises UnitError with the unit's state and
        journal (when about a unit)."""
        result = self._run(["systemctl", *args], timeout=timeout)
        if result.ok:
            return
        problem = f"{result.command!r} exited with status {result.exit_status}"
        said = result.stderr.strip().splitlines()
        if said:  # its first line says what; the rest points to systemctl status
            problem += f" ({said[0]})"
        if not unit:
            raise UnitError(self.machine, problem)
        status = self._status_or_none(unit)
        if status is not None:
            problem += f"; now {status}"
        raise UnitError(self.machine, problem, self._error_journal(unit), unit=unit, status=status)

    def _command_error(self, result: CommandResult, unit: str) -> UnitError:
        problem = f"{result.command!r} exited with status {result.exit_status}"
        if result.stderr.strip():
            problem += f": {result.stderr.strip()}"
        return UnitError(self.machine, problem, unit=unit)

    def _status_or_none(self, unit: str) -> UnitStatus | None:
        try:
            return self.status(unit)
        except CoreOSError:
            return None

    def _error_journal(self, unit: str) -> str:
        """The journal tail an error shows; what went wrong fetching it, if anything did."""
        try:
            return self.journal(unit, lines=ERROR_JOURNAL_LINES)
        except CoreOSError as error:
            return f"(no journal: {error})"

    # -- reading ---------------------------------------------------------------------
    def status(self, unit: str) -> UnitStatus:
        """The unit's state (a unit systemd does not know has load state ``not-found``)."""
        unit = unit_name(unit)
        result = self._run(["systemctl", "show", "--property=" + ",".join(PROPERTIES), unit])
        if not result.ok:
            raise self._command_error(result, unit)
        return parse_unit_status(result.stdout, unit)

    def is_active(self, unit: str) -> bool:
        """True if the unit is active now."""
        return self.status(unit).active

    def journal(self, unit: str, lines: int = 50) -> str:
        """The last ``lines`` lines of the unit's journal, with microsecond timestamps
        ("" if it has none), including everything the unit printed until now."""
        unit = unit_name(unit)
        # journald reads what services print asynchronously: without a sync, the last
        # lines of a unit that just failed can still be on their way.
        self._run(["journalctl", "--sync"])
        result = self._run(
            ["journalctl", "--no-pager", "-o", "short-precise", "-n", str(lines), "-u", unit]
        )
        if not result.ok:
            raise self._command_error(result, unit)
        return journal_text(result.stdout)

    # -- changing --------------------------------------------------------------------
    def start(self, unit: str, *, timeout: float = JOB_TIMEOUT) -> UnitStatus:
        """Start the unit and wait for its start job, as ``systemctl start`` does; a start
        that fails raises UnitError with the unit's state and journal."""
        return self._job("start", unit, timeout)

    def stop(self, unit: str, *, timeout: float = JOB_TIMEOUT) -> UnitStatus:
        """Stop the unit and wait until it has stopped."""
        return self._job("stop", unit, timeout)

    def restart(self, unit: str, *, timeout: float = JOB_TIMEOUT) -> UnitStatus:
        """Stop the unit if it runs, then start it."""
        return self._job("restart", unit, timeout)

    def try_restart(self, unit: str, *, timeout: float = JOB_TIMEOUT) -> None:
        """Restart the unit if it runs; leave it alone if it does not."""
        unit = unit_name(unit)
        self._systemctl("try-restart", unit, unit=unit, timeout=timeout)

    def _job(self, verb: str, unit: str, timeout: float) -> UnitStatus:
        unit = unit_name(unit)
        self._systemctl(verb, unit, unit=unit, timeout=timeout)
        return self.status(unit)

    def enable(self, unit: str, *, now: bool = False, runtime: bool = False) -> None:
        """Enable the unit (as its ``[Install]`` section says); ``now`` starts it too,
        ``runtime`` enables it until the next boot only."""
        unit = unit_name(unit)
        flags = [*(["--now"] if now else []), *(["--runtime"] if runtime else [])]
        self._systemctl("enable", *flags, unit, unit=unit)

    def disable(self, unit: str, *, now: bool = False) -> None:
        """Disable the unit; ``now`` stops it too."""
        unit = unit_name(unit)
        self._systemctl("disable", *(["--now"] if now else []), unit, unit=unit)

    def daemon_reload(self) -> None:
        """Make systemd read its unit files again."""
        self._systemctl("daemon-reload", timeout=RELOAD_TIMEOUT)

    def install(self, name: str, content: str, *, runtime: bool = False) -> str:
        """Write unit file ``name`` (in /etc/systemd/system, or /run/systemd/system with
        ``runtime``, gone at the next boot) and reload systemd; return its path. Nothing
        is started: that is :meth:`start` (or :meth:`enable` with ``now``)."""
        path = self._write_unit(name, content, runtime=runtime)
        self.daemon_reload()
        return path

    def _write_unit(self, name: str, content: str, *, runtime: bool) -> str:
        name = unit_name(name)
        path = f"{RUNTIME_UNITS if runtime else PERSISTENT_UNITS}/{name}"
        written = self._run(
            ["sh", "-c", 'umask 022 && mkdir -p "${1%/*}" && cat > "$1"', "sh", path],
            input=content,
        )
        if not written.ok:
            raise UnitError(
                self.machine,
                f"cannot write {path} (status {written.exit_status}): {written.stderr.strip()}",
                unit=name,
            )
        self.ssh.deployed.units.add(name)
        return path

    def remove(self, name: str) -> None:
        """Stop and disable the unit, delete its files (persistent and runtime), reload
        systemd and forget that it failed."""
        name = unit_name(name)
        # One reload, after the files are gone: disable's own would be a second one.
        self._run(["systemctl", "--no-reload", "disable", "--now", name], timeout=JOB_TIMEOUT)
        self._run(["rm", "-f", f"{PERSISTENT_UNITS}/{name}", f"{RUNTIME_UNITS}/{name}"])
        self.daemon_reload()
        self._run(["systemctl", "reset-failed", name])
        self.ssh.deployed.units.discard(name)

    # -- waiting ---------------------------------------------------------------------
    def wait_until(self, unit: str, state: str = "active", *, timeout: float = 30.0) -> UnitStatus:
        """Wait until the unit's active state is ``state`` and return its status.

        A unit that fails meanwhile (unless ``failed`` is awaited) or whose file is broken
        or masked ends the wait at once; that and a timeout raise UnitError naming the
        state seen, with the tail of the unit's journal.
        """
        unit = unit_name(unit)
        if state not in ACTIVE_STATES:
            allowed = ", ".join(sorted(ACTIVE_STATES))
            raise ValueError(f"{state!r} is not a unit's active state; one of: {allowed}")
        self._require()
        seen: list[UnitStatus] = []

        def check() -> UnitStatus:
            status = self.status(unit)
            seen[:] = [status]
            if status.active_state == state:
                return status
            if status.failed and state != "failed":
                raise self._unit_error(status, f"{unit} failed while waiting for {state}")
            if status.load_state in BROKEN_LOAD_STATES:
                raise self._unit_error(status, f"{unit} cannot become {state}")
            raise NotReady(str(status))

        try:
            return poll(
                check, what=f"{unit} on {self.machine}", timeout=timeout, interval=0.02,
                max_interval=0.25,
            )  # fmt: skip
        except BootTimeoutError as error:
            last = seen[0] if seen else None
            problem = f"{unit} not {state} after {timeout:g}s; last seen: {last or 'nothing'}"
            raise UnitError(
                self.machine, problem, self._error_journal(unit), unit=unit, status=last
            ) from error

    def _unit_error(self, status: UnitStatus, problem: str) -> UnitError:
        return UnitError(
            self.machine,
            f"{problem}: {status}",
            self._error_journal(status.name),
            unit=status.name,
            status=status,
        )


class Units:
    """One unit on many machines of a cluster at once (``cluster.units``): each call works
    on every running machine, or on those given (``Machine`` objects or names), in
    parallel, and returns each machine's :class:`UnitStatus` by machine name. Where it
    fails on any machine it raises one :class:`UnitsError` naming each of them."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def __repr__(self) -> str:
        return f"<Units of {self.cluster!r}>"

    def _machines(self, machines: Iterable[Machine | str] | None) -> list[Machine]:
        if machines is None:
            chosen = [machine for machine in self.cluster.machines if machine.running]
        else:
            chosen = [self.cluster[m] if isinstance(m, str) else m for m in machines]
        for machine in chosen:
            if not machine.systemd.available:
                raise UnitError(machine.name, NO_SYSTEMD)
        return chosen

    def _each(
        self,
        unit: str,
        machines: Iterable[Machine | str] | None,
        action: Callable[[Machine], T],
        doing: str,
    ) -> dict[str, T]:
        chosen = self._machines(machines)
        if not chosen:
            return {}
        with ThreadPoolExecutor(len(chosen), thread_name_prefix="coreos-units") as pool:
            futures = {machine.name: pool.submit(action, machine) for machine in chosen}
        results: dict[str, T] = {}
        errors: list[UnitError] = []
        for name, future in futures.items():
            error = future.exception()
            if error is None:
                results[name] = future.result()
            elif isinstance(error, UnitError):
                errors.append(error)
            elif isinstance(error, CoreOSError):
                wrapped = UnitError(name, f"{doing} {unit}: {error}", unit=unit)
                wrapped.__cause__ = error
                errors.append(wrapped)
            else:
                raise error
        if errors:
            raise UnitsError(unit, f"{doing} {unit}", len(chosen), errors)
        return results

    def deploy(
        self,
        name: str,
        content: str,
        machines: Iterable[Machine | str] | None = None,
        *,
        state: str = "active",
        enable: bool = False,
        runtime: bool = False,
        timeout: float = 30.0,
    ) -> dict[str, UnitStatus]:
        """Install unit file ``name`` with ``content`` on the machines (until the next
        boot with ``runtime``), start it (enable it too with ``enable``) and wait until it
        is ``state`` on each of them.

        ``timeout`` is the unit's: from its start until it is ``state``. Writing its file
        and the one daemon-reload before the start are bounded by their own limits (as
        systemctl's), not by it: a reload takes seconds on an emulated VM, and a budget
        spent on it would be missing from the unit's start."""
        name = unit_name(name)

        def deploy_on(machine: Machine) -> UnitStatus:
            systemd = machine.systemd
            systemd._write_unit(name, content, runtime=runtime)
            if enable:  # before the reload, which then is the only one
                flags = ["--runtime"] if runtime else []
                systemd._systemctl("--no-reload", "enable", *flags, name, unit=name)
            systemd.daemon_reload()
            deadline = time.monotonic() + timeout
            try:
                systemd.start(name, timeout=timeout)
            except UnitError:
                if state != "failed":
                    raise
            return systemd.wait_until(name, state, timeout=max(deadline - time.monotonic(), 0.1))

        return self._each(name, machines, deploy_on, "deploying")

    def wait(
        self,
        name: str,
        state: str = "active",
        machines: Iterable[Machine | str] | None = None,
        *,
        timeout: float = 30.0,
    ) -> dict[str, UnitStatus]:
        """Wait until the unit is ``state`` on each of the machines (see
        :meth:`Systemd.wait_until`)."""
        name = unit_name(name)
        return self._each(
            name,
            machines,
            lambda machine: machine.systemd.wait_until(name, state, timeout=timeout),
            f"waiting for {state} of",
        )

    def status(
        self, name: str, machines: Iterable[Machine | str] | None = None
    ) -> dict[str, UnitStatus]:
        """The unit's status on each of the machines."""
        name = unit_name(name)
        return self._each(name, machines, lambda m: m.systemd.status(name), "reading")

    def remove(self, name: str, machines: Iterable[Machine | str] | None = None) -> None:
        """Stop, disable and delete the unit on each of the machines."""
        name = unit_name(name)
        self._each(name, machines, lambda m: m.systemd.remove(name), "removing")
