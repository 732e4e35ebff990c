"""pytest-coreos boot benchmark: the local provider against a bare baseline.

One run on this machine measures, and prints as tables and writes as JSON:

- fixture start to ready for N = 1, 3, 5, 9 machines (median, min, max), split into
  discovery, config, spawn, etcd converged and SSH ready; each run is a fresh
  ``ClusterFactory``, as a new pytest session would make;
- the same bring-up by a bare baseline, interleaved with the plugin's runs: the same etcd
  and sshd binaries with the same flags and environment (from the local provider's own
  pure functions), every process started at once, polled in a tight loop until every
  member lists all members with client URLs and one SSH login per machine succeeded;
- detection lag: from the last member's "ready to serve client requests" log line to the
  moment the fixture returned (both wall clock);
- teardown time, peak RSS (VmHWM) per machine;
- a whole ``pytest --coreos-instances=3 examples/`` run, and a ``--coreos-reuse`` second
  run's time to ready;
- the nspawn and Vagrant providers' phases, when present and asked for.

    scripts/run python benchmarks/bench.py [--sizes 1 3 5 9] [--runs 5] [--json PATH]

Everything talks to loopback only, and nothing is left running: every run ends with a
scan of /proc for processes it started.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko

from pytest_coreos.config import cloud_config
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.host.addresses import AddressBlock, can_bind, claim_block
from pytest_coreos.host.binaries import find_discovery_service, find_etcd, find_sshd
from pytest_coreos.host.discovery import DISCOVERY_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT
from pytest_coreos.host.process import descendants_of, process_start_time
from pytest_coreos.host.sshd import (
    SshdSettings,
    generate_ed25519_key,
    openssh_version,
    public_key_line,
    render_sshd_config,
    ssh_port_for_current_user,
    sshd_command,
)
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers.local.machines import machine_etcd_environment
from pytest_coreos.session.factory import ClusterFactory

REPO = Path(__file__).resolve().parent.parent
READY_LINE = "ready to serve client requests"
PROGRAMS = {"etcd", "sshd", "discovery.etcd.io"}
# The baseline's tight loop: as short as it can be without starving etcd of a core.
BASELINE_POLL = 0.002
TARGETS = {
    "ratio_n3": 1.2,  # plugin / baseline, N=3 medians
    "ready_n9_s": 1.0,
    "detection_lag_ms": 20.0,
    "teardown_n3_s": 0.1,
    "examples_wall_s": 2.0,
    "reuse_ready_s": 0.1,
    "nspawn_ready_n3_s": 3.0,  # issue 5: a 3-machine nspawn cluster
}


# -- small helpers ------------------------------------------------------------------------
def load() -> float:
    return os.getloadavg()[0]


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min and max of the values that were measured; where none was, all three
    are None and ``not_measured`` says so (a figure this etcd cannot give)."""
    measured = [value for value in values if value is not None]
    if not measured:
        return {"median": None, "min": None, "max": None, "not_measured": "no sample gave it"}
    return {
        "median": statistics.median(measured),
        "min": min(measured),
        "max": max(measured),
    }


def figure(value: float | None, spec: str) -> str:
    """A figure for the report: ``n/m`` (not measured) where there is none."""
    return "n/m".rjust(len(format(0.0, spec))) if value is None else format(value, spec)


