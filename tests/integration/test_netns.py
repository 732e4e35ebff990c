"""Network labs with real namespaces, real veth pairs and a real bridge (needs root).

Each machine of the shared lab runs a small real server inside its namespace: a line
service that answers with the machine's hostname (so a reply proves both who answered and
that the UTS namespace works), an HTTP service that says which address the client came
from, and a UDP sink that remembers what reached it (to check each direction of a cut on
its own). Clients run inside the namespaces too, through ``MachineNetwork.command``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import requests

from pytest_coreos.host import netns
from pytest_coreos.host.netns import (
    NETNS_DIR,
    NetworkError,
    NetworkLab,
    delete_namespaces,
    lab_namespaces,
    netns_supported,
)
from pytest_coreos.host.process import process_start_time
from pytest_coreos.waiting import NotReady, poll

pytestmark = pytest.mark.needs_root("network namespaces")

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
SUBNET = "10.213.7"
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
    with NetworkLab(new_lab_id(), SUBNET) as lab:
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


def fetch(session: requests.Session, lab: NetworkLab, name: str) -> list[str]:
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


def lab_threads(lab: NetworkLab) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith(f"-{lab.lab_id}")]


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


def test_the_test_process_reaches_every_machine_through_the_hub(lab: NetworkLab) -> None:
    for index, name in enumerate(MACHINES, 1):
        assert lab[name].address == f"{SUBNET}.{index}"
        with lab.connect(lab[name].address, LINE_PORT, timeout=5) as conn:
            conn.sendall(b"hello\n")
            assert conn.makefile("r").readline() == f"{name} hello\n"
            assert conn.getsockname()[0] == lab.hub_address


def test_a_requests_session_connects_from_the_hub_and_keeps_connections(
    lab: NetworkLab,
) -> None:
    session = lab.requests_session()
    with session:
        for name in MACHINES:
            first = fetch(session, lab, name)
            again = fetch(session, lab, name)
            assert first[:2] == [name, lab.hub_address]
            assert again == first  # same client port: the pooled connection was reused
        with pytest.raises(requests.ConnectionError):  # refused: nothing on that port
            session.get(f"http://{lab['core-01'].address}:1/", timeout=5)
        with pytest.raises(requests.ConnectionError, match="takes an IP address"):
            session.get(f"http://localhost:{HTTP_PORT}/", timeout=5)


def test_machines_and_the_hub_reach_each_other(lab: NetworkLab) -> None:
    sources = [*MACHINES, "hub"]
    assert reachability(lab, sources) == expected(sources)


def test_two_labs_may_use_the_same_subnet(processes: Processes) -> None:
    with NetworkLab(new_lab_id(), SUBNET) as first, NetworkLab(new_lab_id(), SUBNET) as second:
        first.add_machine("first-01", 1)
        second.add_machine("second-01", 1)
        start_servers(first, processes, ["first-01"])
        start_servers(second, processes, ["second-01"])
        for each, name in ((first, "first-01"), (second, "second-01")):
            with each.requests_session() as session:
                assert fetch(session, each, name)[:2] == [name, f"{SUBNET}.254"]


# -- partitions ----------------------------------------------------------------------------


def test_a_partition_cuts_groups_apart_and_heal_joins_them(lab: NetworkLab) -> None:
    sources = [*MACHINES, "hub"]
    lab.partition(["core-01"], ["core-02", "core-03"])
    assert lab.groups == (("core-01",), ("core-02", "core-03"))
    cut = [("core-01", "core-02"), ("core-01", "core-03")]
    assert reachability(lab, sources, cut) == expected(sources, cut)
    with lab.requests_session() as session:
        assert [fetch(session, lab, name)[0] for name in MACHINES] == list(MACHINES)

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


def test_destroy_removes_namespaces_links_and_the_hub_thread(processes: Processes) -> None:
    lab = NetworkLab(new_lab_id(), SUBNET)
    try:
        check_destroy(lab, processes)
    finally:
        lab.destroy()


def check_destroy(lab: NetworkLab, processes: Processes) -> None:
    lab.create()
    for index, name in enumerate(MACHINES, 1):
        lab.add_machine(name, index)
    names = lab.namespaces
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == sorted(names)
    assert len(lab_threads(lab)) == 1
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
    assert lab_threads(lab) == []
    with pytest.raises(requests.ConnectionError, match=r"destroyed|not created"):
        session.get(f"http://{SUBNET}.1:{HTTP_PORT}/", timeout=5)
    lab.destroy()  # again: nothing to do, nothing raised


def test_the_main_namespace_gets_no_route_address_or_link() -> None:
    before = main_namespace_state()
    with NetworkLab(new_lab_id(), SUBNET) as other:
        for index, name in enumerate(MACHINES, 1):
            other.add_machine(name, index)
        other.partition(["core-01"], ["core-02", "core-03"])
        with pytest.raises(ConnectionRefusedError):  # answered by core-01's kernel
            other.connect(other["core-01"].address, 9, timeout=5)
        assert_unchanged(before, main_namespace_state())
    assert_unchanged(before, main_namespace_state())


# -- failing halfway -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "subnet", ["10.213", "10.213.300", "10.213.7.0", "127.0.5", "169.254.1", "8.8.8", ""]
)
def test_a_bad_subnet_is_refused_before_anything_is_made(subnet: str) -> None:
    before = lab_namespaces()
    with pytest.raises(ValueError, match="subnet"):
        NetworkLab(new_lab_id(), subnet)
    assert lab_namespaces() == before


def test_bad_lab_ids_and_machines_are_refused(lab: NetworkLab) -> None:
    for lab_id in ("", "UPPER", "a" * 21, "-dash", "has/slash", "sp ace"):
        with pytest.raises(ValueError, match="lab_id"):
            NetworkLab(lab_id, SUBNET)
    for name, index, problem in [
        ("core-04", 0, "index"),
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
        NetworkLab(new_lab_id(), SUBNET).add_machine("core-01", 1)


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


def test_a_create_failing_after_the_hub_exists_removes_it_injected_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = NetworkLab(new_lab_id(), SUBNET)
    fail_batches_in(monkeypatch, lab.hub, "type bridge")
    with pytest.raises(NetworkError, match="no-such-link"):
        lab.create()
    assert not lab.created
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
    assert lab_threads(lab) == []
    monkeypatch.undo()
    with lab:  # and it can be made afterwards
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == [lab.hub]


def test_a_machine_failing_halfway_removes_its_namespace_and_veth_injected_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with NetworkLab(new_lab_id(), SUBNET) as lab:
        lab.add_machine("core-01", 1)
        failing = f"pytest-coreos-{lab.lab_id}-core-02"
        fail_batches_in(monkeypatch, failing, "addr add")
        with pytest.raises(NetworkError, match="no-such-link"):
            lab.add_machine("core-02", 2)
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == sorted(
            [lab.hub, lab["core-01"].netns]
        )
        hub_links = links_in_namespace_of(str(NETNS_DIR / lab.hub))
        assert sorted(link.split("@")[0] for link in hub_links) == ["br0", "lo", "veth1"]
        monkeypatch.undo()
        assert lab.add_machine("core-02", 2).address == f"{SUBNET}.2"
    assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []


def build_lab(lab_id: str, names: Sequence[str]) -> None:
    with NetworkLab(lab_id, SUBNET) as lab:
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
        hub_stray = NetworkLab(lab_id, SUBNET).hub
        subprocess.run(["ip", "netns", "add", hub_stray], check=True)
        with pytest.raises(NetworkError, match="already exists"):
            NetworkLab(lab_id, SUBNET).create()
        assert lab_namespaces(f"pytest-coreos-{lab_id}-") == sorted([hub_stray, stray])
    finally:
        delete_namespaces([stray, f"pytest-coreos-{lab_id}-hub"])
    assert lab_namespaces(f"pytest-coreos-{lab_id}-") == []


def test_namespaces_of_an_abandoned_lab_are_found_and_deleted() -> None:
    """What a reaper does after a run was killed before it could destroy its lab."""
    lab = NetworkLab(new_lab_id(), SUBNET)
    try:
        lab.create()
        lab.add_machine("core-01", 1)
        lab.add_machine("core-02", 2)
        lab.partition(["core-01"], ["core-02"])
        names = lab_namespaces(f"pytest-coreos-{lab.lab_id}-")
        assert names == sorted(lab.namespaces)
        hub_fd = os.open(NETNS_DIR / lab.hub, os.O_RDONLY)
        try:
            assert sorted(delete_namespaces([*names, "pytest-coreos-never-made"])) == names
            assert links_in_namespace_of(f"/proc/{os.getpid()}/fd/{hub_fd}") == ["lo"]
        finally:
            os.close(hub_fd)
        assert lab_namespaces(f"pytest-coreos-{lab.lab_id}-") == []
        assert delete_namespaces(names) == []
    finally:
        lab.destroy()  # the lab finds its namespaces gone: not an error
    assert lab.namespaces == []
