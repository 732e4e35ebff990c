"""A ``.box`` file given with ``--coreos-box``, as Vagrant gets it from the plugin.

CoreOS published each box with a metadata JSON naming it ``coreos-<channel>`` with a
version, and coreos-vagrant's Vagrantfile asks for that name, a ``box_version`` constraint
(``">= 308.0.1"``, or ``$image_version``) and a ``box_url`` to the metadata. A bare box file
cannot satisfy a version constraint (Vagrant refuses one with a file path), so the plugin
writes a local metadata file of the same kind for the box file: Vagrant adds the box from
it, under ``coreos-<channel>`` and a version, and the user's lines hold as written.

A box without a bootloader (the stand-in) carries its kernel and initrd, which libvirt's
QEMU user reads at every start: kept in Vagrant's box folder, inside a private home
(mode 0700), it cannot reach them. The plugin copies them out of the box file into the
cluster's folder, where it lets that user read them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coreos.errors import ConfigError

# Where a box file's build hash gives no version: the major part keeps every stand-in above
# the constraint coreos-vagrant's first Vagrantfiles set (">= 308.0.1").
STAND_IN_MAJOR = 1000
METADATA_FILE = "box-metadata.json"
KERNEL_FILES = ("vmlinuz", "initrd.img")
# The key of a box's own metadata.json that says it is a pytest-coreos stand-in build.
BUILD_KEY = "pytest_coreos_build"
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")


@dataclass(frozen=True)
class BoxFile:
    """What the plugin reads from a ``.box`` file (a tar): its provider, its build and
    whether it carries its own kernel."""

    path: Path
    provider: str
    build: str | None
    kernel_files: tuple[str, ...]


def read_box_file(path: Path) -> BoxFile:
    """The box file's ``metadata.json`` and the names of its members; the archive's members
    are skipped over, not read (the disk image is most of it)."""
    metadata: dict[str, Any] = {}
    names = []
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                names.append(name)
                if name == "metadata.json" and member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        metadata = json.loads(handle.read())
    except (OSError, tarfile.TarError, ValueError) as error:
        raise ConfigError(
            "--coreos-box", f"{path} is not a readable Vagrant box: {error}"
        ) from None
    build = metadata.get(BUILD_KEY)
    return BoxFile(
        path=path,
        provider=str(metadata.get("provider", "libvirt")),
        build=str(build) if build else None,
        kernel_files=tuple(name for name in KERNEL_FILES if name in names),
    )


def box_version(box: BoxFile, image_version: str | None = None) -> str:
    """The version the box is added under: ``$image_version`` of the user's ``config.rb``
    where it names one (coreos-vagrant then asks for exactly that), else one made from
    the box's build hash (or its file's size and time), so that each build is a version
    of its own in Vagrant and in libvirt's pool, never an older build's image."""
    if image_version and image_version != "current":
        if not _VERSION.match(image_version):
            raise ConfigError(
                "config.rb $image_version",
                f"{image_version!r} is not a box version such as 1122.2.0",
                'use "current" or a version number',
            )
        return image_version
    if box.build and re.fullmatch(r"[0-9a-f]{8,}", box.build):
        build = box.build
    else:
        stat = box.path.stat()
        build = hashlib.sha256(f"{box.path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return f"{STAND_IN_MAJOR}.{int(build[:7], 16)}.0"


def box_metadata(name: str, version: str, box: BoxFile) -> dict[str, Any]:
    """Vagrant's box metadata (the format of a box catalogue) for one box file."""
    return {
        "name": name,
        "description": f"{name} from {box.path.name} (added by pytest-coreos)",
        "versions": [
            {
                "version": version,
                "providers": [{"name": box.provider, "url": box.path.resolve().as_uri()}],
            }
        ],
    }


def write_box_metadata(directory: Path, name: str, version: str, box: BoxFile) -> Path:
    """Write the metadata file into the cluster's folder; return its path."""
    path = directory / METADATA_FILE
    path.write_text(json.dumps(box_metadata(name, version, box), indent=1) + "\n")
    return path


def prune_stand_in_versions(vagrant_home: Path, name: str, keep: str) -> list[str]:
    """Remove from Vagrant's boxes the other versions of ``name`` that were stand-in builds
    (their ``metadata.json`` says so): Vagrant boots the highest version a constraint
    allows, which must be the box given now. Boxes of any other origin are left alone."""
    removed = []
    folder = vagrant_home / "boxes" / name.replace("/", "-VAGRANTSLASH-")
    with contextlib.suppress(OSError):
        for version in folder.iterdir():
            if version.name == keep or not version.is_dir():
                continue
            builds = [
                json.loads(metadata.read_text()).get(BUILD_KEY)
                for metadata in version.glob("*/metadata.json")
            ]
            if builds and all(builds):
                shutil.rmtree(version, ignore_errors=True)
                removed.append(f"{name} {version.name}")
    return removed


def extract_kernel(box: BoxFile, directory: Path) -> dict[str, Path]:
    """Copy the box's kernel and initrd into ``directory``; return them by name."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set(box.kernel_files)
    found: dict[str, Path] = {}
    with tarfile.open(box.path) as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if name not in wanted or not member.isfile():
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            target = directory / name
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            found[name] = target
    return found
