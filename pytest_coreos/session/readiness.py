"""Readiness: a cluster is ready when every running machine's etcd lists all members
with client URLs (and, after a fault, names a running leader and is healthy) and every
running machine takes an SSH login. Both checks run for every machine at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from pytest_coreos.errors import BootTimeoutError, EtcdError, SSHError, SSHHostKeyError
from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.handles.etcd import EtcdClient
from pytest_coreos.handles.machine import Machine
from pytest_coreos.waiting import NotReady, poll


def wait_ready(cluster: Cluster, timeout: float, *, fresh: bool) -> None:
    """Wait until ``cluster`` is ready. ``fresh``: right after a boot, where a member lists
    every member with client URLs only once each has published itself through a leader, so
    the member list alone says the cluster serves; after a fault it does not (a dead
    leader stays listed), so leader and health are checked too."""
    running = [machine for machine in cluster.machines if machine.running]
    watch = ReadyWatch(running, cluster.spec.instances, fresh=fresh, timeout=timeout)
    try:
        # Started inside the try: an interrupt while the watchers start must stop the
        # ones already running, or the interpreter waits for them at exit.
        watch.start()
        if watch.wait(timeout):
            return
        error = BootTimeoutError(
            f"{len(running)} machine(s) of the cluster to be ready",
            timeout,
            watch.state(),
            f"logs are in {cluster.workdir}; raise --coreos-boot-timeout if the machine "
            "is just slow",
        )
        for machine in running:
            error.add_note(f"--- {machine.name} etcd log (last lines) ---\n{machine.logs(15)}")
        raise error
    finally:
        watch.close()


class Stopwatch:
    """Writes the time of each phase since the previous one into ``laps``."""

    def __init__(self, laps: dict[str, float]) -> None:
        self.laps = laps
        self.start = self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


class _Stopped(Exception):
    """The wait is over (done elsewhere, failed or timed out): a watcher stops."""


class ReadyWatch:
    """Watches every machine at once: one thread per machine polls its etcd, one logs in
    over SSH, so a slow member delays no other check and the wait ends as soon as the
    last one is ready (checking members one after another costs every tick N requests).

    The watchers are daemon threads of their own, not a pool's: a Ctrl-C that lands while
    they start can leave no executor lock held that the interpreter's exit then waits on.
    """

    def __init__(
        self, machines: Sequence[Machine], expected: int, *, fresh: bool, timeout: float
    ) -> None:
        self._expected = expected
        self._fresh = fresh
        self._running = {machine.name for machine in machines}
        # The watchers' own polls outlast the wait, which gives up first and says why.
        self._timeout = timeout + 1.0
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._machines = list(machines)
        self._states = {machine.name: "not asked yet" for machine in machines}
        self._threads: list[threading.Thread] = []
        # Per watcher ("etcd core-01", "ssh core-01"): None once ready, or what it raised.
        self._outcomes: dict[str, BaseException | None] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def start(self) -> None:
        for machine in self._machines:
            for kind, watch in (("etcd", self._watch_etcd), ("ssh", self._watch_ssh)):
                thread = threading.Thread(
                    target=self._run,
                    args=(f"{kind} {machine.name}", watch, machine),
                    name=f"coreos-ready-{kind}-{machine.name}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def _run(self, key: str, watch: Callable[[Machine], None], machine: Machine) -> None:
        outcome: BaseException | None = None
        try:
            watch(machine)
        except BaseException as error:  # handed to the waiting thread
            outcome = error
        with self._lock:
            self._outcomes[key] = outcome
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        """True once all are ready; False at ``timeout``; a watcher's error propagates."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()  # before looking: a later change wakes the wait below
            with self._lock:
                outcomes = list(self._outcomes.values())
            for outcome in outcomes:
                if outcome is not None:
                    raise outcome
            if len(outcomes) == len(self._threads):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(remaining)

    def state(self) -> str:
        """What was last seen of every machine, for a timeout's message."""
        seen = [self._states[machine.name] for machine in self._machines]
        with self._lock:
            waiting_ssh = [m.name for m in self._machines if f"ssh {m.name}" not in self._outcomes]
        if waiting_ssh:
            seen.append("no SSH login yet on " + ", ".join(waiting_ssh))
        return "etcd members per machine: " + "; ".join(seen)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _poll(self, check: Callable[[], None], what: str) -> None:
        poll(check, what=what, timeout=self._timeout, interval=0.002, max_interval=0.02)

    def _watch_etcd(self, machine: Machine) -> None:
        # A probe of its own with a short timeout: etcd 3.4 holds /health open while a
        # member has no leader.
        probe = machine.etcd_client(machine.etcd_endpoints, timeout=0.5)
        try:
            self._poll(lambda: self._check_etcd(machine, probe), f"etcd on {machine.name}")
        finally:
            probe.close()
        machine.etcd_ready_after = time.perf_counter() - self._started

    def _check_etcd(self, machine: Machine, probe: EtcdClient) -> None:
        """Ready: the member lists all members with client URLs and, unless fresh, names
        a running leader and is healthy. The leader check matters after a fault: until the
        others notice that the leader is gone they still report healthy, and writes sent
        then are lost."""
        if self._stop.is_set():
            raise _Stopped
        machine.check_alive()
        try:
            members = probe.members()
            serving = [member for member in members if member.client_urls]
            state = f"{machine.name}: {len(serving)}/{self._expected} members " + str(
                sorted(member.name or "(joining)" for member in members)
            )
            ready = len(serving) == self._expected
            if ready and not self._fresh:
                leader = probe.leader()
                if leader is None or leader.name not in self._running:
                    ready = False
                    state += f", leader {leader.name if leader else 'none'} not running"
                elif not probe.health():
                    ready = False
                    state += " (not healthy yet)"
        except EtcdError as error:
            state, ready = f"{machine.name}: etcd not answering ({error.problem})", False
        self._states[machine.name] = state
        if not ready:
            raise NotReady(state)

    def _watch_ssh(self, machine: Machine) -> None:
        def login() -> None:
            if self._stop.is_set():
                raise _Stopped
            try:
                machine.ssh.connect()
            except SSHHostKeyError:
                raise  # waiting will not change the key
            except SSHError as error:
                raise NotReady(str(error)) from error

        self._poll(login, f"an SSH login on {machine.name}")
        machine.ssh_ready_after = time.perf_counter() - self._started
