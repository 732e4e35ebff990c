"""Cloud-config and config.rb, as text in and text out.

Reads the user's ``#cloud-config`` the way coreos-cloudinit did (values stay as written),
checks its etcd section, injects a discovery URL, renders user-data and coreos-vagrant's
``config.rb``, and turns the etcd section into the ``ETCD_*`` environment CoreOS gave etcd.
Nothing here touches the network or the disk, except :func:`load_user_data` reading its file.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pytest_coreos import fleet_env
from pytest_coreos.errors import UserDataError

PRIVATE_IPV4 = "$private_ipv4"
PUBLIC_IPV4 = "$public_ipv4"
CHANNELS = ("stable", "beta", "alpha")

CLOUD_CONFIG_HEADER = "#cloud-config"
DISCOVERY_PLACEHOLDER = "https://discovery.etcd.io/<token>"

# Every key coreos-cloudinit accepted in `coreos.etcd` (etcd 0.4, config/etcd.go), mapped to
# the etcd 2+ key that means the same thing, or None where etcd 2+ has no equivalent.
# `addr`, `bind-addr`, `peer-addr` and `peer-bind-addr` held host:port, where etcd 2+ wants
# URLs; etcd_environment turns them into URLs. Plain data, so that a VM-side agent can share it.
ETCD04_TO_ETCD2: dict[str, str | None] = {
    "addr": "advertise-client-urls",
    "bind-addr": "listen-client-urls",
    "ca-file": "trusted-ca-file",
    "cert-file": "cert-file",
    "cluster-active-size": None,
    "cluster-remove-delay": None,
    "cluster-sync-interval": None,
    "cors": "cors",
    "data-dir": "data-dir",
    "discovery": "discovery",
    "graphite-host": None,
    "http-read-timeout": None,
    "http-write-timeout": None,
    "key-file": "key-file",
    "max-result-buffer": None,
    "max-retry-attempts": None,
    "name": "name",
    "peer-addr": "initial-advertise-peer-urls",
    "peer-bind-addr": "listen-peer-urls",
    "peer-ca-file": "peer-trusted-ca-file",
    "peer-cert-file": "peer-cert-file",
    "peer-election-timeout": "election-timeout",
    "peer-heartbeat-interval": "heartbeat-interval",
    "peer-key-file": "peer-key-file",
    "peers": None,
    "peers-file": None,
    "retry-interval": None,
    "snapshot": None,
    "snapshot-count": "snapshot-count",
    "trace": None,
    "verbose": None,
    "very-verbose": None,
    "very-very-verbose": None,
}

# etcd 0.4 required client certificates as soon as a CA file was given; etcd 2+ splits that
# into the CA file and a switch, so the switch must come along or the check silently goes.
ETCD04_IMPLIED_ETCD2: dict[str, dict[str, bool]] = {
    "ca-file": {"client-cert-auth": True},
    "peer-ca-file": {"peer-client-cert-auth": True},
}

ETCD04_KEYS: frozenset[str] = frozenset(ETCD04_TO_ETCD2)

# Every key coreos-cloudinit accepted in `coreos.etcd2` (config/etcd2.go).
ETCD2_KEYS: frozenset[str] = frozenset(
    {
        "advertise-client-urls",
        "ca-file",
        "cert-file",
        "client-cert-auth",
        "cors",
        "data-dir",
        "debug",
        "discovery",
        "discovery-fallback",
        "discovery-proxy",
        "discovery-srv",
        "election-timeout",
        "enable-pprof",
        "force-new-cluster",
        "heartbeat-interval",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "key-file",
        "listen-client-urls",
        "listen-peer-urls",
        "log-package-levels",
        "max-snapshots",
        "max-wals",
        "name",
        "peer-ca-file",
        "peer-cert-file",
        "peer-client-cert-auth",
        "peer-key-file",
        "peer-trusted-ca-file",
        "proxy",
        "proxy-dial-timeout",
        "proxy-failure-wait",
        "proxy-read-timeout",
        "proxy-refresh-interval",
        "proxy-write-timeout",
        "snapshot-count",
        "strict-reconfig-check",
        "trusted-ca-file",
        "wal-dir",
    }
)

_KNOWN_KEYS = {"etcd": ETCD04_KEYS, "etcd2": ETCD2_KEYS}

# etcd 0.4's default ports, used where an address names a host but no port.
_ETCD04_CLIENT_PORT = 4001
_ETCD04_PEER_PORT = 7001

_RUBY_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    """A SafeLoader whose only booleans are true/false and whose numbers are plain decimals."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level registry
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


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


