"""Ignition configs (spec 3.x, JSON) for Flatcar, as dicts in and dicts out.

:func:`render_ignition` gives a cloud-config's content the Ignition way: the ``core`` user's
SSH keys, ``/etc/hostname``, the user's units, and etcd as Flatcar runs it, with a drop-in
for ``etcd-member.service`` (as Flatcar's Container Linux Config Transpiler wrote
``20-clct-etcd-member.conf``) carrying the ``ETCD_*`` environment that
:func:`pytest_coreos.render.etcd_environment` derives from the etcd section.
:func:`load_ignition` reads a user's own config and :func:`inject_discovery_ignition` sets
its discovery URL. Nothing here touches the network or the disk, except
:func:`load_ignition` reading its file.

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
import copy
import gzip
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pytest_coreos import render
from pytest_coreos.errors import IgnitionError as IgnitionError  # also importable from here
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
_UNIT_TYPES = frozenset(
    {
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    }
)
_START_COMMANDS = frozenset({"start", "restart", "reload-or-restart"})
_OTHER_COMMANDS = frozenset({"stop", "reload", "try-restart", "reload-or-try-restart"})
_INSTALL_SECTION = re.compile(r"^[ \t]*\[Install\][ \t]*$", re.MULTILINE)
_WANTED_BY_BOOT = "[Install]\nWantedBy=multi-user.target\n"
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]+")
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


def _check_unit_name(name: str, where: str) -> None:
    unit_type = name.rpartition(".")[2]
    if not _UNIT_NAME.fullmatch(name) or "." not in name or unit_type not in _UNIT_TYPES:
        raise ValueError(
            f"{where}: {name!r} is not a systemd unit name (a name and a type: "
            f"{', '.join(sorted(_UNIT_TYPES))})"
        )


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
            _check_unit_name(self.after_unit, "after_unit")


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
    private_ipv4: str = render.PRIVATE_IPV4,
    public_ipv4: str = render.PUBLIC_IPV4,
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
    section_name, section = render.etcd_section(user_data)
    coreos = user_data["coreos"]
    units = _cloud_config_units(coreos.get("units"))
    if private_ipv4 != render.PRIVATE_IPV4 and public_ipv4 != render.PUBLIC_IPV4:
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
    private = _PRIVATE_MARK if private_ipv4 == render.PRIVATE_IPV4 else private_ipv4
    public = _PUBLIC_MARK if public_ipv4 == render.PUBLIC_IPV4 else public_ipv4
    return render.etcd_environment(user_data, private_ipv4=private, public_ipv4=public).env


def _etcd_dropin(env: Mapping[str, str], addresses: AddressVariables) -> str:
    """The etcd unit's drop-in: plain values in Environment=, the others on ExecStart=."""
    variables = {_PRIVATE_MARK: addresses.private_ipv4, _PUBLIC_MARK: addresses.public_ipv4}
    plain = {name: value for name, value in env.items() if not _has_mark(value)}
    at_start = {name: value for name, value in env.items() if _has_mark(value)}
    lines = ["[Service]"]
    lines += [f"Environment={_environment_word(name, value)}" for name, value in plain.items()]
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
        f"EnvironmentFile={_escape_specifiers(addresses.environment_file)}",
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


def _environment_word(name: str, value: str) -> str:
    """``"NAME=value"`` quoted for systemd's Environment=, where only % is special."""
    return '"' + _quote_for_systemd(f"{name}={value}", name) + '"'


def _exec_env_word(name: str, value: str, variables: Mapping[str, str]) -> str:
    """``"NAME=value"`` as one command-line word, the marks becoming ``${VARIABLE}``."""
    text = _quote_for_systemd(f"{name}={value}", name).replace("$", "$$")
    for mark, variable in variables.items():
        text = text.replace(mark, "${" + variable + "}")
    return '"' + text + '"'


