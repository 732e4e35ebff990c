"""A user's own Ignition config: read, checked, and given the cluster's discovery URL.

Nothing here touches the network or the disk, except :func:`load_ignition` reading its file.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_coreos.config.cloud_config import CLOUD_CONFIG_HEADER
from pytest_coreos.config.ignition.render import (
    COREOS_ETCD_UNITS,
    DISCOVERY_DROPIN,
    ETCD_MEMBER_UNIT,
    IGNITION_VERSION,
    SUPPORTED_VERSIONS,
)
from pytest_coreos.config.ignition.unitfile import finds_discovery, runs_etcd, set_discovery
from pytest_coreos.config.units import environment_word, quote_value
from pytest_coreos.errors import IgnitionError

# --- the user's own config -----------------------------------------------------------------


def load_ignition(path: Path) -> dict[str, Any]:
    """Read the user's Ignition config and check that discovery can be injected into it.

    It must be JSON of a supported spec version (:data:`SUPPORTED_VERSIONS`) whose units
    are well formed, with one unit that runs etcd (see :func:`etcd_unit_name`).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IgnitionError(path, "the file does not exist") from None
    except IsADirectoryError:
        raise IgnitionError(path, "is a directory, not an Ignition config") from None
    except OSError as exc:
        raise IgnitionError(path, f"the file cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IgnitionError(path, f"the file is not UTF-8 text ({exc.reason})") from exc
    try:
        config = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise IgnitionError(
            path,
            f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            _not_json_hint(text),
        ) from exc
    except _DuplicateKeyError as exc:
        raise IgnitionError(path, f"not a valid Ignition config: {exc}") from exc
    if not isinstance(config, dict):
        raise IgnitionError(
            path, f"the document is a JSON {_json_kind(config)}, not an Ignition config object"
        )
    ignition = config.get("ignition")
    version = ignition.get("version") if isinstance(ignition, dict) else None
    if not isinstance(version, str):
        raise IgnitionError(
            path,
            "has no ignition.version",
            f'an Ignition config starts {{"ignition": {{"version": "{IGNITION_VERSION}"}}, ...',
        )
    if version not in SUPPORTED_VERSIONS:
        raise IgnitionError(
            path,
            f"ignition.version is {version!r}, a spec pytest-coreos does not support",
            f"supported: {', '.join(SUPPORTED_VERSIONS)}{_version_hint(version)}",
        )
    try:
        _check_units(config)
    except ValueError as exc:
        raise IgnitionError(
            path, f"not a valid Ignition config: {exc}", "see Ignition's spec of systemd units"
        ) from exc
    try:
        etcd_unit_name(config)
    except ValueError as exc:
        raise IgnitionError(path, str(exc), _ETCD_UNIT_HINT) from exc
    return config


_ETCD_UNIT_HINT = (
    f"give Flatcar's {ETCD_MEMBER_UNIT} (enabled, with a drop-in setting ETCD_* variables) "
    f"or a unit of your own whose ExecStart= runs etcd; units of a merged config "
    f"(ignition.config.merge) are not seen"
)


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _not_json_hint(text: str) -> str:
    first = text.lstrip().split("\n", 1)[0].rstrip()
    if first == CLOUD_CONFIG_HEADER:
        return "this is a cloud-config: give it with --coreos-user-data"
    if first.startswith("variant:") or first.startswith("version:"):
        return "this looks like a Butane config: translate it first (butane --strict)"
    return "an Ignition config is JSON"


def _version_hint(version: str) -> str:
    if version.startswith("2."):
        return (
            "; a spec 2 config (as the Container Linux Config Transpiler made) has another "
            "layout: translate it to spec 3 (ign-converter), or write Butane and translate it"
        )
    if version in ("3.0.0", "3.1.0", "3.2.0"):
        return (
            "; spec 3 versions only add fields, so a 3.0-3.2 config stays valid with its "
            "ignition.version raised to 3.3.0"
        )
    return ""


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _check_units(config: Mapping[str, Any]) -> None:
    """The parts of ``systemd`` that discovery injection reads, as Ignition's spec has them."""
    systemd = config.get("systemd")
    if systemd is None:
        return
    if not isinstance(systemd, dict):
        raise ValueError("systemd is not an object")
    units = systemd.get("units")
    if units is None:
        return
    if not isinstance(units, list):
        raise ValueError("systemd.units is not an array")
    for index, unit in enumerate(units):
        where = f"systemd.units[{index}]"
        if not isinstance(unit, dict) or not isinstance(unit.get("name"), str):
            raise ValueError(f"{where} is not an object with a name")
        if not isinstance(unit.get("contents"), str | None):
            raise ValueError(f"{where} ({unit['name']}): contents is not a string")
        for flag in ("enabled", "mask"):
            if not isinstance(unit.get(flag), bool | None):
                raise ValueError(f"{where} ({unit['name']}): {flag} is not a boolean")
        dropins = unit.get("dropins")
        if dropins is None:
            continue
        if not isinstance(dropins, list):
            raise ValueError(f"{where} ({unit['name']}): dropins is not an array")
        for position, dropin in enumerate(dropins):
            if (
                not isinstance(dropin, dict)
                or not isinstance(dropin.get("name"), str)
                or not isinstance(dropin.get("contents"), str | None)
            ):
                raise ValueError(
                    f"{where} ({unit['name']}): dropins[{position}] is not an object with a "
                    f"name and string contents"
                )


def etcd_unit_name(config: Mapping[str, Any]) -> str:
    """The unit of an Ignition config that runs etcd, where discovery goes.

    Of the units not masked: the one that sets etcd's discovery, else Flatcar's
    ``etcd-member.service`` or CoreOS's ``etcd.service``/``etcd2.service`` (in that order),
    else the one whose ``ExecStart=`` runs etcd (``etcd``, ``etcd-wrapper``, an etcd image)
    or that sets ``ETCD_*`` variables. Raises ValueError when there is none, or more than one
    of the last kinds.
    """
    units = [
        unit for unit in (config.get("systemd") or {}).get("units") or [] if not unit.get("mask")
    ]
    setting = [str(unit["name"]) for unit in units if finds_discovery(unit)]
    if len(setting) > 1:
        raise ValueError(f"several units set etcd's discovery: {', '.join(setting)}")
    if setting:
        return setting[0]
    names = [unit["name"] for unit in units]
    for name in (ETCD_MEMBER_UNIT, *COREOS_ETCD_UNITS.values()):
        if name in names:
            return name
    running = [str(unit["name"]) for unit in units if runs_etcd(unit)]
    if len(running) > 1:
        raise ValueError(f"several units run etcd: {', '.join(running)}")
    if not running:
        raise ValueError("no unit runs etcd, so there is nowhere to inject the discovery URL")
    return running[0]


def inject_discovery_ignition(config: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A deep copy of the config whose etcd unit (:func:`etcd_unit_name`) uses ``url``.

    Every place that unit (its contents and drop-ins) sets the discovery URL gets ``url``:
    ``ETCD_DISCOVERY`` in ``Environment=``, and ``--discovery``/``ETCD_DISCOVERY=`` on
    ``ExecStart=`` (as ``-e`` of ``docker run`` or through ``env``). Where it sets none, a
    drop-in of its own (:data:`DISCOVERY_DROPIN`) does. Nothing else changes. A value from an
    ``EnvironmentFile=`` on the machine cannot be seen here and would win over the drop-in.
    """
    quote_value(url, "the discovery URL")
    if not url or any(char.isspace() for char in url):
        raise ValueError(f"the discovery URL must be one word, not {url!r}")
    injected = copy.deepcopy(dict(config))
    name = etcd_unit_name(injected)
    unit = next(unit for unit in injected["systemd"]["units"] if unit["name"] == name)
    found = False
    if unit.get("contents") is not None:
        unit["contents"], found = set_discovery(unit["contents"], url)
    for dropin in unit.get("dropins") or []:
        if dropin.get("contents") is not None:
            dropin["contents"], replaced = set_discovery(dropin["contents"], url)
            found = found or replaced
    if not found:
        unit.setdefault("dropins", []).append(
            {
                "name": DISCOVERY_DROPIN,
                "contents": f"[Service]\nEnvironment={environment_word('ETCD_DISCOVERY', url)}\n",
            }
        )
    return injected