def parse_ts(text: str) -> float:
    """etcd's JSON log ``ts`` (``2026-11-25T21:29:00.209Z``) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# etcd 3.4 logs text by default: "2026-11-30 08:37:54.383197 I | embed: ready to serve ...",
# in the host's local time.
_TEXT_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ")


def log_line_ts(line: str) -> float:
    """When etcd wrote one log line, in either of its formats (3.5's JSON, 3.4's text)."""
    if line.startswith("{"):
        return parse_ts(json.loads(line)["ts"])
    found = _TEXT_LOG_TIME.match(line)
    if found is None:
        raise ValueError(f"no time in etcd log line {line!r}")
    return datetime.fromisoformat(found.group(1)).timestamp()


def last_ready_ts(logs: Sequence[str]) -> float | None:
    """The wall-clock time the last member logged that it serves clients (each member's
    last such line: it logs one per client listener)."""
    latest: list[float] = []
    for log in logs:
        stamps = []
        for line in log.splitlines():
            if READY_LINE not in line:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                stamps.append(log_line_ts(line))
        if not stamps:
            return None
        latest.append(max(stamps))
    return max(latest) if latest else None


def vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def peak_rss(pids: Sequence[int], machines: int) -> dict[str, float]:
    """Peak RSS (VmHWM) of every etcd and sshd (with sshd's per-connection children), in
    MiB: per machine on average, and the largest single etcd and sshd."""
    etcd = [vm_hwm_kib(pid) for pid in pids if comm(pid) == "etcd"]
    sshd = [vm_hwm_kib(pid) for pid in pids if comm(pid) == "sshd"]
    sshd += [vm_hwm_kib(child) for child in descendants_of([p for p in pids if comm(p) == "sshd"])]
    return {
        "per_machine_mib": (sum(etcd) + sum(sshd)) / 1024 / machines,
        "etcd_max_mib": max(etcd, default=0) / 1024,
        "sshd_per_machine_mib": sum(sshd) / 1024 / machines,
    }


@dataclass
class ProcessCensus:
    """What ran before a measurement, so that what it leaves behind can be told apart
    from other people's processes on a shared machine."""

    root: Path
    before: set[tuple[int, int | None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.before = set(self._programs())

    @staticmethod
    def _programs() -> Iterator[tuple[int, int | None]]:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and comm(int(entry.name)) in PROGRAMS:
                pid = int(entry.name)
                yield pid, process_start_time(pid)

    def leftovers(self) -> list[str]:
        """Programs that appeared since and belong to this benchmark: their working
        folder or command line is under its temporary root, or they are orphans (an
        sshd per-connection child whose listener is gone)."""
        found = []
        for pid, started in self._programs():
            if (pid, started) in self.before or started is None:
                continue
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if str(self.root) in cwd or str(self.root) in cmdline or ppid == 1:
                found.append(f"{pid} {comm(pid)} {cmdline.strip()[:120]}")
        return found


def cpu_busy(interval: float) -> float:
    """Fraction of all CPUs busy over ``interval`` seconds (from /proc/stat). Taken while
    the benchmark itself idles, it is what others use: the 1-minute load average lags,
    and counts the benchmark's own processes too."""

    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle_before, total_before = snapshot()
    time.sleep(interval)
    idle_after, total_after = snapshot()
    return 1 - (idle_after - idle_before) / max(1, total_after - total_before)


def wait_for_quiet(threshold: float | None, limit: float) -> float:
    """Wait (at most ``limit`` seconds) until others use less than ``threshold`` of the
    CPUs, sampled over a second; returns the last fraction seen."""
    busy = cpu_busy(1.0)
    deadline = time.monotonic() + limit
    while threshold is not None and busy >= threshold and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


def add_quiet_options(parser: argparse.ArgumentParser, before: str, wait: float) -> None:
    """``--quiet FRACTION`` (wait, ``before``, until others use less than that share of the
    CPUs) and ``--quiet-wait SECONDS`` (the longest such wait, ``wait`` by default)."""
    parser.add_argument(
        "--quiet",
        type=float,
        default=None,
        metavar="FRACTION",
        help=f"{before}, wait until others use less than this fraction of the CPUs "
        "(e.g. 0.1); the fraction seen is reported",
    )
    parser.add_argument("--quiet-wait", type=float, default=wait, metavar="SECONDS")


@contextlib.contextmanager
def private_root(prefix: str) -> Iterator[Path]:
    """A folder of the benchmark's own, holding its sessions' state registry and temporary
    files: they neither reap nor are reaped by other runs on this machine, and what they
    leave is findable. Removed afterwards, the environment restored."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    previous_state = os.environ.get("PYTEST_COREOS_STATE_DIR")
    os.environ["PYTEST_COREOS_STATE_DIR"] = str(root / "state")
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = None
        if previous_state is None:
            os.environ.pop("PYTEST_COREOS_STATE_DIR", None)
        else:
            os.environ["PYTEST_COREOS_STATE_DIR"] = previous_state
        shutil.rmtree(root, ignore_errors=True)


def run_header(**facts: Any) -> dict[str, Any]:
    """The start of a benchmark's results: when, on what machine, at what load, and
    ``facts`` (its settings)."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "load_start": load(),
        **facts,
    }


# -- the plugin ----------------------------------------------------------------------------
def plugin_run(size: int, census_root: Path) -> dict[str, Any]:
    """One fresh session booting ``size`` local machines, as the fixture does."""
    census = ProcessCensus(census_root)
    sample: dict[str, Any] = {"load": load()}
    factory = ClusterFactory(ClusterSpec(instances=size, boot_timeout=60))
    started_pids: list[int] = []
    try:
        started = time.perf_counter()
        cluster = factory.default()
        ready = time.perf_counter() - started
        returned = time.time()
        started_pids = descendants_of([os.getpid()])
        sample["rss"] = peak_rss(cluster.pids, size)
        timings = dict(cluster.timings)
        last_ready = last_ready_ts([machine.logs(100_000) for machine in cluster])
        sample.update(
            ready_s=ready,
            discovery_s=timings["discovery"],
            config_s=timings["config"],
            spawn_s=timings["spawn"],
            wait_s=timings["ready"],
            etcd_converged_s=max(m.etcd_ready_after or float("nan") for m in cluster),
            ssh_ready_s=max(m.ssh_ready_after or float("nan") for m in cluster),
            detection_lag_ms=None if last_ready is None else (returned - last_ready) * 1000,
        )
    finally:
        closing = time.perf_counter()
        factory.close()
        sample["teardown_s"] = time.perf_counter() - closing
    alive = [pid for pid in started_pids if process_start_time(pid) is not None]
    sample["left_running"] = [f"{pid} {comm(pid)}" for pid in alive] + census.leftovers()
    return sample


# -- the baseline --------------------------------------------------------------------------
class Baseline:
    """The local provider's bring-up with nothing around it: the private discovery service
    (its etcd and Debian's discovery.etcd.io, same flags), then every member's etcd (same
    environment, from the provider's own function) and sshd (same config) at once, polled
    in a tight loop. Every process runs in its own session and is SIGKILLed by group at
    the end, error or not."""

    def __init__(self, size: int, root: Path) -> None:
        self.size = size
        self.workdir = Path(tempfile.mkdtemp(prefix="baseline-", dir=root))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.blocks: list[AddressBlock] = []
        self.clients: list[paramiko.SSHClient] = []
        self.etcd = find_etcd().path
        self.sshd = find_sshd()
        self.server = find_discovery_service()
        self.sshd_version = openssh_version(self.sshd)
        self.ssh_port = ssh_port_for_current_user()
        if self.ssh_port == 22 and not can_bind("127.254.254.254", 22):
            self.ssh_port = 2222  # as the provider does: something holds 0.0.0.0:22
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.machine_pids: list[int] = []
        self.envs: list[dict[str, str]] = []

    def _spawn(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        setpriv = shutil.which("setpriv")
        if setpriv is not None:  # as the plugin: the kernel kills it if we die
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with log.open("ab") as out:
            self.processes.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
            )

    def run(self) -> dict[str, Any]:
        size = self.size
        # Claimed beforehand: a free address block is not part of bringing processes up.
        discovery_block = claim_block(1, (ETCD_CLIENT_PORT, ETCD_PEER_PORT, DISCOVERY_PORT))
        self.blocks.append(discovery_block)
        probe_env, _ = machine_etcd_environment(
            cloud_config.default_user_data(), name="p", address="127.0.0.1", data_dir=self.workdir
        )
        ports = {ETCD_CLIENT_PORT, self.ssh_port}
        for key in ("ETCD_LISTEN_CLIENT_URLS", "ETCD_LISTEN_PEER_URLS"):
            ports |= {int(url.rsplit(":", 1)[1]) for url in probe_env[key].split(",")}
        block = claim_block(size, ports)
        self.blocks.append(block)
        sample: dict[str, Any] = {"load": load()}

        started = time.perf_counter()
        address = discovery_block.host(1)
        etcd_url = f"http://{address}:{ETCD_CLIENT_PORT}"
        peer_url = f"http://{address}:{ETCD_PEER_PORT}"
        disc = self.workdir / "discovery"
        disc.mkdir()
        self._spawn(
            [
                str(self.etcd),
                "--name=discovery",
                f"--data-dir={disc / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=discovery={peer_url}",
                "--enable-v2=true",
                "--heartbeat-interval=10",
                "--election-timeout=50",
            ],
            disc / "etcd.log",
            env={},
        )
        if self.server is not None:
            service = f"http://{address}:{DISCOVERY_PORT}"
            self._spawn(
                [
                    str(self.server),
                    f"--addr={address}:{DISCOVERY_PORT}",
                    f"--etcd={etcd_url}",
                    f"--host={service}",
                ],
                disc / "discovery.log",
                env={},
            )
            token_url = self._poll_token(address, DISCOVERY_PORT, f"/new?size={size}", "GET")
        else:
            token = os.urandom(16).hex()
            path = f"/v2/keys/discovery/{token}/_config/size"
            self._poll_token(address, ETCD_CLIENT_PORT, path, "PUT", body=f"value={size}")
            token_url = f"{etcd_url}/v2/keys/discovery/{token}"
        sample["discovery_s"] = time.perf_counter() - started

        key_path = self.workdir / "id_ed25519"
        key = generate_ed25519_key(key_path)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(public_key_line(key) + "\n")
        user_data = cloud_config.inject_discovery(cloud_config.default_user_data(), token_url)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        plans = []
        for index, name in enumerate(machine_names(size), start=1):
            host = block.host(index)
            directory = self.workdir / name
            directory.mkdir()
            env, _ = machine_etcd_environment(
                user_data, name=name, address=host, data_dir=directory / "etcd"
            )
            self.envs.append(env)
            host_key = generate_ed25519_key(directory / "ssh_host_ed25519_key")
            config = directory / "sshd_config"
            config.write_text(
                render_sshd_config(
                    SshdSettings(
                        address=host,
                        port=self.ssh_port,
                        host_key=directory / "ssh_host_ed25519_key",
                        authorized_keys=authorized,
                        login_user=self.user,
                        pid_file=directory / "sshd.pid",
                        openssh_version=self.sshd_version,
                    )
                )
            )
            plans.append((name, host, directory, env, config, host_key))
        for _name, _host, directory, env, config, _host_key in plans:
            self._spawn([str(self.etcd)], directory / "etcd.log", {**base_env, **env}, directory)
            self._spawn(
                sshd_command(self.sshd, config, directory / "sshd.log"), directory / "sshd.out"
            )
            self.machine_pids += [process.pid for process in self.processes[-2:]]
        spawned = time.perf_counter()
        sample["spawn_s"] = spawned - started - sample["discovery_s"]

        logins: dict[str, float] = {}
        threads = [
            threading.Thread(target=self._login, args=(host, host_key, key, logins, name, spawned))
            for name, host, _d, _e, _c, host_key in plans
        ]
        for thread in threads:
            thread.start()
        converged = self._poll_members(
            [env["ETCD_ADVERTISE_CLIENT_URLS"].split(",")[0] for env in self.envs], spawned
        )
        deadline = time.monotonic() + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        ready = time.perf_counter() - started
        returned = time.time()
        if len(logins) != size:
            raise RuntimeError(f"baseline: SSH logins {sorted(logins)} of {size}")
        last_ready = last_ready_ts(
            [(directory / "etcd.log").read_text(errors="replace") for _, _, directory, *_ in plans]
        )
        sample.update(
            ready_s=ready,
            etcd_converged_s=max(converged.values()),
            ssh_ready_s=max(logins.values()),
            detection_lag_ms=None if last_ready is None else (returned - last_ready) * 1000,
            rss=peak_rss(self.machine_pids, size),
        )
        return sample

    def _poll_token(
        self, host: str, port: int, path: str, method: str, body: str | None = None
    ) -> str:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive()
            connection = http.client.HTTPConnection(host, port, timeout=0.5)
            try:
                connection.request(method, path, body=body, headers=headers)
                answer = connection.getresponse()
                text = answer.read().decode()
                if answer.status in (200, 201):
                    return text.strip()
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(BASELINE_POLL)
        raise RuntimeError("baseline: the discovery service did not answer within 30 s")

    def _poll_members(self, urls: list[str], since: float) -> dict[str, float]:
        """Seconds after ``since`` at which each member first listed every member with
        client URLs."""
        converged: dict[str, float] = {}
        connections: dict[str, http.client.HTTPConnection] = {}
        deadline = time.monotonic() + 30
        try:
            while len(converged) < len(urls):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"baseline: members converged {sorted(converged)} only")
                self._check_alive()
                for url in urls:
                    if url in converged:
                        continue
                    hostport = url.split("//", 1)[1]
                    connection = connections.get(url)
                    if connection is None:
                        host, port = hostport.rsplit(":", 1)
                        connection = http.client.HTTPConnection(host, int(port), timeout=0.25)
                        connections[url] = connection
                    try:
                        connection.request("GET", "/v2/members")
                        answer = connection.getresponse()
                        members = json.loads(answer.read()).get("members", [])
                    except (OSError, ValueError, http.client.HTTPException):
                        connection.close()
                        connections.pop(url, None)
                        continue
                    serving = [m for m in members if m.get("clientURLs")]
                    if len(serving) == len(urls):
                        converged[url] = time.perf_counter() - since
                if len(converged) < len(urls):
                    time.sleep(BASELINE_POLL)
        finally:
            for connection in connections.values():
                connection.close()
        return converged

    def _login(
        self,
        host: str,
        host_key: paramiko.PKey,
        key: paramiko.PKey,
        logins: dict[str, float],
        name: str,
        since: float,
    ) -> None:
        deadline = time.monotonic() + 30
        port_name = host if self.ssh_port == 22 else f"[{host}]:{self.ssh_port}"
        while time.monotonic() < deadline:
            client = paramiko.SSHClient()
            client.get_host_keys().add(port_name, host_key.get_name(), host_key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                sock = socket.create_connection((host, self.ssh_port), timeout=5)
            except OSError:
                time.sleep(BASELINE_POLL)
                continue
            # Without it every small SSH message can wait 40 ms for a delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                client.connect(
                    host,
                    self.ssh_port,
                    username=self.user,
                    pkey=key,
                    sock=sock,
                    timeout=5,
                    banner_timeout=5,
                    auth_timeout=5,
                    look_for_keys=False,
                    allow_agent=False,
                )
            except (OSError, EOFError, paramiko.SSHException):
                client.close()
                sock.close()
                time.sleep(BASELINE_POLL)
                continue
            logins[name] = time.perf_counter() - since
            self.clients.append(client)
            return

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"baseline: {process.args} exited with {process.returncode}")

    def close(self) -> float:
        """Kill every group at once and reap; seconds it took."""
        started = time.perf_counter()
        for client in self.clients:
            client.close()
        live = [p.pid for p in self.processes if p.poll() is None]
        orphans = descendants_of(live)  # sshd's per-connection children leave the group
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            process.wait(10)
        elapsed = time.perf_counter() - started
        for block in self.blocks:
            block.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return elapsed


