"""The stand-in box's coreos-cloudinit: applies the Vagrant user-data when it appears.

On CoreOS, Vagrant's provisioners copied the cluster's ``user-data`` to
``/var/lib/coreos-vagrant/vagrantfile-user-data`` and coreos-cloudinit applied it. The
Debian stand-in box runs this agent instead (from a systemd path unit, and at every boot):
``$private_ipv4``/``$public_ipv4`` become the machine's private network address, the
``coreos.etcd``/``coreos.etcd2`` section becomes etcd's ``ETCD_*`` environment through
:func:`pytest_coreos.render.etcd_environment` (the one mapping the local provider uses
too: the box build copies ``render.py`` next to this file), and ``coreos.units`` are
written, enabled and started with systemd.

The functions that decide what to do are pure, so the plugin's tests run them on the host.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coreos import render
from pytest_coreos.errors import UserDataError

USER_DATA = Path("/var/lib/coreos-vagrant/vagrantfile-user-data")
ENVIRONMENT = Path("/etc/environment")
STATUS = Path("/run/coreos-agent/status.json")
PERSISTENT_UNITS = Path("/etc/systemd/system")
RUNTIME_UNITS = Path("/run/systemd/system")
# The box's etcd unit; Debian's etcd-server also names it etcd2.service (an alias).
ETCD_UNIT = "etcd.service"
ETCD_DROP_IN = "20-cloudinit.conf"
ADDRESS_WAIT_SECONDS = 120.0

# etcd 3.4 serves the v2 API (what CoreOS's etcd and etcd2 spoke, and what the plugin's
# handles use) only when asked to.
STAND_IN_ETCD_ENVIRONMENT = {"ETCD_ENABLE_V2": "true"}

# The unit commands coreos-cloudinit accepted.
UNIT_COMMANDS = frozenset(
    {
        "start",
        "stop",
        "restart",
        "reload",
        "try-restart",
        "reload-or-restart",
        "reload-or-try-restart",
    }
)
_UNIT_NAME = re.compile(
    r"^[A-Za-z0-9:_.\\@-]+\."
    r"(service|socket|device|mount|automount|swap|target|path|timer|slice|scope)$"
)
_DROP_IN_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.conf$")


class AgentError(Exception):
    """The user-data asks for something the agent cannot do."""


# --- the machine's addresses ----------------------------------------------------------------


def read_environment(text: str) -> dict[str, str]:
    """``/etc/environment`` as a dict (``KEY=value`` lines, optional quotes)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def parse_addresses(ip_output: str) -> list[tuple[str, str]]:
    """(interface, IPv4 address) pairs from ``ip -4 -o addr show scope global``."""
    pairs = []
    for line in ip_output.splitlines():
        match = re.search(r"^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)/", line)
        if match:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def parse_default_interfaces(route_output: str) -> set[str]:
    """Interfaces that carry a default route, from ``ip -4 route show default``."""
    return set(re.findall(r"\bdev\s+(\S+)", route_output))


def choose_private_address(
    environment: Mapping[str, str],
    addresses: Sequence[tuple[str, str]],
    default_interfaces: set[str],
) -> str | None:
    """The machine's private network address, as coreos-cloudinit's ``$private_ipv4``.

    The provisioner writes ``COREOS_PRIVATE_IPV4`` to ``/etc/environment`` as CoreOS's
    Vagrant support did; without it, the first global address of an interface that is
    not the management one (the one holding the default route).
    """
    given = environment.get("COREOS_PRIVATE_IPV4", "")
    if given:
        try:
            ipaddress.IPv4Address(given)
        except ValueError:
            raise AgentError(f"COREOS_PRIVATE_IPV4={given!r} is not an IPv4 address") from None
        return given
    for interface, address in addresses:
        if interface not in default_interfaces:
            return address
    return None


def choose_public_address(environment: Mapping[str, str], private: str) -> str:
    """``$public_ipv4``: ``COREOS_PUBLIC_IPV4`` where given, else the private address
    (coreos-vagrant's machines had no other)."""
    return environment.get("COREOS_PUBLIC_IPV4") or private


