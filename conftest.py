"""Shared helpers of the project's own test suite: finding what a run left behind."""

from __future__ import annotations

import os
from pathlib import Path

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


FLEET_ENVIRONMENT = "PYTEST_COREOS_FLEET"


@pytest.fixture
def fleet_release() -> str:
    """The fleet release the real-fleet tests give the machines (``--coreos-fleet``), from
    ``$PYTEST_COREOS_FLEET``; without it those tests skip, saying how to provide it."""
    value = os.environ.get(FLEET_ENVIRONMENT)
    if not value:
        pytest.skip(
            f"no fleet to test against: set {FLEET_ENVIRONMENT} to fleet's v1.0.0 release "
            "tarball (fleet-v1.0.0-linux-amd64.tar.gz, from github.com/coreos/fleet/releases), "
            "its URL, or a folder holding fleetd and fleetctl"
        )
    return value
