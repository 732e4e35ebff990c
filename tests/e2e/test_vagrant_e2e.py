"""The vagrant provider on real VMs: Vagrant + vagrant-libvirt + QEMU boot three machines
of the stand-in box (``box/build-box``) through the plugin, and the same example suite the
local provider runs passes against them, with checks of the VMs' own on top
(``vagrant_machines.py``: etcd peers, SSH, units, a suspended and a halted member).

Everything that talks to the VMs' addresses happens inside a network namespace this test
creates: libvirtd and virtlogd are started in it, and an inner pytest runs in it. At the end
(always) the namespace, the daemons, every domain, volume and network are gone, checked.

Select it with ``-m vagrant_e2e``; it takes a few minutes (the box is built once and
cached). It needs root, and the Debian packages ``scripts/bootstrap`` installs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.vagrant_e2e

REPO = Path(__file__).resolve().parents[2]
USER_DATA = Path(__file__).resolve().parent / "data" / "user-data"
CHECKS = Path(__file__).resolve().parent / "vagrant_machines.py"
# The systemd units suite users run on nspawn, unchanged on VMs.
UNITS_SUITE = REPO / "examples" / "systemd" / "check_units.py"
URI = "qemu:///system"
INNER_TIMEOUT = 45 * 60
# The test an interrupted or killed inner run is about to run: any that needs the cluster.
PROBE = "test_private_addresses_are_the_seeds"
NEEDED = {
    "vagrant": "vagrant",
    "virsh": "libvirt-clients",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "dnsmasq": "dnsmasq-base",
    "iptables": "iptables",
    "ip": "iproute2",
    "mkfs.ext4": "e2fsprogs",
}


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("the vagrant e2e test runs as root (network namespaces, libvirtd)")
    missing = [f"{tool} ({package})" for tool, package in NEEDED.items() if not _which(tool)]
    if missing:
        pytest.fail("the vagrant e2e test needs: " + ", ".join(missing) + "; run scripts/bootstrap")
    with tempfile.TemporaryDirectory(prefix="pytest-coreos-e2e-vagrant-") as home:
        plugins = subprocess.run(
            ["vagrant", "plugin", "list"],
            capture_output=True,
            text=True,
            env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_HOME": home},
            check=False,
        )
    if "vagrant-libvirt" not in plugins.stdout:
        pytest.fail(
            "the vagrant-libvirt plugin is missing (Debian: apt-get install vagrant-libvirt)"
        )
    for daemon in ("libvirtd", "virtlogd"):
        pid = _pid_from(Path(f"/run/{daemon}.pid"))
        if pid is not None and _alive(pid):
            pytest.fail(
                f"a {daemon} already runs on this host (pid {pid}); this test starts its own "
                "inside a network namespace, so that no VM traffic reaches the host's networks"
            )


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _processes(pattern: str) -> list[str]:
    """Processes whose command line matches ``pattern``: ``pid: command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmdline = _cmdline(int(entry.name))
            if re.search(pattern, cmdline) and _alive(int(entry.name)):
                found.append(f"{entry.name}: {cmdline.strip()[:200]}")
    return found


