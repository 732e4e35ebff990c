"""Cloud-config as text in and text out.

Reads the user's ``#cloud-config`` the way coreos-cloudinit did (values stay as written),
checks its etcd section, injects a discovery URL and renders user-data. Nothing here
touches the network or the disk, except :func:`load_user_data` reading its file. The etcd
section's environment is :mod:`pytest_coreos.config.etcd_env`'s, ``config.rb``
:mod:`pytest_coreos.config.config_rb`'s.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pytest_coreos.config import fleet_env
from pytest_coreos.config.etcd_env import (
    _KNOWN_KEYS,
    ETCD04_KEYS,
    ETCD2_KEYS,
    PUBLIC_IPV4,
    _canonical_key,
    _yaml_kind,
    etcd_section,
)
from pytest_coreos.errors import UserDataError

CLOUD_CONFIG_HEADER = "#cloud-config"
DISCOVERY_PLACEHOLDER = "https://discovery.etcd.io/<token>"

# --- reading YAML the way coreos-cloudinit did ---------------------------------------------

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# PyYAML's YAML 1.1 resolvers turn `off` into False, `0644` into 420, `1:30` into 90 and
# `2015-01-01` into a date; coreos-cloudinit kept such values as written. `=` has a resolver
# but no safe constructor, so PyYAML even fails on it.
_REPLACED_TAGS = frozenset(
    {_BOOL_TAG, _INT_TAG, _FLOAT_TAG, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
)


class _CloudConfigLoader(yaml.SafeLoader):
    """A SafeLoader whose only booleans are true/false and whose numbers are plain decimals,
    and which refuses aliases.

    The user-data is written back out in full (aliases expanded), so a few nested aliases
    ("billion laughs") would grow into gigabytes; cloud-config files have no need of them.
    """

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level registry
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                f"an alias (*{event.anchor}): aliases are not accepted in user-data; "
                "write the value out where it is used",
                event.start_mark,
            )
        return super().compose_node(parent, index)


_CloudConfigLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CloudConfigLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_CloudConfigLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class _CloudConfigDumper(yaml.SafeDumper):
    """Block-style YAML as coreos-vagrant's user-data was written: indented lists, no aliases.

    It keeps SafeDumper's YAML 1.1 resolvers, so any string a YAML 1.1 reader would take for
    a bool, null, number or date is quoted and reads back as the same string.
    """

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Unit files and write_files content read best as literal blocks; the emitter falls back
    # to a quoted style by itself where a block cannot hold the text exactly.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CloudConfigDumper.add_representer(str, _represent_str)


# --- user-data -----------------------------------------------------------------------------


def default_user_data() -> dict[str, Any]:
    """The cloud-config of coreos-vagrant's user-data sample, as a fresh dict to change freely.

    Its discovery URL is a placeholder: :func:`inject_discovery` sets the real one.
    """
    return {
        "coreos": {
            "etcd": {
                "discovery": DISCOVERY_PLACEHOLDER,
                "addr": f"{PUBLIC_IPV4}:4001",
                "peer-addr": f"{PUBLIC_IPV4}:7001",
            },
            "fleet": {"public-ip": PUBLIC_IPV4},
            "units": [
                {"name": "etcd.service", "command": "start"},
                {"name": "fleet.service", "command": "start"},
            ],
        }
    }


def load_user_data(path: Path) -> dict[str, Any]:
    """Read and check the user's cloud-config file; see :func:`parse_user_data`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserDataError(path, "the file does not exist") from None
    except IsADirectoryError:
        raise UserDataError(path, "is a directory, not a cloud-config file") from None
    except OSError as exc:
        raise UserDataError(path, f"the file cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserDataError(path, f"the file is not UTF-8 text ({exc.reason})") from exc
    return parse_user_data(text, path)


def parse_user_data(text: str, path: Path | str) -> dict[str, Any]:
    """Parse cloud-config text and check that it gives the machines a usable etcd section.

    ``path`` only names the text's origin in errors. Values stay as written (``off`` is the
    string ``"off"``), as coreos-cloudinit read them; keys outside the etcd section are
    accepted as they are.
    """
    data = parse_cloud_config(text, path)
    coreos = data.get("coreos")
    if not isinstance(coreos, dict):
        problem = "has no coreos section" if coreos is None else "coreos is not a mapping"
        raise UserDataError(
            path,
            problem,
            "add a coreos.etcd2 section, or coreos.etcd for etcd 0.4 keys, so that etcd starts",
        )
    _check_etcd_section(coreos, path)
    fleet_env.check_fleet_section(coreos, path)
    return data


def parse_cloud_config(text: str, path: Path | str) -> dict[str, Any]:
    """Parse any cloud-config text (the ``#cloud-config`` line, then a YAML mapping), such
    as the small ones Vagrant's CoreOS guest sends to set the hostname and networks."""
    if not text.strip():
        raise UserDataError(path, "the file is empty")
    first_line = text.split("\n", 1)[0]
    # coreos-cloudinit trimmed trailing whitespace (a CRLF file's "\r") before comparing.
    if first_line.rstrip() != CLOUD_CONFIG_HEADER:
        raise UserDataError(
            path,
            f"the first line is {first_line.rstrip()!r}, not {CLOUD_CONFIG_HEADER!r}",
            f"coreos-cloudinit only reads a file as cloud-config when its first line is "
            f"exactly {CLOUD_CONFIG_HEADER}",
        )
    try:
        data = yaml.load(text, Loader=_CloudConfigLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = ": ".join(part for part in (exc.context, exc.problem) if part)
        raise UserDataError(path, f"not valid YAML{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise UserDataError(path, f"not valid YAML: {exc}") from exc
    if data is None:
        raise UserDataError(path, f"nothing follows the {CLOUD_CONFIG_HEADER} line")
    if not isinstance(data, dict):
        raise UserDataError(
            path, f"the document is a {_yaml_kind(data)}, not a mapping of cloud-config keys"
        )
    return data


def _check_etcd_section(coreos: Mapping[str, Any], path: Path | str) -> None:
    present = [name for name in ("etcd", "etcd2") if name in coreos]
    if not present:
        raise UserDataError(
            path,
            "has neither coreos.etcd nor coreos.etcd2, so the machines would start no etcd",
            "add a coreos.etcd2 section, or coreos.etcd for etcd 0.4 keys",
        )
    if len(present) == 2:
        raise UserDataError(
            path,
            "has both coreos.etcd and coreos.etcd2; it is unclear which etcd to configure",
            "keep one: coreos.etcd2 for etcd 2+ keys, coreos.etcd for etcd 0.4 keys",
        )
    name = present[0]
    section = coreos[name]
    if not isinstance(section, dict):
        kind = "empty" if section is None else f"a {_yaml_kind(section)}, not a mapping"
        raise UserDataError(path, f"coreos.{name} is {kind}, so the machines would start no etcd")
    known = _KNOWN_KEYS[name]
    spellings: dict[str, list[str]] = {}
    for key in section:
        spellings.setdefault(_canonical_key(key), []).append(str(key))
    unknown = [written[0] for canonical, written in spellings.items() if canonical not in known]
    if unknown:
        raise UserDataError(
            path,
            f"unknown key{'s' if len(unknown) > 1 else ''} in coreos.{name}: "
            f"{', '.join(unknown)}{_suggestions(name, unknown)}",
            f"known keys: {', '.join(sorted(known))}; etcd only warns about an unknown "
            f"ETCD_* variable, so a misspelt key would silently change nothing",
        )
    twice = [" and ".join(written) for written in spellings.values() if len(written) > 1]
    if twice:
        raise UserDataError(
            path,
            f"coreos.{name} sets the same key twice: {'; '.join(twice)}",
            "coreos-cloudinit reads - and _ in keys alike; keep one spelling",
        )


def _suggestions(section_name: str, unknown: list[str]) -> str:
    hints = []
    for key in unknown:
        canonical = _canonical_key(key)
        if section_name == "etcd" and canonical in ETCD2_KEYS:
            hints.append(f"{key} belongs in coreos.etcd2")
        elif section_name == "etcd2" and canonical in ETCD04_KEYS:
            hints.append(f"{key} belongs in coreos.etcd, for etcd 0.4")
        elif close := difflib.get_close_matches(canonical, _KNOWN_KEYS[section_name], n=1):
            hints.append(f"{key}: did you mean {close[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


def inject_discovery(data: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A deep copy of the cloud-config whose etcd section's ``discovery`` is ``url``.

    Nothing else changes, so the user's file reaches the machines as they wrote it.
    """
    name, _ = etcd_section(data)
    injected = copy.deepcopy(dict(data))
    injected["coreos"][name]["discovery"] = url
    return injected


def render_user_data(data: Mapping[str, Any]) -> str:
    """The cloud-config as a user-data file: the header line, then block-style YAML.

    Keys keep their order; strings that YAML 1.1 would read as something else are quoted,
    so :func:`load_user_data` gives back the same data.
    """
    body = yaml.dump(
        dict(data),
        Dumper=_CloudConfigDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        # No folding of long values (ssh keys, URL lists): a reader sees each as written.
        width=1 << 30,
    )
    return f"{CLOUD_CONFIG_HEADER}\n\n{body}"
