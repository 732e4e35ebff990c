"""QEMU's machine protocol (QMP), as much of it as the qemu provider uses: one command at a
time over the VM's unix socket (``stop``, ``cont``, ``system_powerdown``, ``query-status``).

Each call opens the socket, negotiates capabilities, sends the command and reads until its
answer (skipping the events QEMU sends meanwhile), then closes: a VM is paused or resumed
a few times per test at most, and no connection is left for a killed QEMU to break.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from pytest_coreos.errors import ProcessError

TIMEOUT = 10.0


def execute(path: Path, command: str, name: str, timeout: float = TIMEOUT) -> Any:
    """Run QMP ``command`` on the QEMU whose socket is at ``path``; its ``return`` value, or
    a ProcessError naming machine ``name``."""
    subject = f"{name} qemu (QMP {command})"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(path))
            stream = connection.makefile("rwb")
            _read(stream, subject)  # the greeting
            for execute_ in ("qmp_capabilities", command):
                stream.write(json.dumps({"execute": execute_}).encode() + b"\n")
                stream.flush()
                answer = _answer(stream, subject)
            return answer
    except OSError as error:
        raise ProcessError(subject, str(error)) from error


def _read(stream: Any, subject: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise ProcessError(subject, "QEMU closed its QMP socket")
    message: dict[str, Any] = json.loads(line)
    return message


def _answer(stream: Any, subject: str) -> Any:
    while True:
        message = _read(stream, subject)
        if "return" in message:
            return message["return"]
        if "error" in message:
            error = message["error"]
            raise ProcessError(subject, f"{error.get('class')}: {error.get('desc')}")