class Namespace:
    """A network namespace of this run, with libvirtd and virtlogd of its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.daemons: dict[str, int] = {}

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {self.name}: {done.stderr.strip()}")
        return done.stdout

    def virsh(self, *args: str, check: bool = True) -> str:
        return self.run("virsh", "-q", "-c", URI, *args, check=check)

    def names(self, *args: str) -> list[str]:
        return self.virsh(*args, "--name").split()

    def start_daemon(self, daemon: str) -> None:
        pid_file = Path(f"/run/{daemon}.pid")
        self.run(daemon, "-d")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid = _pid_from(pid_file)
            if pid is not None and _alive(pid) and daemon in _cmdline(pid):
                self.daemons[daemon] = pid
                return
            time.sleep(0.1)
        raise AssertionError(f"{daemon} did not start in {self.name}")

    def stop_daemons(self) -> None:
        for daemon, pid in reversed(list(self.daemons.items())):
            if not _alive(pid) or daemon not in _cmdline(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.daemons.clear()


@contextlib.contextmanager
def _kvm_device_for_libvirt() -> Iterator[None]:
    """/dev/kvm group kvm, mode 660, while the test runs: without udev it is root 0600, and
    libvirt then probes QEMU again on every call (about 40 s each)."""
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        yield
        return
    before = kvm.stat()
    subprocess.run(["chgrp", "kvm", str(kvm)], check=True)
    kvm.chmod(0o660)
    try:
        yield
    finally:
        os.chown(kvm, before.st_uid, before.st_gid)
        kvm.chmod(stat.S_IMODE(before.st_mode))


def _build_box() -> tuple[Path, float, str]:
    started = time.monotonic()
    built = subprocess.run(
        [str(REPO / "box" / "build-box")], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    if built.returncode != 0:
        pytest.fail(f"box/build-box failed:\n{built.stderr[-3000:]}")
    how = "cached" if "build-box: cached" in built.stderr else "built"
    return Path(built.stdout.strip().splitlines()[-1]), seconds, how


def _run_inner(
    namespace: Namespace,
    vagrant_home: Path,
    args: list[str],
    log: Path,
    *,
    signal_when: tuple[str, signal.Signals] | None = None,
) -> tuple[int, list[tuple[float, str]]]:
    """Run an inner pytest with ``args`` inside the namespace; return its exit status and
    its output lines, each with the time it arrived (seconds since the start). With
    ``signal_when`` (a pattern, a signal), send it the signal once a line matches."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "VAGRANT_")) and key != "COV_CORE_SOURCE"
    }
    env.update(VAGRANT_HOME=str(vagrant_home), PYTHONUNBUFFERED="1")
    argv = [
        "ip", "netns", "exec", namespace.name,
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *args,
    ]  # fmt: skip
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    with (
        log.open("w") as out,
        subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        ) as inner,
    ):
        assert inner.stdout is not None
        try:
            for line in inner.stdout:
                now = time.monotonic() - started
                lines.append((now, line.rstrip("\n")))
                out.write(f"{now:8.1f} {line}")
                out.flush()
                if signal_when is not None and re.search(signal_when[0], line):
                    os.killpg(inner.pid, signal_when[1])
                    signal_when = None
                if now > INNER_TIMEOUT:
                    raise AssertionError(f"the inner pytest ran longer than {INNER_TIMEOUT}s")
            status = inner.wait()
        except BaseException:
            # SIGINT first: the inner session destroys its VMs on the way out.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(inner.pid, signal.SIGINT)
            try:
                inner.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(inner.pid, signal.SIGKILL)
                inner.wait()
            raise
    return status, lines


def _cluster_args(box: Path, instances: int) -> list[str]:
    return [
        "--coreos-provider=vagrant",
        "--coreos-vagrant-provider=libvirt",
        "--coreos-discovery=local",
        f"--coreos-instances={instances}",
        f"--coreos-box={box}",
        f"--coreos-user-data={USER_DATA}",
        "--coreos-boot-timeout=300",
    ]


def _seconds(lines: list[tuple[float, str]], pattern: str) -> float | None:
    for _, line in lines:
        match = re.search(pattern, line)
        if match:
            return float(match.group(1))
    return None


def _leftovers(namespace: Namespace, networks_before: set[str]) -> list[str]:
    """What the inner run left in libvirt: domains, volumes (but the box image vagrant-libvirt
    keeps for the next machine), networks."""
    left = [f"domain {name}" for name in namespace.names("list", "--all")]
    if "default" in namespace.names("pool-list", "--all"):
        namespace.virsh("pool-refresh", "default", check=False)
        for line in namespace.virsh("vol-list", "default").splitlines():
            volume = line.split()[0] if line.split() else ""
            if volume and "_vagrant_box_image_" not in volume:
                left.append(f"volume {volume}")
    active = set(namespace.names("net-list"))
    left += [f"network {name}" for name in sorted(active - networks_before)]
    left += [f"process {line}" for line in _processes(r"qemu-system-x86_64 .*guest=pytest-coreos-")]
    return left


