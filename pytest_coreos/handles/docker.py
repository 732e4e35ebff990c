"""A machine's Docker Engine, over SSH: what the plugin does with it for a test (loading
images, the failure report, a reset's clean-up), with the machine's own ``docker``.

The stand-in image starts the engine from ``docker.socket`` at the first docker command,
as CoreOS did, so a machine whose ``docker.service`` is inactive ran no container: the
report and the reset then cost one ``systemctl`` call and nothing more.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pytest_coreos.errors import SSHError
from pytest_coreos.handles.ssh import SSHClient

DOCKER_UNIT = "docker.service"
# How long a docker command the plugin runs may take (a load of a large image the most).
COMMAND_TIMEOUT = 120.0


@dataclass
class DockerObjects:
    """The containers, volumes and networks (of its own: not bridge, host and none) a
    machine's engine holds, by ID or name."""

    containers: frozenset[str] = frozenset()
    volumes: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()


@dataclass
class Docker:
    """One machine's Docker Engine."""

    ssh: SSHClient
    name: str
    # What the engine held when the cluster became ready: a reset keeps it (the
    # containers the user-data's units started), and removes everything else.
    at_ready: DockerObjects = field(default_factory=DockerObjects)

    def active(self) -> bool:
        """True where the engine runs (it started at some docker command)."""
        command = ["systemctl", "is-active", "--quiet", DOCKER_UNIT]
        return self.ssh.run(command, check=False, timeout=30).ok

    def load(self, archive: Path) -> str:
        """``docker load`` the image archive ``archive`` (of this host) on the machine;
        what docker said (the names it loaded)."""
        remote = f"/var/tmp/pytest-coreos-image-{secrets.token_hex(4)}.tar"
        self.ssh.put(archive, remote)
        try:
            quoted = shlex.quote(remote)
            return self.ssh.run(f"docker load -q -i {quoted}", timeout=COMMAND_TIMEOUT).stdout
        finally:
            self.ssh.run(["rm", "-f", remote], check=False)
            self.ssh.deployed.files.discard(remote)

    def holds_containers(self) -> bool:
        """True where the engine's data has a container, whether it runs or not (a machine
        started again keeps its data, and its engine starts at the first docker command)."""
        folder = "/var/lib/docker/containers"
        listing = self.ssh.run(
            f"ls -A {folder} 2>/dev/null || sudo -n ls -A {folder} 2>/dev/null", check=False
        )
        return bool(listing.stdout.split())

    def objects(self) -> DockerObjects:
        """What the engine holds now; nothing, without starting it, where it is inactive
        and its data holds no container."""
        if not self.active() and not self.holds_containers():
            return DockerObjects()
        listing = self.ssh.run(
            "docker ps -aq --no-trunc && echo -- && docker volume ls -q && echo -- "
            "&& docker network ls -q --no-trunc --filter type=custom",
            timeout=COMMAND_TIMEOUT,
        ).stdout
        containers, volumes, networks = (part.split() for part in listing.split("--\n", 2))
        return DockerObjects(frozenset(containers), frozenset(volumes), frozenset(networks))

    def save_ready(self) -> None:
        """Remember what the engine holds at ready, for :meth:`remove_since_ready`."""
        self.at_ready = self.objects()

    def remove_since_ready(self) -> list[str]:
        """Remove every container, volume and network made since ready (images stay:
        pulling them again would only cost time); what it removed."""
        now = self.objects()
        removed = []
        steps = (
            ("rm -f -v", now.containers - self.at_ready.containers, "container"),
            ("volume rm -f", now.volumes - self.at_ready.volumes, "volume"),
            ("network rm", now.networks - self.at_ready.networks, "network"),
        )
        for command, objects, kind in steps:
            if objects:
                self.ssh.run(
                    f"docker {command} " + " ".join(map(shlex.quote, sorted(objects))),
                    timeout=COMMAND_TIMEOUT,
                )
                removed += [f"{kind} {name}" for name in sorted(objects)]
        return removed

    def report(self, lines: int) -> str:
        """``docker ps -a`` and the last ``lines`` lines of each exited container's log;
        "" where the engine never started."""
        try:
            if not self.active():
                return ""
            listing = self.ssh.run(
                ["docker", "ps", "-a", "--no-trunc", "--format", "{{json .}}"],
                check=False,
                timeout=30,
            )
        except SSHError as error:
            return f"(docker ps -a could not run: {error})"
        rows = []
        for line in listing.stdout.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        text = [f"docker ps -a on {self.name}:"]
        text += [
            f"  {row.get('Names', '?')}  {row.get('Image', '?')}  {row.get('Status', '?')}  "
            f"{row.get('Command', '')}"
            for row in rows
        ] or ["  (no container)"]
        for row in rows:
            if row.get("State") not in ("exited", "dead"):
                continue
            name = str(row.get("Names", row.get("ID", "")))
            try:
                log = self.ssh.run(
                    ["docker", "logs", "--tail", str(lines), name], check=False, timeout=30
                )
            except SSHError as error:
                text.append(f"docker logs {name}: {error}")
                continue
            text.append(f"docker logs --tail {lines} {name}:")
            output = (log.stdout + log.stderr).rstrip()
            text += [f"  {entry}" for entry in output.splitlines()] or ["  (empty)"]
        return "\n".join(text)
