"""Runs the image's builder from the installed package: no source checkout needed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pytest_coreos.errors import ProcessError
from pytest_coreos.host.process import tail

SCRIPT = Path(__file__).resolve().with_name("build-box")
MODES = ("box", "--rootfs", "--hash")
COMMAND = "python -m pytest_coreos.image"


def command(mode: str = "box") -> list[str]:
    """The builder's command line for ``mode`` (``box``, ``--rootfs`` or ``--hash``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return ["bash", str(SCRIPT), mode]


def build(mode: str, log_path: Path, progress: Callable[[str], None]) -> Path:
    """Build (or find in the cache) the image of ``mode`` and return its path; the
    builder's lines go to ``log_path`` and, but for "cached" notes, to ``progress``."""
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            command(mode),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        ) as process,
    ):
        assert process.stderr is not None
        assert process.stdout is not None
        for line in process.stderr:
            log.write(line)
            if not line.startswith("build-box: cached"):
                progress(line.rstrip())
        output = process.stdout.read()
        status = process.wait()
    if status != 0:
        raise ProcessError(f"{COMMAND} {mode}", f"exited with status {status}", tail(log_path))
    return Path(output.strip().splitlines()[-1])
