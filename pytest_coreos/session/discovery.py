"""A session's discovery: a fresh URL per cluster, as its discovery mode says, from the
session's private service (one per address the machines reach it on), discovery.etcd.io,
or a service or token the user gave."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_coreos.errors import BinaryNotFoundError
from pytest_coreos.host.binaries import EtcdBinary, find_etcd
from pytest_coreos.host.discovery import (
    DiscoveryService,
    check_token,
    is_token_url,
    request_token,
)
from pytest_coreos.options import PUBLIC_DISCOVERY_URL, ClusterSpec
from pytest_coreos.providers import get_provider


class SessionDiscovery:
    """The discovery services of one session, started on first use, closed at its end."""

    def __init__(self, root: Callable[[], Path], on_change: Callable[[list[Any]], None]) -> None:
        self._root = root
        # Called with the records of every service's processes whenever they change.
        self._on_change = on_change
        self._services: dict[str, DiscoveryService] = {}
        self._lock = threading.RLock()

    def url(self, spec: ClusterSpec) -> str:
        """A fresh discovery URL for a cluster of ``spec`` ("" for static: the members are
        given each other's addresses instead)."""
        if spec.discovery == "static":
            return ""
        if spec.discovery == "local":
            return self.local_service(spec).new_cluster(spec.instances)
        if spec.discovery == "public":
            return request_token(PUBLIC_DISCOVERY_URL, spec.instances)
        if is_token_url(spec.discovery):
            check_token(spec.discovery, spec.instances)
            return spec.discovery
        return request_token(spec.discovery, spec.instances)

    def local_service(self, spec: ClusterSpec) -> DiscoveryService:
        """The session's private discovery service where ``spec``'s machines can reach it:
        on a loopback block of its own, or on the address its provider names (the host's
        side of a VM network). One service per address, started on first use."""
        address = get_provider(spec.provider).discovery_address(spec)
        key = address or "loopback"
        with self._lock:
            if key not in self._services:
                service = DiscoveryService(
                    self._etcd(spec),
                    self._root() / f"discovery-{len(self._services) + 1}",
                    address=address,
                    die_with_parent=not spec.keep,
                )
                self._services[key] = service
                try:
                    service.start(timeout=spec.boot_timeout)
                finally:
                    self._on_change(self.describe())
            return self._services[key]

    def describe(self) -> list[Any]:
        """The records of every service's processes, for the state record."""
        return [record for service in self._services.values() for record in service.describe()]

    @staticmethod
    def _etcd(spec: ClusterSpec) -> EtcdBinary:
        """The discovery service needs etcd's v2 API, which the etcd under test may lack
        (3.6 and later): it takes the etcd found by the usual search where there is one."""
        try:
            return find_etcd()
        except BinaryNotFoundError:
            return find_etcd(spec.etcd_binary)

    def close(self) -> None:
        """Stop every service."""
        for service in self._services.values():
            service.close()
        self._services.clear()
