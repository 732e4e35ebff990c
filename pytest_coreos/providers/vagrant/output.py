"""What Vagrant prints, read by pure functions: ``--machine-readable`` lines (``vagrant
status``, the progress of ``vagrant up``/``halt``/``destroy``...) and ``vagrant ssh-config``.

Machine-readable output is one event a line, ``timestamp,target,kind,data...``; Vagrant
writes a comma inside data as ``%!(VAGRANT_COMMA)`` and a newline as ``\\n``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

_COMMA = "%!(VAGRANT_COMMA)"


@dataclass(frozen=True)
class Event:
    """One line of machine-readable output."""

    timestamp: int
    target: str  # the machine's name, or "" for the whole environment
    kind: str  # "ui", "state", "action", "error-exit", "metadata"...
    data: tuple[str, ...]

    @property
    def message(self) -> str:
        """A ``ui`` event's text without Vagrant's ``==> core-01:`` prefixes."""
        text = self.data[-1] if self.data else ""
        prefix = re.compile(r"^(?:==> |    )?" + re.escape(self.target) + r": ?", re.M)
        return prefix.sub("", text).strip() if self.target else text.strip()


def unescape(text: str) -> str:
    return text.replace(_COMMA, ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(line: str) -> Event | None:
    """The event of one machine-readable line; None for anything else (a stray line)."""
    parts = line.rstrip("\r\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return Event(
        timestamp=int(parts[0]),
        target=parts[1],
        kind=parts[2],
        data=tuple(unescape(part) for part in parts[3:]),
    )


def parse_machine_readable(text: str) -> list[Event]:
    return [event for line in text.splitlines() if (event := parse_line(line)) is not None]


def parse_status(text: str) -> dict[str, str]:
    """Each machine's state from ``vagrant status --machine-readable``: ``running``,
    ``shutoff``, ``paused``, ``not_created``... as the Vagrant provider names it."""
    return {
        event.target: event.data[0]
        for event in parse_machine_readable(text)
        if event.kind == "state" and event.target and event.data
    }


def error_messages(events: Iterable[Event]) -> list[str]:
    """The messages of ``error-exit`` events: why a Vagrant command failed."""
    return [event.data[-1] for event in events if event.kind == "error-exit" and event.data]


@dataclass(frozen=True)
class SSHConfig:
    """One ``Host`` section of ``vagrant ssh-config``."""

    host: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)


def parse_ssh_config(text: str) -> dict[str, SSHConfig]:
    """Every ``Host`` section of ``vagrant ssh-config`` output, by machine name."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        if key.lower() == "host":
            sections.append((value, []))
        elif sections:
            sections[-1][1].append((key.lower(), value))
    configs = {}
    for host, pairs in sections:
        options = dict(pairs)
        configs[host] = SSHConfig(
            host=host,
            hostname=options.get("hostname", host),
            port=int(options.get("port", "22")),
            user=options.get("user", "vagrant"),
            identity_files=tuple(value for key, value in pairs if key == "identityfile"),
            options=options,
        )
    return configs


# --- progress ---------------------------------------------------------------------------

# What a machine is doing, recognised from the first words of Vagrant's messages (core
# Vagrant's and the providers', libvirt's first). The first match wins.
_STEPS: tuple[tuple[str, str], ...] = (
    (r"^Box '.*' could not be found", "adding the box"),
    (r"^Uploading base box image", "uploading the box image"),
    (r"^Creating image \(snapshot", "creating its disk"),
    (r"^Creating domain|^Importing base box", "creating the VM"),
    (r"^Starting domain|^Booting VM", "starting"),
    (r"^Waiting for domain to get an IP address", "booting"),
    (r"^Waiting for machine to boot", "waiting for SSH"),
    (r"^Machine booted and ready", "booted"),
    (r"^Setting hostname", "setting the hostname"),
    (r"^Configuring and enabling network interfaces", "configuring the network"),
    (r"^Running provisioner: (?P<name>\S+)", "provisioning ({name})"),
    (r"^Suspending domain|^Saving VM state", "suspending"),
    (r"^Resuming domain|^Resuming suspended VM", "resuming"),
    (r"^Attempting graceful shutdown", "shutting down"),
    (r"^Attempting direct shutdown|^Forcing shutdown", "powering off"),
    (r"^Removing domain|^Destroying VM", "destroying"),
)
_ACTION_DONE = {
    "up": "running",
    "resume": "running",
    "reload": "running",
    "halt": "halted",
    "suspend": "suspended",
    "destroy": "destroyed",
}


def step_of(event: Event) -> str | None:
    """The step a machine reached, if ``event`` marks one."""
    if not event.target:
        return None
    if event.kind == "action" and len(event.data) >= 2 and event.data[1] == "end":
        return _ACTION_DONE.get(event.data[0])
    if event.kind == "error-exit":
        return "failed: " + (event.data[-1].splitlines()[0] if event.data else "error")
    if event.kind != "ui":
        return None
    message = event.message
    for pattern, step in _STEPS:
        match = re.search(pattern, message)
        if match:
            return step.format(**match.groupdict())
    return None


class Progress:
    """Turns a Vagrant command's machine-readable output into one line per machine step,
    each saying how long after the start of the command it came."""

    def __init__(self) -> None:
        self._steps: dict[str, str] = {}
        self._first: int | None = None

    def feed(self, line: str) -> str | None:
        """The progress line for this output line, if a machine reached a new step."""
        event = parse_line(line)
        if event is None:
            return None
        if self._first is None:
            self._first = event.timestamp
        step = step_of(event)
        if step is None or self._steps.get(event.target) == step:
            return None
        self._steps[event.target] = step
        return f"{event.target}: {step} (+{event.timestamp - self._first}s)"

    @property
    def steps(self) -> dict[str, str]:
        """The last step each machine reached."""
        return dict(self._steps)


def log_line(line: str) -> str:
    """A machine-readable line as a person reads it in the log file."""
    event = parse_line(line)
    if event is None:
        return line.rstrip("\n")
    if event.kind == "ui":
        text = event.data[-1] if event.data else ""
        return text.rstrip("\n")
    body = " ".join(shlex.quote(part) if " " in part else part for part in event.data)
    return f"[{event.target or '-'}] {event.kind} {body}".rstrip()