def _clean_libvirt(namespace: Namespace, pool_existed: bool) -> None:
    """Remove what this run's libvirtd holds: leftover domains of any pytest-coreos run,
    the box image volumes, the pool if the run made it, every active network."""
    for domain in namespace.names("list", "--all"):
        if domain.startswith("pytest-coreos-"):
            namespace.virsh("destroy", domain, check=False)
            namespace.virsh("undefine", domain, "--nvram", check=False)
    if "default" in namespace.names("pool-list", "--all"):
        namespace.virsh("pool-refresh", "default", check=False)
        for line in namespace.virsh("vol-list", "default", check=False).splitlines():
            volume = line.split()[0] if line.split() else ""
            if volume.startswith("pytest-coreos-"):
                namespace.virsh("vol-delete", volume, "--pool", "default", check=False)
        if not pool_existed:
            namespace.virsh("pool-destroy", "default", check=False)
            namespace.virsh("pool-undefine", "default", check=False)
    for network in namespace.names("net-list"):
        namespace.virsh("net-destroy", network, check=False)


@contextlib.contextmanager
def _libvirt_host_files() -> Iterator[None]:
    """libvirtd writes its runtime state (/run/libvirt), each domain's QEMU log and the
    pool definition folder on the host's disk: what the run added goes again."""
    runtime = Path("/run/libvirt")
    storage = Path("/etc/libvirt/storage")
    logs = Path("/var/log/libvirt/qemu")
    had_runtime, had_storage = runtime.exists(), storage.exists()
    logs_before = set(logs.glob("*.log")) if logs.exists() else set()
    try:
        yield
    finally:
        for log in set(logs.glob("pytest-coreos-*.log")) - logs_before if logs.exists() else ():
            log.unlink(missing_ok=True)
        if not had_runtime:
            shutil.rmtree(runtime, ignore_errors=True)
        if not had_storage:
            with contextlib.suppress(OSError):
                (storage / "autostart").rmdir()
            with contextlib.suppress(OSError):
                storage.rmdir()


