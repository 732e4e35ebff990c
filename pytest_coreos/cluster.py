"""The handles tests get: :class:`Cluster` and its :class:`Machine` objects, and the
:class:`ClusterFactory` that builds clusters for a session and tears them down."""

from __future__ import annotations

import atexit
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko
import requests

from pytest_coreos import fleet_env, ignition, render, state
from pytest_coreos.binaries import EtcdBinary, find_etcd
from pytest_coreos.discovery import DiscoveryService, check_token, is_token_url, request_token
from pytest_coreos.errors import (
    BinaryNotFoundError,
    BootTimeoutError,
    CoreOSError,
    EtcdError,
    IgnitionError,
    SSHError,
    SSHHostKeyError,
    UserDataError,
)
from pytest_coreos.etcd import EtcdClient
from pytest_coreos.fleet import Fleet
from pytest_coreos.options import PUBLIC_DISCOVERY_URL, ClusterSpec
from pytest_coreos.providers import attach_provider, discovery_address, get_provider
from pytest_coreos.providers.base import BootContext, MachineControl, Provider
from pytest_coreos.ssh import SSHClient
from pytest_coreos.sshd import generate_ed25519_key
from pytest_coreos.systemd import Systemd, Units
from pytest_coreos.waiting import NotReady, poll


class Machine:
    """One machine of a cluster: its name, addresses, SSH and etcd handles, and faults."""

    def __init__(
        self,
        name: str,
        *,
        private_ipv4: str,
        public_ipv4: str,
        ssh: SSHClient,
        etcd_endpoints: Sequence[str],
        control: MachineControl,
        http_session: Callable[[], requests.Session] | None = None,
        systemd: bool = True,
    ) -> None:
        self.name = name
        self.private_ipv4 = private_ipv4
        self.public_ipv4 = public_ipv4
        self.ssh = ssh
        # Where the machine is reached through something other than this host's own
        # network (a network lab's namespace), every HTTP session must come from here.
        self.http_session = http_session
        self.etcd = self.etcd_client(etcd_endpoints)
        # False where the machine runs no systemd of its own (the local provider's).
        self._has_systemd = systemd
        self._control = control
        self.on_change: Callable[[], None] = lambda: None  # its processes changed
        # Seconds from the start of the last wait until its etcd served with every member
        # and until it first took an SSH login (None until then).
        self.etcd_ready_after: float | None = None
        self.ssh_ready_after: float | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Machine {self.name} {self.private_ipv4} {state}>"

    @property
    def running(self) -> bool:
        """True while the machine's etcd runs."""
        return self._control.running

    @property
    def systemd(self) -> Systemd:
        """The machine's systemd: units' status, start/stop, journal, waits, unit files."""
        return Systemd(self.ssh, self.name, available=self._has_systemd)

    @property
    def etcd_endpoints(self) -> tuple[str, ...]:
        """The client URLs its etcd advertises."""
        return self.etcd.endpoints

    def etcd_client(self, endpoints: Sequence[str], *, timeout: float = 5.0) -> EtcdClient:
        """An etcd client over ``endpoints`` that reaches them the way this machine is
        reached (its own session where it lives in a network lab)."""
        session = self.http_session() if self.http_session is not None else None
        return EtcdClient(
            endpoints, timeout=timeout, name=self.name, session=session, owns_session=True
        )

    def stop(self) -> None:
        """Stop the machine cleanly (SIGTERM, as systemd would on shutdown)."""
        self.ssh.close()
        self._control.stop()

    def start(self) -> None:
        """Start a stopped machine again; its etcd rejoins with its data."""
        self._control.start()
        self.on_change()

    def restart(self) -> None:
        """Stop the machine cleanly, then start it again."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """Kill the machine at once, as a power cut would."""
        self.ssh.close()
        self._control.kill()

    def pause(self) -> None:
        """Freeze the machine: it keeps its sockets but answers nothing."""
        self._control.pause()

    def resume(self) -> None:
        """Let a paused machine run on."""
        self._control.resume()

    def logs(self, lines: int = 50) -> str:
        """The last ``lines`` lines of the machine's etcd log."""
        return self._control.logs(lines)

    def check_alive(self) -> None:
        """Raise :class:`ProcessError` if the machine's etcd has exited on its own."""
        self._control.check_alive()


