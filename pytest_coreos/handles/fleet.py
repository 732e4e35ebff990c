"""fleet, CoreOS's cluster-wide scheduler, driven through ``fleetctl`` on a machine.

:class:`Fleet` runs ``fleetctl`` over SSH on one machine of a cluster (``cluster.fleet``),
so it talks to that machine's own fleet and etcd exactly as a user logged in there would.
The parsers read fleetctl's script-friendly listings (``--no-legend --full --fields=...``)
and are pure functions over text.

fleet was retired by CoreOS in 2018 and no distribution packages it: the stand-in
machines (nspawn, the stand-in Vagrant box) get it from ``--coreos-fleet``, a real CoreOS
cluster (``--coreos-provider=ssh``) has its own. Where ``fleetctl`` is missing, the first
command says so, and how to give it, with a :class:`FleetError`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_coreos.config.fleet_env import HOW_TO_GIVE_FLEET, agent_ttl_seconds
from pytest_coreos.errors import BootTimeoutError, CoreOSError, FleetError, SSHError
from pytest_coreos.waiting import NotReady, poll

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.handles.machine import Machine
    from pytest_coreos.handles.ssh import CommandResult

# The columns each listing is asked for, in this order. Every one is documented since
# fleet 0.10 (``target`` replaced ``tmachine`` there); none can hold whitespace.
UNIT_FIELDS = ("unit", "machine", "active", "sub", "load", "hash")
UNIT_FILE_FIELDS = ("unit", "hash", "dstate", "state", "target")
MACHINE_FIELDS = ("machine", "ip", "metadata")
# What fleetctl prints for a column with no value.
EMPTY = "-"
# The shell's status for a command it cannot find.
COMMAND_NOT_FOUND = 127
# ``fleetctl status`` passes on systemctl's status: 3 is a loaded unit that is not running,
# whose status text is still the answer.
STATUS_NOT_RUNNING = 3
# A minute, plus the cluster's agent TTL (see default_timeout).
DEFAULT_TIMEOUT = 60.0
# States a wait may ask for that a failed unit is in, or may go through.
FAILED_STATES = frozenset({"failed", "inactive", "dead", "loaded"})
JOURNAL_LINES = 20
# fleet's own functional tests poll its listings every 250 ms.
POLL_INTERVAL = 0.05
POLL_MAX_INTERVAL = 0.25

MISSING_FLEETCTL_HINT = (
    "fleet was retired by CoreOS in 2018 and has no package today, so the plugin's "
    f"stand-in machines have it only when given: {HOW_TO_GIVE_FLEET}. A real CoreOS "
    "cluster has its own (--coreos-provider=ssh --coreos-hosts=core@host1,...); "
    "fleetctl= names a fleetctl elsewhere on the machines"
)
NO_SYSTEMD_HINT = (
    "the local provider's machines are etcd and sshd processes on this host, with no "
    "systemd, so no fleet can run there: use --coreos-provider=nspawn (or vagrant) with "
    "--coreos-fleet=PATH|URL"
)


@dataclass(frozen=True)
class FleetUnit:
    """One row of ``fleetctl list-units``: a unit loaded on a machine, as that machine's
    systemd last reported it. A global unit has a row per machine."""

    unit: str
    machine_id: str | None
    machine_ip: str | None
    active: str | None
    sub: str | None
    load: str | None
    hash: str | None

    def reports(self, state: str) -> bool:
        """True if its load, active or sub state is ``state`` (``loaded``, ``active``,
        ``running``...)."""
        return state in (self.load, self.active, self.sub)

    @property
    def machine(self) -> str | None:
        """Its machine as fleetctl shows it, ``ID/IP`` (``ID`` alone without an IP)."""
        if self.machine_id is None:
            return None
        return (
            self.machine_id if self.machine_ip is None else f"{self.machine_id}/{self.machine_ip}"
        )


@dataclass(frozen=True)
class FleetUnitFile:
    """One row of ``fleetctl list-unit-files``: a unit fleet knows, loaded or not.

    ``dstate`` is the state asked for, ``state`` the one reached (``inactive``,
    ``loaded``, ``launched``); ``target`` is ``global`` or the machine it is scheduled on.
    """

    unit: str
    hash: str | None
    dstate: str | None
    state: str | None
    target: str | None

    @property
    def is_global(self) -> bool:
        """True for a unit that runs on every (matching) machine."""
        return self.target == "global"

    @property
    def machine_id(self) -> str | None:
        """The ID of the machine it is scheduled on, if one."""
        return None if self.is_global else _machine_legend(self.target)[0]

    @property
    def machine_ip(self) -> str | None:
        """The public IP of the machine it is scheduled on, if fleet knows it."""
        return None if self.is_global else _machine_legend(self.target)[1]


@dataclass(frozen=True)
class FleetMachine:
    """One row of ``fleetctl list-machines``: a machine whose fleet is in the cluster."""

    machine_id: str
    ip: str | None
    metadata: dict[str, str] = field(default_factory=dict)


# -- parsing -------------------------------------------------------------------------------


def _rows(output: str, fields: Sequence[str]) -> list[dict[str, str | None]]:
    """The rows of a fleetctl listing, each as ``{field: value}`` (``-`` becomes None).

    fleetctl aligns its columns with tabs (one or more); the rendered samples of its
    documentation use spaces. Either splits on whitespace, as no column holds any. A
    header line (the upper-cased field names, as without ``--no-legend``) is skipped.
    """
    legend = [name.upper() for name in fields]
    rows = []
    for line in output.splitlines():
        if not line.strip():
            continue
        columns = line.split()
        if columns == legend:
            continue
        if len(columns) != len(fields):
            raise ValueError(
                f"expected {len(fields)} columns ({','.join(fields)}), got {len(columns)} "
                f"in line {line!r}"
            )
        rows.append(
            {
                name: None if value == EMPTY else value
                for name, value in zip(fields, columns, strict=True)
            }
        )
    return rows


def _machine_legend(legend: str | None) -> tuple[str | None, str | None]:
    """Split fleetctl's machine column, ``ID/IP`` or ``ID`` alone, into (id, ip)."""
    if legend is None:
        return None, None
    machine_id, _, ip = legend.partition("/")
    return machine_id, ip or None


