"""Where the machines' fleet comes from: ``--coreos-fleet=PATH|URL``.

fleet was retired by CoreOS in 2018 and no distribution packages it, so the stand-in
machines carry fleet's units but not fleet itself. The user names a fleet release: the
tarball CoreOS published (``fleet-vX-linux-amd64.tar.gz``, holding
``fleet-vX-linux-amd64/fleetd`` and ``.../fleetctl``), its URL, or a folder holding both
binaries. A tarball is unpacked once into a cache folder named after its content, a URL
is downloaded once into the cache; the providers then hand the two binaries to the
machines (bind-mounted read-only on nspawn, provisioned on Vagrant), so no image is
rebuilt for a fleet version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_coreos.config.fleet_env import HOW_TO_GIVE_FLEET, OPTION, starts_fleet
from pytest_coreos.errors import ConfigError
from pytest_coreos.host.cache import cache_home

BINARIES = ("fleetd", "fleetctl")
DOWNLOAD_TIMEOUT = 120.0
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FleetRelease:
    """The two fleet binaries, ready to hand to the machines."""

    folder: Path

    @property
    def fleetd(self) -> Path:
        return self.folder / "fleetd"

    @property
    def fleetctl(self) -> Path:
        return self.folder / "fleetctl"

    def shared_copy(self, into: Path) -> Path:
        """The binaries in the folder ``into`` (made here, hard links where they can be,
        copies otherwise), which every user may read and run: a VM's 9p share shows the
        folder's own owner and mode, and the cache's folders are its owner's alone."""
        into.mkdir(parents=True, exist_ok=True)
        into.chmod(0o755)
        for name in BINARIES:
            target = into / name
            target.unlink(missing_ok=True)
            try:
                os.link(self.folder / name, target)
            except OSError:
                shutil.copyfile(self.folder / name, target)
            target.chmod(0o755)
        return into


def cache_root() -> Path:
    """Where unpacked and downloaded releases are kept: ``fleet`` in the plugin's cache
    folder (``~/.cache/pytest-coreos``, or ``$PYTEST_COREOS_CACHE``)."""
    return cache_home() / "fleet"


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def prepare(value: str, cache: Path | None = None) -> FleetRelease:
    """The fleet binaries ``value`` names (a folder, a release tarball or its URL), the
    tarball unpacked and the URL downloaded into ``cache`` once. Any problem is a
    :class:`ConfigError` naming the option and what it takes."""
    cache = cache_root() if cache is None else cache
    if is_url(value):
        return _from_tarball(_download(value, cache), cache, shown=value)
    path = Path(value)
    if path.is_dir():
        return _from_folder(path)
    if not path.exists():
        raise ConfigError(OPTION, f"{value}: no such file or folder", HOW_TO_GIVE_FLEET)
    return _from_tarball(path, cache, shown=value)


def _from_folder(path: Path) -> FleetRelease:
    missing = [name for name in BINARIES if not os.access(path / name, os.X_OK)]
    if missing or any(not (path / name).is_file() for name in BINARIES):
        raise ConfigError(
            OPTION,
            f"the folder {path} has no executable {' or '.join(missing or BINARIES)}",
            HOW_TO_GIVE_FLEET,
        )
    return FleetRelease(path.resolve())


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _from_tarball(path: Path, cache: Path, shown: str) -> FleetRelease:
    try:
        digest = _digest(path)
    except OSError as error:
        raise ConfigError(OPTION, f"{shown}: cannot be read ({error})", HOW_TO_GIVE_FLEET) from None
    folder = cache / "releases" / digest[:16]
    if all((folder / name).is_file() for name in BINARIES):
        return FleetRelease(folder)
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=cache))
    try:
        _unpack(path, partial, shown)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            partial.rename(folder)  # whole, so a folder of that name is always complete
        except OSError:
            if not all((folder / name).is_file() for name in BINARIES):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return FleetRelease(folder)


def _unpack(path: Path, into: Path, shown: str) -> None:
    """Extract the tarball's ``*/fleetd`` and ``*/fleetctl`` (regular files only) into
    ``into``, nothing else."""
    import tarfile  # only where a tarball is given

    try:
        with tarfile.open(path, "r:*") as archive:
            found: dict[str, tarfile.TarInfo] = {}
            for member in archive.getmembers():
                parts = Path(member.name).parts
                if member.isfile() and len(parts) <= 2 and parts[-1] in BINARIES:
                    found.setdefault(parts[-1], member)
            missing = [name for name in BINARIES if name not in found]
            if missing:
                raise ConfigError(
                    OPTION,
                    f"{shown}: the tarball has no {' or '.join(missing)} (expected "
                    "fleet-vX-linux-amd64/fleetd and .../fleetctl, as fleet's releases hold)",
                    HOW_TO_GIVE_FLEET,
                )
            for name, member in found.items():
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                with source, (into / name).open("wb") as target:
                    shutil.copyfileobj(source, target, _CHUNK)
                (into / name).chmod(0o755)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ConfigError(
            OPTION, f"{shown}: not a readable tarball ({error})", HOW_TO_GIVE_FLEET
        ) from None


def _download(url: str, cache: Path) -> Path:
    """The file at ``url``, downloaded into the cache on first use."""
    import urllib.request  # only where a URL is given

    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = cache / "downloads" / f"{name}.tar.gz"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    partial = Path(partial_name)
    try:
        with (
            os.fdopen(handle, "wb") as file,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,  # noqa: S310 - http(s) only
        ):
            shutil.copyfileobj(response, file, _CHUNK)
        partial.replace(target)
    except (OSError, ValueError) as error:
        raise ConfigError(
            OPTION, f"{url}: cannot be downloaded ({error})", HOW_TO_GIVE_FLEET
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


def missing_fleet_notice(fleet: str | None, user_data: object) -> str | None:
    """What the summary says once when the user-data starts fleet and the machines were
    given none (``None`` otherwise)."""
    if fleet is not None or not isinstance(user_data, Mapping) or not starts_fleet(user_data):
        return None
    return f"the user-data starts fleet, but the machines have none: {HOW_TO_GIVE_FLEET}"


def copy_binaries(release: FleetRelease, folder: Path) -> None:
    """Put ``fleetd`` and ``fleetctl`` into ``folder`` (hard links where the file system
    allows, copies elsewhere), executable, for a provisioner to upload."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        target = folder / name
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        try:
            os.link(release.folder / name, target)
        except OSError:
            shutil.copy2(release.folder / name, target)
        target.chmod(0o755)
