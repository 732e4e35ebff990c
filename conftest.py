"""Shared helpers of the project's own test suite: finding what a run left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def processes_touching(path: Path) -> list[str]:
    """Processes whose command line, working directory or open files lie under ``path``:
    what a cluster rooted there would leave running if teardown failed."""
    marker = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if (entry / "stat").read_text().split(") ")[-1].startswith("Z"):
                continue  # a zombie is already dead; only its parent has not reaped it
            places = [cmdline, os.readlink(entry / "cwd")]
            places += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(marker in place for place in places):
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


@pytest.fixture
def assert_nothing_left():
    """Call with a folder after a run: fails naming every process still using it."""

    def check(path: Path) -> None:
        left = processes_touching(path)
        assert not left, f"processes left running under {path}:\n" + "\n".join(left)

    return check


INNER_INI = """
[pytest]
filterwarnings = error
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose inner sessions keep their temp files (cluster folders included)
    under its own folder, with warnings as errors as in this project."""
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    # A registry of its own: other runs' dead sessions are not this test's to reap.
    monkeypatch.setenv("PYTEST_COREOS_STATE_DIR", str(pytester.path / "state"))
    pytester.makefile(".ini", pytest=INNER_INI)
    return pytester


IGNITION_SCHEMAS = Path(__file__).parent / "tests" / "data" / "ignition-schema"


@pytest.fixture(scope="session")
def validators() -> dict[str, Any]:
    """Ignition's published schema of each supported spec (tests/data/ignition-schema), as
    jsonschema validators keyed by spec version."""
    import jsonschema

    from pytest_coreos.ignition import SUPPORTED_VERSIONS

    found = {}
    for version in SUPPORTED_VERSIONS:
        path = IGNITION_SCHEMAS / f"ignition-v{version.rpartition('.')[0]}.json"
        schema = json.loads(path.read_text())
        jsonschema.Draft4Validator.check_schema(schema)
        found[version] = jsonschema.Draft4Validator(schema)
    return found