def machine_names(count: int) -> list[str]:
    """``core-01``, ``core-02``...: the names coreos-vagrant gives its machines."""
    return [f"core-{index:02d}" for index in range(1, count + 1)]


class Cluster:
    """A ready CoreOS-style cluster; a context manager that tears it down on exit.

    Made by a :class:`ClusterFactory` (the ``coreos_cluster_factory`` fixture), which
    provides what a session shares: discovery, the SSH key pair, the state record.
    """

    def __init__(self, spec: ClusterSpec, *, workdir: Path, session: ClusterFactory) -> None:
        self.spec = spec
        self.workdir = workdir
        self.name = workdir.name
        self._session = session
        self._provider: Provider | None = None
        self.machines: list[Machine] = []
        self.discovery_url = ""
        self.user_data: dict[str, Any] = {}
        self._ignition: dict[str, Any] | None = None  # the user's own (--coreos-ignition)
        self.notices: list[str] = []
        self._etcd: EtcdClient | None = None
        self._closed = False
        self._destroyed = False
        self._booting = False
        self._recorded: dict[str, Any] = {}
        self.boot_failed = False
        # Seconds each boot phase took (discovery, config, spawn, ready, total), and per
        # machine when its etcd was serving with every member and when SSH first let in.
        self.timings: dict[str, float] = {}
        self.attached = False  # True when adopted from a record, not booted here
        self.owner_session = session.session_id  # whose state record holds this cluster

    def __repr__(self) -> str:
        return f"<Cluster {self.spec.provider} x{self.size} {self.workdir}>"

    # -- the collection of machines --------------------------------------------------
    @property
    def size(self) -> int:
        """The number of machines the cluster was asked for."""
        return self.spec.instances

    def __len__(self) -> int:
        return len(self.machines)

    def __iter__(self) -> Iterator[Machine]:
        return iter(self.machines)

    def __getitem__(self, key: str | int) -> Machine:
        if isinstance(key, int):
            return self.machines[key]
        for machine in self.machines:
            if machine.name == key:
                return machine
        names = ", ".join(machine.name for machine in self.machines)
        raise KeyError(f"no machine {key!r} in this cluster (machines: {names})")

    @property
    def etcd(self) -> EtcdClient:
        """An etcd client over every member, failing over to the next when one is down."""
        if self._etcd is None:
            endpoints = [url for machine in self.machines for url in machine.etcd_endpoints]
            self._etcd = self.machines[0].etcd_client(endpoints)
        return self._etcd

    @property
    def fleet(self) -> Fleet:
        """``fleetctl`` over SSH on the first running machine (``cluster.fleet.on(machine)``
        for another); the machines must have fleet (see :mod:`pytest_coreos.fleet`)."""
        # Kept, so that it looks for fleetctl once, not at every use.
        fleet: Fleet | None = self.__dict__.get("_fleet")
        if fleet is None:
            fleet = self.__dict__["_fleet"] = Fleet(self)
        return fleet

    @property
    def units(self) -> Units:
        """One systemd unit on every running machine (or those given) at once: deploy,
        wait, status, remove."""
        return Units(self)

    @property
    def prefix(self) -> str:
        """An etcd key prefix that is this session's own. On machines the plugin did not
        boot (the ssh provider) everything under it is deleted at the end."""
        return f"/pytest-coreos/{self._session.session_id}"

    @property
    def faults_allowed(self) -> bool:
        """Whether ``stop``/``kill``/``pause`` and partitions may be used on its machines
        (not on attached machines unless ``--coreos-allow-faults``)."""
        return bool(getattr(self._provider, "faults_allowed", True))

    def partition(self, *groups: Sequence[Machine | str]) -> None:
        """Cut the network between groups of machines (``Machine`` objects or names):
        machines of different groups can no longer reach each other, established
        connections included; a machine in no group still reaches all. The plugin's own
        handles keep reaching every machine. Needs ``--coreos-network=netns``."""
        names = [[m if isinstance(m, str) else m.name for m in group] for group in groups]
        for name in (n for group in names for n in group):
            self[name]  # an unknown name is a KeyError naming the machines
        partition = getattr(self._provider, "partition", None)
        if partition is None:
            raise CoreOSError(f"the {self.spec.provider} provider cannot partition machines")
        partition(names)

    def heal(self) -> None:
        """Undo :meth:`partition`: every machine reaches every other again."""
        heal = getattr(self._provider, "heal", None)
        if heal is not None:
            heal()

    @property
    def pids(self) -> list[int]:
        """Every process ID the cluster's machines run as."""
        return self._provider.pids if self._provider is not None else []

    @property
    def user_data_path(self) -> Path:
        """The rendered #cloud-config in the workdir."""
        return self.workdir / "user-data"

    @property
    def config_rb_path(self) -> Path:
        """The rendered Vagrant ``config.rb`` in the workdir."""
        return self.workdir / "config.rb"

    # -- life cycle ----------------------------------------------------------------
    def _context(self, spec: ClusterSpec | None = None) -> BootContext:
        key, public_path = self._session.session_key()
        return BootContext(
            spec=spec or self.spec,
            workdir=self.workdir,
            user_data=self.user_data,
            ssh_key=key,
            ssh_public_key_path=public_path,
            progress=self._session.progress,
            remember=self._remember,
            key_prefix=self.prefix,
            session_id=self._session.session_id,
            write_ignition=self._write_ignition if self.spec.config == "ignition" else None,
        )

    def start(self) -> Cluster:
        """Render the config, boot every machine and wait until the cluster is ready.

        A boot that fails halfway tears down what it started before the error propagates.
        """
        if self._provider is not None:
            return self
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        clock = _Stopwatch(self.timings)
        try:
            self._remember({})  # on record before anything runs: a crash is reaped
            context = self._context()
            self._provider = provider = get_provider(self.spec.provider)(context)
            # A provider whose machines cannot reach the session's discovery service
            # (a network lab) brings its own.
            own_discovery = getattr(provider, "discovery_url", None)
            url = own_discovery() if own_discovery is not None else None
            self.discovery_url = self._session.discovery_url(self.spec) if url is None else url
            clock.lap("discovery")
            self._write_config()
            context.user_data = self.user_data
            clock.lap("config")
            self._booting = True
            self.machines = provider.boot()
            self._remember({})  # now with every process the machines run
            self._watch_machines()
            clock.lap("spawn")
            self.notices.extend(n for n in self._provider.notices if n not in self.notices)
            self._wait_ready(self.spec.boot_timeout, fresh=True)
            clock.lap("ready")
            if (
                self.spec.fleet is not None
                and self.spec.config == "cloud-config"
                and fleet_env.starts_fleet(self.user_data)
            ):
                # Ready for fleet tests too: every machine's fleetd has registered.
                self.fleet.wait_for_machines(timeout=self.spec.boot_timeout)
                clock.lap("fleet")
            self.timings["total"] = clock.total
        except BaseException:
            # The workdir is worth keeping only if machines ran: it holds their logs.
            self.boot_failed = self._booting
            self.close()
            raise
        return self

    def attach(self, owner: str, record: Mapping[str, Any], timeout: float) -> Cluster:
        """Adopt a running cluster from its record in session ``owner``'s state (a kept
        one, or one an xdist worker booted) and check that it is healthy; on failure
        nothing is torn down."""
        self.attached = True
        self.owner_session = owner
        self.discovery_url = record["discovery_url"]
        self.user_data = dict(record["user_data"])
        self._recorded = dict(record)
        self._provider = attach_provider(self.spec.provider, self._context(), record)
        self.machines = self._provider.boot()
        self._watch_machines()
        self.wait_until_healthy(timeout)
        return self

    def _watch_machines(self) -> None:
        for machine in self.machines:
            machine.on_change = lambda: self._remember({})

    def describe(self) -> dict[str, Any]:
        """The cluster's state record: enough to reap it, or to attach to it again."""
        record: dict[str, Any] = {
            **self._recorded,
            "name": self.name,
            "workdir": str(self.workdir),
            "provider": self.spec.provider,
            "spec": self.spec.to_record(),
            "keep": self.spec.keep,
            "discovery_url": self.discovery_url,
            "user_data": self.user_data,
        }
        if self._provider is not None:
            record.update(self._provider.describe())
        return record

    def _remember(self, extra: Mapping[str, Any]) -> None:
        """Merge ``extra`` into this cluster's state record and write it at once, so that
        a provider can record a resource before it creates it."""
        self._recorded.update(extra)
        self._session.record_cluster(self)

    def _write_config(self) -> None:
        if self.spec.ignition is not None:
            self._load_ignition(self.spec.ignition)
            return
        if self.spec.user_data is not None:
            data = render.load_user_data(self.spec.user_data)
        else:
            data = render.default_user_data()
        if self.discovery_url:
            data = render.inject_discovery(data, self.discovery_url)
        else:  # static: the provider gives each member the initial cluster instead
            section_name, section = render.etcd_section(data)
            section.pop("discovery", None)
            data = {**data, "coreos": {**data["coreos"], section_name: section}}
        if self._session.user_data_hook is not None:
            self._session.user_data_hook(self.spec, data)
        self.user_data = data
        self.config_rb_path.write_text(
            render.render_config_rb(self.spec.instances, self.spec.channel)
        )
        if self.spec.config == "ignition":
            # Rendered per machine, once its addresses are known (_write_ignition).
            ignition.check_renders(data, self.spec.user_data or "(the default user-data)")
            if left := ignition.not_rendered(data):
                self.notices.append(
                    "--coreos-config=ignition: Ignition does not carry these parts of the "
                    "user-data: " + ", ".join(left)
                )
            return
        self.user_data_path.write_text(render.render_user_data(data))

    def _load_ignition(self, path: Path) -> None:
        """The user's own Ignition config with the discovery URL injected, for every
        machine. The plugin's handles reach etcd at each machine's private address, port
        2379, as the minimal cloud-config kept in ``user_data`` says."""
        config = ignition.load_ignition(path)
        try:
            self._ignition = ignition.inject_discovery_ignition(config, self.discovery_url)
        except ValueError as error:
            raise IgnitionError(path, str(error)) from error
        self.user_data = {
            "coreos": {
                "etcd2": {
                    "discovery": self.discovery_url,
                    "advertise-client-urls": f"http://{render.PRIVATE_IPV4}:2379",
                }
            }
        }
        self.config_rb_path.write_text(
            render.render_config_rb(self.spec.instances, self.spec.channel)
        )

    def _write_ignition(self, name: str, private_ipv4: str, public_ipv4: str) -> Path:
        """Machine ``name``'s Ignition config, ``<workdir>/ignition/<name>.ign``: the user's
        (``--coreos-ignition``), or the user-data rendered with the machine's addresses."""
        config = self._ignition
        if config is None:
            _, public_key = self._session.session_key()
            try:
                config = ignition.render_ignition(
                    self.user_data,
                    ssh_public_key=public_key.read_text(),
                    hostname=name,
                    private_ipv4=private_ipv4,
                    public_ipv4=public_ipv4,
                )
            except ValueError as error:
                raise UserDataError(
                    self.spec.user_data or "(the default user-data)",
                    f"cannot be rendered as Ignition for {name}: {error}",
                ) from error
        path = self.workdir / "ignition" / f"{name}.ign"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(ignition.to_json(config))
        return path

    @property
    def kept(self) -> bool:
        """True once closed if it was left running on purpose."""
        return self.spec.keep and not self.boot_failed and not self._destroyed

    def close(self, *, destroy: bool = False) -> None:
        """Destroy every machine, unless the cluster is kept (``--coreos-keep``) and not
        ``destroy``. The workdir stays when the boot failed (to read its logs); the factory
        removes it otherwise."""
        if self._closed:
            return
        self._closed = True
        self._destroyed = destroy
        if self._etcd is not None:
            self._etcd.close()
        for machine in self.machines:
            machine.ssh.close()
            machine.etcd.close()
        if self._provider is not None:
            if self.kept:
                self._provider.detach()
            else:
                self._provider.close()
            # What the provider found while closing (things it had to remove) is news too.
            self.notices.extend(n for n in self._provider.notices if n not in self.notices)
        self._session.record_cluster(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- waiting -------------------------------------------------------------------
    def wait_until_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running machine's etcd lists all members with client URLs, is
        healthy and names a running member as leader, and every running machine accepts
        an SSH login."""
        self._wait_ready(self.spec.boot_timeout if timeout is None else timeout, fresh=False)

    def _wait_ready(self, timeout: float, *, fresh: bool) -> None:
        """The wait itself. ``fresh``: right after a boot, where a member lists every
        member with client URLs only once each has published itself through a leader, so
        the member list alone says the cluster serves; after a fault it does not (a dead
        leader stays listed), so leader and health are checked too."""
        running = [machine for machine in self.machines if machine.running]
        watch = _ReadyWatch(running, self.spec.instances, fresh=fresh, timeout=timeout)
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
                f"logs are in {self.workdir}; raise --coreos-boot-timeout if the machine "
                "is just slow",
            )
            for machine in running:
                error.add_note(f"--- {machine.name} etcd log (last lines) ---\n{machine.logs(15)}")
            raise error
        finally:
            watch.close()


class _Stopwatch:
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


class _ReadyWatch:
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


class ClusterFactory:
    """Builds clusters for one pytest session and tears every one of them down at its end.

    Session-wide resources are made once, when first needed: the session's folder and
    state record, its SSH key pair, the private discovery service.
    """

    def __init__(
        self, spec: ClusterSpec, *, root: Path | None = None, owner_pid: int | None = None
    ) -> None:
        self.spec = spec
        self.session_id = secrets.token_hex(4)
        self._shared: tuple[str, Cluster] | None = None
        # Shared clusters this session left running for another worker to tear down.
        self._handed_over: set[str] = set()
        self._given_root = root
        self.progress: Callable[[str], None] | None = None
        self.user_data_hook: Callable[[ClusterSpec, dict[str, Any]], None] | None = None
        self.ready_hook: Callable[[Cluster], None] | None = None
        self._shaped: dict[ClusterSpec, Cluster] = {}
        self._root: Path | None = None
        self._discovery: dict[str, DiscoveryService] = {}
        self._ssh_key: tuple[paramiko.Ed25519Key, Path] | None = None
        self.clusters: list[Cluster] = []
        self._default: Cluster | None = None
        self.notices: list[str] = []
        self._lock = threading.RLock()
        self._atexit_registered = False
        self._record: dict[str, Any] = {
            "session_id": self.session_id,
            **state.owner_record(owner_pid),
            "root": "",
            "clusters": {},
            "discovery": [],
        }

    # -- session resources ---------------------------------------------------------
    @property
    def root(self) -> Path:
        """The session's folder: the key pair, the discovery service and one per cluster."""
        if self._root is None:
            if self._given_root is not None:
                self._given_root.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._root = self._given_root
            else:
                self._root = Path(tempfile.mkdtemp(prefix=f"pytest-coreos-{self.session_id}-"))
            self._record["root"] = str(self._root)
            self._save_record()
            if not self._atexit_registered:
                atexit.register(self.close)
                self._atexit_registered = True
        return self._root

    def session_key(self) -> tuple[paramiko.Ed25519Key, Path]:
        """The session's SSH key pair, made once (ed25519, in the session folder, 0600)."""
        if self._ssh_key is None:
            private = self.root / "id_ed25519"
            self._ssh_key = (generate_ed25519_key(private), private.with_suffix(".pub"))
        return self._ssh_key

    def discovery_url(self, spec: ClusterSpec) -> str:
        """A fresh discovery URL for a cluster of ``spec``, as its discovery mode says
        ("" for static: the members are given each other's addresses instead)."""
        if spec.discovery == "static":
            return ""
        if spec.discovery == "local":
            return self._local_discovery(spec).new_cluster(spec.instances)
        if spec.discovery == "public":
            return request_token(PUBLIC_DISCOVERY_URL, spec.instances)
        if is_token_url(spec.discovery):
            check_token(spec.discovery, spec.instances)
            return spec.discovery
        return request_token(spec.discovery, spec.instances)

    def _local_discovery(self, spec: ClusterSpec) -> DiscoveryService:
        """The session's private discovery service where ``spec``'s machines can reach it:
        on a loopback block of its own, or on the address its provider names (the host's
        side of a VM network). One service per address, started on first use."""
        address = discovery_address(spec)
        key = address or "loopback"
        with self._lock:
            if key not in self._discovery:
                service = DiscoveryService(
                    self._discovery_etcd(spec),
                    self.root / f"discovery-{len(self._discovery) + 1}",
                    address=address,
                    die_with_parent=not spec.keep,
                )
                self._discovery[key] = service
                try:
                    service.start(timeout=spec.boot_timeout)
                finally:
                    self._record["discovery"] = [
                        record for s in self._discovery.values() for record in s.describe()
                    ]
                    self._save_record()
            return self._discovery[key]

    @staticmethod
    def _discovery_etcd(spec: ClusterSpec) -> EtcdBinary:
        """The discovery service needs etcd's v2 API, which the etcd under test may lack
        (3.6 and later): it takes the etcd found by the usual search where there is one."""
        try:
            return find_etcd()
        except BinaryNotFoundError:
            return find_etcd(spec.etcd_binary)

    # -- the state record ------------------------------------------------------------
    def _save_record(self) -> None:
        with state.registry_lock():
            state.write_record(self.session_id, self._record)

    def record_cluster(self, cluster: Cluster) -> None:
        """Bring ``cluster``'s entry of the session record up to date."""
        with self._lock:
            gone = cluster.closed and not cluster.kept
            if cluster.attached:  # its record belongs to the session that booted it
                state.update_cluster(
                    cluster.owner_session, cluster.name, None if gone else cluster.describe()
                )
                return
            clusters = self._record["clusters"]
            if gone:
                clusters.pop(cluster.name, None)
            else:
                clusters[cluster.name] = cluster.describe()
            self._save_record()

    # -- clusters ----------------------------------------------------------------------
    def __call__(self, instances: int | None = None, **changes: Any) -> Cluster:
        """A new, ready cluster; ``instances`` and any spec field can be changed."""
        if instances is not None:
            changes["instances"] = instances
        spec = self.spec.replace(**changes) if changes else self.spec
        return self._ready(self.create(spec).start())

    def _ready(self, cluster: Cluster) -> Cluster:
        if self.ready_hook is not None:
            self.ready_hook(cluster)
        return cluster

    def create(self, spec: ClusterSpec) -> Cluster:
        """A cluster for ``spec``, registered for teardown but not started."""
        with self._lock:
            workdir = self.root / f"cluster-{len(self.clusters) + 1}"
            cluster = Cluster(spec, workdir=workdir, session=self)
            self.clusters.append(cluster)
        return cluster

    def default(self) -> Cluster:
        """The session's cluster of the configured spec, booted on first use, or, with
        ``--coreos-reuse``, a kept one of the same spec if it is healthy."""
        if self._default is None:
            reused = self.reuse(self.spec) if self.spec.reuse else None
            self._default = reused or self()
        return self._default

    def shaped(self, **changes: Any) -> Cluster:
        """The session's cluster of the base spec with ``changes``, booted on first use and
        shared by every later call with the same changes (``@pytest.mark.coreos``)."""
        spec = self.spec.replace(**changes)
        if spec == self.spec:
            return self.default()
        if spec not in self._shaped:
            self._shaped[spec] = self(**changes)
        return self._shaped[spec]

    def shared(self, key: str) -> Cluster:
        """The cluster shared by every session that names ``key`` (the workers of one
        xdist run): the first to come boots it, the others attach, and whoever is last to
        finish tears it down (see :meth:`close`)."""
        if self._shared is not None:
            return self._shared[1]
        spec = self.spec.replace(keep=True)  # outlives the worker that booted it
        with state.share_lock(key):
            share = state.read_share(key)
            record = state.find_cluster(share["session"], share["cluster"]) if share else None
            if share is not None and record is not None:
                cluster = Cluster(spec, workdir=Path(record["workdir"]), session=self)
                cluster.attach(share["session"], record, timeout=spec.boot_timeout)
                with self._lock:
                    self.clusters.append(cluster)
                share["users"] += 1
            else:
                cluster = self._ready(self.create(spec).start())
                share = {"session": self.session_id, "cluster": cluster.name, "users": 1}
            state.write_share(key, share)
        self._shared = (key, cluster)
        return cluster

    def _leave_shared(self) -> None:
        if self._shared is None:
            return
        key, cluster = self._shared
        with state.share_lock(key):
            share = state.read_share(key)
            last = share is None or share["users"] <= 1
            if last:
                cluster.close(destroy=not self.spec.keep)
                state.write_share(key, None)
            else:
                assert share is not None
                share["users"] -= 1
                state.write_share(key, share)
                cluster.close()
                self._handed_over.add(cluster.name)

    def reuse(self, spec: ClusterSpec) -> Cluster | None:
        """Attach to a healthy kept cluster of ``spec`` left by an earlier session."""
        for owner, cluster_record in state.kept_clusters(spec.to_record()):
            cluster = Cluster(spec, workdir=Path(cluster_record["workdir"]), session=self)
            try:
                cluster.attach(owner, cluster_record, timeout=min(spec.boot_timeout, 5.0))
            except CoreOSError as error:
                self.notices.append(f"kept cluster {cluster_record['workdir']} not reused: {error}")
                continue
            self.notices.append(f"reusing kept cluster {cluster_record['workdir']}")
            with self._lock:
                self.clusters.append(cluster)
            return cluster
        return None

    @property
    def kept(self) -> bool:
        """True if a cluster of this session is left running on purpose."""
        return any(cluster.kept for cluster in self.clusters)

    @property
    def failed_boots(self) -> list[Cluster]:
        """The clusters whose machines started but never became ready."""
        return [cluster for cluster in self.clusters if cluster.boot_failed]

    def close(self) -> None:
        """Tear down every cluster and the discovery service; remove the session folder
        and record unless a cluster is kept or failed to boot (its logs are the
        diagnosis; the next session reaps it)."""
        errors: list[BaseException] = []
        try:
            self._leave_shared()
        except Exception as error:
            errors.append(error)
        for cluster in reversed(self.clusters):
            try:
                cluster.close()
            except Exception as error:
                errors.append(error)
        for service in self._discovery.values():
            service.close()
        self._discovery.clear()
        self._record["discovery"] = []
        if self._atexit_registered:
            atexit.unregister(self.close)
            self._atexit_registered = False
        if self._root is not None:
            if self.kept or self.failed_boots:
                if self._handed_over:
                    state.finish_record(self.session_id, self._record, self._handed_over)
                else:
                    self._save_record()
            else:
                if self._given_root is None:
                    shutil.rmtree(self._root, ignore_errors=True)
                else:
                    for cluster in self.clusters:
                        shutil.rmtree(cluster.workdir, ignore_errors=True)
                with state.registry_lock():
                    state.remove_record(self.session_id)
        if errors:
            raise CoreOSError(f"tearing down {len(errors)} cluster(s) failed") from errors[0]
