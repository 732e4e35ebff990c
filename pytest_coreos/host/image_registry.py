"""The session's image registry: Debian's ``docker-registry`` on an address of its own,
filled with skopeo from the archives given with ``--coreos-images``.

The machines' Docker daemons take it as their Docker Hub mirror, so a test's
``docker pull busybox`` or ``docker run busybox`` finds the image with no network beyond
the host. Only Docker Hub names are served this way: a daemon asks its mirror for those
alone. Images named for another registry (``quay.io/coreos/etcd:v2``) are not pushed; the
machines ``docker load`` their archives directly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from pytest_coreos.config.images import ImageArchive, unserved_pulls
from pytest_coreos.config.registry import registry_config
from pytest_coreos.errors import ProcessError
from pytest_coreos.host.addresses import claim_block
from pytest_coreos.host.binaries import find_docker_registry, find_skopeo
from pytest_coreos.host.process import ManagedProcess, kill_all
from pytest_coreos.host.service import Command, LocalService, as_wrapper
from pytest_coreos.waiting import NotReady, poll

REGISTRY_PORT = 5000
COPY_TIMEOUT = 120.0
_COPIES_AT_ONCE = 4
# skopeo keeps a blob cache in /var/lib/containers when run as root, and only a
# rootless skopeo's goes where XDG_DATA_HOME says: so it is told it runs rootless (the
# variable containers/image itself reads), and nothing of it is left outside the
# registry's folder.
_ROOTLESS_UID = "65534"


def skopeo_environment(work: Path) -> dict[str, str]:
    """The environment skopeo runs in: its home, caches and temporary files all under
    ``work`` (made here), no proxy (the registry is on a local address)."""
    temporary = work / "tmp"
    temporary.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CONFIG_HOME": str(work / "config"),
        "XDG_RUNTIME_DIR": str(work / "run"),
        "TMPDIR": str(temporary),
        "_CONTAINERS_ROOTLESS_UID": _ROOTLESS_UID,
    }


def skopeo_copy(
    source: str,
    destination: str,
    environment: Mapping[str, str],
    what: str,
    timeout: float,
    *,
    options: Sequence[str] = (),
    wrap: Command | None = None,
) -> None:
    """Copy one image from ``source`` to ``destination`` (skopeo's transports), skopeo
    run in ``environment`` and where ``wrap`` says (a Command); a failure or a time-out is a
    ProcessError naming ``what`` with the end of skopeo's output."""
    argv = as_wrapper(wrap)(
        [
            str(find_skopeo()),
            "--insecure-policy",
            f"--tmpdir={environment['TMPDIR']}",
            "copy",
            "--quiet",
            *options,
            source,
            destination,
        ]
    )
    try:
        done = subprocess.run(
            argv,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ProcessError(what, f"did not finish within {timeout:.0f}s") from error
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()
        raise ProcessError(
            what, f"exited with status {done.returncode}", "\n".join(output.splitlines()[-20:])
        )


class ImageRegistry(LocalService):
    """A private image registry for one pytest session, on ``address`` (None: a loopback
    block of its own) and ``port``. ``command`` runs its programs elsewhere (a prefix such
    as ``["ip", "netns", "exec", HUB]``, or a function such as a lab's ``hub_command``):
    the registry and the skopeo that fills it alike."""

    def __init__(
        self,
        directory: Path,
        address: str | None = None,
        *,
        port: int = REGISTRY_PORT,
        command: Command | None = None,
        session: requests.Session | None = None,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(command=command, session=session, die_with_parent=die_with_parent)
        self.directory = directory
        self.address = address
        self.port = port

    def __repr__(self) -> str:
        return f"<ImageRegistry {self.url or self.directory}>"

    @property
    def host(self) -> str:
        """``ADDRESS:PORT``, as a Docker daemon's ``registry-mirrors`` and
        ``insecure-registries`` name it; "" before :meth:`start`."""
        return f"{self.address}:{self.port}" if self.address is not None else ""

    @property
    def url(self) -> str:
        """``http://ADDRESS:PORT``; "" before :meth:`start`."""
        return f"http://{self.host}" if self.host else ""

    @property
    def storage(self) -> Path:
        return self.directory / "storage"

    def start(self, timeout: float = 30.0) -> None:
        """Start the registry and wait until ``GET /v2/`` answers 200. A start that fails
        kills what it started (its folder and log stay, until :meth:`close`)."""
        registry = find_docker_registry()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.address is None:
            self.block = claim_block(1, (self.port,))
            self.address = self.block.host(1)
        config = self.directory / "config.yml"
        config.write_text(
            registry_config(str(self.storage), self.address, self.port, secrets.token_hex(16))
        )
        process = ManagedProcess(
            "image-registry",
            self._command([str(registry), "serve", str(config)]),
            log_path=self.directory / "registry.log",
            env={},  # no REGISTRY_* variable of this environment overrides its config
            die_with_parent=self.die_with_parent,
        )
        self.processes.append(process)
        try:
            process.start()
            poll(
                self._ready,
                what=f"the image registry at {self.url}",
                timeout=timeout,
                notes=lambda: [f"{process.name} log:\n{process.log_tail()}"],
            )
        except BaseException:
            kill_all(self.processes)
            raise

    def _ready(self) -> None:
        self._check_running()
        probe = f"{self.url}/v2/"
        try:
            answer = self._session.get(probe, timeout=1.0)
        except requests.RequestException as error:
            raise NotReady(f"{probe}: {type(error).__name__}") from error
        if answer.status_code != 200:
            raise NotReady(f"{probe}: HTTP {answer.status_code}")

    def fill(self, archives: Sequence[ImageArchive], timeout: float = COPY_TIMEOUT) -> list[str]:
        """Push every Docker Hub name of ``archives`` into the registry, several at once,
        and return where each went (``library/busybox:latest``). Names of other
        registries are not pushed (the machines load those archives themselves), nor are
        names by digest, which a copy could not keep. A name two archives hold is pushed
        from the first."""
        chosen: dict[str, tuple[ImageArchive, str, str]] = {}
        for archive in archives:
            for name, in_registry in archive.hub_names():
                if "@" not in in_registry:
                    chosen.setdefault(in_registry, (archive, name, in_registry))
        jobs = list(chosen.values())
        if not jobs:
            return []
        find_skopeo()  # before any copy starts: a missing skopeo is one error
        work = self.directory / "skopeo"
        environment = skopeo_environment(work)

        def copy(job: tuple[ImageArchive, str, str]) -> str:
            archive, name, in_registry = job
            skopeo_copy(
                archive.source(name),
                f"docker://{self.host}/{in_registry}",
                environment,
                f"skopeo copy {name} ({archive.path}) to {self.host}/{in_registry}",
                timeout,
                options=["--dest-tls-verify=false"],
                wrap=self._command,
            )
            return in_registry

        try:
            with ThreadPoolExecutor(min(_COPIES_AT_ONCE, len(jobs))) as pool:
                return list(pool.map(copy, jobs))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def unserved_notice(self, cluster: str) -> str | None:
        """One line for the run's summary where ``cluster``'s machines pulled an image the
        registry does not serve (docker's own error said the rest), from its log."""
        try:
            log = (self.directory / "registry.log").read_text(errors="replace")
        except OSError:
            return None
        missing = unserved_pulls(log)
        if not missing:
            return None
        return (
            f"docker pull found no image for {', '.join(missing)} on {cluster}'s machines: "
            "only the images given with --coreos-images are served (add its archive, e.g. "
            "from docker save NAME -o FILE)"
        )

    def close(self) -> None:
        """Kill the registry, release its address and remove its folder, storage and all."""
        own_address = self.block is not None
        super().close()
        if own_address:
            self.address = None
        shutil.rmtree(self.directory, ignore_errors=True)


def docker_archives(
    archive: ImageArchive, folder: Path, timeout: float = COPY_TIMEOUT
) -> list[Path]:
    """What ``docker load`` reads of ``archive``'s images of other registries than Docker
    Hub: the archive itself if ``docker save`` wrote it; else (an OCI archive, which
    Docker 20.10 cannot load) one docker archive per name, written by skopeo into
    ``folder``."""
    names = archive.other_names()
    if archive.kind == "docker-archive" or not names:
        return [archive.path] if names else []
    find_skopeo()
    folder.mkdir(parents=True, exist_ok=True)
    environment = skopeo_environment(folder / "skopeo")
    written = []
    try:
        for index, name in enumerate(names):
            out = folder / f"{archive.path.stem}-{index}.tar"
            out.unlink(missing_ok=True)
            skopeo_copy(
                archive.source(name),
                f"docker-archive:{out}:{name}",
                environment,
                f"skopeo copy {name} ({archive.path}) to a docker archive",
                timeout,
            )
            written.append(out)
    finally:
        shutil.rmtree(folder / "skopeo", ignore_errors=True)
    return written


def free_port(address: str) -> int:
    """A TCP port free on ``address`` now, for a registry on an address that other
    clusters of the session may share (a Vagrant private network's host side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])
