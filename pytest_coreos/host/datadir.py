"""Copies of an etcd data folder, taken at ready and put back by a cluster's reset.

etcd preallocates each write-ahead log segment (64 MB of which a fresh cluster has
written a few kilobytes): the copy holds only the parts of each file that hold data, so
that taking and restoring it costs milliseconds, not a copy of 128 MB per member. etcd
itself zeroes the unwritten rest of its last segment when it opens it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def copy_sparse(source: Path, target: Path) -> None:
    """Copy file ``source`` to ``target`` (made anew): its data, not its holes or
    preallocated blocks, with the same size, mode and owner."""
    with open(source, "rb") as reader, open(target, "wb") as writer:
        size = os.fstat(reader.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(reader.fileno(), offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(reader.fileno(), start, os.SEEK_HOLE)
            while start < end:
                copied = os.copy_file_range(
                    reader.fileno(), writer.fileno(), end - start, start, start
                )
                if copied == 0:
                    break
                start += copied
            offset = end
        os.ftruncate(writer.fileno(), size)
    _keep_owner(source, target)


def _keep_owner(source: Path, target: Path) -> None:
    status = source.stat()
    os.chmod(target, status.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(target, status.st_uid, status.st_gid)


def copy_tree(source: Path, target: Path) -> None:
    """Copy folder ``source`` to ``target``, which must not exist, sparsely (see
    :func:`copy_sparse`), keeping every folder's and file's mode and owner."""
    target.mkdir()
    _keep_owner(source, target)
    for entry in os.scandir(source):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            copy_tree(path, target / entry.name)
        elif entry.is_file(follow_symlinks=False):
            copy_sparse(path, target / entry.name)


def save(data_dir: Path, copy: Path) -> None:
    """Keep a copy of ``data_dir`` in ``copy`` (replacing an older one)."""
    if copy.exists():
        shutil.rmtree(copy)
    copy_tree(data_dir, copy)


def stage(copy: Path, data_dir: Path) -> Path:
    """A fresh copy of ``copy`` beside ``data_dir``, ready for :func:`swap_in`; a
    FileNotFoundError naming ``copy`` where there is none. ``data_dir`` is untouched, so
    that every member's copy is staged before any member is stopped."""
    if not copy.is_dir():
        raise FileNotFoundError(f"no saved copy of the etcd data at {copy}")
    staged = data_dir.with_name(data_dir.name + ".restoring")
    if staged.exists():
        shutil.rmtree(staged)
    copy_tree(copy, staged)
    return staged


def swap_in(staged: Path, data_dir: Path) -> None:
    """Replace ``data_dir``'s content by ``staged``'s (renames only) and remove
    ``staged``; the folder itself stays, as a container has it bind-mounted."""
    for entry in os.scandir(data_dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    for entry in os.scandir(staged):
        os.rename(entry.path, data_dir / entry.name)
    staged.rmdir()
