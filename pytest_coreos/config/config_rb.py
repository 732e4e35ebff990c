"""coreos-vagrant's ``config.rb`` and Ruby literals, as text in and text out."""

from __future__ import annotations

import re
from collections.abc import Mapping

CHANNELS = ("stable", "beta", "alpha")
_RUBY_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