# --- what to write and run ------------------------------------------------------------------


def systemd_quote(value: str) -> str:
    """A value for ``Environment="..."`` in a unit file: quoted, escaped, no specifiers."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    escaped = escaped.replace("\n", "\\n")
    return f'"{escaped}"'


def etcd_drop_in(environment: Mapping[str, str]) -> str:
    """The drop-in that gives etcd its environment, as coreos-cloudinit wrote it."""
    lines = ["[Service]"]
    for key, value in environment.items():
        lines.append(f"Environment={systemd_quote(f'{key}={value}')}")
    return "\n".join(lines) + "\n"


def etcd_environment(
    user_data: Mapping[str, Any], private_ipv4: str, public_ipv4: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    """etcd's environment for this user-data (the shared mapping, then what the stand-in's
    etcd 3.4 needs to speak like CoreOS's etcd), and the etcd 0.4 keys it had to drop."""
    converted = render.etcd_environment(
        user_data, private_ipv4=private_ipv4, public_ipv4=public_ipv4
    )
    env = dict(converted.env)
    for key, value in STAND_IN_ETCD_ENVIRONMENT.items():
        env.setdefault(key, value)
    return env, converted.dropped


@dataclass
class Plan:
    """Everything one application of the user-data does, in order."""

    files: dict[Path, str] = field(default_factory=dict)
    masks: list[str] = field(default_factory=list)
    enables: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (command, unit)
    notes: list[str] = field(default_factory=list)


def _unit_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _UNIT_NAME.fullmatch(value):
        raise AgentError(f"{where}: {value!r} is not a systemd unit name")
    return value


def plan(
    user_data: Mapping[str, Any],
    private_ipv4: str,
    public_ipv4: str,
    *,
    persistent: Path = PERSISTENT_UNITS,
    runtime: Path = RUNTIME_UNITS,
) -> Plan:
    """What the user-data asks of this machine: etcd's drop-in, then every unit's files,
    masks, enables and commands, in the order coreos-cloudinit applied them."""
    result = Plan()
    env, dropped = etcd_environment(user_data, private_ipv4, public_ipv4)
    result.files[runtime / f"{ETCD_UNIT}.d" / ETCD_DROP_IN] = etcd_drop_in(env)
    result.notes.extend(f"etcd key {key!r} has no etcd 3 equivalent; ignored" for key in dropped)
    coreos = user_data.get("coreos") or {}
    units = coreos.get("units") or []
    if not isinstance(units, list):
        raise AgentError("coreos.units is not a list")
    for index, unit in enumerate(units):
        where = f"coreos.units[{index}]"
        if not isinstance(unit, Mapping):
            raise AgentError(f"{where} is not a mapping")
        name = _unit_name(unit.get("name"), f"{where}.name")
        base = runtime if unit.get("runtime") is True else persistent
        content = unit.get("content")
        if content is not None:
            if not isinstance(content, str):
                raise AgentError(f"{where}.content is not text")
            result.files[base / name] = render.substitute(content, private_ipv4, public_ipv4)
        for drop_in_index, drop_in in enumerate(unit.get("drop-ins") or []):
            drop_where = f"{where}.drop-ins[{drop_in_index}]"
            if not isinstance(drop_in, Mapping):
                raise AgentError(f"{drop_where} is not a mapping")
            drop_name = drop_in.get("name")
            if not isinstance(drop_name, str) or not _DROP_IN_NAME.fullmatch(drop_name):
                raise AgentError(f"{drop_where}.name: {drop_name!r} is not a *.conf name")
            text = drop_in.get("content")
            if not isinstance(text, str):
                raise AgentError(f"{drop_where}.content is not text")
            result.files[base / f"{name}.d" / drop_name] = render.substitute(
                text, private_ipv4, public_ipv4
            )
        if unit.get("mask") is True:
            result.masks.append(name)
        if unit.get("enable") is True:
            result.enables.append(name)
        command = unit.get("command")
        if command is not None:
            if command not in UNIT_COMMANDS:
                raise AgentError(
                    f"{where}.command: {command!r} is not one of {', '.join(sorted(UNIT_COMMANDS))}"
                )
            result.commands.append((str(command), name))
    ignored = [key for key in user_data if key != "coreos"]
    ignored += [f"coreos.{key}" for key in coreos if key not in ("etcd", "etcd2", "units")]
    if ignored:
        result.notes.append("not applied by the stand-in box: " + ", ".join(ignored))
    return result