def test_three_vms_through_the_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _check_prerequisites()
    timings: dict[str, str] = {}
    box, seconds, how = _build_box()
    timings["box build"] = f"{seconds:.1f}s ({how})"
    run_id = secrets.token_hex(3)
    namespace = Namespace(f"pytest-coreos-e2e-{run_id}")
    dnsmasq_before = set(_processes(r"dnsmasq .*libvirt"))
    vagrant_home = Path(tempfile.mkdtemp(prefix="pytest-coreos-e2e-vagrant-", dir="/var/tmp"))
    # QEMU runs as libvirt-qemu and reads the box's kernel from here.
    vagrant_home.chmod(0o755)
    log = tmp_path / "inner.log"
    pool_existed = True
    inner_status: int | None = None
    lines: list[tuple[float, str]] = []
    left: list[str] = []
    left_interrupted: list[str] = []
    left_killed: list[str] = []
    left_reaped: list[str] = []
    interrupted = killed = reaped = (-1, [])
    daemons: dict[str, int] = {}
    try:
        with contextlib.ExitStack() as cleanup:
            subprocess.run(["ip", "netns", "add", namespace.name], check=True)
            cleanup.callback(subprocess.run, ["ip", "netns", "delete", namespace.name], check=False)
            namespace.run("ip", "link", "set", "lo", "up")
            cleanup.enter_context(_kvm_device_for_libvirt())
            cleanup.enter_context(_libvirt_host_files())
            cleanup.callback(namespace.stop_daemons)
            namespace.start_daemon("virtlogd")
            namespace.start_daemon("libvirtd")
            namespace.virsh("version")
            daemons.update(namespace.daemons)
            pool_existed = "default" in namespace.names("pool-list", "--all")
            cleanup.callback(lambda: _clean_libvirt(namespace, pool_existed))
            _clean_libvirt(namespace, pool_existed=True)  # a killed earlier run's
            networks_before = set(namespace.names("net-list"))

            inner_status, lines = _run_inner(
                namespace,
                vagrant_home,
                [
                    *_cluster_args(box, 3),
                    "examples/",
                    str(CHECKS.relative_to(REPO)),
                    str(UNITS_SUITE.relative_to(REPO)),
                ],
                log,
            )
            left = _leftovers(namespace, networks_before)

            # Ctrl-C while the VM boots: the session stops Vagrant and destroys the VM.
            interrupted = _run_inner(
                namespace,
                vagrant_home,
                [*_cluster_args(box, 1), f"{CHECKS.relative_to(REPO)}::{PROBE}"],
                tmp_path / "interrupted.log",
                signal_when=(r"coreos: core-01: booting", signal.SIGINT),
            )
            left_interrupted = _leftovers(namespace, networks_before)

            # kill -9 while the VM boots: the next run's --coreos-reap removes the VM.
            killed = _run_inner(
                namespace,
                vagrant_home,
                [*_cluster_args(box, 1), f"{CHECKS.relative_to(REPO)}::{PROBE}"],
                tmp_path / "killed.log",
                signal_when=(r"coreos: core-01: booting", signal.SIGKILL),
            )
            left_killed = _leftovers(namespace, networks_before)
            reaped = _run_inner(namespace, vagrant_home, ["--coreos-reap"], tmp_path / "reap.log")
            left_reaped = _leftovers(namespace, networks_before)
    finally:
        shutil.rmtree(vagrant_home, ignore_errors=True)

    output = "\n".join(line for _, line in lines)
    up = _seconds(lines, r"coreos: vagrant up finished in ([\d.]+)s")
    ready = _seconds(lines, r"ready: .*\bready ([\d.]+)s")
    destroy = _seconds(lines, r"coreos: vagrant destroy finished in ([\d.]+)s")
    timings["vagrant up (3 VMs)"] = f"{up}s"
    timings["ready after up"] = f"{ready}s"
    timings["vagrant destroy"] = f"{destroy}s"
    timings["inner session"] = f"{lines[-1][0]:.1f}s" if lines else "-"
    with capsys.disabled():
        print("\nvagrant e2e timings: " + ", ".join(f"{k} {v}" for k, v in timings.items()))

    assert inner_status == 0, f"the inner pytest failed ({log}):\n{output[-6000:]}"
    summary = lines[-1][1] if lines else ""
    assert re.search(r"\d+ passed", summary), output[-3000:]
    assert "skipped" not in summary, output[-3000:]
    assert left == [], f"left in libvirt after the inner run: {left}"

    interrupted_output = "\n".join(line for _, line in interrupted[1])
    assert interrupted[0] == 2, interrupted_output[-3000:]  # pytest's "interrupted"
    assert "vagrant destroy finished" in interrupted_output, interrupted_output[-3000:]
    assert left_interrupted == [], f"left after an interrupted vagrant up: {left_interrupted}"

    assert killed[0] == -signal.SIGKILL
    assert any(name.startswith("domain pytest-coreos-") for name in left_killed), left_killed
    reaped_output = "\n".join(line for _, line in reaped[1])
    assert reaped[0] == 0, reaped_output[-3000:]
    assert re.search(
        r"coreos: reaped (libvirt domain pytest-coreos-\S+-core-01|vagrant machines in /)",
        reaped_output,
    ), reaped_output[-3000:]
    assert left_reaped == [], f"left after --coreos-reap: {left_reaped}"
    assert (
        namespace.name
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert not namespace.daemons
    for daemon, pid in daemons.items():
        assert not _alive(pid), f"{daemon} (pid {pid}) still runs"
    assert not _processes(r"qemu-system-x86_64 .*guest=pytest-coreos-")
    assert set(_processes(r"dnsmasq .*libvirt")) <= dnsmasq_before