def baseline_run(size: int, root: Path) -> dict[str, Any]:
    census = ProcessCensus(root)
    baseline = Baseline(size, root)
    try:
        sample = baseline.run()
        sample["flags"] = {
            key: baseline.envs[0][key]
            for key in sorted(baseline.envs[0])
            if key
            in (
                "ETCD_HEARTBEAT_INTERVAL",
                "ETCD_ELECTION_TIMEOUT",
                "ETCD_PRE_VOTE",
                "ETCD_ENABLE_V2",
                "ETCD_DISCOVERY_FALLBACK",
            )
        }
    finally:
        teardown = baseline.close()
    sample["teardown_s"] = teardown
    sample["left_running"] = census.leftovers()
    return sample


# -- what tests pay per call ---------------------------------------------------------------
def handle_latency(root: Path, calls: int = 10) -> dict[str, Any]:
    """Per-call cost of the handles tests use, on a ready 3-machine cluster, and the cost
    of the login shell sshd starts for every command (Debian's bash reads ~/.bashrc when
    it sees SSH_CLIENT): it explains most of an ``ssh.run``."""
    census = ProcessCensus(root)
    factory = ClusterFactory(ClusterSpec(instances=3, boot_timeout=60))
    result: dict[str, Any] = {"load": load()}
    try:
        cluster = factory.default()
        machine = cluster.machines[0]

        def timed(action: Callable[[], object]) -> float:
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                action()
                samples.append(time.perf_counter() - started)
            return statistics.median(samples) * 1000

        result["ssh_run_ms"] = timed(lambda: machine.ssh.run(["true"]))
        result["etcd_set_ms"] = timed(lambda: cluster.etcd.set("/bench", "x"))
        result["etcd_get_ms"] = timed(lambda: cluster.etcd.get("/bench"))
    finally:
        factory.close()
    account = pwd.getpwuid(os.getuid())
    shell_env = {"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", "SSH_CLIENT": "127.0.0.1 1 22"}
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([account.pw_shell, "-c", "true"], env=shell_env, check=False)
        samples.append(time.perf_counter() - started)
    result["login_shell"] = account.pw_shell
    result["login_shell_ms"] = statistics.median(samples) * 1000
    result["left_running"] = census.leftovers()
    return result


