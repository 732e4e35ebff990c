"""Shared helpers of the project's own test suite: tests that need root, finding what a
run left behind, and running an inner session as an ordinary user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pytest_coreos


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_root(what='containers'): skipped unless root, which containers, network "
        "namespaces and cgroups need (CI runs these tests as root)",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs_root``: as an ordinary user the test cannot run; as root, a
    missing tool is a failure to see, never a reason to skip."""
    marker = item.get_closest_marker("needs_root")
    if marker is not None and os.geteuid() != 0:
        what = marker.args[0] if marker.args else "containers"
        pytest.skip(f"{what} need root (CI runs these tests as root)")


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


UNPRIVILEGED_USER = "pytest-coreos"


@dataclass
class UnprivilegedRun:
    returncode: int
    output: str
    record: str
    folder: Path
    uid: int


def run_inner_session_unprivileged(test_source: str, folder: Path) -> UnprivilegedRun:
    """Run ``test_source`` in a pytest of its own as an ordinary user: this one if it is
    not root, else the ``pytest-coreos`` user that scripts/bootstrap creates. The package
    under test is copied so that the checkout's own folder need not be readable."""
    drop: list[str] = []
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    uid = os.getuid()
    if uid == 0:
        try:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            pytest.fail(f"no user {UNPRIVILEGED_USER!r}: run scripts/bootstrap, which creates it")
        uid = user.pw_uid
        drop = ["setpriv", f"--reuid={uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    folder.chmod(0o755)
    shutil.copytree(Path(pytest_coreos.__file__).parent, folder / "src" / "pytest_coreos")
    (folder / "tmp").mkdir()
    (folder / "test_inner.py").write_text(test_source)
    (folder / "pytest.ini").write_text(INNER_INI)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, -1)
    env.update(
        PYTHONPATH=str(folder / "src"),
        TMPDIR=str(folder / "tmp"),
        RECORD=str(folder / "record.json"),
    )
    probe = subprocess.run(
        [*drop, sys.executable, "-c", "import pytest, paramiko, yaml, tenacity, requests"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{sys.executable} and its packages must be readable by uid {uid}; "
            f"scripts/bootstrap installs them where they are:\n{probe.stderr}"
        )
    run = subprocess.run(
        [*drop, sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    record = folder / "record.json"
    return UnprivilegedRun(
        run.returncode,
        run.stdout + run.stderr,
        record.read_text() if record.exists() else "{}",
        folder,
        uid,
    )


@pytest.fixture
def run_unprivileged() -> Iterator[Callable[[str], UnprivilegedRun]]:
    """Call with a test file's source (dedented): runs it as an ordinary user (see
    :func:`run_inner_session_unprivileged`) in a folder of its own, removed afterwards."""
    folders: list[Path] = []

    def run(test_source: str) -> UnprivilegedRun:
        # Under /tmp, not tmp_path: root's pytest folders are closed to other users.
        folder = Path(tempfile.mkdtemp(prefix="coreos-unprivileged-"))
        folders.append(folder)
        return run_inner_session_unprivileged(textwrap.dedent(test_source), folder)

    yield run
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


IGNITION_SCHEMAS = Path(__file__).parent / "tests" / "data" / "ignition-schema"


@pytest.fixture(scope="session")
def validators() -> dict[str, Any]:
    """Ignition's published schema of each supported spec (tests/data/ignition-schema), as
    jsonschema validators keyed by spec version."""
    import jsonschema

    from pytest_coreos.config.ignition import SUPPORTED_VERSIONS

    found = {}
    for version in SUPPORTED_VERSIONS:
        path = IGNITION_SCHEMAS / f"ignition-v{version.rpartition('.')[0]}.json"
        schema = json.loads(path.read_text())
        jsonschema.Draft4Validator.check_schema(schema)
        found[version] = jsonschema.Draft4Validator(schema)
    return found


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