def parse_metadata(text: str | None) -> dict[str, str]:
    """fleet's machine metadata column, ``k=v,k2=v2`` (``-`` for none), as a dict."""
    if text is None or text == EMPTY:
        return {}
    metadata = {}
    for pair in text.split(","):
        key, equals, value = pair.partition("=")
        if not equals:
            raise ValueError(f"metadata {text!r}: {pair!r} is not key=value")
        metadata[key] = value
    return metadata


def parse_list_units(output: str, fields: Sequence[str] = UNIT_FIELDS) -> list[FleetUnit]:
    """``fleetctl list-units --fields=...`` output as :class:`FleetUnit` rows; a field not
    among ``fields`` is None."""
    units = []
    for row in _rows(output, fields):
        machine_id, machine_ip = _machine_legend(row.get("machine"))
        unit = row.get("unit")
        if unit is None:
            raise ValueError(f"list-units row without a unit name: {row}")
        units.append(
            FleetUnit(
                unit=unit,
                machine_id=machine_id,
                machine_ip=machine_ip,
                active=row.get("active"),
                sub=row.get("sub"),
                load=row.get("load"),
                hash=row.get("hash"),
            )
        )
    return units


def parse_list_unit_files(
    output: str, fields: Sequence[str] = UNIT_FILE_FIELDS
) -> list[FleetUnitFile]:
    """``fleetctl list-unit-files --fields=...`` output as :class:`FleetUnitFile` rows.
    ``tmachine``, the name of ``target`` before fleet 0.10, is read as ``target``."""
    files = []
    for row in _rows(output, fields):
        unit = row.get("unit")
        if unit is None:
            raise ValueError(f"list-unit-files row without a unit name: {row}")
        files.append(
            FleetUnitFile(
                unit=unit,
                hash=row.get("hash"),
                dstate=row.get("dstate"),
                state=row.get("state"),
                target=row.get("target", row.get("tmachine")),
            )
        )
    return files


def parse_list_machines(output: str, fields: Sequence[str] = MACHINE_FIELDS) -> list[FleetMachine]:
    """``fleetctl list-machines --fields=...`` output as :class:`FleetMachine` rows."""
    machines = []
    for row in _rows(output, fields):
        machine_id = row.get("machine")
        if machine_id is None:
            raise ValueError(f"list-machines row without a machine ID: {row}")
        machines.append(
            FleetMachine(
                machine_id=machine_id,
                ip=row.get("ip"),
                metadata=parse_metadata(row.get("metadata")),
            )
        )
    return machines


