"""Ignition configs (spec 3.x, JSON) for Flatcar, as dicts in and dicts out.

:func:`render_ignition` gives a cloud-config's content the Ignition way: the ``core`` user's
SSH keys, ``/etc/hostname``, the user's units, and etcd as Flatcar runs it, with a drop-in
for ``etcd-member.service`` (as Flatcar's Container Linux Config Transpiler wrote
``20-clct-etcd-member.conf``) carrying the ``ETCD_*`` environment that
:func:`pytest_coreos.etcd_environment` derives from the etcd section.
Reading a user's own config and injecting its discovery URL is :mod:`.load`'s, the
unit-file parser :mod:`.unitfile`'s. Nothing here touches the network or the disk.

The machine's addresses. Ignition has no per-machine templating: cloud-config's
``$private_ipv4`` was replaced on the machine by coreos-cloudinit, Ignition writes what it
is given. So there are two ways, and both are here:

- Real addresses (``private_ipv4="10.0.0.5"``): one config per machine, each value plain
  text in ``Environment=`` lines. The plugin knows every machine's address before it boots
  (the local and nspawn providers choose them; the vagrant provider plans them in
  ``pytest-coreos.json``), so this is how the plugin renders.
- Addresses found at start (the defaults, ``$private_ipv4``/``$public_ipv4``): one config
  for all machines, the values read by systemd from an environment file when etcd starts
  (:class:`AddressVariables`), as Flatcar's Container Linux Config did with coreos-metadata
  and ``{PRIVATE_IPV4}``. For a Vagrantfile that gives every machine the same
  ``config.ign``; the plugin's vagrant provisioner writes ``COREOS_PRIVATE_IPV4`` and
  ``COREOS_PUBLIC_IPV4`` into ``/etc/environment`` as CoreOS's Vagrant support did.
  systemd expands ``${VAR}`` in command lines but never in ``Environment=`` (systemd.exec(5):
  "Variable expansion is not performed inside the strings"), so those settings are passed
  on ``ExecStart=``, through ``env``, to Flatcar's etcd-wrapper: the same ``ETCD_*``
  variables, set when the variables are known.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pytest_coreos.config.etcd_env import (
    PRIVATE_IPV4,
    PUBLIC_IPV4,
    etcd_environment,
    etcd_section,
    substitute,
)
from pytest_coreos.config.units import (
    check_unit_name,
    environment_word,
    escape_specifiers,
    quote_value,
)
from pytest_coreos.errors import UserDataError

IGNITION_VERSION = "3.4.0"
SUPPORTED_VERSIONS = ("3.3.0", "3.4.0")

ETCD_MEMBER_UNIT = "etcd-member.service"
# CoreOS's own etcd units, which coreos-cloudinit gave the etcd section's drop-in; Flatcar
# has etcd-member.service only.
COREOS_ETCD_UNITS = {"etcd": "etcd.service", "etcd2": "etcd2.service"}
ETCD_DROPIN = "20-pytest-coreos-etcd.conf"
DISCOVERY_DROPIN = "30-pytest-coreos-discovery.conf"
# What Flatcar's etcd-member.service runs. A drop-in can only replace ExecStart= whole, so
# where settings must move onto the command line this is restated (Flatcar keeps the wrapper
# because Container Linux Configs overrode ExecStart= the same way).
ETCD_WRAPPER = "/usr/lib/flatcar/etcd-wrapper $ETCD_OPTS"
CORE_USER = "core"

# Unit types Ignition accepts (it rejects any other extension), and cloud-config's
# commands that left a unit running after boot, which Ignition's `enabled` stands for.
_START_COMMANDS = frozenset({"start", "restart", "reload-or-restart"})
_OTHER_COMMANDS = frozenset({"stop", "reload", "try-restart", "reload-or-try-restart"})
_INSTALL_SECTION = re.compile(r"^[ \t]*\[Install\][ \t]*$", re.MULTILINE)
_WANTED_BY_BOOT = "[Install]\nWantedBy=multi-user.target\n"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_WRITE_FILES_ENCODINGS = {
    "": (False, False),  # (base64, gzip)
    "b64": (True, False),
    "base64": (True, False),
    "gz": (False, True),
    "gzip": (False, True),
    "gz+b64": (True, True),
    "gz+base64": (True, True),
    "gzip+b64": (True, True),
    "gzip+base64": (True, True),
}
# Where the etcd section's $private_ipv4/$public_ipv4 stand, between etcd_environment and
# the drop-in: characters no etcd value has (checked), so no text is taken for one.
_PRIVATE_MARK = "\ue000"
_PUBLIC_MARK = "\ue001"


@dataclass(frozen=True)
class AddressVariables:
    """Where etcd's unit reads the machine's addresses when it starts.

    ``environment_file`` holds ``private_ipv4=...`` style assignments; ``after_unit``, when
    set, is the unit that writes it (Flatcar's ``coreos-metadata.service``), which etcd then
    requires and starts after.
    """

    private_ipv4: str = "COREOS_PRIVATE_IPV4"
    public_ipv4: str = "COREOS_PUBLIC_IPV4"
    environment_file: str = "/etc/environment"
    after_unit: str | None = None

    def __post_init__(self) -> None:
        for name in (self.private_ipv4, self.public_ipv4):
            if not _VARIABLE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        if not self.environment_file.startswith("/") or re.search(
            r"[\s\"'\\]", self.environment_file
        ):
            raise ValueError(
                f"environment_file must be an absolute path without spaces, quotes or "
                f"backslashes, not {self.environment_file!r}"
            )
        if self.after_unit is not None:
            check_unit_name(self.after_unit, "after_unit")


# CoreOS wrote these into /etc/environment; so does the plugin's vagrant provisioner.
COREOS_ENVIRONMENT = AddressVariables()
# Flatcar's coreos-metadata (afterburn) for a custom metadata provider; other platforms
# name the variables after themselves (COREOS_EC2_IPV4_LOCAL...).
FLATCAR_CUSTOM_METADATA = AddressVariables(
    private_ipv4="COREOS_CUSTOM_PRIVATE_IPV4",
    public_ipv4="COREOS_CUSTOM_PUBLIC_IPV4",
    environment_file="/run/metadata/flatcar",
    after_unit="coreos-metadata.service",
)


# --- rendering -----------------------------------------------------------------------------


def render_ignition(
    user_data: Mapping[str, Any],
    *,
    ssh_public_key: str,
    hostname: str | None = None,
    private_ipv4: str = PRIVATE_IPV4,
    public_ipv4: str = PUBLIC_IPV4,
    version: str = IGNITION_VERSION,
    addresses: AddressVariables = COREOS_ENVIRONMENT,
) -> dict[str, Any]:
    """An Ignition config with the cloud-config's content, for Flatcar.

    The ``core`` user gets ``ssh_public_key`` and the cloud-config's
    ``ssh_authorized_keys``; ``/etc/hostname`` is written from ``hostname`` (or the
    cloud-config's); ``write_files`` become files; ``coreos.units`` become systemd units;
    the etcd section becomes the ``ETCD_*`` environment of the unit that runs etcd (Flatcar's
    ``etcd-member.service``, enabled, or the cloud-config's own ``etcd.service`` /
    ``etcd2.service`` where it gives one a content). :func:`not_rendered` names the rest.

    Given both real addresses, ``$private_ipv4``/``$public_ipv4`` in the units' contents
    and drop-ins are replaced, as coreos-cloudinit did. An address left as
    ``$private_ipv4``/``$public_ipv4`` is read at start from ``addresses`` (etcd's settings
    only); see the module's docstring. Raises ValueError for what Ignition cannot
    carry (an unknown unit command, a control character in an etcd value...).
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"Ignition version {version!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_VERSIONS)}"
        )
    section_name, section = etcd_section(user_data)
    coreos = user_data["coreos"]
    units = _cloud_config_units(coreos.get("units"))
    if private_ipv4 != PRIVATE_IPV4 and public_ipv4 != PUBLIC_IPV4:
        # What coreos-cloudinit did on the machine: the units' $private_ipv4/$public_ipv4.
        units = [_substitute_unit(unit, private_ipv4, public_ipv4) for unit in units]
    target = _etcd_target(section_name, units)

    keys = [_single_line(ssh_public_key.strip(), "ssh_public_key")]
    for index, key in enumerate(_ssh_authorized_keys(user_data.get("ssh_authorized_keys"))):
        key = _single_line(key.strip(), f"ssh_authorized_keys[{index}]")
        if key not in keys:
            keys.append(key)
    config: dict[str, Any] = {
        "ignition": {"version": version},
        "passwd": {"users": [{"name": CORE_USER, "sshAuthorizedKeys": keys}]},
    }

    files = [_write_file(entry, index) for index, entry in enumerate(_write_files(user_data))]
    if hostname is None and user_data.get("hostname") is not None:
        hostname = str(user_data["hostname"])
    if hostname is not None:
        files.insert(0, _hostname_file(hostname))
    paths = [entry["path"] for entry in files]
    if twice := sorted({path for path in paths if paths.count(path) > 1}):
        raise ValueError(f"files written twice: {', '.join(twice)}")
    if files:
        config["storage"] = {"files": files}

    env = _etcd_env(user_data, section, private_ipv4, public_ipv4)
    # CoreOS's own etcd units, started or given drop-ins, stand for the target on Flatcar.
    merged = [
        unit
        for unit in units
        if unit["name"] == target
        or (unit["name"] in COREOS_ETCD_UNITS.values() and unit.get("contents") is None)
    ]
    own_contents = next((unit["contents"] for unit in merged if "contents" in unit), None)
    if own_contents is not None and any(_has_mark(value) for value in env.values()):
        raise ValueError(
            f"coreos.units gives {target} a content of its own, so its ExecStart= is unknown "
            f"and the addresses cannot be read at start; give real addresses (private_ipv4=, "
            f"public_ipv4=)"
        )
    config["systemd"] = {
        "units": [
            _etcd_unit(target, _etcd_dropin(env, addresses), merged),
            *(unit for unit in units if not any(unit is other for other in merged)),
        ]
    }
    return config


def check_renders(user_data: Mapping[str, Any], path: Path | str) -> None:
    """Raise :class:`UserDataError` naming ``path`` where the cloud-config cannot be rendered
    as Ignition (checked before any machine boots, with stand-in values)."""
    try:
        render_ignition(
            user_data,
            ssh_public_key="ssh-ed25519 AAAA check",
            hostname="core-01",
            private_ipv4="192.0.2.1",
            public_ipv4="192.0.2.1",
        )
    except ValueError as exc:
        raise UserDataError(
            path, f"cannot be rendered as Ignition: {exc}", "see --coreos-config"
        ) from exc


def not_rendered(user_data: Mapping[str, Any]) -> list[str]:
    """The parts of a cloud-config that :func:`render_ignition` leaves out, to tell the user."""
    rendered_top = {"coreos", "hostname", "ssh_authorized_keys", "write_files"}
    left = [str(key) for key in user_data if key not in rendered_top]
    coreos = user_data.get("coreos")
    if isinstance(coreos, Mapping):
        rendered_coreos = {"etcd", "etcd2", "units"}
        left += [f"coreos.{key}" for key in coreos if key not in rendered_coreos]
        runtime = [
            str(unit.get("name", "?"))
            for unit in coreos.get("units") or []
            if isinstance(unit, Mapping) and unit.get("runtime")
        ]
        if runtime:
            left.append(
                f"runtime of coreos.units ({', '.join(runtime)}): Ignition writes units to "
                f"/etc, not /run"
            )
    return left


def to_json(config: Mapping[str, Any]) -> str:
    """The config as an Ignition file: keys in their order, indented by 2, ASCII only."""
    return json.dumps(config, indent=2) + "\n"


def _etcd_env(
    user_data: Mapping[str, Any],
    section: Mapping[str, Any],
    private_ipv4: str,
    public_ipv4: str,
) -> dict[str, str]:
    """etcd's environment, with a mark where an address is to be read at start."""
    for key, value in section.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (_PRIVATE_MARK in text or _PUBLIC_MARK in text):
                raise ValueError(f"etcd key {key}: U+E000/U+E001 cannot be rendered")
    private = _PRIVATE_MARK if private_ipv4 == PRIVATE_IPV4 else private_ipv4
    public = _PUBLIC_MARK if public_ipv4 == PUBLIC_IPV4 else public_ipv4
    return etcd_environment(user_data, private_ipv4=private, public_ipv4=public).env


def _etcd_dropin(env: Mapping[str, str], addresses: AddressVariables) -> str:
    """The etcd unit's drop-in: plain values in Environment=, the others on ExecStart=."""
    variables = {_PRIVATE_MARK: addresses.private_ipv4, _PUBLIC_MARK: addresses.public_ipv4}
    plain = {name: value for name, value in env.items() if not _has_mark(value)}
    at_start = {name: value for name, value in env.items() if _has_mark(value)}
    lines = ["[Service]"]
    lines += [f"Environment={environment_word(name, value)}" for name, value in plain.items()]
    if not at_start:
        return "\n".join(lines) + "\n"
    used = [variables[mark] for mark in (_PRIVATE_MARK, _PUBLIC_MARK) if _uses(at_start, mark)]
    head = []
    if addresses.after_unit is not None:
        head = [
            "[Unit]",
            f"Requires={addresses.after_unit}",
            f"After={addresses.after_unit}",
            "",
        ]
    lines += [
        f"EnvironmentFile={escape_specifiers(addresses.environment_file)}",
        f"# The machine's address ({', '.join(used)}) is read from {addresses.environment_file}",
        "# when etcd starts. systemd expands variables on command lines, never in Environment=;",
        "# where one is empty, etcd fails to start rather than advertise no address, and is",
        "# started again (etcd-member.service has Restart=on-failure).",
    ]
    lines += [f'ExecStartPre=/usr/bin/test -n "${{{name}}}"' for name in used]
    words = [_exec_env_word(name, value, variables) for name, value in at_start.items()]
    lines += [
        "ExecStart=",
        "ExecStart=/usr/bin/env \\",
        *(f"  {word} \\" for word in words),
        f"  {ETCD_WRAPPER}",
    ]
    return "\n".join(head + lines) + "\n"


def _has_mark(value: str) -> bool:
    return _PRIVATE_MARK in value or _PUBLIC_MARK in value


def _uses(env: Mapping[str, str], mark: str) -> bool:
    return any(mark in value for value in env.values())


def _exec_env_word(name: str, value: str, variables: Mapping[str, str]) -> str:
    """``"NAME=value"`` as one command-line word, the marks becoming ``${VARIABLE}``."""
    text = quote_value(f"{name}={value}", name).replace("$", "$$")
    for mark, variable in variables.items():
        text = text.replace(mark, "${" + variable + "}")
    return '"' + text + '"'


def _etcd_unit(target: str, dropin: str, merged: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The unit that runs etcd, enabled, with the etcd drop-in first and the user's after."""
    unit: dict[str, Any] = {"name": target, "enabled": True}
    dropins = [{"name": ETCD_DROPIN, "contents": dropin}]
    for entry in merged:
        if entry.get("mask"):
            raise ValueError(
                f"coreos.units masks {entry['name']}, but the etcd section needs it to run etcd"
            )
        if "contents" in entry:
            unit["contents"] = _startable(entry["contents"])
        for extra in entry.get("dropins", []):
            if any(extra["name"] == dropin["name"] for dropin in dropins):
                raise ValueError(f"{target} gets drop-in {extra['name']} twice")
            dropins.append(extra)
    unit["dropins"] = dropins
    return unit


def _etcd_target(section_name: str, units: Sequence[Mapping[str, Any]]) -> str:
    """The unit the etcd section configures: the cloud-config's own CoreOS etcd unit where it
    gives one a content (coreos-cloudinit configured that one), else Flatcar's."""
    own = COREOS_ETCD_UNITS[section_name]
    if any(unit["name"] == own and unit.get("contents") is not None for unit in units):
        return own
    return ETCD_MEMBER_UNIT


def _cloud_config_units(raw: Any) -> list[dict[str, Any]]:
    """coreos.units as Ignition units, checked; enable or a starting command -> enabled."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"coreos.units is a {type(raw).__name__}, not a list")
    units: list[dict[str, Any]] = []
    for index, entry in enumerate(raw):
        where = f"coreos.units[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} is a {type(entry).__name__}, not a mapping")
        known = {"name", "enable", "command", "content", "mask", "runtime", "drop-ins"}
        if unknown := [str(key) for key in entry if key not in known]:
            raise ValueError(
                f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        name = entry.get("name")
        if not isinstance(name, str):
            raise ValueError(f"{where} has no name")
        check_unit_name(name, where)
        where = f"coreos.units {name}"
        command = entry.get("command")
        if command is not None and command not in _START_COMMANDS | _OTHER_COMMANDS:
            raise ValueError(
                f"{where}: unknown command {command!r} (known: "
                f"{', '.join(sorted(_START_COMMANDS | _OTHER_COMMANDS))})"
            )
        for flag in ("enable", "mask", "runtime"):
            if entry.get(flag) is not None and not isinstance(entry[flag], bool):
                raise ValueError(f"{where}: {flag} is {entry[flag]!r}, not true or false")
        unit: dict[str, Any] = {"name": name}
        starts = bool(entry.get("enable")) or command in _START_COMMANDS
        if starts:
            unit["enabled"] = True
        if entry.get("mask"):
            unit["mask"] = True
        content = entry.get("content")
        if content is not None:
            if not isinstance(content, str):
                raise ValueError(f"{where}: content is a {type(content).__name__}, not text")
            # Ignition enables through presets, which do nothing for a unit without an
            # [Install] section; cloud-config's `command: start` needed none.
            unit["contents"] = _startable(content) if starts else content
        dropins = _dropins(entry.get("drop-ins"), where)
        if dropins:
            unit["dropins"] = dropins
        units.append(unit)
    names = [unit["name"] for unit in units]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"coreos.units lists {', '.join(twice)} more than once")
    return units


def _substitute_unit(
    unit: Mapping[str, Any], private_ipv4: str, public_ipv4: str
) -> dict[str, Any]:
    result = dict(unit)
    if result.get("contents") is not None:
        result["contents"] = substitute(result["contents"], private_ipv4, public_ipv4)
    if result.get("dropins"):
        result["dropins"] = [
            {**dropin, "contents": substitute(dropin["contents"], private_ipv4, public_ipv4)}
            for dropin in result["dropins"]
        ]
    return result


def _startable(content: str) -> str:
    if not content or _INSTALL_SECTION.search(content):
        return content
    return content + ("\n" if content.endswith("\n") else "\n\n") + _WANTED_BY_BOOT


def _dropins(raw: Any, where: str) -> list[dict[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{where}: drop-ins is a {type(raw).__name__}, not a list")
    dropins = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ValueError(f"{where}: drop-ins[{index}] needs a name")
        name = entry["name"]
        if not name.endswith(".conf") or "/" in name:
            raise ValueError(f"{where}: drop-in name {name!r} must be a file name ending .conf")
        content = entry.get("content", "")
        if not isinstance(content, str):
            raise ValueError(f"{where}: drop-in {name}: content is not text")
        dropins.append({"name": name, "contents": content})
    names = [dropin["name"] for dropin in dropins]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"{where}: drop-in {', '.join(twice)} given more than once")
    return dropins


def _ssh_authorized_keys(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise ValueError("ssh_authorized_keys must be a list of keys (text)")
    return raw


def _single_line(text: str, what: str) -> str:
    if not text or "\n" in text or "\r" in text:
        raise ValueError(f"{what} must be one non-empty line, not {text!r}")
    return text


# --- files ---------------------------------------------------------------------------------


def data_url(content: bytes | str) -> str:
    """``content`` as an RFC 2397 ``data:`` URL, percent-encoded (text is UTF-8)."""
    raw = content.encode() if isinstance(content, str) else content
    return "data:," + quote(raw, safe="")


def _hostname_file(hostname: str) -> dict[str, Any]:
    labels = hostname.rstrip(".").split(".")
    if len(hostname) > 253 or not all(_HOSTNAME_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{hostname!r} is not a host name (RFC 1123)")
    return {
        "path": "/etc/hostname",
        "overwrite": True,
        "mode": 0o644,
        "contents": {"source": data_url(hostname + "\n")},
    }


def _write_files(user_data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = user_data.get("write_files")
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(entry, Mapping) for entry in raw):
        raise ValueError("write_files must be a list of mappings")
    return raw


def _write_file(entry: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One write_files entry as an Ignition file, meaning what coreos-cloudinit made of it."""
    path = entry.get("path")
    where = f"write_files[{index}]"
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{where}: path must be absolute, not {path!r}")
    where = f"write_files {path}"
    encoding = entry.get("encoding") or ""
    if encoding not in _WRITE_FILES_ENCODINGS:
        raise ValueError(
            f"{where}: unknown encoding {encoding!r} (known: "
            f"{', '.join(key for key in _WRITE_FILES_ENCODINGS if key)})"
        )
    is_base64, is_gzip = _WRITE_FILES_ENCODINGS[encoding]
    content = entry.get("content", "")
    contents: dict[str, Any]
    if not is_base64 and not is_gzip:
        if not isinstance(content, str):
            raise ValueError(f"{where}: content must be text")
        contents = {"source": data_url(content)}
    else:
        raw = _base64_content(content, where) if is_base64 else content
        if not isinstance(raw, bytes):
            raise ValueError(f"{where}: content of encoding {encoding} must be binary")
        if is_gzip:
            try:
                gzip.decompress(raw)
            except (OSError, EOFError) as exc:
                raise ValueError(f"{where}: content is not gzip data ({exc})") from exc
        contents = {"source": "data:;base64," + base64.b64encode(raw).decode("ascii")}
        if is_gzip:
            contents["compression"] = "gzip"
    file: dict[str, Any] = {
        "path": path,
        "overwrite": True,
        "mode": _mode(entry.get("permissions"), where),
        "contents": contents,
    }
    owner = entry.get("owner")
    if owner is not None:
        if not isinstance(owner, str) or not owner:
            raise ValueError(f"{where}: owner must be user or user:group")
        user, _, group = owner.partition(":")
        for key, name in (("user", user), ("group", group)):
            if name:
                file[key] = {"id": int(name)} if name.isdigit() else {"name": name}
    return file


def _base64_content(content: Any, where: str) -> bytes:
    if not isinstance(content, str):
        raise ValueError(f"{where}: base64 content must be text")
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{where}: content is not base64 ({exc})") from exc


def _mode(permissions: Any, where: str) -> int:
    """cloud-config's permissions, octal digits written as text (or read as a number)."""
    if permissions is None:
        return 0o644
    text = str(permissions)
    if isinstance(permissions, bool) or not re.fullmatch(r"(?:0o?)?[0-7]{1,4}", text):
        raise ValueError(f"{where}: permissions {permissions!r} are not octal, as 0644")
    return int(text.removeprefix("0o"), 8)
