"""Container images built without Docker: ``docker save`` archives written by hand.

The tests of Docker on the machines need an image that exists without a network or a
Docker daemon on the host: :func:`busybox_image` makes one from Debian's static busybox.
:func:`write_docker_archive` writes the archive ``docker load`` and skopeo read (the
``manifest.json`` layout of ``docker save``, one layer), byte for byte the same for the
same inputs: fixed times, sorted entries, everything owned by root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pytest_coreos.errors import CoreOSError

BUSYBOX = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_APPLETS_NEEDED = (
    "sh", "true", "echo", "cat", "ls", "sleep", "httpd", "wget", "nc", "env",
    "hostname", "mkdir", "ps", "kill", "date",
)  # fmt: skip
CREATED = "1970-01-01T00:00:00Z"  # the time of every entry: builds are reproducible
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
_ARCHITECTURES = {62: "amd64", 183: "arm64", 3: "386", 40: "arm"}  # ELF e_machine
_PT_INTERP = 3
_TAG = re.compile(r"[\w][\w.-]{0,127}")

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"


class ImageBuildError(CoreOSError):
    """A test image could not be built: a missing input, a bad name."""


def tagged(name: str) -> str:
    """``name`` with ``:latest`` when it has no tag: ``docker load`` wants tagged names."""
    if "@" in name:
        raise ImageBuildError(f"{name!r}: an archive names images by tag, not by digest")
    last = name.rpartition("/")[2]
    if ":" in last:
        tag = last.rpartition(":")[2]
        if not _TAG.fullmatch(tag):
            raise ImageBuildError(f"{name!r}: {tag!r} is not a valid tag")
        return name
    return f"{name}:latest"


def _entry(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def layer_tar(
    files: Mapping[str, Path | bytes],
    symlinks: Mapping[str, str] = {},
    directories: Mapping[str, int] = {},
) -> bytes:
    """One uncompressed layer: ``files`` (a host file keeps its permission bits, bytes
    are 0644), ``symlinks`` (path -> target), ``directories`` (path -> mode) and every
    parent directory (0755), sorted by path. Paths are relative to the image's root."""
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    clean = {
        key.strip("/"): value
        for key, value in [*files.items(), *symlinks.items(), *directories.items()]
    }
    if len(clean) != len(files) + len(symlinks) + len(directories):
        raise ImageBuildError("a path is given twice (as a file, a symlink or a directory)")
    for path in clean:
        for parent in _parents(path):
            entries.setdefault(parent, (_entry(parent, tarfile.DIRTYPE, 0o755), None))
    for path, mode in directories.items():
        entries[path.strip("/")] = (_entry(path.strip("/"), tarfile.DIRTYPE, mode), None)
    for path, target in symlinks.items():
        info = _entry(path.strip("/"), tarfile.SYMTYPE, 0o777)
        info.linkname = target
        entries[info.name] = (info, None)
    for path, content in files.items():
        if isinstance(content, Path):
            mode = stat.S_IMODE(content.stat().st_mode)
            data = content.read_bytes()
        else:
            mode, data = 0o644, content
        info = _entry(path.strip("/"), tarfile.REGTYPE, mode)
        info.size = len(data)
        entries[info.name] = (info, data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            info, payload = entries[name]
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return out.getvalue()


def image_config(
    diff_id: str,
    cmd: Sequence[str],
    *,
    env: Sequence[str] = DEFAULT_ENV,
    architecture: str = "amd64",
) -> bytes:
    """The image's config JSON, as ``docker load`` and skopeo read it."""
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": list(env), "Cmd": list(cmd), "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "pytest-coreos write_docker_archive"}],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _entry(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    out: Path,
    name: str,
    files: Mapping[str, Path | bytes],
    symlinks: Mapping[str, str] = {},
    cmd: Sequence[str] = ("sh",),
    *,
    directories: Mapping[str, int] = {},
    env: Sequence[str] = DEFAULT_ENV,
    architecture: str = "amd64",
    extra_names: Iterable[str] = (),
) -> Path:
    """Write a one-layer image named ``name`` (and ``extra_names``) to ``out`` as
    ``docker save`` would: ``manifest.json``, ``repositories``, ``<sha256>.json`` (the
    config, its ``diff_ids`` the layer's sha256) and ``<sha256>/layer.tar``."""
    names = [tagged(item) for item in (name, *extra_names)]
    layer = layer_tar(files, symlinks, directories)
    layer_id = hashlib.sha256(layer).hexdigest()
    config = image_config(f"sha256:{layer_id}", cmd, env=env, architecture=architecture)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": names, "Layers": [f"{layer_id}/layer.tar"]}]
    repositories: dict[str, dict[str, str]] = {}
    for item in names:
        repository, _, tag = item.rpartition(":")
        repositories.setdefault(repository, {})[tag] = layer_id
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_entry(layer_id, tarfile.DIRTYPE, 0o755))
        _add(tar, f"{layer_id}/VERSION", b"1.0")
        _add(tar, f"{layer_id}/layer.tar", layer)
        _add(tar, config_name, config)
        _add(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        _add(tar, "repositories", json.dumps(repositories, sort_keys=True).encode())
    os.replace(partial, out)
    return out


def _elf_facts(path: Path) -> tuple[str | None, bool]:
    """(Docker's name for the ELF file's architecture, whether it is statically linked)."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return None, False  # only 64-bit little-endian is read
        machine = int.from_bytes(header[18:20], "little")
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    types = {
        int.from_bytes(table[i * phentsize : i * phentsize + 4], "little") for i in range(phnum)
    }
    return _ARCHITECTURES.get(machine), _PT_INTERP not in types


def static_busybox(path: Path = BUSYBOX) -> tuple[Path, str]:
    """Debian's static busybox and its architecture; an :class:`ImageBuildError` naming
    the package to install when it is absent or is a dynamically linked one."""
    install = f"install it with `apt-get install {BUSYBOX_PACKAGE}`"
    if not path.is_file():
        raise ImageBuildError(f"{path} not found: the test image needs it; {install}")
    architecture, static = _elf_facts(path)
    if architecture is None or not static:
        raise ImageBuildError(
            f"{path} is not a statically linked busybox (an image has no C library for "
            f"it); {install}, which replaces Debian's dynamic busybox"
        )
    return path, architecture


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """Where each applet of ``busybox`` lives (``bin/sh``, ``usr/bin/wget``...)."""
    listing = subprocess.run(
        [str(busybox), "--list-full"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    applets = sorted({line.strip("/") for line in listing} - {"bin/busybox", "linuxrc"})
    missing = set(BUSYBOX_APPLETS_NEEDED) - {applet.rpartition("/")[2] for applet in applets}
    if missing:
        raise ImageBuildError(
            f"{busybox} lacks the applets {sorted(missing)} the tests use; "
            f"install Debian's {BUSYBOX_PACKAGE}"
        )
    return applets


def busybox_image(out: Path, name: str = "busybox:latest", *, busybox: Path = BUSYBOX) -> Path:
    """Write a busybox image to ``out``: ``/bin/busybox`` with a symlink for every applet,
    ``/etc/passwd`` and ``/etc/group`` with root and nobody, ``/tmp`` (1777), ``/root``,
    ``/var/www`` (for ``httpd -h``); its command is ``sh``."""
    path, architecture = static_busybox(busybox)
    return write_docker_archive(
        out,
        name,
        files={"bin/busybox": path, "etc/passwd": PASSWD, "etc/group": GROUP},
        symlinks={applet: "/bin/busybox" for applet in busybox_applets(path)},
        cmd=["sh"],
        directories={"tmp": 0o1777, "root": 0o700, "var/www": 0o755},
        architecture=architecture,
    )
