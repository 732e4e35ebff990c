"""The qemu provider end to end: real QEMU VMs of the stand-in box (TCG on this machine),
each on a tap of its machine's namespace in a network lab, configured as Flatcar's and
CoreOS's QEMU images are (a ``config-2`` 9p share, or Ignition in the firmware config).

An inner session runs the example suite, the systemd units suite, ``qemu_checks.py``
(config drive, network, QMP pause, power cut, ACPI power-off, partition) and, last,
``vagrant_reset_checks.py`` (``cluster.reset()`` on VMs) against 3 VMs with the seed's
user-data (the Vagrant e2e's, see :func:`vm_user_data`); another runs the real-fleet
suite (with ``$PYTEST_COREOS_FLEET``, as for nspawn). One VM boots from Ignition;
one killed pytest leaves what the next run reaps. Select them with ``-m qemu_e2e``; they
need root and take several minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pytest_coreos.host.netns import lab_namespaces

pytestmark = [pytest.mark.qemu_e2e, pytest.mark.needs_root("VMs in network namespaces")]

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Files, not the examples/ folder: pytest drops a file argument that lies in a folder
# argument, and the folder collects only test_*.py.
SUITE = [
    REPO / "examples" / "test_etcd_cluster.py",
    REPO / "examples" / "systemd" / "check_units.py",
    HERE / "qemu_checks.py",
]
# The real-fleet suite users run on nspawn, unchanged on VMs; the release as for nspawn
# (the fleet_release fixture: $PYTEST_COREOS_FLEET).
FLEET_SUITE = REPO / "examples" / "fleet" / "check_fleet.py"
RESET_CHECKS = HERE / "vagrant_reset_checks.py"  # last: it puts etcd's data back
E2E_USER_DATA = HERE / "data" / "user-data"
BOOT_TIMEOUT = "300"  # three TCG VMs on two shared cores


def qemu_processes(under: Path) -> list[int]:
    """The QEMU processes of the clusters under ``under`` (their command lines name it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if cmdline[0].endswith("qemu-system-x86_64") and str(under) in " ".join(cmdline):
            found.append(int(entry.name))
    return found


def vm_user_data(folder: Path) -> Path:
    """The Vagrant e2e's user-data (the seed's, with etcd and fleet timings that hold under
    TCG, and the units suite's hello.service) without its container unit: the qemu
    provider takes no ``--coreos-images`` yet, and that unit pulls an image."""
    user_data = yaml.safe_load(E2E_USER_DATA.read_text())
    units = user_data["coreos"]["units"]
    user_data["coreos"]["units"] = [unit for unit in units if unit["name"] != "myapp.service"]
    path = folder / "user-data"
    path.write_text("#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False))
    return path


def run_three_vms(inner: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An inner session of 3 qemu VMs with :func:`vm_user_data`, running ``args``; it
    failed nothing, skipped nothing, and left no QEMU and no lab."""
    before = set(lab_namespaces())
    result = inner.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--coreos-provider=qemu", "--coreos-instances=3",
        f"--coreos-user-data={vm_user_data(inner.path)}",
        f"--coreos-boot-timeout={BOOT_TIMEOUT}", *args, timeout=30 * 60,
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    failures = (outcomes.get("failed", 0), outcomes.get("errors", 0))
    assert failures == (0, 0), result.stdout.str()
    assert "skipped" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*qemu TCG*"])  # the accelerator, in the report header
    assert qemu_processes(inner.path) == []
    assert set(lab_namespaces()) <= before
    return result


def test_three_vms_pass_the_examples_faults_units_and_a_reset(inner: pytest.Pytester) -> None:
    result = run_three_vms(inner, *map(str, SUITE), str(RESET_CHECKS))
    assert result.parseoutcomes()["passed"] >= 18  # examples 7, units 4, qemu 6, reset 1
    result.stdout.fnmatch_lines([
        "*check_units.py::test_a_unit_deployed_from_a_test_runs_on_every_machine PASSED*",
        "*qemu_checks.py::test_a_suspended_member_comes_back PASSED*",
        # ran (no failure, error or skip above): its timings line stands before PASSED
        "*vagrant_reset_checks.py::test_a_reset_returns_the_vms_to_the_state_kept*",
        "vagrant reset: {*}",
    ])  # fmt: skip


def test_three_vms_pass_the_fleet_suite(inner: pytest.Pytester, fleet_release: str) -> None:
    """A session of its own: fleet keeps writing etcd keys that listings hide, so a reset
    beside it always puts every member's data back, never resets in place."""
    result = run_three_vms(inner, f"--coreos-fleet={fleet_release}", str(FLEET_SUITE))
    result.stdout.fnmatch_lines(
        ["*check_fleet.py::test_fleet_moves_the_units_of_a_lost_machine PASSED*"]
    )


def test_a_vm_boots_from_ignition_in_the_firmware_config(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(
        provider="qemu", config="ignition", instances=1, boot_timeout=float(BOOT_TIMEOUT)
    ) as cluster:
        machine = cluster["core-01"]
        assert machine.ssh.username == "core"
        assert machine.ssh.run(["hostname"]).stdout.strip() == "core-01"
        raw = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-linux/config/raw"
        config = json.loads(machine.ssh.run(["sudo", "cat", raw]).stdout)
        assert config["ignition"]["version"].startswith("3.")
        assert machine.systemd.status("etcd-member.service").active_state == "active"
        addresses = machine.ssh.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"inet {machine.private_ipv4}/24" in addresses
        assert [member.name for member in cluster.etcd.members()] == ["core-01"]
        workdir = cluster.workdir
    assert qemu_processes(workdir) == []


HOLD = """
import json, os, time

def test_hold(coreos_cluster):
    with open(os.environ["RECORD"] + ".tmp", "w") as out:
        json.dump({"pids": coreos_cluster.pids,
                   "namespaces": coreos_cluster.deployment.describe()["namespaces"]}, out)
    os.rename(os.environ["RECORD"] + ".tmp", os.environ["RECORD"])
    time.sleep(600)
"""


def test_a_killed_pytest_takes_its_qemu_along_and_the_next_run_reaps_the_lab(inner) -> None:
    inner.makepyfile(test_hold=HOLD)
    record = inner.path / "record.json"
    env = {**os.environ, "RECORD": str(record)}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--coreos-provider=qemu", "--coreos-instances=1", f"--coreos-boot-timeout={BOOT_TIMEOUT}"],
        cwd=inner.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + float(BOOT_TIMEOUT) + 60
    while not record.exists():
        assert run.poll() is None, run.communicate()[0]
        assert time.monotonic() < deadline, "the cluster never booted"
        time.sleep(0.1)
    held = json.loads(record.read_text())
    assert held["pids"] == qemu_processes(inner.path)
    assert set(held["namespaces"]) <= set(lab_namespaces())
    run.kill()
    run.communicate(timeout=30)
    deadline = time.monotonic() + 10  # QEMU dies with it (its parent-death signal)
    while qemu_processes(inner.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert qemu_processes(inner.path) == []
    reap = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--coreos-reap"],
        cwd=inner.path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert not set(held["namespaces"]) & set(lab_namespaces())


SHARED = """
import json, os, pytest

@pytest.mark.parametrize("n", range(8))
def test_share(coreos_cluster, n):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "none")
    coreos_cluster.etcd.set(f"/seen/{worker}/{n}", "1")
    machine = coreos_cluster["core-01"]
    with open(os.path.join(os.environ["RECORD_DIR"], f"{worker}-{n}.json"), "w") as out:
        json.dump({"pids": coreos_cluster.pids, "boot": machine.ssh.run(
            ["cat", "/proc/sys/kernel/random/boot_id"]).stdout}, out)
    if n == 7:  # a fault from whichever worker runs it: the VM is the same for both
        machine.pause()
        machine.resume()
        coreos_cluster.wait_until_healthy()
"""


def test_xdist_workers_share_one_cluster_of_vms(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = inner.path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    inner.makepyfile(SHARED)
    before = set(lab_namespaces())
    result = inner.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "--coreos-provider=qemu", "--coreos-instances=1",
        f"--coreos-boot-timeout={BOOT_TIMEOUT}", timeout=15 * 60,
    )  # fmt: skip
    result.assert_outcomes(passed=8)
    seen = [json.loads(path.read_text()) for path in records.glob("*.json")]
    assert {path.name.split("-")[0] for path in records.glob("*.json")} == {"gw0", "gw1"}
    assert len({(tuple(record["pids"]), record["boot"]) for record in seen}) == 1
    assert qemu_processes(inner.path) == []
    assert set(lab_namespaces()) <= before
