"""Network labs with real namespaces, real veth pairs and a real bridge (needs root).

Each machine of the shared lab runs a small real server inside its namespace: a line
service that answers with the machine's hostname (so a reply proves both who answered and
that the UTS namespace works), an HTTP service that says which address the client came
from, and a UDP sink that remembers what reached it (to check each direction of a cut on
its own). Clients run inside the namespaces too, through ``MachineNetwork.command``, and
in this test process's own namespace, over the lab's host link.

Nothing is sent to a lab address unless ``ip route get`` says it goes to that lab's link.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import requests

from pytest_coreos import CoreOSError
from pytest_coreos.host import netns
from pytest_coreos.host.addresses import LAB_NETWORK, claim_subnet
from pytest_coreos.host.netns import (
    NETNS_DIR,
    NetworkError,
    NetworkLab,
    delete_host_links,
    delete_namespaces,
    lab_namespaces,
    netns_supported,
    routes_into,
    routes_taken,
)
from pytest_coreos.host.process import process_start_time
from pytest_coreos.waiting import NotReady, poll

pytestmark = pytest.mark.needs_root("network namespaces")

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
LINE_PORT, HTTP_PORT, UDP_PORT = 7000, 8000, 7001
MACHINES = ("core-01", "core-02", "core-03")
# A probe that gets no answer within this long counts as cut off; a reachable machine
# answers within milliseconds.
PROBE_TIMEOUT = 1.5

SERVER = r"""
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

address = sys.argv[1]
name = socket.gethostname()
seen = []

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a pooled client reuses its connection

    def do_GET(self):
        host, port = self.client_address[:2]
        body = f"{name} {host} {port}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def serve_lines(conn):
    with conn:
        for line in conn.makefile("r"):
            text = line.strip()
            reply = ",".join(seen) if text == "seen" else f"{name} {text}"
            conn.sendall(f"{reply}\n".encode())

def sink():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, int(sys.argv[4])))
    while True:
        seen.append(udp.recv(100).decode())

http = ThreadingHTTPServer((address, int(sys.argv[3])), Handler)
threading.Thread(target=http.serve_forever, daemon=True).start()
threading.Thread(target=sink, daemon=True).start()
listener = socket.create_server((address, int(sys.argv[2])))
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve_lines, args=(conn,), daemon=True).start()
"""

# Connects to every target at once; prints {target: reply or error} as JSON.
PROBE = r"""
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

timeout = float(sys.argv[1])

def probe(target):
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout) as conn:
            conn.sendall(b"probe\n")
            return conn.makefile("r").readline().strip()
    except OSError as error:
        return f"error: {type(error).__name__}: {error}"

targets = sys.argv[2:]
with ThreadPoolExecutor(len(targets)) as pool:
    print(json.dumps(dict(zip(targets, pool.map(probe, targets)))))
"""

# Holds one connection open; each line on stdin (a timeout) sends the next number and
# prints the server's reply to it, or "timeout". Late replies to earlier numbers are skipped.
HOLDER = r"""
import socket, sys

conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
buffer = b""
for number, line in enumerate(sys.stdin, 1):
    conn.settimeout(float(line))
    conn.sendall(f"{number}\n".encode())
    reply = None
    try:
        while reply is None:
            while b"\n" not in buffer:
                data = conn.recv(4096)
                if not data:
                    raise SystemExit("connection closed")
                buffer += data
            got, buffer = buffer.split(b"\n", 1)
            if got.decode().split()[-1] == str(number):
                reply = got.decode()
    except TimeoutError:
        reply = "timeout"
    print(reply, flush=True)
"""

SEND_UDP = "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))"  # noqa: E501


def new_lab_id() -> str:
    return f"t{secrets.token_hex(4)}"


class Processes:
    """The processes a test starts, each in its own session; all killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        stdin: int = subprocess.DEVNULL,
        stdout: int = subprocess.DEVNULL,
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)
        self.started.clear()


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.kill_all()


def wait_for_servers(lab: NetworkLab, names: Sequence[str]) -> None:
    for name in names:
        address = lab[name].address

        def check(address: str = address) -> None:
            for port in (LINE_PORT, HTTP_PORT):
                try:
                    lab.connect(address, port, timeout=1.0).close()
                except OSError as error:
                    raise NotReady(f"{address}:{port}: {error}") from error

        poll(check, what=f"the server of {name}", timeout=20)


def start_servers(lab: NetworkLab, processes: Processes, names: Sequence[str]) -> None:
    for name in names:
        machine = lab[name]
        ports = [str(LINE_PORT), str(HTTP_PORT), str(UDP_PORT)]
        processes.start(machine.command([PYTHON, "-I", "-c", SERVER, machine.address, *ports]))
    wait_for_servers(lab, names)


@pytest.fixture(scope="module")
def running_lab() -> Iterator[NetworkLab]:
    """A lab of three machines, each running the test server; shared by this module."""
    servers = Processes()
    with NetworkLab(new_lab_id()) as lab:
        try:
            for index, name in enumerate(MACHINES, 1):
                lab.add_machine(name, index)
            start_servers(lab, servers, MACHINES)
            yield lab
        finally:
            servers.kill_all()


