"""What the Vagrant end-to-end tests share: a network namespace of their own with libvirtd
and virtlogd in it, the stand-in box, and an inner pytest run inside the namespace.

Everything that talks to the VMs' addresses happens inside that namespace. At the end
(always) the namespace, the daemons, every domain, volume and network are gone;
:func:`assert_lab_gone` checks it. Tests get these helpers from the ``e2e`` fixture.
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
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER_DATA = Path(__file__).resolve().parent / "data" / "user-data"
URI = "qemu:///system"
# The stand-in box's image in libvirt's pool, as vagrant-libvirt names it: the box is added
# as coreos-<channel> at version 1000.N.0 (pytest_coreos.providers.vagrant.box).
STAND_IN_BOX_VOLUME = re.compile(r"^coreos-[a-z]+_vagrant_box_image_1000\.\d+\.0_")
INNER_TIMEOUT = 45 * 60
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


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("the vagrant e2e test runs as root (network namespaces, libvirtd)")
    missing = [f"{tool} ({package})" for tool, package in NEEDED.items() if not which(tool)]
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
        pid = pid_from(Path(f"/run/{daemon}.pid"))
        if pid is not None and alive(pid):
            pytest.fail(
                f"a {daemon} already runs on this host (pid {pid}); this test starts its own "
                "inside a network namespace, so that no VM traffic reaches the host's networks"
            )


def which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")


def pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes(pattern: str) -> list[str]:
    """Processes whose command line matches ``pattern``: ``pid: command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            cmdline = command_line(int(entry.name))
            if re.search(pattern, cmdline) and alive(int(entry.name)):
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
            pid = pid_from(pid_file)
            if pid is not None and alive(pid) and daemon in command_line(pid):
                self.daemons[daemon] = pid
                return
            time.sleep(0.1)
        raise AssertionError(f"{daemon} did not start in {self.name}")

    def stop_daemons(self) -> None:
        for daemon, pid in reversed(list(self.daemons.items())):
            if not alive(pid) or daemon not in command_line(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.daemons.clear()


@contextlib.contextmanager
def kvm_device_for_libvirt() -> Iterator[None]:
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


def build_box() -> tuple[Path, float, str]:
    started = time.monotonic()
    built = subprocess.run(
        [str(REPO / "box" / "build-box")], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    if built.returncode != 0:
        pytest.fail(f"box/build-box failed:\n{built.stderr[-3000:]}")
    how = "cached" if "build-box: cached" in built.stderr else "built"
    return Path(built.stdout.strip().splitlines()[-1]), seconds, how


def run_inner(
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
            # A shell's background job ignores SIGINT and children inherit that: the inner
            # session takes Ctrl-C (signal_when, and the clean-up below) whatever ran this.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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


def cluster_args(box: Path, instances: int) -> list[str]:
    return [
        "--coreos-provider=vagrant",
        "--coreos-vagrant-provider=libvirt",
        "--coreos-discovery=local",
        f"--coreos-instances={instances}",
        f"--coreos-box={box}",
        f"--coreos-user-data={USER_DATA}",
        "--coreos-boot-timeout=300",
    ]


def seconds(lines: list[tuple[float, str]], pattern: str) -> float | None:
    for _, line in lines:
        match = re.search(pattern, line)
        if match:
            return float(match.group(1))
    return None


def leftovers(namespace: Namespace, networks_before: set[str]) -> list[str]:
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
    left += [f"process {line}" for line in processes(r"qemu-system-x86_64 .*guest=pytest-coreos-")]
    return left


def clean_libvirt(namespace: Namespace, pool_existed: bool) -> None:
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
            if volume.startswith("pytest-coreos-") or STAND_IN_BOX_VOLUME.match(volume):
                namespace.virsh("vol-delete", volume, "--pool", "default", check=False)
        if not pool_existed:
            namespace.virsh("pool-destroy", "default", check=False)
            namespace.virsh("pool-undefine", "default", check=False)
    for network in namespace.names("net-list"):
        namespace.virsh("net-destroy", network, check=False)


@contextlib.contextmanager
def libvirt_host_files() -> Iterator[None]:
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


class Lab:
    """One test's network namespace with libvirtd and virtlogd of its own, a Vagrant home,
    and what libvirt had before (to tell what a run left)."""

    def __init__(self, namespace: Namespace, vagrant_home: Path) -> None:
        self.namespace = namespace
        self.vagrant_home = vagrant_home
        self.networks_before: set[str] = set()
        self.daemons: dict[str, int] = {}
        self.pool_existed = True

    def run_inner(
        self,
        args: list[str],
        log: Path,
        *,
        signal_when: tuple[str, signal.Signals] | None = None,
    ) -> tuple[int, list[tuple[float, str]]]:
        return run_inner(self.namespace, self.vagrant_home, args, log, signal_when=signal_when)

    def leftovers(self) -> list[str]:
        return leftovers(self.namespace, self.networks_before)


@contextlib.contextmanager
def open_lab() -> Iterator[Lab]:
    """A lab, torn down whole when the block ends, however it ends."""
    namespace = Namespace(f"pytest-coreos-e2e-{secrets.token_hex(3)}")
    # A home as Debian's adduser makes it (mode 0700), Vagrant's folder inside: libvirt's
    # QEMU user cannot enter it, as on a user's machine.
    home = Path(tempfile.mkdtemp(prefix="pytest-coreos-e2e-home-", dir="/var/tmp"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    vagrant_home = home / ".vagrant.d"
    lab = Lab(namespace, vagrant_home)
    try:
        with contextlib.ExitStack() as cleanup:
            subprocess.run(["ip", "netns", "add", namespace.name], check=True)
            cleanup.callback(subprocess.run, ["ip", "netns", "delete", namespace.name], check=False)
            namespace.run("ip", "link", "set", "lo", "up")
            cleanup.enter_context(kvm_device_for_libvirt())
            cleanup.enter_context(libvirt_host_files())
            cleanup.callback(namespace.stop_daemons)
            namespace.start_daemon("virtlogd")
            namespace.start_daemon("libvirtd")
            namespace.virsh("version")
            lab.daemons.update(namespace.daemons)
            lab.pool_existed = "default" in namespace.names("pool-list", "--all")
            cleanup.callback(lambda: clean_libvirt(namespace, lab.pool_existed))
            clean_libvirt(namespace, pool_existed=True)  # a killed earlier run's
            lab.networks_before = set(namespace.names("net-list"))
            yield lab
    finally:
        shutil.rmtree(home, ignore_errors=True)


def assert_lab_gone(lab: Lab) -> None:
    """After :func:`open_lab`: no namespace, daemon or VM of the lab is left."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert lab.namespace.name not in listed.stdout
    assert not lab.namespace.daemons
    for daemon, pid in lab.daemons.items():
        assert not alive(pid), f"{daemon} (pid {pid}) still runs"
    assert not processes(r"qemu-system-x86_64 .*guest=pytest-coreos-")


@pytest.fixture
def e2e() -> types.SimpleNamespace:
    """The helpers above, after checking that this machine can run them (root, the Debian
    packages, no libvirtd of the host's own)."""
    check_prerequisites()
    return types.SimpleNamespace(
        REPO=REPO,
        open_lab=open_lab,
        assert_lab_gone=assert_lab_gone,
        build_box=build_box,
        cluster_args=cluster_args,
        seconds=seconds,
        processes=processes,
    )
