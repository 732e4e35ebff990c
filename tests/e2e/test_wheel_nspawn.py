"""The installed wheel is all a user needs for the nspawn provider: built from this
checkout, installed into a fresh virtualenv outside it, it builds (or finds) the
stand-in image from its own files and boots 3 containers, with no PYTEST_COREOS_ROOTFS.
Root only, as CI runs it; about a minute, more when the image is built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SUITE = """
import pytest_coreos


def test_three_containers_from_the_installed_package(coreos_cluster_factory):
    assert "site-packages" in pytest_coreos.__file__
    with coreos_cluster_factory(instances=3, provider="nspawn") as cluster:
        cluster.etcd.set("/wheel", "installed")
        for machine in cluster:
            assert machine.etcd.get("/wheel") == "installed"
            assert machine.ssh.run(["hostname"]).stdout == machine.name + "\\n"
"""


def run(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


@pytest.mark.needs_root
def test_the_wheel_alone_boots_three_nspawn_machines(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps",
         "-q", "-w", str(wheels), str(REPO)])  # fmt: skip
    (wheel,) = wheels.glob("pytest_coreos-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)])
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_wheel.py").write_text(SUITE)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTEST_COREOS_ROOTFS", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PYTEST_COREOS_STATE_DIR"] = str(tmp_path / "state")
    env["TMPDIR"] = str(tmp_path)
    done = run(
        [str(python), "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_wheel.py"],
        cwd=project,
        env=env,
        timeout=900,
    )
    assert "1 passed" in done.stdout
