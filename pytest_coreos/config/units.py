"""systemd's rules for unit names and for values in unit files, in one place: the host
(Ignition rendering, the systemd handle) and the machine image's agent share them.

Pure: the standard library only, no I/O.
"""

from __future__ import annotations

import re

# Unit types systemd (and Ignition, which rejects any other extension) knows.
UNIT_TYPES = frozenset(
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
# A unit's name: its characters, then one of the types.
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(" + "|".join(sorted(UNIT_TYPES)) + r")$")
DROP_IN_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.conf$")


def is_unit_name(name: object) -> bool:
    """Whether ``name`` is a full systemd unit name (``etcd.service``)."""
    return isinstance(name, str) and UNIT_NAME.fullmatch(name) is not None


def check_unit_name(name: str, where: str) -> None:
    """Raise ValueError naming ``where`` unless ``name`` is a full unit name."""
    if not is_unit_name(name):
        raise ValueError(
            f"{where}: {name!r} is not a systemd unit name (a name and a type: "
            f"{', '.join(sorted(UNIT_TYPES))})"
        )


def escape_specifiers(text: str) -> str:
    """``%`` doubled: systemd expands specifiers even in ``Environment=``."""
    return text.replace("%", "%%")


def escape_value(text: str) -> str:
    """The inside of a double-quoted systemd word: backslash and double quote escaped,
    ``%`` doubled."""
    return escape_specifiers(text.replace("\\", "\\\\").replace('"', '\\"'))


def quote_value(text: str, what: str) -> str:
    """The inside of a double-quoted systemd word that unquotes to ``text``; control
    characters other than tab cannot be in a unit's value at all (ValueError naming
    ``what``)."""
    if bad := sorted(
        {char for char in text if (ord(char) < 32 and char != "\t") or char == "\x7f"}
    ):
        raise ValueError(
            f"{what}: control characters cannot be in a systemd value: "
            f"{', '.join(repr(char) for char in bad)}"
        )
    return escape_value(text)


def environment_word(name: str, value: str) -> str:
    """``"NAME=value"`` quoted for systemd's ``Environment=``."""
    return '"' + quote_value(f"{name}={value}", name) + '"'


def systemd_quote(value: str) -> str:
    """A value for ``Environment="..."`` as coreos-cloudinit wrote it: quoted and escaped,
    a newline written as ``\\n``."""
    return '"' + escape_value(value).replace("\n", "\\n") + '"'