@pytest.fixture
def lab(running_lab: NetworkLab) -> Iterator[NetworkLab]:
    """The shared lab, healed again after each test."""
    yield running_lab
    running_lab.heal()


def probe(
    lab: NetworkLab, targets_of: Mapping[str, Sequence[str]], timeout: float = PROBE_TIMEOUT
) -> dict[tuple[str, str], str]:
    """From each source (a machine, or "hub"), try every target at once, all sources in
    parallel; the reply (or error) per (source, target)."""
    running = {}
    try:
        for source, targets in targets_of.items():
            to_argv = lab.hub_command if source == "hub" else lab[source].command
            endpoints = [f"{lab[target].address}:{LINE_PORT}" for target in targets]
            running[source] = subprocess.Popen(
                to_argv([PYTHON, "-I", "-c", PROBE, str(timeout), *endpoints]),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        replies: dict[tuple[str, str], str] = {}
        for source, process in running.items():
            stdout, stderr = process.communicate(timeout=timeout + 30)
            assert process.returncode == 0, f"probe from {source} failed: {stderr}"
            by_endpoint = json.loads(stdout)
            for target in targets_of[source]:
                replies[source, target] = by_endpoint[f"{lab[target].address}:{LINE_PORT}"]
        return replies
    finally:
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()


def reachability(
    lab: NetworkLab, sources: Sequence[str], cut: Sequence[tuple[str, str]] = ()
) -> dict[tuple[str, str], bool]:
    """Whether each source reaches each machine (other than itself), told by the reply.

    Pairs that seem cut but should not be (``cut`` lists those that should) are tried
    again with a long timeout, so that a loaded machine cannot pass a slow answer off as
    a cut; a pair that answers when it should not is wrong at once.
    """
    targets_of = {source: [m for m in MACHINES if m != source] for source in sources}
    replies = probe(lab, targets_of)
    should_answer = expected(sources, cut)
    silent: dict[str, list[str]] = {}
    for (source, target), reply in replies.items():
        if reply != f"{target} probe" and should_answer[source, target]:
            silent.setdefault(source, []).append(target)
    if silent:
        replies |= probe(lab, silent, timeout=10)
    return {pair: reply == f"{pair[1]} probe" for pair, reply in replies.items()}


def expected(
    sources: Sequence[str], cut: Sequence[tuple[str, str]] = ()
) -> dict[tuple[str, str], bool]:
    blocked = {frozenset(pair) for pair in cut}
    return {
        (source, target): frozenset((source, target)) not in blocked
        for source in sources
        for target in MACHINES
        if target != source
    }


def assert_routed_into(lab: NetworkLab, addresses: Sequence[str]) -> None:
    """Before anything is sent: each address goes to the lab's own host link."""
    assert routes_taken(addresses) == {address: lab.host_link for address in addresses}


def fetch(session: requests.Session, lab: NetworkLab, name: str) -> list[str]:
    assert_routed_into(lab, [lab[name].address])
    reply = session.get(f"http://{lab[name].address}:{HTTP_PORT}/", timeout=5)
    reply.raise_for_status()
    return reply.text.split()  # hostname, client address, client port


def main_namespace_state() -> dict[str, set[str]]:
    """Links, addresses, routes and rules of the namespace this test process is in."""
    commands = {
        "links": ["ip", "-o", "link"],
        "addresses": ["ip", "-o", "addr"],
        "routes": ["ip", "route", "show", "table", "all"],
        "ipv6 routes": ["ip", "-6", "route", "show", "table", "all"],
        "rules": ["ip", "rule"],
    }
    return {
        what: set(
            subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
        )
        for what, argv in commands.items()
    }


def assert_unchanged(before: dict[str, set[str]], after: dict[str, set[str]]) -> None:
    changes = {
        what: {"added": sorted(after[what] - lines), "removed": sorted(lines - after[what])}
        for what, lines in before.items()
        if lines != after[what]
    }
    assert not changes, f"the main network namespace changed: {changes}"


def links_in_namespace_of(path: str) -> list[str]:
    """The links of the namespace at ``path`` (a /proc path works for nameless ones)."""
    output = subprocess.run(
        ["nsenter", f"--net={path}", "--", "ip", "-o", "link"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split(":", 2)[1].strip() for line in output.splitlines()]


# -- the machine is usable here ------------------------------------------------------------


def test_network_namespaces_are_supported_here() -> None:
    assert netns_supported() is None


def test_a_command_runs_in_the_machine_namespaces_as_the_same_process(lab: NetworkLab) -> None:
    machine = lab["core-02"]
    assert subprocess.run(
        machine.command(["hostname"]), capture_output=True, text=True, check=True
    ).stdout == ("core-02\n")
    report = (
        "import os, socket; print(os.getpid(), os.stat('/proc/self/ns/net').st_ino, "
        "os.stat('/proc/self/ns/uts').st_ino, socket.gethostname())"
    )
    process = subprocess.Popen(
        machine.command([PYTHON, "-I", "-c", report]), stdout=subprocess.PIPE, text=True
    )
    stdout, _ = process.communicate(timeout=30)
    pid, net, uts, hostname = stdout.split()
    assert int(pid) == process.pid  # exec all the way: no wrapper process in between
    assert int(net) == os.stat(machine.netns_path).st_ino
    assert int(uts) != os.stat("/proc/self/ns/uts").st_ino
    assert hostname == "core-02"
    assert os.uname().nodename != "core-02"


def test_a_pdeathsig_put_in_front_of_a_command_still_ends_the_program(lab: NetworkLab) -> None:
    """As ManagedProcess runs it: setpriv --pdeathsig KILL -- <command>. The parent waits
    until the program runs (so the signal is armed), prints its PID and exits."""
    parent = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(sys.argv[1:])\n"
        "while open(f'/proc/{child.pid}/comm').read().strip() != 'sleep':\n"
        "    time.sleep(0.005)\n"
        "print(child.pid, flush=True)\n"
    )
    argv = ["setpriv", "--pdeathsig", "KILL", "--", *lab["core-01"].command(["sleep", "60"])]
    pid = int(
        subprocess.run(
            [PYTHON, "-I", "-c", parent, *argv], capture_output=True, text=True, timeout=30
        ).stdout
    )
    try:
        deadline = time.monotonic() + 10
        while process_start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_start_time(pid) is None, "sleep outlived its parent"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- reaching machines ---------------------------------------------------------------------


def test_the_test_process_reaches_every_machine_over_the_host_link(lab: NetworkLab) -> None:
    assert lab.network.subnet_of(LAB_NETWORK)
    assert lab.host_address == f"{lab.subnet}.253"
    for index, name in enumerate(MACHINES, 1):
        assert lab[name].address == f"{lab.subnet}.{index}"
        assert_routed_into(lab, [lab[name].address])
        with lab.connect(lab[name].address, LINE_PORT, timeout=5) as conn:
            conn.sendall(b"hello\n")
            assert conn.makefile("r").readline() == f"{name} hello\n"
            assert conn.getsockname()[0] == lab.host_address


def test_a_requests_session_goes_over_the_host_link_and_keeps_connections(
    lab: NetworkLab,
) -> None:
    session = lab.requests_session()
    with session:
        for name in MACHINES:
            first = fetch(session, lab, name)
            again = fetch(session, lab, name)
            assert first[:2] == [name, lab.host_address]
            assert again == first  # same client port: the pooled connection was reused
        with pytest.raises(requests.ConnectionError):  # refused: nothing on that port
            session.get(f"http://{lab['core-01'].address}:1/", timeout=5)
    with pytest.raises(ValueError, match="not an address of lab"):
        lab.connect("127.0.0.1", LINE_PORT, timeout=5)


def test_the_hosts_own_clients_reach_the_machines(lab: NetworkLab) -> None:
    """Plain requests and curl, knowing nothing of the lab: this host routes to it."""
    for name in MACHINES:
        url = f"http://{lab[name].address}:{HTTP_PORT}/"
        assert_routed_into(lab, [lab[name].address])
        assert requests.get(url, timeout=5).text.split()[:2] == [name, lab.host_address]
        curl = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "10", url],
            capture_output=True,
            text=True,
            check=False,
        )
        assert curl.returncode == 0, curl.stderr
        assert curl.stdout.split()[:2] == [name, lab.host_address]