def format_units(units: Iterable[FleetUnit]) -> str:
    """A listing of units for error messages, one ``unit machine load/active/sub`` line
    each (``(no units)`` when empty)."""
    lines = [
        f"{u.unit} {u.machine_id or EMPTY}/{u.machine_ip or EMPTY} "
        f"{u.load or EMPTY}/{u.active or EMPTY}/{u.sub or EMPTY}"
        for u in units
    ]
    return "\n".join(lines) if lines else "(no units)"


def units_not_in_state(
    units: Sequence[FleetUnit],
    names: Sequence[str],
    state: str,
    machines_of_global: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The ``names`` whose rows in ``units`` do not all report ``state``, each with what
    it reports instead (an unlisted unit is not loaded on any machine).

    ``machines_of_global`` names, for each global unit among ``names``, the IDs of the
    machines it must run on (those its ``MachineMetadata`` matches): such a unit waits
    until each of them has a row, as fleet adds one as each machine's agent reports.
    """
    waiting = []
    for name in names:
        rows = [unit for unit in units if unit.unit == name]
        expected = (machines_of_global or {}).get(name)
        absent = [] if expected is None else sorted(set(expected) - {r.machine_id for r in rows})
        if not rows:
            waiting.append(f"{name} (not listed)")
        elif not all(row.reports(state) for row in rows) or absent:
            seen = ", ".join(f"{row.active or EMPTY}/{row.sub or EMPTY}" for row in rows)
            if absent:
                seen += f"; global, {len(rows)}/{len(rows) + len(absent)} machines"
            waiting.append(f"{name} ({seen})")
    return waiting


def parse_x_fleet(unit_file: str) -> dict[str, list[str]]:
    """The ``[X-Fleet]`` section of a unit file: each option with its values, in order
    (an option may repeat; a line may hold several values, quoted where they hold
    spaces, as systemd's own lists)."""
    options: dict[str, list[str]] = {}
    section = None
    for raw in unit_file.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "X-Fleet" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            values = shlex.split(value)
        except ValueError:
            values = value.split()
        options.setdefault(key.strip(), []).extend(values)
    return options


def matches_metadata(requirements: Sequence[str], metadata: Mapping[str, str]) -> bool:
    """Whether a machine with ``metadata`` satisfies ``MachineMetadata=`` values
    (``key=value`` each) as fleet's scheduler reads them: every key must match, and a key
    given several values matches any one of them."""
    wanted: dict[str, set[str]] = {}
    for requirement in requirements:
        key, equals, value = requirement.partition("=")
        if equals:
            wanted.setdefault(key, set()).add(value)
    return all(metadata.get(key) in values for key, values in wanted.items())


# -- the client ----------------------------------------------------------------------------

UnitSource = str | os.PathLike[str] | tuple[str, str]


def _unit_name(name: str) -> str:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"{name!r} is not a unit name (like hello.service or hello@.service)")
    return name


def default_timeout(user_data: Mapping[str, object]) -> float:
    """How long a fleetctl command or wait may take on a cluster with this user-data: a
    minute plus fleet's agent TTL, since fleet drops the state of a unit no agent reports
    any more (a destroyed unit on a machine too busy to report it gone, the units of a lost
    machine) only when that TTL runs out. A TTL fleet would refuse counts as fleet's 30 s."""
    try:
        return DEFAULT_TIMEOUT + agent_ttl_seconds(user_data)
    except ValueError:
        return DEFAULT_TIMEOUT + agent_ttl_seconds({})


class Fleet:
    """``fleetctl`` on one machine of a cluster, over SSH.

    By default the cluster's first running machine; :meth:`on` picks another. fleetctl
    talks to the fleet of the machine it runs on, as on CoreOS; ``endpoint``,
    ``etcd_key_prefix`` and ``request_timeout`` pass fleetctl's global flags of those
    names, and ``fleetctl`` names the program (a path on the machine). ``timeout`` bounds
    each fleetctl command and each wait (by default :func:`default_timeout`).
    """

    def __init__(
        self,
        cluster: Cluster,
        machine: Machine | str | None = None,
        *,
        fleetctl: str = "fleetctl",
        endpoint: str | None = None,
        etcd_key_prefix: str | None = None,
        request_timeout: float | None = None,
        timeout: float | None = None,
    ) -> None:
        self.cluster = cluster
        self._machine = cluster[machine] if isinstance(machine, str) else machine
        self.fleetctl = fleetctl
        self.endpoint = endpoint
        self.etcd_key_prefix = etcd_key_prefix
        self.request_timeout = request_timeout
        self.timeout = default_timeout(cluster.user_data) if timeout is None else timeout
        self._found_on: set[str] = set()  # machines where fleetctl was found

    def __repr__(self) -> str:
        where = self._machine.name if self._machine is not None else "first running machine"
        return f"<Fleet {self.fleetctl} on {where}>"

    @property
    def machine(self) -> Machine:
        """The machine fleetctl runs on: the one chosen, else the first running one."""
        if self._machine is not None:
            return self._machine
        for machine in self.cluster.machines:
            if machine.running:
                return machine
        raise FleetError(self.cluster.name, "no machine of the cluster is running")

    def on(self, machine: Machine | str) -> Fleet:
        """The same fleetctl, run on ``machine`` (a Machine or its name) instead."""
        fleet = Fleet(
            self.cluster,
            machine,
            fleetctl=self.fleetctl,
            endpoint=self.endpoint,
            etcd_key_prefix=self.etcd_key_prefix,
            request_timeout=self.request_timeout,
            timeout=self.timeout,
        )
        fleet._found_on = self._found_on
        return fleet

    # -- running fleetctl --------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        """The fleetctl command line for ``args``, with the global flags set here."""
        command = [self.fleetctl]
        if self.endpoint is not None:
            command.append(f"--endpoint={self.endpoint}")
        if self.etcd_key_prefix is not None:
            command.append(f"--etcd-key-prefix={self.etcd_key_prefix}")
        if self.request_timeout is not None:
            command.append(f"--request-timeout={self.request_timeout:g}")
        return [*command, *args]

    def _missing(self, machine: Machine, problem: str) -> FleetError:
        if not machine.systemd.available:
            return FleetError(machine.name, f"{problem}. {NO_SYSTEMD_HINT}")
        return FleetError(machine.name, f"{problem}. {MISSING_FLEETCTL_HINT}")

    def check_fleetctl(self) -> None:
        """Raise :class:`FleetError` if the machine has no fleetctl; asked once a machine."""
        machine = self.machine
        if machine.name in self._found_on:
            return
        lookup = f"command -v {shlex.quote(self.fleetctl)}"
        try:
            found = machine.ssh.run(lookup, check=False, timeout=self.timeout)
        except SSHError as error:
            raise FleetError(machine.name, f"cannot look for fleetctl: {error}") from error
        if not found.ok:
            raise self._missing(machine, f"the machine has no fleetctl ({lookup!r} found nothing)")
        self._found_on.add(machine.name)

    def run(
        self, *args: str, ok_statuses: Iterable[int] = (0,), timeout: float | None = None
    ) -> CommandResult:
        """Run ``fleetctl ARGS`` on the machine; a failure (an exit status not in
        ``ok_statuses``, a timeout, a lost connection) raises :class:`FleetError`."""
        self.check_fleetctl()
        machine = self.machine
        command = self.command(*args)
        timeout = self.timeout if timeout is None else timeout
        try:
            result = machine.ssh.run(command, check=False, timeout=timeout)
        except SSHError as error:
            raise FleetError(machine.name, f"{shlex.join(command)}: {error.problem}") from error
        if result.exit_status == COMMAND_NOT_FOUND and "not found" in result.stderr:
            raise self._missing(machine, f"{result.command!r}: {result.stderr.strip()}")
        if result.exit_status not in tuple(ok_statuses):
            problem = f"{result.command!r} exited with status {result.exit_status}"
            stderr = "\n".join(result.stderr.strip().splitlines()[-10:])
            if stderr:
                problem += f"; stderr:\n{stderr}"
            raise FleetError(machine.name, problem)
        return result

    # -- units -------------------------------------------------------------------------

    def submit(self, *units: UnitSource, replace: bool = False) -> list[str]:
        """Hand unit files to fleet without scheduling them; their names, in order.

        Each unit is a local file (its name is the unit's) or ``(name, content)``. The
        text goes to the machine unchanged (``[X-Fleet]`` sections included), into a
        temporary folder that is removed afterwards, and ``fleetctl submit`` reads it there.
        """
        named = []
        for unit in units:
            if isinstance(unit, tuple):
                name, content = unit
            else:
                path = Path(unit)
                name, content = path.name, path.read_text()
            named.append((_unit_name(name), content))
        if not named:
            return []
        self.check_fleetctl()
        machine = self.machine
        folder = self._temporary_folder(machine)
        try:
            remote_paths = []
            for name, content in named:
                remote_path = f"{folder}/{name}"
                machine.ssh.write_text(remote_path, content)
                remote_paths.append(remote_path)
            self.run("submit", *(["--replace"] if replace else []), *remote_paths)
        except SSHError as error:
            raise FleetError(machine.name, f"cannot copy unit files: {error}") from error
        finally:
            # A temporary folder left behind must not hide what went wrong.
            with contextlib.suppress(SSHError):
                machine.ssh.run(["rm", "-rf", "--", folder], check=False, timeout=self.timeout)
        return [name for name, _ in named]

    def _temporary_folder(self, machine: Machine) -> str:
        try:
            made = machine.ssh.run(
                ["mktemp", "-d", "/tmp/pytest-coreos-fleet.XXXXXX"],
                check=False,
                timeout=self.timeout,
            )
        except SSHError as error:
            raise FleetError(
                machine.name, f"cannot make a folder for unit files: {error}"
            ) from error
        if not made.ok or not made.stdout.strip():
            raise FleetError(
                machine.name, f"cannot make a folder for unit files: {made.stderr.strip()}"
            )
        return made.stdout.strip()

    def load(self, *names: str, timeout: float | None = None) -> None:
        """Schedule units onto machines without starting them, and wait until each is
        loaded there (``fleetctl load``)."""
        self.run("load", "--no-block", *names, timeout=timeout)
        self.wait_for_units(names, "loaded", timeout=timeout)

    def start(self, *names: str, replace: bool = False, timeout: float | None = None) -> None:
        """Start units (scheduling them first if needed), and wait until every one is
        active (``fleetctl start``; a global unit on every machine it runs on)."""
        self.run(
            "start", "--no-block", *(["--replace"] if replace else []), *names, timeout=timeout
        )
        self.wait_for_units(names, "active", timeout=timeout)

    def stop(self, *names: str, timeout: float | None = None) -> None:
        """Stop units, leaving them loaded: fleetctl waits until fleet has them so, this
        until every machine reports them no longer running."""
        self.run("stop", *names, timeout=timeout)
        self._wait(names, "stopped", _not_stopped, timeout)

    def unload(self, *names: str, timeout: float | None = None) -> None:
        """Unschedule units; fleet keeps their files. Returns once no machine lists them."""
        self.run("unload", *names, timeout=timeout)
        self._wait(names, "unloaded", _still_listed, timeout)

    def destroy(self, *names: str, timeout: float | None = None) -> None:
        """Stop units and remove them from fleet. fleet drops them from ``list-unit-files``
        at once and from ``list-units`` only once their machines have reported (seconds
        later): this returns after both."""
        self.run("destroy", *names, timeout=timeout)
        self._wait(names, "destroyed", _still_listed, timeout)

    def cat(self, name: str) -> str:
        """The unit file fleet holds for ``name`` (``fleetctl cat``)."""
        return self.run("cat", name).stdout

    # -- listings ------------------------------------------------------------------------

    def _listing(self, command: str, fields: Sequence[str]) -> str:
        return self.run(command, "--no-legend", "--full", f"--fields={','.join(fields)}").stdout

    def list_units(self) -> list[FleetUnit]:
        """Every unit loaded on a machine, as its machine last reported it."""
        output = self._listing("list-units", UNIT_FIELDS)
        try:
            return parse_list_units(output)
        except ValueError as error:
            raise FleetError(self.machine.name, f"unreadable list-units output: {error}") from error

    def list_unit_files(self) -> list[FleetUnitFile]:
        """Every unit fleet knows, loaded or not."""
        output = self._listing("list-unit-files", UNIT_FILE_FIELDS)
        try:
            return parse_list_unit_files(output)
        except ValueError as error:
            raise FleetError(
                self.machine.name, f"unreadable list-unit-files output: {error}"
            ) from error

    def list_machines(self) -> list[FleetMachine]:
        """Every machine whose fleet is part of the cluster."""
        output = self._listing("list-machines", MACHINE_FIELDS)
        try:
            return parse_list_machines(output)
        except ValueError as error:
            raise FleetError(
                self.machine.name, f"unreadable list-machines output: {error}"
            ) from error

    # -- a unit's machine ----------------------------------------------------------------

    def _where(self, name: str) -> Fleet:
        """This fleetctl on the machine that runs unit ``name``, where fleetctl reads its
        status and journal itself, with no SSH hop (which would need an agent); this one
        where that machine is not among the cluster's or the unit runs on several."""
        rows = [unit for unit in self.list_units() if unit.unit == name]
        if len(rows) != 1 or rows[0].machine_ip is None:
            return self
        for machine in self.cluster.machines:
            if rows[0].machine_ip in (machine.public_ipv4, machine.private_ipv4):
                return self if machine is self.machine else self.on(machine)
        return self

    def status(self, name: str) -> str:
        """``fleetctl status``: systemd's status of the unit on its machine."""
        return self._where(name).run("status", name, ok_statuses=(0, STATUS_NOT_RUNNING)).stdout

    def journal(self, name: str, lines: int = 10) -> str:
        """``fleetctl journal``: the last ``lines`` lines of the unit's journal."""
        return self._where(name).run("journal", f"--lines={lines}", name).stdout

    # -- waiting -------------------------------------------------------------------------

    def machines_of_global(
        self, names: Iterable[str], requirements: dict[str, list[str]] | None = None
    ) -> dict[str, list[str]]:
        """For each global unit among ``names``, the IDs of the machines it runs on: every
        machine fleet lists whose metadata its ``MachineMetadata`` matches.
        ``requirements`` caches each unit's ``MachineMetadata`` values between calls."""
        requirements = {} if requirements is None else requirements
        wanted = set(names)
        global_units = [f.unit for f in self.list_unit_files() if f.unit in wanted and f.is_global]
        if not global_units:
            return {}
        machines = self.list_machines()
        found = {}
        for name in global_units:
            if name not in requirements:
                requirements[name] = parse_x_fleet(self.cat(name)).get("MachineMetadata", [])
            found[name] = [
                m.machine_id for m in machines if matches_metadata(requirements[name], m.metadata)
            ]
        return found

    def wait_for_units(
        self, names: Iterable[str], state: str = "active", *, timeout: float | None = None
    ) -> list[FleetUnit]:
        """Poll ``list-units`` until every unit of ``names`` is listed and each of its rows
        reports ``state`` as its load, active or sub state (``loaded``, ``active``,
        ``running``, ``failed``...), and return those rows. A global unit (``Global=true``)
        must have such a row on every machine its ``MachineMetadata`` matches. On timeout
        :class:`FleetError` names the units still waiting and shows the last listing."""
        wanted = list(names)
        timeout = self.timeout if timeout is None else timeout
        last: list[FleetUnit] = []
        requirements: dict[str, list[str]] = {}

        def check() -> list[FleetUnit]:
            try:
                units = self.list_units()
                last[:] = units
                waiting = units_not_in_state(units, wanted, state)
                if not waiting:  # each listed row is there: are all a global unit's?
                    of_global = self.machines_of_global(wanted, requirements)
                    waiting = units_not_in_state(units, wanted, state, of_global)
            except FleetError as error:  # fleet may answer again (etcd elects a leader)
                raise NotReady(error.problem) from error
            if waiting and state not in FAILED_STATES:
                failed = [unit for unit in units if unit.unit in wanted and unit.active == "failed"]
                if failed:  # it will not get there by waiting
                    raise self._failed(failed[0], state)
            if waiting:
                raise NotReady(f"not yet {state}: {', '.join(waiting)}")
            return [unit for unit in units if unit.unit in wanted]

        self.check_fleetctl()
        try:
            return poll(
                check,
                what=f"fleet units to be {state}",
                timeout=timeout,
                interval=POLL_INTERVAL,
                max_interval=POLL_MAX_INTERVAL,
            )
        except BootTimeoutError as error:
            raise FleetError(
                self.machine.name,
                f"units not {state} within {timeout:g}s: {error.last_state}\n"
                f"--- last fleetctl list-units ---\n{format_units(last)}",
            ) from error

    def _failed(self, unit: FleetUnit, state: str) -> FleetError:
        """The error for ``unit`` failed where it was awaited in ``state``, with the tail
        of its journal."""
        try:
            journal = self.journal(unit.unit, lines=JOURNAL_LINES)
        except FleetError as error:
            journal = f"(its journal cannot be read: {error.problem})"
        return FleetError(
            self.machine.name,
            f"{unit.unit} failed on {unit.machine or EMPTY} ({unit.active}/{unit.sub or EMPTY}),"
            f" where it was awaited {state}\n--- fleetctl journal {unit.unit} ---\n"
            f"{journal.rstrip()}",
        )

    def _wait(
        self,
        names: Sequence[str],
        done: str,
        waiting_of: Callable[[Sequence[FleetUnit], Sequence[str]], list[str]],
        timeout: float | None,
    ) -> None:
        """Poll ``list-units`` until ``waiting_of(rows, names)`` names none of ``names``."""
        timeout = self.timeout if timeout is None else timeout
        last: list[FleetUnit] = []

        def check() -> None:
            try:
                units = self.list_units()
            except FleetError as error:
                raise NotReady(error.problem) from error
            last[:] = units
            waiting = waiting_of(units, names)
            if waiting:
                raise NotReady(f"not yet {done}: {', '.join(waiting)}")

        try:
            poll(
                check,
                what=f"fleet units to be {done}",
                timeout=timeout,
                interval=POLL_INTERVAL,
                max_interval=POLL_MAX_INTERVAL,
            )
        except BootTimeoutError as error:
            raise FleetError(
                self.machine.name,
                f"units not {done} within {timeout:g}s: {error.last_state}\n"
                f"--- last fleetctl list-units ---\n{format_units(last)}",
            ) from error

    def wait_for_machines(
        self, count: int | None = None, *, timeout: float | None = None
    ) -> list[FleetMachine]:
        """Poll ``list-machines`` until fleet lists ``count`` machines (by default every
        running machine of the cluster), and return them: each machine's fleetd has then
        registered in etcd, so units can be scheduled onto it."""
        if count is None:
            count = sum(1 for machine in self.cluster.machines if machine.running)
        timeout = self.timeout if timeout is None else timeout
        self.check_fleetctl()

        def check() -> list[FleetMachine]:
            try:
                machines = self.list_machines()
            except FleetError as error:  # fleetd still starting, or etcd electing
                raise NotReady(error.problem) from error
            if len(machines) < count:
                listed = ", ".join(f"{m.machine_id[:8]}/{m.ip or EMPTY}" for m in machines)
                raise NotReady(f"fleet lists {len(machines)}/{count} machines: [{listed}]")
            return machines

        try:
            return poll(
                check,
                what="fleet to list every machine",
                timeout=timeout,
                interval=POLL_INTERVAL,
                max_interval=POLL_MAX_INTERVAL,
            )
        except BootTimeoutError as error:
            problem = f"fleet did not list {count} machines within {timeout:g}s: {error.last_state}"
            try:  # why: fleetd's own words, from the machine fleetctl asked
                log = self.machine.systemd.journal("fleet.service", lines=JOURNAL_LINES)
            except CoreOSError as unreadable:
                log = f"(cannot be read: {unreadable})"
            raise FleetError(
                self.machine.name, f"{problem}\n--- journal of fleet.service ---\n{log.rstrip()}"
            ) from error


_RUNNING_STATES = frozenset({"active", "activating", "deactivating", "reloading"})


def _not_stopped(units: Sequence[FleetUnit], names: Sequence[str]) -> list[str]:
    """The ``names`` a machine still reports running (or starting, or stopping)."""
    return [
        f"{u.unit} ({u.active}/{u.sub or EMPTY} on {u.machine or EMPTY})"
        for u in units
        if u.unit in names and u.active in _RUNNING_STATES
    ]


def _still_listed(units: Sequence[FleetUnit], names: Sequence[str]) -> list[str]:
    """The ``names`` that ``list-units`` still shows on a machine."""
    return [f"{u.unit} (on {u.machine or EMPTY})" for u in units if u.unit in names]
