"""How fast the stand-in box can boot on this machine at all: the floor under ``vagrant up``.

Boots ``N`` copies of the stand-in box at once straight under QEMU's TCG (the box's own
kernel, initrd, command line and disk; the machine type, CPU model, memory and vCPU count
of the plugin's Vagrantfile, with QEMU's default devices of that machine type), without
libvirt or Vagrant, and reports when each machine's sshd first answers with its banner,
counted from the start of the batch. Nothing of Vagrant's own (domain definition, waiting
for the DHCP lease, the SSH logins, the provisioners) and nothing of the cluster (etcd) is
in these figures: they are what any ``vagrant up`` of that many machines pays before
Vagrant's first SSH command.

    scripts/run python benchmarks/box_boot.py [--sizes 1 3] [--runs 3] [--box PATH] [--json PATH]

``--box`` is a built stand-in box (``<cache>/<hash>.box``); by default the project's
builder makes or finds it (``box/build-box``). Each machine has QEMU's user-mode network,
restricted (``restrict=on``: the guest reaches nothing outside QEMU; its DHCP server is
QEMU's own), with its SSH port forwarded to a free port on 127.0.0.1, and a throw-away
overlay over the box's disk (``-snapshot``). Every QEMU is stopped and the unpacked box
removed at the end, also when the benchmark is interrupted or terminated; a QEMU whose
benchmark is killed outright dies with it (``setpriv --pdeathsig``, as the plugin starts
its processes), and the next run removes the folder a killed one left.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD_BOX = ROOT / "box" / "build-box"
# As the plugin's Vagrantfile asks libvirt for them (providers/vagrant/pytest-coreos.rb).
QEMU = ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-cpu", "qemu64", "-m", "512",
        "-smp", "1", "-nographic", "-monitor", "none", "-snapshot"]  # fmt: skip
SETPRIV = shutil.which("setpriv")
BANNER = b"SSH-2.0-"
TIMEOUT = 600.0
PREFIX = "pytest-coreos-box-boot-"


def find_box() -> Path:
    """The stand-in box of this checkout's inputs, built if it is not cached yet."""
    done = subprocess.run([str(BUILD_BOX), "box"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"build-box failed:\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def unpack(box: Path, folder: Path) -> str:
    """Unpack the box into ``folder``; the kernel command line its Vagrantfile gives."""
    with tarfile.open(box) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            archive.extractall(folder, filter="data")
        else:
            archive.extractall(folder)
    vagrantfile = (folder / "Vagrantfile").read_text()
    found = re.search(r'cmd_line\s*=\s*"([^"]*)"', vagrantfile)
    if found is None:
        raise SystemExit(f"{box}: its Vagrantfile gives no libvirt.cmd_line")
    return found.group(1)


def remove_left_folders() -> None:
    """Remove the unpacked boxes of runs that were killed (their benchmark is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    """Whether an sshd answers on 127.0.0.1:port with its banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.settimeout(2)
            return connection.recv(len(BANNER)) == BANNER
    except OSError:
        return False


def one_batch(folder: Path, cmd_line: str, size: int) -> list[float]:
    """Boot ``size`` machines at once; seconds from the start to each one's SSH banner,
    slowest last."""
    ports = [free_port() for _ in range(size)]
    processes: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    try:
        for index, port in enumerate(ports):
            argv = [*QEMU, "-kernel", str(folder / "vmlinuz"), "-initrd",
                    str(folder / "initrd.img"), "-append", cmd_line,
                    "-drive", f"file={folder / 'box.img'},if=virtio,format=qcow2",
                    "-netdev", f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
                    "-device", "virtio-net-pci,netdev=net0",
                    "-serial", f"file:{folder / f'serial-{index}.log'}"]  # fmt: skip
            if SETPRIV is not None:
                argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
            processes.append(
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip
        times: dict[int, float] = {}
        while len(times) < size:
            elapsed = time.monotonic() - started
            if elapsed > TIMEOUT:
                missing = size - len(times)
                raise SystemExit(f"{missing} machine(s) gave no SSH banner in {TIMEOUT:.0f} s")
            for index, (port, process) in enumerate(zip(ports, processes, strict=True)):
                if index in times:
                    continue
                if process.poll() is not None:
                    raise SystemExit(f"QEMU of machine {index} exited with {process.returncode}")
                if answers(port):
                    times[index] = time.monotonic() - started
            time.sleep(0.2)
        return sorted(times.values())
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--box", type=Path, help="a built stand-in box (default: build-box's)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    # Terminated, it stops its machines and removes the unpacked box as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    box = options.box or find_box()
    results: dict[str, Any] = {"box": box.name, "runs": options.runs, "sizes": {}}
    remove_left_folders()
    with tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        folder = Path(tmp)
        (folder / "pid").write_text(f"{os.getpid()}\n")
        cmd_line = unpack(box, folder)
        for size in options.sizes:
            slowest = []
            for run in range(options.runs):
                times = one_batch(folder, cmd_line, size)
                load = os.getloadavg()[0]
                at = ", ".join(f"{t:.1f}" for t in times)
                print(f"{size} machine(s), run {run + 1}: SSH at {at} s (load {load:.1f})")
                slowest.append(times[-1])
            results["sizes"][str(size)] = {"slowest_s": slowest,
                                           "median_s": statistics.median(slowest)}  # fmt: skip
    print(f"\nstand-in box {box.name}, QEMU TCG, medians of {options.runs}:")
    print("| machines booted at once | slowest machine's SSH banner |")
    print("| --- | --- |")
    for size, figures in results["sizes"].items():
        print(f"| {size} | {figures['median_s']:.1f} s |")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
