"""etcd discovery: asking a service for a token, and running a private one on loopback.

A user of CoreOS got a discovery URL with ``curl https://discovery.etcd.io/new?size=3``.
The plugin does the same against the service named by ``--coreos-discovery``, or against
its own: Debian's ``discovery.etcd.io`` server in front of a private etcd with the v2 API,
or, where that server is not installed, that etcd's v2 keys endpoint directly.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path

import requests

from pytest_coreos.errors import DiscoveryError
from pytest_coreos.host.addresses import claim_block
from pytest_coreos.host.binaries import EtcdBinary, find_discovery_service
from pytest_coreos.host.process import ManagedProcess
from pytest_coreos.host.service import LocalService
from pytest_coreos.waiting import NotReady, poll

DISCOVERY_PORT = 8087
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
_TOKEN_URL = re.compile(r"https?://\S+/[0-9a-fA-F]{32}")


def request_token(
    service_url: str,
    size: int,
    *,
    timeout: float = 10.0,
    session: requests.Session | None = None,
) -> str:
    """``GET <service>/new?size=N`` and return the discovery URL it hands out."""
    endpoint = f"{service_url.rstrip('/')}/new"
    try:
        response = (session or requests).get(endpoint, params={"size": size}, timeout=timeout)
    except requests.RequestException as error:
        raise DiscoveryError(
            service_url, f"cannot be reached ({type(error).__name__}): is it running?"
        ) from error
    if response.status_code != 200:
        raise DiscoveryError(
            service_url,
            f"GET {endpoint}?size={size} answered HTTP {response.status_code}: "
            "is this a discovery service (its /new must hand out tokens)?",
        )
    url = response.text.strip()
    if not _TOKEN_URL.fullmatch(url):
        raise DiscoveryError(service_url, f"/new answered {url[:200]!r}, not a discovery URL")
    return url


def is_token_url(url: str) -> bool:
    """True for a URL that already names a token (``.../<32 hex>``), not a service."""
    return _TOKEN_URL.fullmatch(url) is not None


def check_token(url: str, size: int, *, timeout: float = 10.0) -> None:
    """Check that a given discovery token exists, is for ``size`` members and is not full:
    etcd would otherwise retry forever, or (with --discovery-fallback=exit) just exit."""
    try:
        config = requests.get(f"{url}/_config/size", timeout=timeout)
        members = requests.get(url, timeout=timeout)
    except requests.RequestException as error:
        raise DiscoveryError(url, f"cannot be reached ({type(error).__name__})") from error
    if config.status_code != 200 or members.status_code != 200:
        raise DiscoveryError(url, f"no such token (HTTP {config.status_code})")
    try:
        wanted = int(config.json()["node"]["value"])
        joined = [
            node
            for node in members.json()["node"].get("nodes", [])
            if not node["key"].endswith("/_config")
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise DiscoveryError(url, "does not answer like a discovery token") from error
    if wanted != size:
        raise DiscoveryError(
            url, f"token is for {wanted} members, not {size}: use --coreos-instances={wanted}"
        )
    if joined:
        raise DiscoveryError(
            url,
            f"token already has {len(joined)} of {wanted} members: a token serves one "
            "cluster once; get a fresh one, or give the service's URL instead",
        )


class DiscoveryService(LocalService):
    """A private discovery service for one pytest session: on a loopback address of its
    own, or on ``address`` (the host's side of a VM network, so that VMs reach it)."""

    def __init__(
        self,
        etcd: EtcdBinary,
        workdir: Path,
        *,
        address: str | None = None,
        die_with_parent: bool = True,
        command: Callable[[list[str]], list[str]] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        # Where it runs and how it is reached: inside a network lab's hub namespace, the
        # lab's command prefix and a session bound to the lab's link.
        super().__init__(command=command, session=session, die_with_parent=die_with_parent)
        self.etcd = etcd
        self.workdir = workdir
        self.address = address  # None: a loopback block of its own
        self.etcd_url = ""
        self.url = ""  # what /new is asked of; "" when only the etcd keys endpoint is used

    def __repr__(self) -> str:
        return f"<DiscoveryService {self.url or self.etcd_url}>"

    @property
    def uses_discovery_server(self) -> bool:
        return bool(self.url)

    def start(self, timeout: float = 30.0) -> None:
        """Start the backing etcd and, where installed, the discovery server; wait for both."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        address = self.address
        if address is None:
            self.block = claim_block(1, (ETCD_CLIENT_PORT, ETCD_PEER_PORT, DISCOVERY_PORT))
            address = self.block.host(1)
        self.etcd_url = f"http://{address}:{ETCD_CLIENT_PORT}"
        peer_url = f"http://{address}:{ETCD_PEER_PORT}"
        etcd = ManagedProcess(
            "discovery-etcd",
            self._command(
                [
                    str(self.etcd.path),
                    "--name=discovery",
                    f"--data-dir={self.workdir / 'etcd'}",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=discovery={peer_url}",
                    "--enable-v2=true",
                    # A lone member elects itself after one election timeout: keep it short.
                    "--heartbeat-interval=10",
                    "--election-timeout=50",
                ]
            ),
            log_path=self.workdir / "etcd.log",
            env={},
            die_with_parent=self.die_with_parent,
        )
        self.processes.append(etcd)
        server = find_discovery_service()
        if server is not None:
            self.url = f"http://{address}:{DISCOVERY_PORT}"
            self.processes.append(
                ManagedProcess(
                    "discovery.etcd.io",
                    self._command(
                        [
                            str(server),
                            f"--addr={address}:{DISCOVERY_PORT}",
                            f"--etcd={self.etcd_url}",
                            f"--host={self.url}",
                        ]
                    ),
                    log_path=self.workdir / "discovery.log",
                    env={},
                    die_with_parent=self.die_with_parent,
                )
            )
        for process in self.processes:
            process.start()
        poll(
            self._ready,
            what="the private discovery service",
            timeout=timeout,
            notes=lambda: [f"{p.name} log:\n{p.log_tail()}" for p in self.processes],
        )

    def _ready(self) -> None:
        self._check_running()
        probes = [f"{self.etcd_url}/v2/keys/"]
        if self.url:
            probes.append(f"{self.url}/health")
        for probe in probes:
            try:
                answer = self._session.get(probe, timeout=1.0)
            except requests.RequestException as error:
                raise NotReady(f"{probe}: {type(error).__name__}") from error
            if probe.endswith("/v2/keys/") and answer.status_code != 200:
                raise NotReady(f"{probe}: HTTP {answer.status_code}")

    def new_cluster(self, size: int) -> str:
        """A fresh discovery URL for a cluster of ``size`` members."""
        if self.url:
            return request_token(self.url, size, session=self._session)
        token = secrets.token_hex(16)
        url = f"{self.etcd_url}/v2/keys/discovery/{token}"
        try:
            answer = self._session.put(f"{url}/_config/size", data={"value": size}, timeout=10)
        except requests.RequestException as error:
            raise DiscoveryError(self.etcd_url, f"cannot be reached: {error}") from error
        if answer.status_code not in (200, 201):
            raise DiscoveryError(self.etcd_url, f"PUT size answered HTTP {answer.status_code}")
        return url
