"""The ``ETCD_*`` environment CoreOS gave etcd for a cloud-config's etcd section.

Plain data and pure functions (no YAML, no I/O): the host's providers and the machine
image's agent share them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PRIVATE_IPV4 = "$private_ipv4"
PUBLIC_IPV4 = "$public_ipv4"

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


def _canonical_key(key: object) -> str:
    # coreos-cloudinit turned every - in a key into _; the documented spelling is with -.
    return str(key).replace("_", "-")


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
        text = environment_value(f"coreos.{name}.{key}", value)
        if text is not None:
            env["ETCD_" + key.upper().replace("-", "_")] = text
    return EtcdEnvironment(env=env, dropped=dropped)


def _substitute_all(value: Any, private_ipv4: str, public_ipv4: str) -> Any:
    if isinstance(value, str):
        return substitute(value, private_ipv4, public_ipv4)
    if isinstance(value, list):
        return [_substitute_all(item, private_ipv4, public_ipv4) for item in value]
    return value


def environment_value(
    where: str, value: Any, *, setting: str = "an environment variable"
) -> str | None:
    """A cloud-config value as coreos-cloudinit wrote it into a unit's environment (etcd's
    and fleet's alike); a mapping or nested list is a ValueError naming ``where``."""
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
    raise ValueError(f"{where}: a {_yaml_kind(value)} cannot be {setting}")


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
