"""fleet's settings from the user-data's ``coreos.fleet`` section, as coreos-cloudinit
wrote them: pure text in, text out, shared by the plugin and the stand-in box's agent.

coreos-cloudinit turned each key of ``coreos.fleet`` into a ``FLEET_*`` variable
(``public-ip`` -> ``FLEET_PUBLIC_IP``) in a drop-in of ``fleet.service``, after replacing
``$public_ipv4`` and ``$private_ipv4``. fleetd reads nothing else, and it ignores a
variable it does not know: a misspelt key would change nothing, silently, so unknown keys
are refused here, as unknown etcd keys are. Nothing here does I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_coreos.config.etcd_env import environment_value
from pytest_coreos.errors import UserDataError

# Every key coreos-cloudinit accepted in ``coreos.fleet`` (config/fleet.go), plus fleetd
# v1.0's other settings, which it reads from the FLEET_* variable of the same name too
# (its two deprecated, ignored ones left out).
FLEET_KEYS: frozenset[str] = frozenset(
    {
        "agent-ttl",
        "disable-engine",
        "disable-watches",
        "engine-reconcile-interval",
        "etcd-cafile",
        "etcd-certfile",
        "etcd-key-prefix",
        "etcd-keyfile",
        "etcd-password",
        "etcd-request-timeout",
        "etcd-servers",
        "etcd-username",
        "metadata",
        "public-ip",
        "token-limit",
        "verbosity",
    }
)

# Where the machines' fleet comes from (see fleet_release), and the advice given wherever
# fleet is missing.
OPTION = "--coreos-fleet"
# fleet's last release, as CoreOS published it: what a user's machine would download.
RELEASE_URL = (
    "https://github.com/coreos/fleet/releases/download/v1.0.0/fleet-v1.0.0-linux-amd64.tar.gz"
)
HOW_TO_GIVE_FLEET = (
    f"give the machines fleet with {OPTION}=PATH|URL (ini coreos_fleet): a fleet release "
    f"tarball such as {RELEASE_URL}, its path, or a folder holding fleetd and fleetctl; "
    "fleet needs machines that run systemd (--coreos-provider=nspawn, qemu or vagrant)"
)

FLEET_UNIT = "fleet.service"
FLEET_SOCKET = "fleet.socket"
# The drop-in coreos-cloudinit wrote fleet's environment into.
FLEET_DROP_IN = "20-cloudinit.conf"
_STARTING_COMMANDS = frozenset(
    {"start", "restart", "reload-or-restart", "try-restart", "reload-or-try-restart"}
)


def _canonical(key: object) -> str:
    # coreos-cloudinit read - and _ in keys alike; the documented spelling is with -.
    return str(key).replace("_", "-")


def fleet_section(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The cloud-config's ``coreos.fleet`` mapping (empty where there is none)."""
    coreos = data.get("coreos")
    section = coreos.get("fleet") if isinstance(coreos, Mapping) else None
    return section if isinstance(section, Mapping) else {}


def check_fleet_section(coreos: Mapping[str, Any], path: Path | str) -> None:
    """Refuse a ``coreos.fleet`` that is not a mapping, or that has a key fleet does not
    know, naming the known ones."""
    if "fleet" not in coreos or coreos["fleet"] is None:
        return
    section = coreos["fleet"]
    if not isinstance(section, Mapping):
        kind = "a string" if isinstance(section, str) else f"a {type(section).__name__}"
        raise UserDataError(path, f"coreos.fleet is {kind}, not a mapping of fleet settings")
    spellings: dict[str, list[str]] = {}
    for key in section:
        spellings.setdefault(_canonical(key), []).append(str(key))
    unknown = [
        written[0] for canonical, written in spellings.items() if canonical not in FLEET_KEYS
    ]
    if unknown:
        hints = [
            f"{key}: did you mean {close[0]}?"
            for key in unknown
            if (close := difflib.get_close_matches(_canonical(key), FLEET_KEYS, n=1))
        ]
        suggestion = f" ({'; '.join(hints)})" if hints else ""
        raise UserDataError(
            path,
            f"unknown key{'s' if len(unknown) > 1 else ''} in coreos.fleet: "
            f"{', '.join(unknown)}{suggestion}",
            f"known keys: {', '.join(sorted(FLEET_KEYS))}; fleetd ignores an unknown FLEET_* "
            f"variable, so a misspelt key would silently change nothing",
        )
    twice = [" and ".join(written) for written in spellings.values() if len(written) > 1]
    if twice:
        raise UserDataError(
            path,
            f"coreos.fleet sets the same key twice: {'; '.join(twice)}",
            "coreos-cloudinit reads - and _ in keys alike; keep one spelling",
        )
    for key, value in section.items():
        try:
            _value_text(f"coreos.fleet.{key}", value)
        except ValueError as error:
            raise UserDataError(path, str(error)) from None


