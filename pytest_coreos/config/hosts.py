"""``--coreos-hosts``: ``user@host[:port],...``, parsed and split."""

from __future__ import annotations

import re

from pytest_coreos.errors import ConfigError

_HOST = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])"
    r"(?::(?P<port>\d{1,5}))?"
)


def parse_hosts(raw: object, source: str = "--coreos-hosts") -> tuple[str, ...]:
    """``user@host[:port],...`` into a tuple of its entries, each checked."""
    if raw is None or raw == "":
        return ()
    hosts = tuple(part.strip() for part in str(raw).split(",") if part.strip())
    for host in hosts:
        if _HOST.fullmatch(host) is None:
            raise ConfigError(source, f"{host!r} is not user@host[:port]")
    return hosts


def split_host(entry: str, default_user: str) -> tuple[str, str, int]:
    """(user, host, port) of one ``--coreos-hosts`` entry."""
    match = _HOST.fullmatch(entry)
    if match is None:
        raise ConfigError("--coreos-hosts", f"{entry!r} is not user@host[:port]")
    port = int(match["port"]) if match["port"] else 22
    return match["user"] or default_user, match["host"].strip("[]"), port
