"""Reading and changing systemd unit files the way systemd splits them: logical lines
(continuations joined), sections, and words (quotes and escapes); enough to find where a
unit runs etcd and to set its discovery URL without touching anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_coreos.config.units import environment_word, quote_value

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


def finds_discovery(unit: Mapping[str, Any]) -> bool:
    return any(set_discovery(text, "http://example.invalid/x")[1] for text in _unit_texts(unit))


def runs_etcd(unit: Mapping[str, Any]) -> bool:
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


def set_discovery(contents: str, url: str) -> tuple[str, bool]:
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
            return environment_word("ETCD_DISCOVERY", url), False
        return None

    return replace


def _exec_replacement(url: str) -> _Replacer:
    quoted = '"' + quote_value(url, "the discovery URL").replace("$", "$$") + '"'

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