def _canonical_key(key: object) -> str:
    # coreos-cloudinit turned every - in a key into _; the documented spelling is with -.
    return str(key).replace("_", "-")


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


def _yaml_kind(value: object) -> str:
    return "string" if isinstance(value, str) else type(value).__name__


def etcd_section(data: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Which etcd section the cloud-config has (``"etcd"`` or ``"etcd2"``) and a copy of it.

    Raises ValueError when there is not exactly one such mapping under ``coreos``.
    """
    coreos = data.get("coreos")
    if not isinstance(coreos, Mapping):
        raise ValueError("the cloud-config has no coreos mapping")
    present = [name for name in ("etcd", "etcd2") if isinstance(coreos.get(name), Mapping)]
    if len(present) != 1:
        found = " and ".join(f"coreos.{name}" for name in present) or "neither"
        raise ValueError(f"expected one of coreos.etcd and coreos.etcd2, found {found}")
    name = present[0]
    return name, dict(coreos[name])


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


# --- config.rb -----------------------------------------------------------------------------


def render_config_rb(
    num_instances: int,
    update_channel: str,
    extra: Mapping[str, str | int | bool] | None = None,
) -> str:
    """coreos-vagrant's ``config.rb``: Ruby globals its Vagrantfile reads at start.

    ``extra`` adds more globals (``vm_memory``, ``instance_name_prefix``...) by bare name.
    """
    if isinstance(num_instances, bool) or num_instances < 1:
        raise ValueError(f"num_instances must be an int of at least 1, not {num_instances!r}")
    if update_channel not in CHANNELS:
        raise ValueError(
            f"update_channel must be one of {', '.join(CHANNELS)}, not {update_channel!r}"
        )
    lines = [f"$num_instances={num_instances}", f"$update_channel={ruby_literal(update_channel)}"]
    for key, value in (extra or {}).items():
        if not _RUBY_IDENTIFIER.fullmatch(key):
            raise ValueError(f"config.rb key {key!r} is not a Ruby identifier")
        if key in ("num_instances", "update_channel"):
            raise ValueError(f"config.rb key {key!r} is set by its own parameter, not in extra")
        lines.append(f"${key}={ruby_literal(value)}")
    return "\n".join(lines) + "\n"


def ruby_literal(value: str | int | bool) -> str:
    """``value`` as a Ruby literal: a string double-quoted, with nothing interpolated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + _RUBY_ESCAPED.sub(_ruby_escape, value) + '"'
    raise TypeError(f"config.rb values are str, int or bool, not {type(value).__name__}")


# In a double-quoted Ruby string, \ and " end or escape, control characters are unreadable,
# and #{ #$ #@ interpolate code.
_RUBY_ESCAPED = re.compile(r'[\\"\x00-\x1f\x7f]|#(?=[{$@])')
_RUBY_NAMED_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "#": "\\#"}


def _ruby_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _RUBY_NAMED_ESCAPES.get(char) or f"\\x{ord(char):02X}"


# --- etcd's environment --------------------------------------------------------------------


# An optional backslash, then a placeholder: coreos-cloudinit's escape for a literal one.
_PLACEHOLDER = re.compile(r"(\\?)(" + re.escape(PRIVATE_IPV4) + "|" + re.escape(PUBLIC_IPV4) + ")")


def substitute(value: str, private_ipv4: str, public_ipv4: str) -> str:
    """Replace ``$private_ipv4`` and ``$public_ipv4`` as coreos-cloudinit did.

    A backslash before either (``\\$private_ipv4``) keeps it literally, without the backslash.
    """
    addresses = {PRIVATE_IPV4: private_ipv4, PUBLIC_IPV4: public_ipv4}

    def replace(match: re.Match[str]) -> str:
        backslash, placeholder = match.groups()
        return placeholder if backslash else addresses[placeholder]

    return _PLACEHOLDER.sub(replace, value)


@dataclass(frozen=True)
class EtcdEnvironment:
    """etcd's ``ETCD_*`` variables, and the etcd 0.4 keys (spelt with -) etcd 2+ has no use for."""

    env: dict[str, str]
    dropped: tuple[str, ...]


