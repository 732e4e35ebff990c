"""Reading the image archives given with ``--coreos-images``: only their small JSON
members, never the layers, so that checking a list of archives costs next to nothing."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from pytest_coreos.config.images import OPTION, ImageArchive, docker_archive, oci_archive
from pytest_coreos.errors import ConfigError

_JSON_MAX = 16 * 1024 * 1024  # a manifest or index larger than this is no image's
_HINT = "give an archive written by `docker save NAME:TAG -o FILE` or by skopeo"


def _member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo | None:
    for candidate in (name, f"./{name}"):
        try:
            return archive.getmember(candidate)
        except KeyError:
            continue
    return None


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo, source: str) -> bytes:
    if not member.isfile() or member.size > _JSON_MAX:
        raise ConfigError(OPTION, f"{source}: its {member.name} is not a small file", _HINT)
    handle = archive.extractfile(member)
    assert handle is not None  # a regular file always has data
    with handle:
        return handle.read()


def _open(path: Path, source: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except PermissionError as error:
        raise ConfigError(
            OPTION, f"{source}: cannot be read ({error.strerror})", "make it readable"
        ) from error
    except OSError as error:
        raise ConfigError(OPTION, f"{source}: cannot be read ({error})", _HINT) from error
    except tarfile.TarError as error:
        raise ConfigError(OPTION, f"{source}: not a tar archive ({error})", _HINT) from error


def read_archive(path: str | os.PathLike[str]) -> ImageArchive:
    """What the archive at ``path`` is and which image names it holds; a
    :class:`ConfigError` for ``--coreos-images`` when it cannot be used."""
    path = Path(path).absolute()  # skopeo may run elsewhere (another namespace, cwd)
    source = str(path)
    if not path.exists():
        raise ConfigError(OPTION, f"{source}: no such file", "check the path")
    if not path.is_file():
        raise ConfigError(OPTION, f"{source}: not a file", _HINT)
    try:
        with _open(path, source) as archive:
            manifest = _member(archive, "manifest.json")
            if manifest is not None:
                return docker_archive(path, _read(archive, manifest, source))
            layout, index = _member(archive, "oci-layout"), _member(archive, "index.json")
            if layout is not None and index is not None:
                return oci_archive(path, _read(archive, index, source))
    except (tarfile.TarError, EOFError) as error:
        raise ConfigError(OPTION, f"{source}: a damaged tar archive ({error})", _HINT) from error
    raise ConfigError(
        OPTION,
        f"{source}: a tar archive, but no image archive (neither a manifest.json as "
        "`docker save` writes, nor an OCI layout's oci-layout and index.json)",
        _HINT,
    )


def read_archives(paths: Iterable[str | os.PathLike[str]]) -> list[ImageArchive]:
    """:func:`read_archive` of each path, in order."""
    return [read_archive(path) for path in paths]
