"""Private addresses handed out to the VMs of this process's clusters, so that two
clusters of one session share the private network without clashing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pytest_coreos.errors import CoreOSError
from pytest_coreos.providers.vagrant.settings import FIRST_HOST

_addresses_lock = threading.Lock()
_addresses_in_use: dict[str, set[int]] = {}


def claim_addresses(network: str, count: int) -> list[str]:
    """``count`` consecutive free addresses from .101 on, so that two clusters of one
    session share the private network without clashing."""
    with _addresses_lock:
        used = _addresses_in_use.setdefault(network, set())
        first = FIRST_HOST
        while any(host in used for host in range(first, first + count)):
            first += 1
        if first + count - 1 > 254:
            raise CoreOSError(f"no {count} free addresses left on {network}.0/24")
        hosts = range(first, first + count)
        used.update(hosts)
    return [f"{network}.{host}" for host in hosts]


def claim_exact(addresses: Sequence[str]) -> None:
    with _addresses_lock:
        for address in addresses:
            network, _, host = address.rpartition(".")
            used = _addresses_in_use.setdefault(network, set())
            if int(host) in used:
                raise CoreOSError(
                    f"{address} is already used by another cluster of this session; a "
                    "coreos-vagrant checkout always uses 172.17.8.101 and up"
                )
        for address in addresses:
            network, _, host = address.rpartition(".")
            _addresses_in_use[network].add(int(host))


def release_addresses(addresses: Sequence[str]) -> None:
    with _addresses_lock:
        for address in addresses:
            network, _, host = address.rpartition(".")
            _addresses_in_use.get(network, set()).discard(int(host))


def addresses_in_use(network: str) -> bool:
    with _addresses_lock:
        return bool(_addresses_in_use.get(network))