def etcd_environment(
    data: Mapping[str, Any], *, private_ipv4: str, public_ipv4: str
) -> EtcdEnvironment:
    """The environment CoreOS gave etcd for this cloud-config, for etcd 2 and later.

    An ``etcd2`` section maps key by key (``listen-client-urls`` -> ``ETCD_LISTEN_CLIENT_URLS``);
    an etcd 0.4 ``etcd`` section is first translated to its etcd 2+ equivalents
    (:data:`ETCD04_TO_ETCD2`), its host:port addresses becoming URLs.
    """
    name, section = etcd_section(data)
    substituted = {
        _canonical_key(key): _substitute_all(value, private_ipv4, public_ipv4)
        for key, value in section.items()
    }
    dropped: tuple[str, ...] = ()
    if name == "etcd":
        substituted, dropped = _translate_etcd04(substituted)
    env: dict[str, str] = {}
    for key, value in substituted.items():
        text = _env_value(f"coreos.{name}.{key}", value)
        if text is not None:
            env["ETCD_" + key.upper().replace("-", "_")] = text
    return EtcdEnvironment(env=env, dropped=dropped)


def _substitute_all(value: Any, private_ipv4: str, public_ipv4: str) -> Any:
    if isinstance(value, str):
        return substitute(value, private_ipv4, public_ipv4)
    if isinstance(value, list):
        return [_substitute_all(item, private_ipv4, public_ipv4) for item in value]
    return value


def _env_value(where: str, value: Any) -> str | None:
    # None and "" set nothing, as coreos-cloudinit skipped empty values.
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    if isinstance(value, list) and all(
        isinstance(item, str | int | float) and not isinstance(item, bool) for item in value
    ):
        return ",".join(str(item) for item in value)
    raise ValueError(f"{where}: a {_yaml_kind(value)} cannot be an environment variable")


def _translate_etcd04(section: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """An etcd 0.4 section (keys with -) as an etcd2 section, and the keys that had to go."""
    translated: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in _etcd04_addresses_as_urls(section).items():
        etcd2_key = ETCD04_TO_ETCD2.get(key)
        if etcd2_key is None:
            dropped.append(key)
            continue
        translated[etcd2_key] = value
        if value not in (None, ""):
            translated.update(ETCD04_IMPLIED_ETCD2.get(key, {}))
    return translated, tuple(dropped)


def _etcd04_addresses_as_urls(section: Mapping[str, Any]) -> dict[str, Any]:
    """The section with its host:port addresses as URLs, and etcd 0.4's implied listen ones.

    etcd 0.4 listened on all interfaces at the advertised port unless given a bind address,
    and a bind address without a port took the advertised one. It served TLS as soon as it
    had a certificate and a key, with no scheme written anywhere.
    """
    converted = dict(section)
    for addr, bind_addr, cert_file, key_file, default_port in (
        ("addr", "bind-addr", "cert-file", "key-file", _ETCD04_CLIENT_PORT),
        ("peer-addr", "peer-bind-addr", "peer-cert-file", "peer-key-file", _ETCD04_PEER_PORT),
    ):
        scheme = "https" if section.get(cert_file) and section.get(key_file) else "http"
        listen_scheme, listen_port = scheme, default_port
        if section.get(addr) not in (None, ""):
            advertised = _address_url(addr, section[addr], scheme, default_port)
            converted[addr] = advertised
            listen_scheme, listen_port = _url_scheme_and_port(advertised)
            if section.get(bind_addr) in (None, ""):
                converted[bind_addr] = f"{listen_scheme}://0.0.0.0:{listen_port}"
        if section.get(bind_addr) not in (None, ""):
            converted[bind_addr] = _address_url(
                bind_addr, section[bind_addr], listen_scheme, listen_port
            )
    return converted


def _address_url(key: str, value: Any, scheme: str, default_port: int) -> str:
    """An etcd 0.4 address (host, host:port or a URL) as a URL; a URL is kept as it is."""
    if not isinstance(value, str):
        raise ValueError(f"coreos.etcd.{key}: expected host:port, got {value!r}")
    if "://" in value:
        return value
    host, port = _split_host_port(value)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port if port is not None else default_port}"


def _split_host_port(address: str) -> tuple[str, int | None]:
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        if port.isdigit():
            return host, int(port)
    # No port, or a bare IPv6 address whose colons are no port separators.
    return address, None


def _url_scheme_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return parts.scheme, port
