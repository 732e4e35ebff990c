"""Loopback address blocks: every cluster gets its own 127.A.B.0/24.

Any 127.x.y.z address works on Linux with no set-up, so each machine can have its own
address and use etcd's and sshd's usual ports. A block is claimed with an ``flock`` on a
file named after it (released by the kernel even when the owner is killed) and checked by
binding the ports it will use, so two pytest runs, or two clusters of one run, never meet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
from collections.abc import Iterable
from pathlib import Path

from pytest_coreos.errors import CoreOSError

# 127.0.0.0/16 is left alone: 127.0.0.1 and Debian's 127.0.1.1 live there.
_FIRST_A, _LAST_A = 100, 254


def lock_directory() -> Path:
    """Where block locks live: one folder per user, at a fixed place so that runs with
    different ``TMPDIR`` settings still see each other's claims."""
    path = Path("/tmp") / f"pytest-coreos-locks-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def can_bind(address: str, port: int) -> bool:
    """True if a TCP socket can bind ``address:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class AddressBlock:
    """A claimed 127.A.B.0/24; ``host(n)`` is 127.A.B.n. Release it with ``close()``."""

    def __init__(self, a: int, b: int, lock_fd: int, lock_path: Path) -> None:
        self.a = a
        self.b = b
        self._lock_fd: int | None = lock_fd
        self._lock_path = lock_path

    def __repr__(self) -> str:
        return f"<AddressBlock {self.network}>"

    @property
    def network(self) -> str:
        """The block in CIDR form, e.g. ``127.112.9.0/24``."""
        return f"127.{self.a}.{self.b}.0/24"

    def host(self, n: int) -> str:
        """The ``n``-th address of the block (1 to 254)."""
        if not 1 <= n <= 254:
            raise ValueError(f"host number {n} outside 1..254")
        return f"127.{self.a}.{self.b}.{n}"

    def close(self) -> None:
        """Release the claim; the lock file goes too, so claims leave no files behind."""
        if self._lock_fd is not None:
            # Unlinked while still locked: a claimer that opened it meanwhile sees that its
            # file is no longer the one at the path and tries again (see _try_lock).
            with contextlib.suppress(OSError):
                self._lock_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None
            with contextlib.suppress(OSError):
                self._lock_path.parent.rmdir()  # only succeeds once no claim is left

    def __enter__(self) -> AddressBlock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _try_lock(path: Path) -> int | None:
    """An fd holding the lock on ``path``, or None if another claim holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the folder was just removed by a releasing claim
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise BlockingIOError  # released and unlinked between our open and our lock
    except OSError:
        os.close(fd)
        return None
    return fd


def claim_block(
    hosts: int, ports: Iterable[int], *, attempts: int = 200, rng: random.Random | None = None
) -> AddressBlock:
    """Claim a free block whose first ``hosts`` addresses can bind every one of ``ports``."""
    ports = tuple(ports)
    rng = rng or random.Random()  # noqa: S311 - spreading claims, not secrecy
    for _ in range(attempts):
        a, b = rng.randint(_FIRST_A, _LAST_A), rng.randint(0, 255)
        path = lock_directory() / f"127.{a}.{b}.lock"
        fd = _try_lock(path)
        if fd is None:
            continue
        block = AddressBlock(a, b, fd, path)
        if all(can_bind(block.host(n), port) for n in range(1, hosts + 1) for port in ports):
            return block
        block.close()
    raise CoreOSError(
        f"no free loopback block for {hosts} machines on ports {list(ports)} after "
        f"{attempts} tries: is something listening on 0.0.0.0 on one of these ports?"
    )