# --- doing it -------------------------------------------------------------------------------


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _unit_exists(name: str) -> bool:
    shown = _run(["systemctl", "show", "--property=LoadState", "--value", name])
    return shown.stdout.strip() not in ("", "not-found")


def wait_for_private_address(timeout: float = ADDRESS_WAIT_SECONDS) -> str:
    """The private address, waiting for the network to be configured."""
    deadline = time.monotonic() + timeout
    while True:
        environment = read_environment(ENVIRONMENT.read_text() if ENVIRONMENT.exists() else "")
        addresses = parse_addresses(
            _run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout
        )
        defaults = parse_default_interfaces(_run(["ip", "-4", "route", "show", "default"]).stdout)
        address = choose_private_address(environment, addresses, defaults)
        if address is not None:
            return address
        if time.monotonic() > deadline:
            raise AgentError(f"no private network address after {timeout:g}s: {addresses}")
        time.sleep(1)


def apply(text: str) -> dict[str, Any]:
    """Apply user-data ``text`` to this machine; return what was done, for the status file."""
    user_data = render.parse_user_data(text, USER_DATA)
    private_ipv4 = wait_for_private_address()
    environment = read_environment(ENVIRONMENT.read_text() if ENVIRONMENT.exists() else "")
    public_ipv4 = choose_public_address(environment, private_ipv4)
    todo = plan(user_data, private_ipv4, public_ipv4)
    for path, content in todo.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(content)
        temporary.replace(path)
    failures: list[str] = []
    skipped: list[str] = []
    for name in todo.masks:
        if _run(["systemctl", "mask", name]).returncode != 0:
            failures.append(f"mask {name}")
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    for name in todo.enables:
        enabled = _run(["systemctl", "enable", name])
        if enabled.returncode != 0:
            failures.append(f"enable {name}: {enabled.stderr.strip()}")
    for command, name in todo.commands:
        if not _unit_exists(name):
            # A CoreOS unit the stand-in box does not have (fleet.service): said, not fatal.
            skipped.append(name)
            continue
        done = _run(["systemctl", "--no-block", command, name])
        if done.returncode != 0:
            failures.append(f"{command} {name}: {done.stderr.strip()}")
    notes = list(todo.notes)
    if skipped:
        notes.append("no such unit in the stand-in box, not started: " + ", ".join(skipped))
    return {
        "private_ipv4": private_ipv4,
        "public_ipv4": public_ipv4,
        "files": sorted(str(path) for path in todo.files),
        "commands": [f"{command} {name}" for command, name in todo.commands],
        "notes": notes,
        "failures": failures,
    }


def main(argv: Sequence[str] = ()) -> int:
    path = Path(argv[0]) if argv else USER_DATA
    if not path.is_file():
        print(f"coreos-agent: {path} is not a file (yet); nothing to apply")
        return 0
    try:
        status = apply(path.read_text())
    except (AgentError, UserDataError, ValueError) as error:
        status = {"error": str(error)}
        print(f"coreos-agent: {error}", file=sys.stderr)
    STATUS.parent.mkdir(parents=True, exist_ok=True)
    STATUS.write_text(json.dumps(status, indent=1) + "\n")
    for note in status.get("notes", []):
        print(f"coreos-agent: {note}")
    for failure in status.get("failures", []):
        print(f"coreos-agent: failed: {failure}", file=sys.stderr)
    return 1 if "error" in status or status.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