@contextlib.contextmanager
def packet_counters(network: str, host_link: str) -> Iterator[Callable[[], dict[str, int]]]:
    """iptables counters of what this namespace sends to ``network``: ``"lab"`` through
    the lab's host link, ``"local"`` to this host itself (the kernel's ICMP errors about
    an address that does not answer come from and go to the host's own lab address),
    ``"elsewhere"`` by any other interface: dropped as well as counted, so that nothing
    leaves even if the check fails."""
    tag = f"pytest-coreos-count-{host_link}"
    rules = {  # inserted in reverse, so checked in this order
        "lab": (["-o", host_link], "ACCEPT"),
        "local": (["-o", "lo"], "ACCEPT"),
        "elsewhere": ([], "DROP"),
    }
    specs = {
        what: ["-d", network, *match, "-m", "comment", "--comment", f"{tag}-{what}", "-j", action]
        for what, (match, action) in rules.items()
    }
    added = []
    try:
        for spec in reversed(specs.values()):
            subprocess.run(["iptables", "-I", "OUTPUT", "1", *spec], check=True)
            added.append(spec)

        def read() -> dict[str, int]:
            listing = subprocess.run(
                ["iptables", "-nvxL", "OUTPUT"], capture_output=True, text=True, check=True
            ).stdout
            counts = {}
            for line in listing.splitlines():
                for what in specs:
                    if f"/* {tag}-{what} */" in line:
                        counts[what] = int(line.split()[0])
            return counts

        yield read
    finally:
        for spec in added:
            subprocess.run(["iptables", "-D", "OUTPUT", *spec], check=False)