def _quote_for_systemd(text: str, what: str) -> str:
    """The inside of a double-quoted systemd word that unquotes to ``text``.

    Backslash and double quote are escaped, % doubled (specifiers are expanded even in
    Environment=); control characters other than tab cannot be in a unit's value at all.
    """
    if bad := sorted(
        {char for char in text if (ord(char) < 32 and char != "\t") or char == "\x7f"}
    ):
        raise ValueError(
            f"{what}: control characters cannot be in a systemd value: "
            f"{', '.join(repr(char) for char in bad)}"
        )
    return _escape_specifiers(text.replace("\\", "\\\\").replace('"', '\\"'))


def _escape_specifiers(text: str) -> str:
    return text.replace("%", "%%")


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
        _check_unit_name(name, where)
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
        result["contents"] = render.substitute(result["contents"], private_ipv4, public_ipv4)
    if result.get("dropins"):
        result["dropins"] = [
            {**dropin, "contents": render.substitute(dropin["contents"], private_ipv4, public_ipv4)}
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
    if first == render.CLOUD_CONFIG_HEADER:
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
    setting = [str(unit["name"]) for unit in units if _finds_discovery(unit)]
    if len(setting) > 1:
        raise ValueError(f"several units set etcd's discovery: {', '.join(setting)}")
    if setting:
        return setting[0]
    names = [unit["name"] for unit in units]
    for name in (ETCD_MEMBER_UNIT, *COREOS_ETCD_UNITS.values()):
        if name in names:
            return name
    running = [str(unit["name"]) for unit in units if _runs_etcd(unit)]
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
    _quote_for_systemd(url, "the discovery URL")
    if not url or any(char.isspace() for char in url):
        raise ValueError(f"the discovery URL must be one word, not {url!r}")
    injected = copy.deepcopy(dict(config))
    name = etcd_unit_name(injected)
    unit = next(unit for unit in injected["systemd"]["units"] if unit["name"] == name)
    found = False
    if unit.get("contents") is not None:
        unit["contents"], found = _set_discovery(unit["contents"], url)
    for dropin in unit.get("dropins") or []:
        if dropin.get("contents") is not None:
            dropin["contents"], replaced = _set_discovery(dropin["contents"], url)
            found = found or replaced
    if not found:
        unit.setdefault("dropins", []).append(
            {
                "name": DISCOVERY_DROPIN,
                "contents": f"[Service]\nEnvironment={_environment_word('ETCD_DISCOVERY', url)}\n",
            }
        )
    return injected


# --- reading and changing unit files -------------------------------------------------------

# One word as systemd splits a line: quoted parts, escapes and plain characters, adjoining.
_WORD = re.compile(r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\\.|[^\s"'\\])+""", re.DOTALL)
_DISCOVERY_FLAGS = ("--discovery", "-discovery")
# (unquoted word, the next unquoted word or None) -> None to keep the word, or the text that
# replaces it and whether that text replaces the next word instead of this one.
_Replacer = Callable[[str, str | None], tuple[str, bool] | None]
_ETCD_PROGRAMS = frozenset({"etcd", "etcd2", "etcd-wrapper"})


@dataclass(frozen=True)
class _Directive:
    """One logical line of a unit file: ``Key=value`` in a section, continuation included.

    ``scan`` is ``text`` with each backslash-newline turned into two spaces, so that the
    offsets of words found in it are offsets in ``text``.
    """

    section: str
    key: str
    text: str
    scan: str
    value_start: int


def _directives(contents: str) -> Iterator[tuple[int, int, _Directive | None]]:
    """(start, end, directive) for each logical line of ``contents``; None for the others."""
    section = ""
    position = 0
    lines = contents.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        start = position
        text = lines[index]
        stripped = text.strip()
        index += 1
        is_directive = bool(stripped) and not stripped.startswith(("#", ";", "["))
        while is_directive and text.rstrip("\r\n").endswith("\\") and index < len(lines):
            text += lines[index]
            index += 1
        position = start + len(text)
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        if not is_directive or "=" not in text:
            yield start, position, None
            continue
        key, _, _ = text.partition("=")
        scan = re.sub(r"\\\r?\n", lambda match: " " * len(match.group()), text)
        value_start = len(key) + 1
        yield start, position, _Directive(section, key.strip(), text, scan, value_start)


def _words(directive: _Directive) -> Iterator[tuple[int, int, str]]:
    """(start, end, unquoted) for each word of the directive's value."""
    for match in _WORD.finditer(directive.scan, directive.value_start):
        yield match.start(), match.end(), _unquote(match.group())


def _unquote(word: str) -> str:
    """A word without its quotes and escapes, near enough to read names and flags."""
    out = []
    quote_char = ""
    index = 0
    while index < len(word):
        char = word[index]
        if char == "\\" and index + 1 < len(word):
            out.append(word[index + 1])
            index += 2
            continue
        if quote_char and char == quote_char:
            quote_char = ""
        elif not quote_char and char in "\"'":
            quote_char = char
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _unit_texts(unit: Mapping[str, Any]) -> Iterator[str]:
    if unit.get("contents"):
        yield unit["contents"]
    for dropin in unit.get("dropins") or []:
        if dropin.get("contents"):
            yield dropin["contents"]


def _service_directives(unit: Mapping[str, Any], key: str) -> Iterator[_Directive]:
    for text in _unit_texts(unit):
        for _, _, directive in _directives(text):
            if directive is not None and directive.section == "Service" and directive.key == key:
                yield directive


def _finds_discovery(unit: Mapping[str, Any]) -> bool:
    return any(_set_discovery(text, "http://example.invalid/x")[1] for text in _unit_texts(unit))


def _runs_etcd(unit: Mapping[str, Any]) -> bool:
    """Whether the unit's ExecStart= runs etcd (its program, or a path or image of a
    container runner's), or the unit sets ETCD_* variables."""
    for directive in _service_directives(unit, "ExecStart"):
        for position, (_, _, word) in enumerate(_words(directive)):
            if position == 0:
                word = word.lstrip("-@+!:")
            elif "/" not in word:  # `docker exec etcd ...` names a container, not etcd
                continue
            if word.rpartition("/")[2].partition(":")[0].partition("@")[0] in _ETCD_PROGRAMS:
                return True
    for directive in _service_directives(unit, "Environment"):
        for _, _, word in _words(directive):
            if word.startswith("ETCD_") and "=" in word:
                return True
    return False


def _set_discovery(contents: str, url: str) -> tuple[str, bool]:
    """The unit text with every discovery setting of [Service] set to ``url``, and whether
    there was one."""
    pieces: list[str] = []
    found = False
    for start, end, directive in _directives(contents):
        text = contents[start:end]
        if directive is not None and directive.section == "Service":
            if directive.key == "Environment":
                text, replaced = _replace_words(directive, _environment_replacement(url))
                found = found or replaced
            elif directive.key == "ExecStart":
                text, replaced = _replace_words(directive, _exec_replacement(url))
                found = found or replaced
        pieces.append(text)
    return "".join(pieces), found


def _environment_replacement(url: str) -> _Replacer:
    def replace(word: str, following: str | None) -> tuple[str, bool] | None:
        if word.startswith("ETCD_DISCOVERY="):
            return _environment_word("ETCD_DISCOVERY", url), False
        return None

    return replace


def _exec_replacement(url: str) -> _Replacer:
    quoted = '"' + _quote_for_systemd(url, "the discovery URL").replace("$", "$$") + '"'

    def replace(word: str, following: str | None) -> tuple[str, bool] | None:
        if word.startswith("ETCD_DISCOVERY="):
            return '"ETCD_DISCOVERY=' + quoted[1:], False
        flag, equals, _ = word.partition("=")
        if flag in _DISCOVERY_FLAGS:
            if equals:
                return f"{flag}={quoted}", False
            if following is not None:
                return quoted, True
        return None

    return replace


def _replace_words(directive: _Directive, replacer: _Replacer) -> tuple[str, bool]:
    words = list(_words(directive))
    changes: list[tuple[int, int, str]] = []
    for index, (start, end, word) in enumerate(words):
        following = words[index + 1][2] if index + 1 < len(words) else None
        result = replacer(word, following)
        if result is None:
            continue
        replacement, of_next = result
        if of_next:
            start, end = words[index + 1][0], words[index + 1][1]
        changes.append((start, end, replacement))
    text = directive.text
    for start, end, replacement in reversed(changes):
        text = text[:start] + replacement + text[end:]
    return text, bool(changes)