def _value_text(where: str, value: Any) -> str | None:
    return environment_value(where, value, setting="a fleet setting")


def _substitute(text: str, private_ipv4: str, public_ipv4: str) -> str:
    # As render.substitute: a backslash keeps a placeholder literally. Kept here so that
    # this module needs nothing but the errors.
    addresses = {"$private_ipv4": private_ipv4, "$public_ipv4": public_ipv4}
    result = []
    index = 0
    while index < len(text):
        for placeholder, address in addresses.items():
            if text.startswith(placeholder, index):
                result.append(address)
                index += len(placeholder)
                break
            if text.startswith("\\" + placeholder, index):
                result.append(placeholder)
                index += len(placeholder) + 1
                break
        else:
            result.append(text[index])
            index += 1
    return "".join(result)


def fleet_environment(
    data: Mapping[str, Any],
    *,
    private_ipv4: str,
    public_ipv4: str,
    etcd_client_urls: Sequence[str],
) -> dict[str, str]:
    """fleetd's environment for this cloud-config on the machine with these addresses:
    every key of ``coreos.fleet`` as ``FLEET_<KEY>`` (``-`` as ``_``, upper case) with the
    placeholders replaced, and ``FLEET_ETCD_SERVERS`` the machine's own etcd client URLs
    unless the section names others."""
    env: dict[str, str] = {}
    for key, value in fleet_section(data).items():
        text = _value_text(f"coreos.fleet.{key}", value)
        if text is not None:
            name = "FLEET_" + _canonical(key).upper().replace("-", "_")
            env[name] = _substitute(text, private_ipv4, public_ipv4)
    if "FLEET_ETCD_SERVERS" not in env and etcd_client_urls:
        env["FLEET_ETCD_SERVERS"] = ",".join(etcd_client_urls)
    return env


def starts_fleet(data: Mapping[str, Any]) -> bool:
    """True if the cloud-config's ``coreos.units`` start fleet (its service or socket)."""
    coreos = data.get("coreos")
    units = coreos.get("units") if isinstance(coreos, Mapping) else None
    if not isinstance(units, list):
        return False
    return any(
        isinstance(unit, Mapping)
        and unit.get("name") in (FLEET_UNIT, FLEET_SOCKET)
        and unit.get("command") in _STARTING_COMMANDS
        for unit in units
    )


def agent_ttl_seconds(data: Mapping[str, Any], default: float = 30.0) -> float:
    """fleet's agent TTL for this cloud-config, in seconds (fleet's default is 30 s): how
    long a lost machine's units wait before fleet schedules them elsewhere. Understands
    Go durations made of ``h``, ``m``, ``s`` and ``ms`` parts (``1m30s``, ``10s``)."""
    text = _value_text("coreos.fleet.agent-ttl", fleet_section(data).get("agent-ttl"))
    if text is None:
        return default
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    total, number, index = 0.0, "", 0
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = "ms" if text.startswith("ms", index) else char
        if unit not in units or not number:
            raise ValueError(f"coreos.fleet.agent-ttl: {text!r} is not a duration like 10s")
        total += float(number) * units[unit]
        number, index = "", index + len(unit)
    if number:
        raise ValueError(f"coreos.fleet.agent-ttl: {text!r} has no unit (like 10s)")
    return total
