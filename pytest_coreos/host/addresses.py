"""Address blocks of this host's clusters, each claimed by one cluster at a time.

Loopback blocks: every local cluster gets its own 127.A.B.0/24. Any 127.x.y.z address
works on Linux with no set-up, so each machine can have its own address and use etcd's and
sshd's usual ports. A block is checked by binding the ports it will use.

Lab subnets: every network lab (machines in network namespaces) gets its own /24 of
198.18.0.0/15, which RFC 2544 reserves for benchmarking networks: no service on any real
network answers there, so a packet sent to a lab address after its lab is gone reaches
nothing. A subnet is checked against this host's routes (none may cover any of it).

Either kind is claimed with an ``flock`` on a file named after it (released by the kernel
even when the owner is killed), so two pytest runs, or two clusters of one run, never meet.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from pytest_coreos.errors import CoreOSError

# 127.0.0.0/16 is left alone: 127.0.0.1 and Debian's 127.0.1.1 live there.
_FIRST_A, _LAST_A = 100, 254
LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")


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
            _release(self._lock_fd, self._lock_path)
            self._lock_fd = None

    def __enter__(self) -> AddressBlock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _release(fd: int, path: Path) -> None:
    # Unlinked while still locked: a claimer that opened it meanwhile sees that its file
    # is no longer the one at the path and tries again (see _try_lock).
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only succeeds once no claim is left


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


class SubnetClaim:
    """A claimed /24 of :data:`LAB_NETWORK` for one network lab. Release it with
    ``close()``, once nothing of the lab routes to it any more."""

    def __init__(self, network: ipaddress.IPv4Network, lock_fd: int, lock_path: Path) -> None:
        self.network = network
        self._lock_fd: int | None = lock_fd
        self._lock_path = lock_path

    def __repr__(self) -> str:
        return f"<SubnetClaim {self.network}>"

    @property
    def prefix(self) -> str:
        """The subnet's first three octets, e.g. ``198.18.7``."""
        return str(self.network.network_address).rsplit(".", 1)[0]

    @property
    def closed(self) -> bool:
        return self._lock_fd is None

    def close(self) -> None:
        if self._lock_fd is not None:
            _release(self._lock_fd, self._lock_path)
            self._lock_fd = None


def lab_subnets() -> list[ipaddress.IPv4Network]:
    """Every /24 a lab may be given: the 512 of :data:`LAB_NETWORK`."""
    return list(LAB_NETWORK.subnets(new_prefix=24))


def claim_subnet(
    in_use: Callable[[ipaddress.IPv4Network], bool],
    *,
    wanted: ipaddress.IPv4Network | None = None,
    attempts: int = 200,
    rng: random.Random | None = None,
) -> SubnetClaim:
    """Claim a /24 of :data:`LAB_NETWORK` (``wanted``, or one chosen at random) that no
    other claim holds and for which ``in_use`` says False (this host routes none of it).

    ``in_use`` is asked after the lock is taken: a subnet a killed run left routed stays
    out of reach until its leftovers are reaped, though its lock went with the run.
    """
    rng = rng or random.Random()  # noqa: S311 - spreading claims, not secrecy
    if wanted is not None:
        if wanted.prefixlen != 24 or not wanted.subnet_of(LAB_NETWORK):
            raise ValueError(f"a lab subnet is a /24 of {LAB_NETWORK}, got {wanted}")
        candidates = [wanted]
    else:
        candidates = rng.sample(lab_subnets(), min(attempts, len(lab_subnets())))
    for network in candidates:
        path = lock_directory() / f"{network.network_address}-24.lock"
        fd = _try_lock(path)
        if fd is None:
            continue
        claim = SubnetClaim(network, fd, path)
        if not in_use(network):
            return claim
        claim.close()
    where = str(wanted) if wanted is not None else f"{len(candidates)} /24s of {LAB_NETWORK}"
    raise CoreOSError(
        f"no free lab subnet: tried {where}; each was claimed by another run or routed on "
        "this host (ip route show table all); a killed run's leftovers go with "
        "pytest --coreos-reap"
    )
