"""The disk a qemu cluster boots: a QEMU image (qcow2 or raw, booted by its own
bootloader: Flatcar's ``flatcar_production_qemu_image.img``), or a ``.box`` of Vagrant's
libvirt kind (its disk, kernel, initrd and kernel command line: the stand-in box, which
has no bootloader), unpacked once into the cache.

Every machine runs on a copy-on-write overlay of its own over that one disk, which is
never written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_coreos.errors import ConfigError, ProcessError
from pytest_coreos.host.cache import cache_home

OPTION = "--coreos-image"
FORMATS = ("qcow2", "raw")
# Smaller than any bootable disk (a raw image is any file to qemu-img): a wrong file.
MINIMUM_SIZE = 64 << 10
_CMD_LINE = re.compile(r'cmd_line\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class Image:
    """A bootable disk; ``kernel``, ``initrd`` and ``cmd_line`` where QEMU boots them
    directly (a box without a bootloader)."""

    disk: Path
    format: str
    kernel: Path | None = None
    initrd: Path | None = None
    cmd_line: str = ""

    def boot_arguments(self) -> list[str]:
        """QEMU's arguments that boot this image's kernel, if it has one of its own."""
        if self.kernel is None:
            return []
        argv = ["-kernel", str(self.kernel), "-append", self.cmd_line]
        if self.initrd is not None:
            argv[2:2] = ["-initrd", str(self.initrd)]
        return argv


def check_image(path: Path | None) -> None:
    """A ConfigError naming --coreos-image where ``path`` is not a readable file."""
    if path is None:
        return
    if not path.is_file():
        raise ConfigError(
            OPTION,
            f"{path} is not a file",
            "give a QEMU image (qcow2 or raw, e.g. flatcar_production_qemu_image.img) or a "
            "libvirt .box, or leave it out for the stand-in box",
        )
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ConfigError(OPTION, f"{path} cannot be read: {error.strerror}") from error
    size = path.stat().st_size
    if size < MINIMUM_SIZE:
        raise ConfigError(
            OPTION,
            f"{path} is not a disk image ({size} bytes)",
            "give a QEMU image (qcow2 or raw) or a libvirt .box",
        )


def find_image(
    path: Path | None, build_box: Callable[[], Path], cache: Path | None = None
) -> Image:
    """The image of ``path``; with None, the stand-in box ``build_box()`` builds or finds."""
    if path is None:
        return unpack_box(build_box(), cache)
    check_image(path)
    if path.suffix == ".box" or _holds_a_box(path):
        return unpack_box(path, cache)
    return Image(disk=path, format=disk_format(path))


def _holds_a_box(path: Path) -> bool:
    """Whether ``path`` is a tar archive with a ``box.img`` (a raw disk of zeros reads
    as an empty tar archive: that is no box)."""
    try:
        with tarfile.open(path) as archive:
            return "box.img" in archive.getnames()
    except (tarfile.TarError, OSError):
        return False


def disk_format(path: Path) -> str:
    """``qcow2`` or ``raw``, as ``qemu-img info`` reads ``path``; a ConfigError otherwise."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise ConfigError(OPTION, "qemu-img is not installed", "install Debian's qemu-utils")
    done = subprocess.run(
        [qemu_img, "info", "--output=json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(OPTION, f"{path} is not a disk image: {done.stderr.strip()}")
    found = str(json.loads(done.stdout).get("format", ""))
    if found not in FORMATS:
        raise ConfigError(OPTION, f"{path} is a {found} image", "give a qcow2 or raw image")
    return found


def unpack_box(box: Path, cache: Path | None = None) -> Image:
    """The disk, kernel, initrd and command line of a libvirt ``.box``, unpacked once into
    the cache (keyed by the box's name, size and time)."""
    stat = box.stat()
    key = hashlib.sha256(f"{box.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    folder = (cache or cache_home() / "qemu") / f"{box.stem}-{key.hexdigest()[:12]}"
    if not (folder / "box.img").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".unpacking-") as tmp:
            _extract(box, Path(tmp))
            try:
                Path(tmp).rename(folder)
            except OSError:  # another session unpacked it meanwhile
                if not (folder / "box.img").exists():
                    raise
            else:
                Path(tmp).mkdir()  # for TemporaryDirectory's cleanup
    return _box_image(box, folder)


def _extract(box: Path, into: Path) -> None:
    try:
        with tarfile.open(box) as archive:
            names = set(archive.getnames())
            if "box.img" not in names:
                raise ConfigError(OPTION, f"{box} is not a libvirt box (it has no box.img)")
            wanted = [m for m in archive.getmembers() if m.name in _BOX_FILES and m.isfile()]
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                archive.extractall(into, members=wanted, filter="data")
            else:
                archive.extractall(into, members=wanted)  # noqa: S202 (regular files of known names)
    except (tarfile.TarError, OSError) as error:
        raise ProcessError(f"unpacking {box}", str(error)) from error


_BOX_FILES = {"box.img", "vmlinuz", "initrd.img", "Vagrantfile", "metadata.json"}


def _box_image(box: Path, folder: Path) -> Image:
    meta = folder / "metadata.json"
    metadata = json.loads(meta.read_text()) if meta.exists() else {}
    if metadata.get("provider") not in (None, "libvirt"):
        raise ConfigError(
            OPTION, f"{box} is a box for {metadata['provider']}", "give a libvirt box"
        )
    kernel = folder / "vmlinuz"
    initrd = folder / "initrd.img"
    vagrantfile = folder / "Vagrantfile"
    found = _CMD_LINE.search(vagrantfile.read_text()) if vagrantfile.exists() else None
    return Image(
        disk=folder / "box.img",
        format=str(metadata.get("format", "qcow2")),
        kernel=kernel if kernel.exists() else None,
        initrd=initrd if initrd.exists() else None,
        cmd_line=found.group(1) if found else "",
    )
