"""Network labs: machines in network namespaces that tests can cut off each other, and
that the test process reaches like any host on a local network.

Each machine of a lab gets its own network namespace, joined by a veth pair to a bridge
in a hub namespace that the lab also makes (each pair is created inside the hub with its
peer put straight into the machine's namespace). One more pair joins the bridge to the
namespace the test process runs in, as Docker's bridge or a libvirt network does: its
host end (``pco-<lab id>``) holds the address ``.253`` of the lab's /24, so this host
routes the whole subnet into the lab. Every client of the test process (requests, curl,
etcdctl, OpenSSH, the plugin's own handles) then reaches the machines' addresses directly.

The subnet is a /24 of 198.18.0.0/15 of the lab's own (:func:`addresses.claim_subnet`):
that range is reserved for benchmarking networks, so nothing answers there on any real
network should a packet be sent after the lab is gone. While a lab exists, every address
of its subnet (machines and unused ones alike) routes to its host link, which
:meth:`NetworkLab.create` checks with ``ip route get`` before anything is sent; the
plugin's own sockets are moreover bound to that link (``SO_BINDTODEVICE``), so they cannot
leave by another interface whatever the routes say, and fail once it is gone.

A partition is a set of ``blackhole`` policy rules (iproute2 only, no iptables) inside
the machine namespaces: a machine drops every packet coming from a peer of another group,
ARP requests included, before it reaches any socket (each machine namespace moves the
kernel's "lookup local" rule behind those rules, or it would deliver first). Both ends
carry the rules, so neither direction passes, and established connections stall exactly
like new ones (a rule change invalidates the routes sockets cache). Senders see silence
and time out, as across a real network split, rather than the immediate error a
``blackhole`` *route* would give them. Healing also flushes the peer's neighbour entry,
so that nothing sent during the cut, waiting for an ARP answer, is delivered afterwards.
The test process and the hub are in no group: they keep reaching every machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection

from pytest_coreos.errors import CoreOSError
from pytest_coreos.host.addresses import LAB_NETWORK, SubnetClaim, claim_subnet

NAMESPACE_PREFIX = "pytest-coreos-"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000  # setns(2): join a network namespace
SYS_NET = Path("/sys/class/net")
HUB_SUFFIX = "hub"
BRIDGE = "br0"
MACHINE_INTERFACE = "eth0"
# A VM's tap in its machine's namespace, and the rule and table that route its address to
# it (see NetworkLab.route_to_guest): after the partitions' rules, before "lookup local".
GUEST_TAP = "tap0"
GUEST_PRIORITY = 50
GUEST_TABLE = 50
# The host's pair: its end in the test process's namespace is named after the lab
# (HOST_LINK_PREFIX + lab id), its hub end is a port of the bridge.
HOST_LINK_PREFIX = "pco-"
HOST_LINK_ALIAS = "pytest-coreos:"  # + lab id: the reaper deletes only links so marked
HUB_HOST_PORT = "host0"
# Addresses of a lab's /24: machines at .1-.252, the host end .253, the hub's bridge .254.
LAST_MACHINE_INDEX = 252
HOST_INDEX = 253
HUB_INDEX = 254
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
IFNAMSIZ = 15  # the longest interface name Linux takes

_LAB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")
_MACHINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_SUBNET = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
# Where iproute2 and util-linux live when PATH lacks the sbin folders (ordinary users).
_TOOL_FOLDERS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class NetworkError(CoreOSError):
    """A namespace, link or rule of a network lab could not be made, changed or removed."""

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = subject
        self.problem = problem
        super().__init__(f"{subject}: {problem}")


def write_sysctl(netns_path: Path, name: str, value: str) -> None:
    """Set the network sysctl ``name`` (``net.ipv4.ip_forward``) in the namespace at
    ``netns_path``; see :func:`write_sysctls`."""
    write_sysctls(netns_path, {name: value})


def write_sysctls(netns_path: Path, settings: Mapping[str, str]) -> None:
    """Set network sysctls (``{"net.ipv4.ip_forward": "1"}``) in the namespace at
    ``netns_path``, in order, from a thread of this process that joins that namespace and
    then ends: /proc/sys/net shows the namespace of the thread that reads it, so this
    process's own stays untouched, and no ``nsenter``/``sysctl`` process is started (2 ms
    each)."""
    for name in settings:
        if not name.startswith("net."):
            raise ValueError(f"{name} is not a network namespace's sysctl")
    failures: list[tuple[str, OSError]] = []

    def inside() -> None:
        try:
            descriptor = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc().setns(descriptor, CLONE_NEWNET) != 0:
                    number = ctypes.get_errno()
                    raise OSError(number, os.strerror(number))
            finally:
                os.close(descriptor)
        except OSError as error:
            failures.append((", ".join(f"{n}={v}" for n, v in settings.items()), error))
            return
        for name, value in settings.items():
            try:
                Path("/proc/sys", *name.split(".")).write_text(value + "\n")
            except OSError as error:
                failures.append((f"{name}={value}", error))
                return

    worker = threading.Thread(target=inside, name="sysctl")
    worker.start()
    worker.join()
    if failures:
        what, error = failures[0]
        raise NetworkError(f"sysctl {what} in {netns_path}", str(error))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
        raise ValueError(f"subnet must be three octets such as '198.18.7', got {subnet!r}")
    network = ipaddress.IPv4Network(f"{subnet}.0/24")
    if not network.subnet_of(LAB_NETWORK):
        raise ValueError(
            f"subnet {subnet!r}: a lab's subnet is a /24 of {LAB_NETWORK} (reserved for "
            "benchmarking networks, so that nothing real is ever at its addresses)"
        )
    return network


def host_link_name(lab_id: str) -> str:
    """The name of a lab's link in the test process's namespace: ``pco-<lab id>``, or a
    digest of a lab id too long for an interface name."""
    name = HOST_LINK_PREFIX + lab_id
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.blake2s(lab_id.encode(), digest_size=8).hexdigest()
    return (HOST_LINK_PREFIX + digest)[:IFNAMSIZ]


def _route_network(route: Mapping[str, Any]) -> ipaddress.IPv4Network | None:
    destination = str(route.get("dst", ""))
    if destination in ("", "default"):
        return None
    try:
        network = ipaddress.ip_network(destination, strict=False)
    except ValueError:
        return None
    return network if isinstance(network, ipaddress.IPv4Network) else None


def routes_into(network: ipaddress.IPv4Network) -> list[str]:
    """This namespace's IPv4 routes, in every table, that cover any address of ``network``
    (the default route aside): ``"198.18.7.0/24 dev pco-1a2b (main)"``..."""
    result = subprocess.run(
        [_require_tool("ip"), "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
        timeout=IP_TIMEOUT,
    )
    if result.returncode != 0:
        raise NetworkError("ip route show table all", result.stderr.strip())
    found = []
    for route in json.loads(result.stdout or "[]"):
        covered = _route_network(route)
        if covered is not None and covered.prefixlen > 0 and covered.overlaps(network):
            kind = route.get("type", "unicast")
            found.append(
                f"{route['dst']} {'dev ' + route['dev'] if 'dev' in route else kind} "
                f"({route.get('table', 'main')})"
            )
    return found


def routes_taken(addresses: Sequence[str]) -> dict[str, str]:
    """The interface ``ip route get`` gives for each address (a lookup: nothing is sent),
    or what it said instead."""
    if not addresses:
        return {}
    result = subprocess.run(
        [_require_tool("ip"), "-j", "-force", "-batch", "-"],  # each lookup on its own
        input="".join(f"route get {address}\n" for address in addresses),
        capture_output=True,
        text=True,
        check=False,
        timeout=IP_TIMEOUT,
    )
    taken: dict[str, str] = {}
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    for line in lines:
        for route in json.loads(line):
            taken[str(route.get("dst"))] = str(route.get("dev") or route.get("type") or "?")
    for address in addresses:
        taken.setdefault(address, f"no route ({result.stderr.strip() or 'ip said nothing'})")
    return taken


def delete_host_links(names: Iterable[str]) -> list[str]:
    """Delete the named host links of labs (only links marked as a lab's, so a name
    reused by anything else is left alone); return the names deleted. Their peers in the
    hub, and the routes through them, go with them."""
    deleted = []
    for name in dict.fromkeys(names):
        if not name.startswith(HOST_LINK_PREFIX) or "/" in name:
            continue
        try:
            alias = (SYS_NET / name / "ifalias").read_text().strip()
        except OSError:
            continue
        if alias.startswith(HOST_LINK_ALIAS):
            _ip_quiet(None, [f"link del {name}"])
            if not (SYS_NET / name).exists():
                deleted.append(name)
    return deleted


def _bound_to(link: str) -> list[tuple[int, int, bytes]]:
    """Socket options that bind a socket to ``link``: what it sends leaves by no other
    interface, and it cannot be connected once the link is gone."""
    return [(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.encode())]


class _LabAdapter(HTTPAdapter):
    """requests' adapter, pooling as usual, with every socket bound to the lab's host
    link; it refuses to connect once the lab is destroyed."""

    def __init__(self, lab: NetworkLab) -> None:
        self._lab = weakref.ref(lab)
        self._link = lab.host_link
        super().__init__()

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        options = [*HTTPConnection.default_socket_options, *_bound_to(self._link)]
        super().init_poolmanager(connections, maxsize, block, socket_options=options, **pool_kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        lab = self._lab()
        if lab is None or not lab.created:
            raise requests.ConnectionError(
                f"network lab {self._link}: the lab was destroyed (or not created)",
                request=request,
            )
        return super().send(request, *args, **kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise NetworkError(proxy, "a proxy would take requests out of the lab; not used")


class NetworkLab:
    """One cluster's network: a hub namespace with a bridge, a namespace per machine, and
    a link from the test process's namespace into the bridge.

    ``lab_id`` names everything the lab makes (``pytest-coreos-<lab_id>-hub``,
    ``pytest-coreos-<lab_id>-core-01``..., the host link ``pco-<lab_id>``). Its subnet is
    a /24 of 198.18.0.0/15 that :meth:`create` claims (``subnet`` asks for one by its
    three octets, e.g. ``"198.18.7"``): machines at ``.1``-``.252``, the host end of the
    link at ``.253``, the hub at ``.254``. No two labs of this host share a subnet.
    """

    def __init__(self, lab_id: str, subnet: str | None = None) -> None:
        if _LAB_ID.fullmatch(lab_id) is None:
            raise ValueError(
                f"lab_id must be 1-20 characters of a-z, 0-9 and '-', starting with a "
                f"letter or digit; got {lab_id!r}"
            )
        self.lab_id = lab_id
        self._wanted = _parse_subnet(subnet) if subnet is not None else None
        self.hub = f"{NAMESPACE_PREFIX}{lab_id}-{HUB_SUFFIX}"
        self.host_link = host_link_name(lab_id)
        self._lock = threading.RLock()
        self._claim: SubnetClaim | None = None
        self._created = False
        self._host_link_made = False
        self._machines: dict[str, MachineNetwork] = {}
        self._made: list[str] = []  # namespaces this lab created and has not deleted
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._blocked: dict[str, frozenset[str]] = {}  # machine -> peer addresses it drops
        self._groups: tuple[tuple[str, ...], ...] = ()
        self._adopted: ipaddress.IPv4Network | None = None  # the subnet of an adopted lab

    @classmethod
    def adopt(cls, lab_id: str, subnet: str, machines: Sequence[tuple[str, int]]) -> NetworkLab:
        """The lab that another process of this host made, from what its record says (its
        id, its subnet's three octets, its machines' names and indexes): this process then
        reaches its machines, cuts and heals partitions (the ones in force are read back)
        and, with :meth:`destroy`, deletes it, as the process that made it would. Its subnet
        stays taken by the lab's own routes (the maker's claim is not this process's)."""
        lab = cls(lab_id)
        lab._adopted = _parse_subnet(subnet)
        if lab.hub not in _present_namespaces() or not (SYS_NET / lab.host_link).exists():
            raise NetworkError(f"lab {lab_id}", "it is gone (no hub namespace or host link)")
        lab._created = True
        lab._host_link_made = True
        lab._made = [lab.hub]
        for name, index in machines:
            machine = lab._machine_network(name, index)
            lab._machines[name] = machine
            lab._made.append(machine.netns)
            lab._blocked[name] = lab._read_blocked(machine)
        return lab

    def __repr__(self) -> str:
        network = self._claim.network if self._claim is not None else "(no subnet)"
        return f"<NetworkLab {self.lab_id} {network} machines={list(self._machines)}>"

    @property
    def created(self) -> bool:
        return self._created

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The lab's /24, claimed by :meth:`create` (or the adopted lab's)."""
        if self._adopted is not None:
            return self._adopted
        if self._claim is None:
            raise NetworkError(f"lab {self.lab_id}", "create() the lab to give it a subnet")
        return self._claim.network

    @property
    def subnet(self) -> str:
        """The lab's subnet as its first three octets, e.g. ``198.18.7``."""
        return str(self.network.network_address).rsplit(".", 1)[0]

    def address(self, index: int) -> str:
        """Address ``index`` (1-254) of the lab's subnet."""
        return f"{self.subnet}.{index}"

    @property
    def hub_address(self) -> str:
        return self.address(HUB_INDEX)

    @property
    def host_address(self) -> str:
        """The address of the test process's end of the lab: machines see its
        connections come from there."""
        return self.address(HOST_INDEX)

    @property
    def host_links(self) -> list[str]:
        """The links this lab made in the test process's namespace and still has."""
        return [self.host_link] if self._host_link_made else []

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
        """Claim a subnet, make the hub namespace, its bridge and the host link, and check
        that every address of the subnet routes into the lab; nothing if already made. A
        failure removes whatever this call made before raising."""
        with self._lock:
            if self.created:
                return
            if (SYS_NET / self.host_link).exists():
                raise NetworkError(
                    self.host_link,
                    "a link of that name already exists: left by a run that was killed? "
                    f"(pytest --coreos-reap removes it, or: ip link delete {self.host_link})",
                )
            try:
                self._claim = claim_subnet(lambda net: bool(routes_into(net)), wanted=self._wanted)
                self._add_namespace(self.hub)
                self._host_link_made = True  # or about to be: destroy() looks for it
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
                        # The host's pair, made here with its end put straight into the
                        # namespace of this process.
                        f"link add {HUB_HOST_PORT} group {LINK_GROUP} type veth "
                        f"peer name {self.host_link} netns {os.getpid()}",
                        f"link set {HUB_HOST_PORT} addrgenmode none",
                        f"link set {HUB_HOST_PORT} master {BRIDGE} up",
                    ],
                    subject=self.hub,
                )
                # No IPv6 on it either (no link-local address, no multicast route).
                ipv6 = Path("/proc/sys/net/ipv6/conf", self.host_link, "disable_ipv6")
                if ipv6.exists():
                    ipv6.write_text("1\n")
                _ip_batch(
                    None,
                    [
                        f"link set {self.host_link} alias {HOST_LINK_ALIAS}{self.lab_id}",
                        f"link set {self.host_link} addrgenmode none",
                        f"addr add {self.host_address}/24 dev {self.host_link}",
                        f"link set {self.host_link} up",
                    ],
                    subject=self.host_link,
                )
                self._check_contained()
                self._created = True
            except BaseException:
                self.destroy()
                raise

    def _check_contained(self) -> None:
        """Every address of the subnet but the host's own routes to the host link: a rule
        or route of this host that sent some elsewhere (a VPN's, say) stops the lab
        before anything is sent."""
        addresses = [str(host) for host in self.network.hosts() if str(host) != self.host_address]
        elsewhere = {
            address: device
            for address, device in routes_taken(addresses).items()
            if device != self.host_link
        }
        if elsewhere:
            shown = ", ".join(f"{a} -> {d}" for a, d in list(elsewhere.items())[:5])
            raise NetworkError(
                f"lab {self.lab_id}",
                f"{len(elsewhere)} addresses of {self.network} would not go to "
                f"{self.host_link}: {shown}; check this host's rules and routes "
                "(ip rule, ip route get ADDRESS)",
            )

    def add_machine(self, name: str, index: int) -> MachineNetwork:
        """Make machine ``name``'s namespace, wired to the hub, at address subnet.``index``.

        A failure removes what this call made (the lab's other machines stay).
        """
        if _MACHINE_NAME.fullmatch(name) is None or name == HUB_SUFFIX:
            raise ValueError(
                f"machine name must be 1-32 characters of a-z, 0-9 and '-' (not "
                f"{HUB_SUFFIX!r}); got {name!r}"
            )
        if not 1 <= index <= LAST_MACHINE_INDEX:
            raise ValueError(
                f"machine index must be 1-{LAST_MACHINE_INDEX} (.{HOST_INDEX} is the host, "
                f".{HUB_INDEX} the hub), got {index}"
            )
        with self._lock:
            if not self.created:
                raise NetworkError(self.hub, "create() the lab before adding machines")
            for other in self._machines.values():
                if other.name == name or other.index == index:
                    raise ValueError(
                        f"machine {name} at index {index}: {other.name} already has "
                        f"{'that name' if other.name == name else 'that index'}"
                    )
            machine = self._machine_network(name, index)
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

    def _machine_network(self, name: str, index: int) -> MachineNetwork:
        """Machine ``name``'s namespace, address and veth, as its index gives them."""
        return MachineNetwork(
            name=name,
            netns=f"{NAMESPACE_PREFIX}{self.lab_id}-{name}",
            address=self.address(index),
            index=index,
            hub_interface=f"veth{index}",
        )

    def route_to_guest(self, name: str, mac: str) -> str:
        """Hand machine ``name``'s address to a VM (MAC address ``mac``) on a tap of its
        namespace, made here (persistent: QEMU opens it, and it outlives a QEMU that is
        stopped and started again); returns the tap's name.

        The namespace stays the machine's place in the lab and becomes the VM's router:
        it keeps the address (so its ARP requests carry it and it answers ARP for it), a
        rule sends what comes for that address from the lab on to the tap before the
        namespace could take it itself, and it answers the VM's ARP for the rest of the
        lab (proxy ARP). Everything the VM sends and receives is routed through the
        namespace, so partitions (its policy rules) cut a VM off as they cut off the
        namespace's own processes.
        """
        with self._lock:
            machine = self._machines.get(name)
            if machine is None:
                raise NetworkError(name, f"no machine of that name in lab {self.lab_id}")
            _ip_batch(
                machine.netns,
                [
                    f"tuntap add dev {GUEST_TAP} mode tap",
                    f"link set {GUEST_TAP} addrgenmode none",
                    f"link set {GUEST_TAP} up",
                    f"rule add priority {GUEST_PRIORITY} iif {MACHINE_INTERFACE} "
                    f"to {machine.address}/32 lookup {GUEST_TABLE}",
                    f"route add {machine.address}/32 dev {GUEST_TAP} table {GUEST_TABLE}",
                    # Its MAC is known: no ARP on the tap, from an address the VM also has.
                    f"neigh replace {machine.address} lladdr {mac} dev {GUEST_TAP} nud permanent",
                ],
                subject=machine.netns,
            )
            write_sysctls(
                machine.netns_path,
                {
                    "net.ipv4.ip_forward": "1",
                    f"net.ipv4.conf.{GUEST_TAP}.proxy_arp": "1",
                    f"net.ipv4.conf.{MACHINE_INTERFACE}.proxy_arp": "1",
                    # Proxied answers are otherwise held back up to 0.8 s.
                    f"net.ipv4.neigh.{GUEST_TAP}.proxy_delay": "0",
                    f"net.ipv4.neigh.{MACHINE_INTERFACE}.proxy_delay": "0",
                    # The VM's packets come from an address the namespace has too.
                    f"net.ipv4.conf.{GUEST_TAP}.accept_local": "1",
                    f"net.ipv6.conf.{GUEST_TAP}.disable_ipv6": "1",
                },
            )
            return GUEST_TAP

    # -- reaching the machines from the test process ---------------------------------------

    def hub_command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the hub namespace (by exec: the PID stays the program's)."""
        if not argv:
            raise ValueError("hub_command() needs a program to run; got an empty sequence")
        return [_require_tool("nsenter"), f"--net={NETNS_DIR / self.hub}", "--", *argv]

    def connect(self, address: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to ``address``:``port`` of the lab, over its host link (the
        socket is bound to it). Errors are those of ``socket.connect``; the socket keeps
        ``timeout``."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"connect() takes an IP address, got {address!r}") from None
        if not self.created:
            raise NetworkError(f"lab {self.lab_id}", "the lab was destroyed (or not created)")
        if ip not in self.network:
            raise ValueError(f"{address} is not an address of lab {self.lab_id} ({self.network})")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            for option in _bound_to(self.host_link):
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect((str(ip), port))
        except BaseException:
            sock.close()
            raise
        return sock

    def requests_session(self) -> requests.Session:
        """A requests Session whose connections are bound to the lab's host link (pooled
        and kept alive as usual). It ignores proxy settings of the environment, and the
        lab closes it when destroyed."""
        session = requests.Session()
        session.trust_env = False  # HTTP_PROXY would send requests out of the lab
        adapter = _LabAdapter(self)
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
        """Delete every namespace and link the lab made, then release its subnet; safe to
        call again, and never raises because something is already gone. Processes still
        inside the machines are their owner's to end (a namespace outlives its name while
        they run, with no links left in it)."""
        with self._lock:
            self._created = False
            for session in list(self._sessions):
                session.close()
            self._sessions = weakref.WeakSet()
            if self._host_link_made:
                # Its peer, the hub's port, goes with it, and the routes through it.
                _ip_quiet(None, [f"link del {self.host_link}"])
                self._host_link_made = (SYS_NET / self.host_link).exists()
            present = _present_namespaces()
            if self.hub in self._made and self.hub in present:
                # The bridge and the hub ends of the veth pairs; each machine end (eth0)
                # goes with its pair.
                _ip_quiet(self.hub, [f"link del group {LINK_GROUP}"])
            _ip_quiet(None, [f"netns del {name}" for name in self._made if name in present])
            self._made = [name for name in self._made if name in _present_namespaces()]
            left = self._made + ([f"link {self.host_link}"] if self._host_link_made else [])
            if left:
                # The subnet stays claimed while anything of the lab may still route to it.
                raise NetworkError(f"lab {self.lab_id}", f"could not delete: {', '.join(left)}")
            if self._claim is not None:
                self._claim.close()
                self._claim = None
            self._machines.clear()
            self._blocked.clear()
            self._groups = ()