def test_every_address_of_the_subnet_goes_into_the_lab_and_nothing_leaves(
    lab: NetworkLab,
) -> None:
    """Machine addresses and unused ones (.0 and .255 are the subnet's own, .253 this
    host's) route to the host link; clients hitting them send nothing elsewhere."""
    unused = [lab.address(index) for index in (4, 100, 252)]
    every = [lab.address(index) for index in range(1, 255) if index != 253]
    assert_routed_into(lab, every)
    with packet_counters(str(lab.network), lab.host_link) as counts:
        assert counts() == {"lab": 0, "local": 0, "elsewhere": 0}
        for name in MACHINES:
            requests.get(f"http://{lab[name].address}:{HTTP_PORT}/", timeout=5).raise_for_status()
        for address in unused:  # no machine answers ARP there: the connect fails
            curl = subprocess.run(
                ["curl", "-sS", "--noproxy", "*", "--connect-timeout", "2", f"http://{address}/"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert curl.returncode != 0
        seen = counts()
    assert seen["elsewhere"] == 0, seen
    assert seen["lab"] >= len(MACHINES) * 3 + len(unused), seen  # the counter counts


def test_machines_and_the_hub_reach_each_other(lab: NetworkLab) -> None:
    sources = [*MACHINES, "hub"]
    assert reachability(lab, sources) == expected(sources)


def test_labs_get_subnets_of_their_own(processes: Processes) -> None:
    with NetworkLab(new_lab_id()) as first, NetworkLab(new_lab_id()) as second:
        assert first.network != second.network
        assert {first.network, second.network} <= set(LAB_NETWORK.subnets(new_prefix=24))
        first.add_machine("first-01", 1)
        second.add_machine("second-01", 1)
        start_servers(first, processes, ["first-01"])
        start_servers(second, processes, ["second-01"])
        for each, name in ((first, "first-01"), (second, "second-01")):
            with each.requests_session() as session:
                assert fetch(session, each, name)[:2] == [name, each.host_address]
        with pytest.raises(CoreOSError, match="no free lab subnet"):
            NetworkLab(new_lab_id(), first.subnet).create()


def test_a_subnet_claimed_by_another_process_or_routed_here_is_not_taken() -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pytest_coreos.host.addresses import claim_subnet; "
            "claim = claim_subnet(lambda network: False); print(claim.prefix, flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        held = holder.stdout.readline().strip()
        with pytest.raises(CoreOSError, match="no free lab subnet"):
            NetworkLab(new_lab_id(), held).create()
        holder.stdin.close()
        holder.wait(timeout=30)
    with NetworkLab(new_lab_id(), held) as lab:  # released with its holder
        assert lab.subnet == held
        # Routed here (a lab's link, or a killed run's that is not reaped yet): not free.
        assert routes_into(lab.network)
        with pytest.raises(CoreOSError, match="no free lab subnet"):
            claim_subnet(lambda network: bool(routes_into(network)), wanted=lab.network).close()


# -- partitions ----------------------------------------------------------------------------


def test_a_partition_cuts_groups_apart_and_heal_joins_them(lab: NetworkLab) -> None:
    sources = [*MACHINES, "hub"]
    lab.partition(["core-01"], ["core-02", "core-03"])
    assert lab.groups == (("core-01",), ("core-02", "core-03"))
    cut = [("core-01", "core-02"), ("core-01", "core-03")]
    assert reachability(lab, sources, cut) == expected(sources, cut)
    # The test process is in no group: its own clients still reach every machine.
    with lab.requests_session() as session:
        assert [fetch(session, lab, name)[0] for name in MACHINES] == list(MACHINES)
    for name in MACHINES:
        url = f"http://{lab[name].address}:{HTTP_PORT}/"
        assert requests.get(url, timeout=5).text.split()[0] == name

    lab.heal()
    assert not lab.groups
    assert reachability(lab, sources) == expected(sources)


def test_a_partition_drops_packets_in_each_direction(lab: NetworkLab, processes: Processes) -> None:
    """UDP shows each direction on its own; the receivers are asked through the hub.

    core-02 knows core-01's MAC address, so its datagram reaches core-01 and is dropped
    there. core-01 knows nothing (its neighbour table is flushed), so its datagram waits
    for an ARP answer that core-02 never gives: it must not be delivered after the heal.
    """

    def send(source: str, target: str, payload: str) -> None:
        argv = [PYTHON, "-I", "-c", SEND_UDP, lab[target].address, str(UDP_PORT), payload]
        subprocess.run(lab[source].command(argv), check=True, timeout=30)

    def seen(name: str) -> list[str]:
        with lab.connect(lab[name].address, LINE_PORT, timeout=5) as conn:
            conn.sendall(b"seen\n")
            return conn.makefile("r").readline().strip().split(",")

    assert reachability(lab, ["core-02"])["core-02", "core-01"]
    subprocess.run(["ip", "-n", lab["core-01"].netns, "neigh", "flush", "dev", "eth0"], check=True)
    lab.partition(["core-01"], ["core-02"])
    send("core-01", "core-02", "cut-01-to-02")
    send("core-02", "core-01", "cut-02-to-01")
    send("core-03", "core-01", "free-03-to-01")  # core-03 is in no group
    time.sleep(0.3)
    lab.heal()
    send("core-01", "core-02", "healed-01-to-02")
    send("core-02", "core-01", "healed-02-to-01")

    def delivered() -> tuple[list[str], list[str]]:
        at_01, at_02 = seen("core-01"), seen("core-02")
        if "healed-02-to-01" not in at_01 or "healed-01-to-02" not in at_02:
            raise NotReady(f"core-01 saw {at_01}, core-02 saw {at_02}")
        return at_01, at_02

    at_01, at_02 = poll(delivered, what="datagrams after heal", timeout=10)
    assert "cut-02-to-01" not in at_01
    assert "free-03-to-01" in at_01
    assert "cut-01-to-02" not in at_02


def test_a_partition_stalls_an_established_connection_until_healed(
    lab: NetworkLab, processes: Processes
) -> None:
    holder = processes.start(
        lab["core-01"].command(
            [PYTHON, "-I", "-c", HOLDER, lab["core-02"].address, str(LINE_PORT)]
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    to_holder, from_holder = holder.stdin, holder.stdout
    assert to_holder is not None
    assert from_holder is not None

    def exchange(timeout: float) -> str:
        to_holder.write(f"{timeout}\n")
        to_holder.flush()
        return from_holder.readline().strip()

    assert exchange(10) == "core-02 1"
    lab.partition(["core-01"], ["core-02", "core-03"])
    assert exchange(1.0) == "timeout"
    lab.heal()
    assert exchange(20) == "core-02 3"  # the same connection carries data again


def test_partitioning_again_replaces_the_partition(lab: NetworkLab) -> None:
    lab.partition(["core-01"], ["core-02"])
    cut = [("core-01", "core-02")]  # core-03, in no group, still reaches both
    assert reachability(lab, MACHINES, cut) == expected(MACHINES, cut)

    lab.partition(["core-01", "core-02"], ["core-03"])
    cut = [("core-01", "core-03"), ("core-02", "core-03")]
    assert reachability(lab, MACHINES, cut) == expected(MACHINES, cut)


def test_partition_rejects_groups_it_cannot_apply(lab: NetworkLab) -> None:
    lab.partition(["core-01"], ["core-02"])
    with pytest.raises(ValueError, match="no machine 'core-09'"):
        lab.partition(["core-01"], ["core-09"])
    with pytest.raises(ValueError, match="more than one group"):
        lab.partition(["core-01"], ["core-01", "core-02"])
    with pytest.raises(TypeError, match="groups of machine names"):
        lab.partition("core-01", "core-02")
    assert lab.groups == (("core-01",), ("core-02",))  # the partition in force stays


# -- leaving nothing behind ----------------------------------------------------------------


def host_link_exists(lab: NetworkLab) -> bool:
    return Path("/sys/class/net", lab.host_link).exists()


def test_destroy_removes_namespaces_links_routes_and_the_claim(processes: Processes) -> None:
    lab = NetworkLab(new_lab_id())
    try:
        check_destroy(lab, processes)
    finally:
        lab.destroy()


def check_destroy(lab: NetworkLab, processes: Processes) -> None:
    lab.create()
    for index, name in enumerate(MACHINES, 1):
        lab.add_machine(name, index)
    names = lab.namespaces
    network, subnet = lab.network, lab.subnet
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == sorted(names)
    assert host_link_exists(lab)
    assert lab.host_links == [lab.host_link]
    session = lab.requests_session()
    # Things that keep namespaces alive after their names are gone: a process inside a
    # machine and an open descriptor of the hub. Their links must go all the same.
    sleeper = processes.start(lab["core-01"].command(["sleep", "60"]))

    def sleeping() -> None:
        if Path(f"/proc/{sleeper.pid}/comm").read_text().strip() != "sleep":
            raise NotReady("sleep has not started yet")

    poll(sleeping, what="sleep to start in core-01", timeout=10)
    hub_fd = os.open(NETNS_DIR / lab.hub, os.O_RDONLY)
    try:
        machine_links = links_in_namespace_of(f"/proc/{sleeper.pid}/ns/net")
        assert sorted(link.split("@")[0] for link in machine_links) == ["eth0", "lo"]
        lab.destroy()
        assert not set(names) & set(lab_namespaces())
        assert lab.namespaces == []
        assert links_in_namespace_of(f"/proc/{os.getpid()}/fd/{hub_fd}") == ["lo"]
        assert links_in_namespace_of(f"/proc/{sleeper.pid}/ns/net") == ["lo"]
    finally:
        os.close(hub_fd)
    assert not host_link_exists(lab)
    assert lab.host_links == []
    assert routes_into(network) == []
    # The subnet is free again: a new lab may have it.
    with NetworkLab(new_lab_id(), subnet) as again:
        assert again.network == network
    # A request of a session of the lab that is gone is refused before anything is sent.
    with pytest.raises(requests.ConnectionError, match=r"destroyed|not created"):
        session.get(f"http://{subnet}.1:{HTTP_PORT}/", timeout=5)
    with pytest.raises(NetworkError, match="destroyed"):
        lab.connect(f"{subnet}.1", HTTP_PORT, timeout=5)
    lab.destroy()  # again: nothing to do, nothing raised


def test_the_main_namespace_gets_the_host_link_only_while_the_lab_exists() -> None:
    before = main_namespace_state()
    with NetworkLab(new_lab_id()) as other:
        for index, name in enumerate(MACHINES, 1):
            other.add_machine(name, index)
        other.partition(["core-01"], ["core-02", "core-03"])
        assert_routed_into(other, [other["core-01"].address])
        with pytest.raises(ConnectionRefusedError):  # answered by core-01's kernel
            other.connect(other["core-01"].address, 9, timeout=5)
        during = main_namespace_state()
        link = other.host_link
        added = {what: sorted(during[what] - lines) for what, lines in before.items()}
        assert all(link in line for lines in added.values() for line in lines), added
        assert len(added["links"]) == 1
        assert [line.split()[3] for line in added["addresses"]] == [f"{other.host_address}/24"]
        route = f"{other.network} dev {link} proto kernel scope link src {other.host_address}"
        assert route in {line.strip() for line in during["routes"]}
        assert not added["ipv6 routes"]
        assert not added["rules"]
        assert all(lines <= during[what] for what, lines in before.items())
    assert_unchanged(before, main_namespace_state())


# -- failing halfway -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subnet",
    ["10.213", "10.213.300", "10.213.7.0", "10.213.7", "127.0.5", "169.254.1", "8.8.8", ""],
)
def test_a_bad_subnet_is_refused_before_anything_is_made(subnet: str) -> None:
    before = lab_namespaces()
    with pytest.raises(ValueError, match="subnet"):
        NetworkLab(new_lab_id(), subnet)
    assert lab_namespaces() == before


def test_bad_lab_ids_and_machines_are_refused(lab: NetworkLab) -> None:
    for lab_id in ("", "UPPER", "a" * 21, "-dash", "has/slash", "sp ace"):
        with pytest.raises(ValueError, match="lab_id"):
            NetworkLab(lab_id)
    for name, index, problem in [
        ("core-04", 0, "index"),
        ("core-04", 253, "index"),
        ("core-04", 254, "index"),
        ("hub", 4, "name"),
        ("Core 4", 4, "name"),
        ("core-01", 4, "already has that name"),
        ("core-04", 1, "already has that index"),
    ]:
        with pytest.raises(ValueError, match=problem):
            lab.add_machine(name, index)
    assert [machine.name for machine in lab.machines] == list(MACHINES)
    with pytest.raises(NetworkError, match="create"):
        NetworkLab(new_lab_id()).add_machine("core-01", 1)


def test_a_long_lab_id_gets_a_host_link_name_linux_takes() -> None:
    names = {netns.host_link_name("a" * 20), netns.host_link_name("a" * 19 + "b")}
    assert len(names) == 2
    assert all(name.startswith("pco-") and len(name) <= 15 for name in names)
    assert netns.host_link_name("0123456789a") == "pco-0123456789a"


def fail_batches_in(monkeypatch: pytest.MonkeyPatch, namespace: str, containing: str) -> None:
    """Make the real ``ip -batch`` run in ``namespace`` fail after its other commands ran,
    by appending a command on a device that does not exist (a fault injected on purpose)."""
    real = netns._ip_batches

    def with_fault(batches: Sequence[tuple[str | None, Sequence[str]]], *, subject: str) -> None:
        faulty = [
            (where, [*lines, "link set no-such-link up"])
            if where == namespace and any(containing in line for line in lines)
            else (where, lines)
            for where, lines in batches
        ]
        real(faulty, subject=subject)

    monkeypatch.setattr(netns, "_ip_batches", with_fault)


@pytest.mark.parametrize(
    ("where", "containing"), [("hub", "type bridge"), ("host", "addr add")], ids=["hub", "host"]
)
def test_a_create_failing_halfway_removes_what_it_made_injected_fault(
    monkeypatch: pytest.MonkeyPatch, where: str, containing: str
) -> None:
    lab = NetworkLab(new_lab_id())
    fail_batches_in(monkeypatch, lab.hub if where == "hub" else None, containing)
    with pytest.raises(NetworkError, match="no-such-link"):
        lab.create()
    assert not lab.created
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
    assert not host_link_exists(lab)
    with pytest.raises(NetworkError, match="create"):
        lab.network  # noqa: B018 - the claim went with the failure
    monkeypatch.undo()
    with lab:  # and it can be made afterwards
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == [lab.hub]
        assert host_link_exists(lab)


def test_a_machine_failing_halfway_removes_its_namespace_and_veth_injected_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with NetworkLab(new_lab_id()) as lab:
        lab.add_machine("core-01", 1)
        failing = f"pytest-coreos-{lab.lab_id}-core-02"
        fail_batches_in(monkeypatch, failing, "addr add")
        with pytest.raises(NetworkError, match="no-such-link"):
            lab.add_machine("core-02", 2)
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == sorted(
            [lab.hub, lab["core-01"].netns]
        )
        hub_links = links_in_namespace_of(str(NETNS_DIR / lab.hub))
        assert sorted(link.split("@")[0] for link in hub_links) == ["br0", "host0", "lo", "veth1"]
        monkeypatch.undo()
        assert lab.add_machine("core-02", 2).address == f"{lab.subnet}.2"
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []


def build_lab(lab_id: str, names: Sequence[str]) -> None:
    with NetworkLab(lab_id) as lab:
        for index, name in enumerate(names, 1):
            lab.add_machine(name, index)


def test_a_namespace_left_by_someone_else_is_refused_and_left_alone() -> None:
    """A real failure halfway: the name of the second machine is already taken."""
    lab_id = new_lab_id()
    stray = f"pytest-coreos-{lab_id}-core-02"
    subprocess.run(["ip", "netns", "add", stray], check=True)
    try:
        with pytest.raises(NetworkError, match="already exists"):
            build_lab(lab_id, ["core-01", "core-02"])
        assert lab_namespaces(f"pytest-coreos-{lab_id}-") == [stray]
        hub_stray = NetworkLab(lab_id).hub
        subprocess.run(["ip", "netns", "add", hub_stray], check=True)
        with pytest.raises(NetworkError, match="already exists"):
            NetworkLab(lab_id).create()
        assert lab_namespaces(f"pytest-coreos-{lab_id}-") == sorted([hub_stray, stray])
    finally:
        delete_namespaces([stray, f"pytest-coreos-{lab_id}-hub"])
    assert lab_namespaces(f"pytest-coreos-{lab_id}-") == []


def test_a_host_link_left_by_someone_else_is_refused_and_left_alone() -> None:
    lab = NetworkLab(new_lab_id())
    # A link of that name that is no lab's: a bridge, unmarked, down, with no address.
    subprocess.run(["ip", "link", "add", lab.host_link, "type", "bridge"], check=True)
    try:
        with pytest.raises(NetworkError, match="already exists"):
            lab.create()
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
        assert delete_host_links([lab.host_link]) == []  # not marked as a lab's
        assert host_link_exists(lab)
    finally:
        subprocess.run(["ip", "link", "del", lab.host_link], check=False)


def test_an_abandoned_lab_is_found_and_deleted() -> None:
    """What a reaper does after a run was killed before it could destroy its lab: the
    host link first (its routes go with it), then the namespaces."""
    lab = NetworkLab(new_lab_id())
    try:
        lab.create()
        lab.add_machine("core-01", 1)
        lab.add_machine("core-02", 2)
        lab.partition(["core-01"], ["core-02"])
        names = lab_namespaces(f"pytest-coreos-{lab.lab_id}-")
        assert names == sorted(lab.namespaces)
        network = lab.network
        hub_fd = os.open(NETNS_DIR / lab.hub, os.O_RDONLY)
        try:
            assert delete_host_links([lab.host_link, "pco-never-made"]) == [lab.host_link]
            assert routes_into(network) == []
            assert sorted(delete_namespaces([*names, "pytest-coreos-never-made"])) == names
            assert links_in_namespace_of(f"/proc/{os.getpid()}/fd/{hub_fd}") == ["lo"]
        finally:
            os.close(hub_fd)
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
        assert delete_namespaces(names) == []
        assert delete_host_links([lab.host_link]) == []
    finally:
        lab.destroy()  # the lab finds its namespaces and link gone: not an error
    assert lab.namespaces == []


def test_deleting_the_namespaces_takes_the_host_link_along() -> None:
    lab = NetworkLab(new_lab_id())
    try:
        lab.create()
        lab.add_machine("core-01", 1)
        assert delete_namespaces(lab.namespaces)
        assert not host_link_exists(lab)
    finally:
        lab.destroy()


def test_a_host_rule_sending_part_of_the_subnet_elsewhere_stops_the_lab() -> None:
    """As a VPN's policy routing might: one address of the subnet looked up in a table
    of its own, where it is unreachable. The lab is refused, and removed, before anything
    is sent."""
    claim = claim_subnet(lambda network: bool(routes_into(network)))
    subnet, stray = claim.prefix, f"{claim.prefix}.77"
    claim.close()
    rule = ["to", f"{stray}/32", "lookup", "7777", "priority", "77"]
    subprocess.run(["ip", "route", "add", "unreachable", "default", "table", "7777"], check=True)
    subprocess.run(["ip", "rule", "add", *rule], check=True)
    lab = NetworkLab(new_lab_id(), subnet)
    try:
        with pytest.raises(NetworkError, match=rf"^lab .*: 1 addresses .* {stray} -> no route"):
            lab.create()
        assert not lab.created
        assert not host_link_exists(lab)
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
    finally:
        subprocess.run(["ip", "rule", "del", *rule], check=False)
        subprocess.run(["ip", "route", "flush", "table", "7777"], check=False)
        lab.destroy()


def test_a_sysctl_is_written_in_a_machines_namespace_only(lab: NetworkLab) -> None:
    machine = lab.machines[0]
    name = "net/ipv4/conf/lo/forwarding"  # a namespace's own, unused by the other tests

    def inside() -> str:
        argv = machine.command(["cat", f"/proc/sys/{name}"])
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    host_before = Path("/proc/sys", name).read_text().strip()
    netns.write_sysctl(machine.netns_path, name.replace("/", "."), "1")
    assert inside() == "1"
    netns.write_sysctl(machine.netns_path, name.replace("/", "."), "0")
    assert inside() == "0"
    assert Path("/proc/sys", name).read_text().strip() == host_before
    with pytest.raises(NetworkError, match=r"sysctl net\.ipv4\.ip_forward=1 in .*absent"):
        netns.write_sysctl(NETNS_DIR / "pytest-coreos-absent", "net.ipv4.ip_forward", "1")


def test_an_adopted_lab_reaches_partitions_and_destroys_what_another_made(
    processes: Processes,
) -> None:
    """Another process of this host (here, another object) adopts a lab from what its
    record says: the machines answer over its host link, the partition in force is read
    back, and destroy() removes every namespace and link."""
    maker = NetworkLab(new_lab_id())
    maker.create()
    try:
        for index, name in enumerate(MACHINES, 1):
            maker.add_machine(name, index)
        start_servers(maker, processes, MACHINES)
        cut = [("core-01", "core-02"), ("core-01", "core-03")]
        maker.partition(["core-01"], ["core-02", "core-03"])
        adopted = NetworkLab.adopt(
            maker.lab_id, maker.subnet, [(name, index) for index, name in enumerate(MACHINES, 1)]
        )
        assert adopted.network == maker.network
        assert adopted.namespaces == maker.namespaces
        adopted.connect(maker["core-02"].address, LINE_PORT, timeout=2.0).close()
        assert reachability(adopted, ["core-01"], cut) == expected(["core-01"], cut)
        adopted.heal()
        assert reachability(maker, ["core-01"]) == expected(["core-01"])
        processes.kill_all()
        adopted.destroy()
        assert lab_namespaces(f"pytest-coreos-{maker.lab_id}-") == []
        assert not host_link_exists(maker)
        with pytest.raises(NetworkError, match="it is gone"):
            NetworkLab.adopt(maker.lab_id, maker.subnet, [("core-01", 1)])
    finally:
        processes.kill_all()
        maker.destroy()


def test_a_guests_tap_gets_the_machines_address_routed_to_it() -> None:
    """route_to_guest: a persistent tap, the rule that sends the machine's address to it
    ahead of "lookup local" (and behind the partitions' rules), the guest's MAC pinned,
    proxy ARP and forwarding on; the namespace keeps its address. (Traffic through it, a
    VM's, is the qemu end-to-end test's.)"""
    with NetworkLab(new_lab_id()) as lab:
        machine = lab.add_machine("core-01", 1)
        tap = lab.route_to_guest("core-01", "52:54:00:12:34:56")
        assert tap == netns.GUEST_TAP

        def ip(*args: str) -> str:
            argv = ["ip", "-n", machine.netns, *args]
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

        assert "tap" in ip("-d", "link", "show", tap)
        rules = json.loads(ip("-j", "rule", "show"))
        mine = [rule for rule in rules if rule["priority"] == netns.GUEST_PRIORITY]
        assert mine == [
            {"priority": netns.GUEST_PRIORITY, "src": "all", "iif": "eth0",
             "dst": machine.address, "table": str(netns.GUEST_TABLE)}
        ]  # fmt: skip
        priorities = sorted(rule["priority"] for rule in rules)
        assert priorities.index(netns.GUEST_PRIORITY) < priorities.index(netns.LOCAL_PRIORITY)
        assert netns.PARTITION_PRIORITY < netns.GUEST_PRIORITY
        assert f"{machine.address} dev {tap}" in ip(
            "route", "show", "table", str(netns.GUEST_TABLE)
        )
        assert "52:54:00:12:34:56 PERMANENT" in ip("neigh", "show", "dev", tap)
        assert f"inet {machine.address}/24" in ip("-4", "addr", "show", "dev", "eth0")

        def sysctl(name: str) -> str:
            argv = machine.command(["cat", f"/proc/sys/{name}"])
            return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

        assert sysctl("net/ipv4/ip_forward") == "1"
        assert sysctl(f"net/ipv4/conf/{tap}/proxy_arp") == "1"
        assert sysctl("net/ipv4/conf/eth0/proxy_arp") == "1"
        assert sysctl(f"net/ipv4/neigh/{tap}/proxy_delay") == "0"
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
