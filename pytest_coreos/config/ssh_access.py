"""How a person reaches a cluster's machines from a shell, in the spirit of ``vagrant
ssh-config``: an OpenSSH client config with one ``Host`` block per machine, the
``known_hosts`` file it checks host keys against, and the ``pytest`` line that attaches
another run to the cluster through the ssh provider.

Pure text in, text out: the session writes the files into the cluster's workdir
(:class:`~pytest_coreos.config.paths.ClusterPaths`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class MachineAccess:
    """What an SSH client needs to log in to one machine with its host key checked."""

    name: str
    host: str
    port: int
    user: str
    identity_file: Path | None
    host_keys: tuple[tuple[str, str], ...]  # (key type, base64 blob)
    # Where its host keys are found when none are pinned (the ssh provider's machines).
    known_hosts: Path | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this machine's host keys under."""
        return self.host if self.port == DEFAULT_SSH_PORT else f"[{self.host}]:{self.port}"

    @property
    def target(self) -> str:
        """``user@host:port``, as ``--coreos-hosts`` takes it."""
        return f"{self.user}@{self.host}:{self.port}"


def render_known_hosts(machines: Sequence[MachineAccess]) -> str:
    """One known_hosts line per host key of every machine."""
    return "".join(
        f"{machine.known_hosts_name} {kind} {blob}\n"
        for machine in machines
        for kind, blob in machine.host_keys
    )


def render_ssh_config(machines: Sequence[MachineAccess], known_hosts: Path) -> str:
    """An OpenSSH client config: ``ssh -F FILE core-01`` logs in to core-01, its host key
    checked against ``known_hosts`` and never added to the user's own."""
    blocks = []
    for machine in machines:
        lines = [
            f"Host {machine.name}",
            f"  HostName {machine.host}",
            f"  Port {machine.port}",
            f"  User {machine.user}",
        ]
        if machine.identity_file is not None:
            lines += [f"  IdentityFile {_quoted(machine.identity_file)}", "  IdentitiesOnly yes"]
        checked_against = known_hosts
        if not machine.host_keys and machine.known_hosts is not None:
            checked_against = machine.known_hosts
        lines += [
            f"  UserKnownHostsFile {_quoted(checked_against)}",
            "  StrictHostKeyChecking yes",
            "  LogLevel ERROR",
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def attach_command(machines: Sequence[MachineAccess], known_hosts: Path) -> list[str]:
    """The pytest command line that attaches another run to these machines (the ssh
    provider boots nothing and leaves them running)."""
    identities = {machine.identity_file for machine in machines}
    command = [
        "pytest",
        "--coreos-provider=ssh",
        "--coreos-hosts=" + ",".join(machine.target for machine in machines),
    ]
    if len(identities) == 1 and None not in identities:
        (identity,) = identities
        command.append(f"--coreos-ssh-key={identity}")
    command.append(f"--coreos-known-hosts={known_hosts}")
    return command


def shell_line(command: Sequence[str]) -> str:
    """``command`` as one line a POSIX shell runs as is."""
    return shlex.join(command)


def _quoted(path: Path) -> str:
    text = str(path)
    return f'"{text}"' if any(c.isspace() for c in text) else text