# -- whole pytest runs ---------------------------------------------------------------------
PROBE = '''\
"""Loaded with -p by the benchmark: when the session started, when coreos_cluster was
handed out, and when the session finished, as wall-clock times."""
import json
import os
import time

import pytest

_times = {}


def pytest_sessionstart(session):
    _times["session_start"] = time.time()
    _times["tests"] = {}


def pytest_runtest_logreport(report):
    tests = _times["tests"]
    tests[report.nodeid] = tests.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session, exitstatus):
    _times["session_finish"] = time.time()
    with open(os.environ["COREOS_BENCH_PROBE"], "a") as out:
        out.write(json.dumps(_times) + "\\n")


@pytest.fixture(scope="session", autouse=True)
def _coreos_bench_probe(request):
    started = time.time()
    cluster = request.getfixturevalue("coreos_cluster")
    _times.update(
        fixture_start=started,
        fixture_ready=time.time(),
        attached=cluster.attached,
        machines=len(cluster),
        timings=dict(cluster.timings),
    )
'''


@dataclass
class PytestRunner:
    """Runs pytest as a user would, in a registry (``PYTEST_COREOS_STATE_DIR``) and a
    ``TMPDIR`` of its own under the benchmark's root, with a probe plugin that records
    when the cluster was handed out."""

    root: Path

    def __post_init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pytest-runs-", dir=self.root))
        (self.home / "coreos_bench_probe.py").write_text(PROBE)
        self.probe_out = self.home / "probe.jsonl"
        (self.home / "tmp").mkdir()
        self.env = {
            **os.environ,
            "PYTEST_COREOS_STATE_DIR": str(self.home / "state"),
            "TMPDIR": str(self.home / "tmp"),
            "PYTHONPATH": os.pathsep.join(
                [str(self.home), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "COREOS_BENCH_PROBE": str(self.probe_out),
        }

    def run(self, *args: str, probe: bool = True) -> dict[str, Any]:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        if probe:
            argv += ["-p", "coreos_bench_probe"]
        argv += list(args)
        self.probe_out.unlink(missing_ok=True)
        sample: dict[str, Any] = {"load": load(), "argv": argv[1:]}
        started = time.time()
        completed = subprocess.run(
            argv,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        ended = time.time()
        sample.update(wall_s=ended - started, exit_status=completed.returncode)
        if completed.returncode != 0:
            sample["output_tail"] = (completed.stdout + completed.stderr)[-2000:]
        if probe and self.probe_out.exists():
            times = json.loads(self.probe_out.read_text().splitlines()[-1])
            if "fixture_ready" in times:
                sample.update(
                    startup_s=times["session_start"] - started,
                    to_ready_s=times["fixture_ready"] - times["session_start"],
                    fixture_s=times["fixture_ready"] - times["fixture_start"],
                    tests_s=times["session_finish"] - times["fixture_ready"],
                    finish_s=ended - times["session_finish"],
                    attached=times["attached"],
                    timings=times["timings"],
                    per_test_s=times["tests"],
                )
        return sample

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def examples_runs(root: Path, runs: int) -> dict[str, Any]:
    runner = PytestRunner(root)
    census = ProcessCensus(root)
    examples = str(REPO / "examples")
    try:
        collect = runner.run("--collect-only", "-q", examples, probe=False)
        plain = [
            runner.run("--coreos-instances=3", examples, "-q", probe=False) for _ in range(runs)
        ]
        probed = runner.run("--coreos-instances=3", examples, "-q")
    finally:
        runner.close()
    return {
        "collect_only_wall_s": collect["wall_s"],
        "runs": plain,
        "wall_s": summary([run["wall_s"] for run in plain]),
        "breakdown": probed,
        "left_running": census.leftovers(),
    }


def reuse_runs(root: Path) -> dict[str, Any]:
    runner = PytestRunner(root)
    census = ProcessCensus(root)
    examples = str(REPO / "examples")
    try:
        first = runner.run("--coreos-instances=3", "--coreos-reuse", examples, "-q")
        second = runner.run("--coreos-instances=3", "--coreos-reuse", examples, "-q")
    finally:
        reaped = runner.run("--coreos-reap", probe=False)
        runner.close()
    return {
        "first": first,
        "second": second,
        "reap": reaped,
        "left_running": census.leftovers(),
    }


# -- providers that boot VMs or containers -------------------------------------------------
def vm_provider(name: str, requested: Sequence[str], size: int, runs: int) -> dict[str, Any]:
    """Each phase of the ``name`` provider, only when asked for (they boot real VMs or
    containers, which take minutes and load a shared CPU); otherwise why not."""
    module = f"pytest_coreos.providers.{name}"
    try:
        present = importlib.util.find_spec(module) is not None
    except ImportError:
        present = False
    needs = {"nspawn": ["systemd-nspawn"], "vagrant": ["vagrant", "virsh"]}[name]
    missing = [tool for tool in needs if shutil.which(tool) is None]
    if not present:
        return {"measured": False, "reason": f"no {module} in this checkout"}
    if missing:
        return {"measured": False, "reason": "missing " + ", ".join(missing)}
    if name not in requested:
        return {
            "measured": False,
            "reason": f"provider and {', '.join(needs)} present, but booting VMs/containers "
            f"is excluded from this run (shared CPU); add --vm-providers {name}",
        }
    if name == "vagrant":
        return vagrant_e2e_phases()
    samples = [nspawn_run(size) for _ in range(runs)]
    phases = samples[0]["timings"].keys()
    return {
        "measured": True,
        "instances": size,
        "runs": runs,
        "ready_s": summary([sample["ready_s"] for sample in samples]),
        "teardown_s": summary([sample["teardown_s"] for sample in samples]),
        "timings": {
            phase: statistics.median(sample["timings"][phase] for sample in samples)
            for phase in phases
        },
        "load": load(),
    }


def nspawn_run(size: int) -> dict[str, Any]:
    """One fresh session's nspawn cluster: its phases, time to ready, teardown."""
    factory = ClusterFactory(
        ClusterSpec().replace(provider="nspawn", instances=size, discovery="local")
    )
    sample: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        cluster = factory.default()
        sample["ready_s"] = time.perf_counter() - started
        sample["timings"] = dict(cluster.timings)
    finally:
        closing = time.perf_counter()
        factory.close()
        sample["teardown_s"] = time.perf_counter() - closing
    return sample


def vagrant_e2e_phases() -> dict[str, Any]:
    """The Vagrant provider's phases, from one run of its end-to-end test: VMs are reached
    only inside the network namespace that test creates, never from here."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "vagrant_e2e", "-s", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"^vagrant e2e timings: (.*)$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or found is None:
        return {
            "measured": False,
            "reason": f"the vagrant e2e test failed (exit {run.returncode}): "
            + run.stdout[-400:].strip(),
        }
    timings = {
        phase.strip(): float(seconds)
        for phase, seconds in re.findall(r"([^,]+?) ([\d.]+)s\b", found.group(1))
    }
    return {"measured": True, "timings": timings, "reported": found.group(1), "load": load()}


# -- report --------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    sshd = find_sshd()
    version = openssh_version(sshd)
    return {
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "etcd": find_etcd().version_text,
        "etcd_path": str(find_etcd().path),
        "openssh": ".".join(map(str, version)) if version else "unknown",
        "discovery_server": str(find_discovery_service() or "none (etcd v2 keys)"),
        "tmp_filesystem": _filesystem(Path(tempfile.gettempdir())),
    }


def _filesystem(path: Path) -> str:
    best = ("", "?")
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _dev, mount, kind, *_ = line.split()
            if str(path).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, kind)
    return best[1]


def median_of(samples: Sequence[dict[str, Any]], key: str) -> float:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def aggregate(size: int, plugin: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict:
    row: dict[str, Any] = {"instances": size, "runs": len(plugin)}
    row["plugin"] = {
        "ready_s": summary([s["ready_s"] for s in plugin]),
        **{
            key: median_of(plugin, key)
            for key in (
                "discovery_s",
                "config_s",
                "spawn_s",
                "wait_s",
                "etcd_converged_s",
                "ssh_ready_s",
                "teardown_s",
            )
        },
        "detection_lag_ms": summary([s["detection_lag_ms"] for s in plugin]),
        "rss_per_machine_mib": statistics.median(s["rss"]["per_machine_mib"] for s in plugin),
        "etcd_rss_max_mib": max(s["rss"]["etcd_max_mib"] for s in plugin),
        "load": summary([s["load"] for s in plugin]),
        "others_cpu": statistics.median(s["others_cpu"] for s in plugin),
    }
    if base:
        row["baseline"] = {
            "ready_s": summary([s["ready_s"] for s in base]),
            **{
                key: median_of(base, key)
                for key in (
                    "discovery_s",
                    "spawn_s",
                    "etcd_converged_s",
                    "ssh_ready_s",
                    "teardown_s",
                )
            },
            "detection_lag_ms": summary([s["detection_lag_ms"] for s in base]),
            "rss_per_machine_mib": statistics.median(s["rss"]["per_machine_mib"] for s in base),
        }
        row["ratio"] = row["plugin"]["ready_s"]["median"] / row["baseline"]["ready_s"]["median"]
    return row


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {row["instances"]: row for row in results["boot"]}
    checks: list[tuple[str, float | None, float, str]] = []
    if 3 in rows and "ratio" in rows[3]:
        checks.append(("plugin/baseline N=3", rows[3]["ratio"], TARGETS["ratio_n3"], "x"))
    if 9 in rows:
        checks.append(
            (
                "ready N=9 (median)",
                rows[9]["plugin"]["ready_s"]["median"],
                TARGETS["ready_n9_s"],
                "s",
            )
        )
    if rows:
        lags = [row["plugin"]["detection_lag_ms"]["median"] for row in rows.values()]
        worst_lag = None if None in lags else max(lags)
        checks.append(
            ("detection lag (worst N, median)", worst_lag, TARGETS["detection_lag_ms"], "ms")
        )
    if 3 in rows:
        checks.append(
            (
                "teardown N=3 (median)",
                rows[3]["plugin"]["teardown_s"],
                TARGETS["teardown_n3_s"],
                "s",
            )
        )
    examples = results.get("examples")
    if examples:
        checks.append(
            (
                "examples wall (median)",
                examples["wall_s"]["median"],
                TARGETS["examples_wall_s"],
                "s",
            )
        )
    reuse = results.get("reuse")
    if reuse:
        checks.append(
            (
                "reuse: session start to ready",
                reuse["second"].get("to_ready_s"),
                TARGETS["reuse_ready_s"],
                "s",
            )
        )
    nspawn = results.get("vm_providers", {}).get("nspawn", {})
    if nspawn.get("measured") and nspawn.get("instances") == 3:
        checks.append(
            (
                "nspawn N=3 ready (median)",
                nspawn["ready_s"]["median"],
                TARGETS["nspawn_ready_n3_s"],
                "s",
            )
        )
    out = []
    for name, value, target, unit in checks:
        met = value is not None and value <= target
        out.append(
            {
                "target": name,
                "value": value,
                "limit": target,
                "unit": unit,
                "met": met,
                "missed_by": None if met or value is None else value - target,
            }
        )
    return out


def render_report(results: dict[str, Any]) -> str:
    info = results["machine"]
    lines = [
        f"pytest-coreos benchmark, {results['date']}",
        f"{info['host']}: {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB, "
        f"kernel {info['kernel']}, etcd {info['etcd']}, OpenSSH {info['openssh']}, "
        f"data on {info['tmp_filesystem']}, load at start {results['load_start']:.2f}",
        "",
        "Fixture start to ready, local provider (seconds; phases are medians; etcd and ssh",
        "are counted from the end of spawn)",
        "",
        "|  N | runs | median |  min  |  max  | discovery | config | spawn | etcd conv | ssh  "
        "| teardown | load | others' CPU |",
        "|---:|-----:|-------:|------:|------:|----------:|-------:|------:|----------:|-----:"
        "|---------:|-----:|------------:|",
    ]
    for row in results["boot"]:
        p = row["plugin"]
        lines.append(
            f"| {row['instances']:>2} | {row['runs']:>4} | {p['ready_s']['median']:.3f}  "
            f"| {p['ready_s']['min']:.3f} | {p['ready_s']['max']:.3f} "
            f"| {p['discovery_s']:9.3f} | {p['config_s']:6.3f} | {p['spawn_s']:.3f} "
            f"| {p['etcd_converged_s']:9.3f} | {p['ssh_ready_s']:.3f} "
            f"| {p['teardown_s']:8.3f} | {p['load']['median']:4.2f} "
            f"| {p['others_cpu']:11.0%} |"
        )
    if any("baseline" in row for row in results["boot"]):
        lines += [
            "",
            "Bare baseline in the same run (same binaries and flags, tight loop), and the ratio",
            "",
            "|  N | median |  min  |  max  | discovery | spawn | etcd conv | ssh   | teardown "
            "| plugin/baseline |",
            "|---:|-------:|------:|------:|----------:|------:|----------:|------:|---------:"
            "|----------------:|",
        ]
        for row in results["boot"]:
            b = row.get("baseline")
            if b is None:
                continue
            lines.append(
                f"| {row['instances']:>2} | {b['ready_s']['median']:.3f}  "
                f"| {b['ready_s']['min']:.3f} | {b['ready_s']['max']:.3f} "
                f"| {b['discovery_s']:9.3f} | {b['spawn_s']:.3f} "
                f"| {b['etcd_converged_s']:9.3f} | {b['ssh_ready_s']:.3f} "
                f"| {b['teardown_s']:8.3f} | {row['ratio']:15.2f} |"
            )
    lines += [
        "",
        "Detection lag (last member's 'ready to serve client requests' to the fixture",
        "returning, ms) and peak RSS (VmHWM of etcd + sshd and its session child, MiB)",
        "",
        "|  N | lag median | lag min | lag max | baseline lag | RSS/machine | etcd max "
        "| baseline RSS/machine |",
        "|---:|-----------:|--------:|--------:|-------------:|------------:|---------:"
        "|---------------------:|",
    ]
    for row in results["boot"]:
        p, b = row["plugin"], row.get("baseline")
        lag = p["detection_lag_ms"]
        b_lag = figure(b["detection_lag_ms"]["median"], "12.1f") if b else f"{'-':>12}"
        b_rss = f"{b['rss_per_machine_mib']:20.1f}" if b else f"{'-':>20}"
        lines.append(
            f"| {row['instances']:>2} | {figure(lag['median'], '10.1f')} "
            f"| {figure(lag['min'], '7.1f')} "
            f"| {figure(lag['max'], '7.1f')} | {b_lag} | {p['rss_per_machine_mib']:11.1f} "
            f"| {p['etcd_rss_max_mib']:8.1f} | {b_rss} |"
        )
    examples = results.get("examples")
    if examples:
        wall = examples["wall_s"]
        probe = examples["breakdown"]
        lines += [
            "",
            f"pytest --coreos-instances=3 examples/ -q: wall median {wall['median']:.3f} s "
            f"(min {wall['min']:.3f}, max {wall['max']:.3f}, {len(examples['runs'])} runs, "
            f"exit {[r['exit_status'] for r in examples['runs']]}); "
            f"--collect-only alone {examples['collect_only_wall_s']:.3f} s; load "
            f"{examples['runs'][0]['load']:.2f}, others' CPU before "
            f"{examples.get('others_cpu_before', float('nan')):.0%}",
        ]
        if "startup_s" in probe:
            lines.append(
                f"  one probed run {probe['wall_s']:.3f} s: interpreter + pytest + plugins "
                f"{probe['startup_s']:.3f}, session start to cluster {probe['to_ready_s']:.3f} "
                f"(fixture {probe['fixture_s']:.3f}), tests {probe['tests_s']:.3f}, "
                f"teardown + exit {probe['finish_s']:.3f}"
            )
            slowest = sorted(probe["per_test_s"].items(), key=lambda item: -item[1])[:4]
            lines.append(
                "  slowest tests (setup+call+teardown): "
                + ", ".join(
                    f"{nodeid.split('::')[-1]} {seconds:.3f}" for nodeid, seconds in slowest
                )
            )
    reuse = results.get("reuse")
    if reuse:
        first, second = reuse["first"], reuse["second"]
        lines += [
            "",
            f"--coreos-reuse: first run {first['wall_s']:.3f} s wall (booted and kept), second "
            f"run {second['wall_s']:.3f} s wall, session start to cluster "
            f"{second.get('to_ready_s', float('nan')):.3f} s (fixture "
            f"{second.get('fixture_s', float('nan')):.3f} s, attached={second.get('attached')})"
            f"; --coreos-reap {reuse['reap']['wall_s']:.3f} s; load {second['load']:.2f}, "
            f"others' CPU before {reuse.get('others_cpu_before', float('nan')):.0%}",
        ]
    handles = results.get("handles")
    if handles:
        lines += [
            "",
            f"Per call on a ready 3-machine cluster (median of 10): ssh.run(['true']) "
            f"{handles['ssh_run_ms']:.1f} ms, etcd set {handles['etcd_set_ms']:.1f} ms, "
            f"etcd get {handles['etcd_get_ms']:.1f} ms; {handles['login_shell']} -c true as "
            f"sshd starts it (SSH_CLIENT set) {handles['login_shell_ms']:.1f} ms",
        ]
    lines.append("")
    for name, outcome in results["vm_providers"].items():
        if outcome["measured"] and "reported" in outcome:
            lines.append(f"{name} (its e2e test): {outcome['reported']}")
        elif outcome["measured"]:
            ready, teardown = outcome["ready_s"], outcome["teardown_s"]
            phases = ", ".join(f"{k} {v:.2f}s" for k, v in outcome["timings"].items())
            lines.append(
                f"{name}, {outcome['instances']} machines, {outcome['runs']} runs: ready "
                f"median {ready['median']:.2f}s (min {ready['min']:.2f}, max "
                f"{ready['max']:.2f}); median phases {phases}; teardown median "
                f"{teardown['median']:.2f}s"
            )
        else:
            lines.append(f"{name}: not measured: {outcome['reason']}")
    lines += ["", "Targets:"]
    for verdict in results["targets"]:
        value = verdict["value"]
        shown = "n/a" if value is None else f"{value:.3f}{verdict['unit']}"
        state = (
            "met"
            if verdict["met"]
            else (
                "not measured"
                if value is None
                else f"MISSED by {verdict['missed_by']:.3f}{verdict['unit']}"
            )
        )
        lines.append(
            f"  {verdict['target']}: {shown} (target <= {verdict['limit']}{verdict['unit']}) "
            f"{state}"
        )
    leftovers = results["left_running"]
    lines.append("")
    lines.append("left running: " + ("nothing" if not leftovers else "; ".join(leftovers)))
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------
def _end_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so every finally kills what it started


def measure_sizes(
    sizes: Sequence[int],
    runs: int,
    root: Path,
    baseline: bool,
    pause: float,
    quiet: Callable[[], float],
    log: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    rows, leftovers = [], []
    for size in sizes:
        quiet()
        plugin_run(size, root)  # warm the page cache and lru caches; not counted
        if baseline:
            baseline_run(size, root)
        plugin_samples, base_samples = [], []
        for _ in range(runs):
            # The pause between runs doubles as a sample of what others use meanwhile.
            busy = cpu_busy(pause)
            plugin_samples.append({**plugin_run(size, root), "others_cpu": busy})
            if baseline:
                busy = cpu_busy(pause)
                base_samples.append({**baseline_run(size, root), "others_cpu": busy})
        for sample in plugin_samples + base_samples:
            leftovers += sample["left_running"]
        row = aggregate(size, plugin_samples, base_samples)
        row["samples"] = {"plugin": plugin_samples, "baseline": base_samples}
        rows.append(row)
        ratio = f", baseline {row['baseline']['ready_s']['median']:.3f}s" if baseline else ""
        log(f"N={size}: plugin {row['plugin']['ready_s']['median']:.3f}s{ratio}")
    return rows, leftovers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 5, 9])
    parser.add_argument("--runs", type=int, default=5, help="runs per size (after a warm-up)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results.json")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--examples-runs",
        type=int,
        default=3,
        help="whole examples/ runs (0: skip them and the reuse runs)",
    )
    parser.add_argument(
        "--vm-providers",
        nargs="*",
        default=[],
        choices=["nspawn", "vagrant"],
        help="also boot these providers (real VMs/containers: minutes)",
    )
    parser.add_argument("--vm-size", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between runs")
    add_quiet_options(parser, "before each section", 300.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _end_on_sigterm)

    def log(line: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')} load {load():.2f}] {line}", file=sys.stderr)

    def quiet() -> float:
        busy = wait_for_quiet(args.quiet, args.quiet_wait)
        log(f"others use {busy:.0%} of the CPUs")
        return busy

    results = run_header(targets_set=TARGETS, left_running=[])
    with private_root("pytest-coreos-bench-") as root:
        log(f"sizes {args.sizes}, {args.runs} runs each, baseline {not args.no_baseline}")
        rows, leftovers = measure_sizes(
            args.sizes, args.runs, root, not args.no_baseline, args.pause, quiet, log
        )
        results["boot"] = rows
        results["left_running"] += leftovers
        if args.examples_runs > 0:
            busy = quiet()
            results["examples"] = examples_runs(root, args.examples_runs)
            results["examples"]["others_cpu_before"] = busy
            results["left_running"] += results["examples"]["left_running"]
            log(f"examples: {results['examples']['wall_s']['median']:.3f}s")
            busy = quiet()
            results["reuse"] = reuse_runs(root)
            results["reuse"]["others_cpu_before"] = busy
            results["left_running"] += results["reuse"]["left_running"]
            log(f"reuse: {results['reuse']['second'].get('to_ready_s')}")
        results["handles"] = handle_latency(root)
        results["left_running"] += results["handles"]["left_running"]
        results["vm_providers"] = {
            name: vm_provider(name, args.vm_providers, args.vm_size, args.runs)
            for name in ("nspawn", "vagrant")
        }
        results["load_end"] = load()
        results["targets"] = verdicts(results)
    print(render_report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 1 if results["left_running"] else 0


if __name__ == "__main__":
    sys.exit(main())
