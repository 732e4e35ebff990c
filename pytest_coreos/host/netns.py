"""Network namespaces for local machines, so that a test can cut them off each other.

Each machine of a lab gets its own network namespace, joined by a veth pair to a bridge
in a hub namespace that the lab also makes. Every address lives inside those namespaces:
nothing is added to the main namespace (no route, no address, no link, not even for a
moment: each veth pair is created inside the hub with its peer put straight into the
machine's namespace). The plugin, which stays in the main namespace, reaches the machines
through sockets created inside the hub by a dedicated thread that entered it with
``setns``; a socket belongs to the namespace it was created in for its whole life, so the
connect, and all traffic after it, can then happen in any thread.

A partition is a set of ``blackhole`` policy rules (iproute2 only, no iptables) inside
the machine namespaces: a machine drops every packet coming from a peer of another group,
ARP requests included, before it reaches any socket (each machine namespace moves the
kernel's "lookup local" rule behind those rules, or it would deliver first). Both ends
carry the rules, so neither direction passes, and established connections stall exactly
like new ones (a rule change invalidates the routes sockets cache). Senders see silence
and time out, as across a real network split, rather than the immediate error a
``blackhole`` *route* would give them. Healing also flushes the peer's neighbour entry,
so that nothing sent during the cut, waiting for an ARP answer, is delivered afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from pytest_coreos.errors import CoreOSError

NAMESPACE_PREFIX = "pytest-coreos-"
NETNS_DIR = Path("/run/netns")
HUB_SUFFIX = "hub"
BRIDGE = "br0"
MACHINE_INTERFACE = "eth0"
# Policy rules are looked up in priority order and the kernel's "lookup local" rule, at 0,
# would deliver a peer's packets before any drop rule: each machine namespace moves it
# behind the partition rules.
PARTITION_PRIORITY = 10
LOCAL_PRIORITY = 100
# The links a hub holds carry this group, so that one request deletes them all: deleting
# them one by one waits for the kernel's RCU grace period once per link (~20 ms each).
LINK_GROUP = 213
# No ip command of this module waits on anything: one that takes this long is stuck.
IP_TIMEOUT = 30.0
CLONE_NEWNET = 0x40000000

_LAB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")
_MACHINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SUBNET = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
# Where iproute2 and util-linux live when PATH lacks the sbin folders (ordinary users).
_TOOL_FOLDERS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

T = TypeVar("T")


class NetworkError(CoreOSError):
    """A namespace, link or rule of a network lab could not be made, changed or removed."""

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = subject
        self.problem = problem
        super().__init__(f"{subject}: {problem}")


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    for folder in _TOOL_FOLDERS:
        candidate = Path(folder, name)
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _require_tool(name: str) -> str:
    path = _tool(name)
    if path is None:
        raise NetworkError(name, "not found (install iproute2 and util-linux)")
    return path


def netns_supported() -> str | None:
    """None if this process can make network labs; otherwise why not, in a few words."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter", "unshare"):
        if _tool(tool) is None:
            return f"{tool} not found (install iproute2 and util-linux)"
    if not hasattr(os, "setns") and not hasattr(_libc(), "setns"):
        return "the C library has no setns()"
    # Being root is not enough in a container without CAP_SYS_ADMIN: try it.
    probe = subprocess.run(
        [_require_tool("unshare"), "--net", "--uts", "--", "/bin/true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=IP_TIMEOUT,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip() or probe.returncode}"
    return None


# -- entering a namespace from one thread ----------------------------------------------


_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def _enter_network_namespace(path: Path) -> None:
    """Move the calling thread (only it) into the network namespace bound at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns = getattr(os, "setns", None)  # Python 3.12+
        if setns is not None:
            setns(fd, CLONE_NEWNET)
        elif _libc().setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({path}): {os.strerror(error)}")
    finally:
        os.close(fd)
    if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(path).st_ino:
        raise NetworkError(str(path), "setns() returned, but the thread is not in it")


_Task = tuple[Callable[[], Any], "Future[Any]"]


class _NamespaceThread:
    """A long-lived thread inside one network namespace, running what it is handed.

    Only this thread ever calls setns: the main thread, and every other thread of pytest,
    keep the namespace they started in.
    """

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        entered: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(entered,), name=name, daemon=True)
        self._thread.start()
        try:
            entered.result()
        except BaseException:
            self._thread.join()
            raise

    def _serve(self, entered: Future[None]) -> None:
        try:
            _enter_network_namespace(self.path)
        except BaseException as error:
            entered.set_exception(error)
            return
        entered.set_result(None)
        while (task := self._tasks.get()) is not None:
            function, future = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function())
                except BaseException as error:
                    future.set_exception(error)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` in the namespace and return what it returns (or raise)."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise NetworkError(str(self.path), "the lab was destroyed")
            self._tasks.put((function, future))
        return future.result()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tasks.put(None)
        self._thread.join()


# -- running ip ----------------------------------------------------------------------------


def _ip_argv(namespace: str | None, *, force: bool = False) -> list[str]:
    argv = [_require_tool("ip")]
    if namespace is not None:
        argv += ["-n", namespace]
    if force:
        argv.append("-force")
    return [*argv, "-batch", "-"]


def _ip_batch(namespace: str | None, lines: Sequence[str], *, subject: str) -> None:
    """Run ``lines`` as one ``ip -batch`` (inside ``namespace``); NetworkError on failure."""
    _ip_batches([(namespace, lines)], subject=subject)


def _ip_batches(batches: Sequence[tuple[str | None, Sequence[str]]], *, subject: str) -> None:
    """Run several ip batches at once (one process each) and wait for all of them; a
    NetworkError lists every one that failed, after all have finished."""
    started: list[tuple[str | None, Sequence[str], subprocess.Popen[str]]] = []
    failures = []
    try:
        for namespace, lines in batches:
            # The commands go in through a file: no pipe to keep fed while the others run.
            with tempfile.TemporaryFile("w+") as commands:
                commands.write("".join(f"{line}\n" for line in lines))
                commands.seek(0)
                process = subprocess.Popen(
                    _ip_argv(namespace),
                    stdin=commands,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            started.append((namespace, lines, process))
        for namespace, lines, process in started:
            try:
                stdout, stderr = process.communicate(timeout=IP_TIMEOUT)
            except subprocess.TimeoutExpired:
                failures.append(f"ip -batch in {namespace} hung for {IP_TIMEOUT:g}s: {lines}")
                continue
            if process.returncode != 0:
                where = f"in {namespace}" if namespace is not None else "in the main namespace"
                failures.append(
                    f"ip -batch {where} failed (exit status {process.returncode}): "
                    f"{(stderr or stdout).strip()}; commands: {'; '.join(lines)}"
                )
    finally:
        for _, _, process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()
    if failures:
        raise NetworkError(subject, "\n".join(failures))


def _ip_quiet(namespace: str | None, lines: Sequence[str]) -> None:
    """Run ``lines``, carrying on past errors, for teardown of what may already be gone."""
    if not lines:
        return
    subprocess.run(
        _ip_argv(namespace, force=True),
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        check=False,
        timeout=IP_TIMEOUT,
    )


def _ip_output(namespace: str, *args: str) -> str:
    result = subprocess.run(
        [_require_tool("ip"), "-n", namespace, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=IP_TIMEOUT,
    )
    if result.returncode != 0:
        raise NetworkError(namespace, f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _present_namespaces() -> set[str]:
    try:
        return set(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return set()


def lab_namespaces(prefix: str = NAMESPACE_PREFIX) -> list[str]:
    """The named network namespaces present whose names start with ``prefix`` (the ones
    pytest-coreos makes; a later run reaps those a killed run left)."""
    return sorted(name for name in _present_namespaces() if name.startswith(prefix))


def delete_namespaces(names: Iterable[str]) -> list[str]:
    """Delete the named network namespaces and the links labs made in them (a veth's
    peer goes with it); return the names that existed and are now gone. Never raises for
    a name already gone.

    The links are deleted first because a namespace outlives its name while a process or
    a socket still holds it, and its links with it.
    """
    wanted = [name for name in dict.fromkeys(names) if name and "/" not in name]
    present = _present_namespaces()
    targets = [name for name in wanted if name in present]
    for namespace in targets:
        _ip_quiet(namespace, [f"link del group {LINK_GROUP}"])
    _ip_quiet(None, [f"netns del {name}" for name in targets])
    left = _present_namespaces()
    return [name for name in targets if name not in left]


# -- machines and labs ---------------------------------------------------------------------


@dataclass(frozen=True)
class MachineNetwork:
    """One machine's network namespace: its name, address and how to run programs in it."""

    name: str
    netns: str
    address: str
    index: int
    hub_interface: str  # the hub end of its veth pair; the machine end is eth0

    @property
    def netns_path(self) -> Path:
        return NETNS_DIR / self.netns

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this machine's network namespace and a UTS namespace of its
        own whose hostname is the machine's name.

        Each step execs the next (nsenter and unshare do not fork without ``--fork``; the
        shell writes the hostname with a builtin and execs), so the PID stays the
        program's and a ``setpriv --pdeathsig`` put in front still applies to it.
        """
        if not argv:
            raise ValueError("command() needs a program to run; got an empty sequence")
        return [
            _require_tool("nsenter"),
            f"--net={self.netns_path}",
            "--",
            _require_tool("unshare"),
            "--uts",
            "--",
            "/bin/sh",
            "-c",
            'printf %s "$0" >/proc/sys/kernel/hostname && exec "$@"',
            self.name,
            *argv,
        ]


def _parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    match = _SUBNET.fullmatch(subnet)
    if match is None or any(int(part) > 255 for part in match.groups()):
        raise ValueError(f"subnet must be three octets such as '10.213.7', got {subnet!r}")
    network = ipaddress.IPv4Network(f"{subnet}.0/24")
    if not network.is_private or network.is_loopback or network.is_link_local:
        raise ValueError(
            f"subnet {subnet!r}: use a private range such as 10.x.y, 172.16-31.x or 192.168.x "
            "(loopback and link-local ranges have other meanings)"
        )
    return network


class _HubConnector:
    """Opens TCP connections from inside a lab's hub namespace (for urllib3)."""

    def __init__(self, lab: NetworkLab) -> None:
        self._lab = weakref.ref(lab)

    def __call__(self, address: str, port: int, timeout: float | None) -> socket.socket:
        lab = self._lab()
        if lab is None:
            raise NetworkError("network lab", "the lab of this session no longer exists")
        return lab.connect(address, port, timeout)


def _new_hub_connection(connection: HTTPConnection, connector: _HubConnector) -> socket.socket:
    """urllib3's ``_new_conn`` with the socket made in the hub; same errors as urllib3's."""
    timeout = connection.timeout  # urllib3 has already resolved its default to a number
    try:
        sock = connector(connection._dns_host, connection.port, timeout)
    except TimeoutError as error:
        raise ConnectTimeoutError(
            connection,
            f"Connection to {connection.host} timed out. (connect timeout={timeout})",
        ) from error
    except (OSError, ValueError, NetworkError) as error:
        raise NewConnectionError(
            connection, f"Failed to establish a new connection: {error}"
        ) from error
    try:
        for option in connection.socket_options or ():
            sock.setsockopt(*option)
    except OSError:
        sock.close()
        raise
    return sock


def _hub_pool_classes(connector: _HubConnector) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes whose connections open their sockets in the hub."""

    class HubHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _new_hub_connection(self, connector)

    class HubHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _new_hub_connection(self, connector)

    class HubHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = HubHTTPConnection

    class HubHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = HubHTTPSConnection

    return {"http": HubHTTPConnectionPool, "https": HubHTTPSConnectionPool}


class _HubAdapter(HTTPAdapter):
    """requests' adapter, pooling as usual, over connections made inside the hub."""

    def __init__(self, connector: _HubConnector) -> None:
        self._connector = connector  # before super().__init__, which builds the pools
        super().__init__()

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _hub_pool_classes(self._connector)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise NetworkError(proxy, "a proxy would connect from the main namespace; not used")


class NetworkLab:
    """One cluster's network: a hub namespace with a bridge, and a namespace per machine.

    ``lab_id`` names everything the lab makes (``pytest-coreos-<lab_id>-hub``,
    ``pytest-coreos-<lab_id>-core-01``...); ``subnet`` is the /24 inside, machines at
    ``.1``-``.253`` and the hub at ``.254``. As the addresses exist only inside the lab,
    two labs may use the same subnet.
    """

    def __init__(self, lab_id: str, subnet: str) -> None:
        if _LAB_ID.fullmatch(lab_id) is None:
            raise ValueError(
                f"lab_id must be 1-20 characters of a-z, 0-9 and '-', starting with a "
                f"letter or digit; got {lab_id!r}"
            )
        self.lab_id = lab_id
        self.subnet = subnet
        self.network = _parse_subnet(subnet)
        self.hub = f"{NAMESPACE_PREFIX}{lab_id}-{HUB_SUFFIX}"
        self.hub_address = f"{subnet}.254"
        self._lock = threading.RLock()
        self._machines: dict[str, MachineNetwork] = {}
        self._made: list[str] = []  # namespaces this lab created and has not deleted
        self._hub_thread: _NamespaceThread | None = None
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._blocked: dict[str, frozenset[str]] = {}  # machine -> peer addresses it drops
        self._groups: tuple[tuple[str, ...], ...] = ()

    def __repr__(self) -> str:
        return f"<NetworkLab {self.lab_id} {self.network} machines={list(self._machines)}>"

    @property
    def created(self) -> bool:
        return self._hub_thread is not None

    @property
    def machines(self) -> list[MachineNetwork]:
        return list(self._machines.values())

    def __getitem__(self, name: str) -> MachineNetwork:
        return self._machines[name]

    @property
    def namespaces(self) -> list[str]:
        """The namespaces this lab made and still has, hub first."""
        return list(self._made)

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        """The groups of the partition in force, () when healed."""
        return self._groups

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    # -- building --------------------------------------------------------------------------

    def _add_namespace(self, name: str) -> None:
        if (NETNS_DIR / name).exists():
            raise NetworkError(
                name,
                "network namespace already exists: left by a run that was killed? "
                "(pytest --coreos-reap removes them, or: ip netns delete NAME)",
            )
        _ip_batch(None, [f"netns add {name}"], subject=name)
        self._made.append(name)

    def create(self) -> None:
        """Make the hub namespace and its bridge; nothing if already made. A failure
        removes whatever this call made before raising."""
        with self._lock:
            if self.created:
                return
            try:
                self._add_namespace(self.hub)
                # A fixed MAC: a bridge otherwise takes its lowest port's, which changes
                # as machines come and go, leaving stale ARP entries behind.
                mac = "02:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(5))
                _ip_batch(
                    self.hub,
                    [
                        "link set lo up",
                        f"link add {BRIDGE} address {mac} group {LINK_GROUP} type bridge",
                        # No IPv6 link-local addresses: only the lab's IPv4 subnet exists.
                        f"link set {BRIDGE} addrgenmode none",
                        f"addr add {self.hub_address}/24 dev {BRIDGE}",
                        f"link set {BRIDGE} up",
                    ],
                    subject=self.hub,
                )
                self._hub_thread = _NamespaceThread(
                    NETNS_DIR / self.hub, name=f"pytest-coreos-netns-{self.lab_id}"
                )
            except BaseException:
                self.destroy()
                raise

    def add_machine(self, name: str, index: int) -> MachineNetwork:
        """Make machine ``name``'s namespace, wired to the hub, at address subnet.``index``.

        A failure removes what this call made (the lab's other machines stay).
        """
        if _MACHINE_NAME.fullmatch(name) is None or name == HUB_SUFFIX:
            raise ValueError(
                f"machine name must be 1-32 characters of a-z, 0-9 and '-' (not "
                f"{HUB_SUFFIX!r}); got {name!r}"
            )
        if not 1 <= index <= 253:
            raise ValueError(f"machine index must be 1-253 (.254 is the hub), got {index}")
        with self._lock:
            if not self.created:
                raise NetworkError(self.hub, "create() the lab before adding machines")
            for other in self._machines.values():
                if other.name == name or other.index == index:
                    raise ValueError(
                        f"machine {name} at index {index}: {other.name} already has "
                        f"{'that name' if other.name == name else 'that index'}"
                    )
            machine = MachineNetwork(
                name=name,
                netns=f"{NAMESPACE_PREFIX}{self.lab_id}-{name}",
                address=f"{self.subnet}.{index}",
                index=index,
                hub_interface=f"veth{index}",
            )
            made_namespace = False
            try:
                self._add_namespace(machine.netns)
                made_namespace = True
                veth = machine.hub_interface
                _ip_batch(
                    self.hub,
                    [
                        f"link add {veth} group {LINK_GROUP} type veth "
                        f"peer name {MACHINE_INTERFACE} netns {machine.netns}",
                        f"link set {veth} addrgenmode none",
                        f"link set {veth} master {BRIDGE} up",
                    ],
                    subject=machine.netns,
                )
                _ip_batch(
                    machine.netns,
                    [
                        "link set lo up",
                        f"link set {MACHINE_INTERFACE} addrgenmode none",
                        f"addr add {machine.address}/24 dev {MACHINE_INTERFACE}",
                        f"link set {MACHINE_INTERFACE} up",
                        f"rule add priority {LOCAL_PRIORITY} lookup local",
                        "rule del priority 0 lookup local",
                    ],
                    subject=machine.netns,
                )
            except BaseException:
                if made_namespace:
                    _ip_quiet(self.hub, [f"link del {machine.hub_interface}"])
                    _ip_quiet(None, [f"netns del {machine.netns}"])
                    if machine.netns not in _present_namespaces():
                        self._made.remove(machine.netns)
                raise
            self._machines[name] = machine
            return machine

    # -- reaching the machines from the main namespace -------------------------------------

    def hub_command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the hub namespace (by exec: the PID stays the program's)."""
        if not argv:
            raise ValueError("hub_command() needs a program to run; got an empty sequence")
        return [_require_tool("nsenter"), f"--net={NETNS_DIR / self.hub}", "--", *argv]

    def hub_socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
    ) -> socket.socket:
        """A new socket belonging to the hub namespace, usable from any thread."""
        thread = self._hub_thread
        if thread is None:
            raise NetworkError(self.hub, "the lab is not created (or was destroyed)")
        return thread.call(lambda: socket.socket(family, type))

    def connect(self, address: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to ``address``:``port`` (an IP address) from the hub.

        Only the socket's creation runs in the hub thread; the connect runs in the
        caller's, so a slow connect never holds up another. Errors are those of
        ``socket.create_connection``; the socket keeps ``timeout``.
        """
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(
                f"connect() takes an IP address, got {address!r} (a name would be looked up "
                "from the main namespace)"
            ) from None
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        sock = self.hub_socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((str(ip), port))
        except BaseException:
            sock.close()
            raise
        return sock

    def requests_session(self) -> requests.Session:
        """A requests Session whose every connection is made from the hub (pooled and
        kept alive as usual). It ignores proxy settings of the environment, and the lab
        closes it when destroyed."""
        session = requests.Session()
        session.trust_env = False  # HTTP_PROXY would send requests from the main namespace
        adapter = _HubAdapter(_HubConnector(self))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        with self._lock:
            self._sessions.add(session)
        return session

    # -- partitions ------------------------------------------------------------------------

    def partition(self, *groups: Sequence[str]) -> None:
        """Cut machines of different groups off each other, both ways, established
        connections included; a machine in no group still reaches every other. Replaces
        the partition in force; the hub keeps reaching every machine."""
        for group in groups:
            if isinstance(group, str):
                raise TypeError(
                    f"partition() takes groups of machine names, e.g. partition(['core-01'], "
                    f"['core-02', 'core-03']); got the string {group!r}"
                )
        with self._lock:
            group_of: dict[str, int] = {}
            for number, group in enumerate(groups):
                for name in group:
                    if name not in self._machines:
                        raise ValueError(
                            f"no machine {name!r} in lab {self.lab_id} "
                            f"(machines: {', '.join(self._machines) or 'none'})"
                        )
                    if group_of.setdefault(name, number) != number:
                        raise ValueError(f"machine {name!r} is in more than one group")
            wanted: dict[str, frozenset[str]] = {
                name: frozenset(
                    self._machines[peer].address
                    for peer, peer_group in group_of.items()
                    if peer_group != number
                )
                for name, number in group_of.items()
            }
            self._apply(wanted)
            self._groups = tuple(tuple(group) for group in groups)

    def heal(self) -> None:
        """Undo the partition: every machine reaches every other again."""
        self.partition()

    def _apply(self, wanted: Mapping[str, frozenset[str]]) -> None:
        batches: list[tuple[str | None, Sequence[str]]] = []
        changed: list[str] = []
        for name, machine in self._machines.items():
            now = self._blocked.get(name, frozenset())
            target = wanted.get(name, frozenset())
            rule = f"priority {PARTITION_PRIORITY} blackhole"
            lines = []
            for peer in sorted(now - target):
                # The peer ignored our ARP requests while cut off, so what was sent to it
                # meanwhile may wait in the neighbour queue: dropped here, or it would be
                # delivered after the heal, as no real partition does.
                lines += [f"neigh flush to {peer}", f"rule del from {peer}/32 {rule}"]
            lines += [f"rule add from {peer}/32 {rule}" for peer in sorted(target - now)]
            if lines:
                batches.append((machine.netns, lines))
                changed.append(name)
        try:
            _ip_batches(batches, subject=f"partition of lab {self.lab_id}")
        except NetworkError:
            for name in changed:  # learn what is really in force before raising
                with contextlib.suppress(NetworkError):
                    self._blocked[name] = self._read_blocked(self._machines[name])
            raise
        for name in changed:
            self._blocked[name] = wanted.get(name, frozenset())

    def _read_blocked(self, machine: MachineNetwork) -> frozenset[str]:
        rules = json.loads(
            _ip_output(machine.netns, "-j", "rule", "show", "priority", str(PARTITION_PRIORITY))
            or "[]"
        )
        return frozenset(rule["src"] for rule in rules if rule.get("action") == "blackhole")

    # -- teardown --------------------------------------------------------------------------

    def destroy(self) -> None:
        """Delete every namespace and link the lab made; safe to call again, and never
        raises because something is already gone. Processes still inside the machines
        are their owner's to end (a namespace outlives its name while they run, with no
        links left in it)."""
        with self._lock:
            for session in list(self._sessions):
                session.close()
            self._sessions = weakref.WeakSet()
            if self._hub_thread is not None:
                self._hub_thread.close()
                self._hub_thread = None
            present = _present_namespaces()
            if self.hub in self._made and self.hub in present:
                # The bridge and the hub ends of the veth pairs; each machine end (eth0)
                # goes with its pair.
                _ip_quiet(self.hub, [f"link del group {LINK_GROUP}"])
            _ip_quiet(None, [f"netns del {name}" for name in self._made if name in present])
            left = [name for name in self._made if name in _present_namespaces()]
            self._made = left
            if left:
                raise NetworkError(
                    f"lab {self.lab_id}", f"could not delete namespaces: {', '.join(left)}"
                )
            self._machines.clear()
            self._blocked.clear()
            self._groups = ()
