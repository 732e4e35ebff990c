"""The nspawn provider on real systemd-nspawn containers of the stand-in rootfs (root only,
as CI runs): each booted machine runs systemd, sshd and etcd, inside a network lab that
the plugin reaches only from the lab's hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_coreos import BootTimeoutError, EtcdError
from pytest_coreos.host.netns import lab_namespaces

EXAMPLES = Path(__file__).parents[2] / "examples" / "test_etcd_cluster.py"

# Only root can run containers; as root a missing systemd-nspawn is a failure to see
# (scripts/bootstrap installs systemd-container), not a reason to skip.


def nspawn_processes(under: Path | str) -> dict[int, list[str]]:
    """The systemd-nspawn processes of the clusters under ``under`` (their bind mounts
    name it), by PID, with their command lines: other tests may run containers too."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if cmdline[0].endswith("systemd-nspawn") and str(under) in " ".join(cmdline):
                found[int(entry.name)] = cmdline
    return found


def container_cgroup(pid: int) -> Path:
    """The folder, in the unified (v2) hierarchy, of the cgroup systemd-nspawn ``pid`` was
    started in: it moves itself to its ``supervisor`` child, the container to ``payload``."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            path = line.removeprefix("0::").lstrip("/")
            unified = Path("/sys/fs/cgroup/unified")
            mount = unified if (unified / "cgroup.procs").exists() else Path("/sys/fs/cgroup")
            cgroup = mount / path
            return cgroup.parent if cgroup.name == "supervisor" else cgroup
    raise AssertionError(f"process {pid} has no unified cgroup")


def lab_of(processes: dict[int, list[str]]) -> set[str]:
    """The network namespaces of the containers' lab, its hub included."""
    prefix = "--network-namespace-path=/run/netns/"
    machines = {
        arg.removeprefix(prefix)
        for cmdline in processes.values()
        for arg in cmdline
        if arg.startswith(prefix)
    }
    return machines | {name.rsplit("-core-", 1)[0] + "-hub" for name in machines}


@pytest.mark.unprivileged
def test_without_root_the_provider_says_so(run_unprivileged) -> None:
    result = run_unprivileged(
        """
        import os, pytest
        from pytest_coreos import ConfigError

        def test_refused(coreos_cluster_factory):
            assert os.geteuid() != 0
            with pytest.raises(ConfigError, match="--coreos-provider: nspawn needs root"):
                coreos_cluster_factory(instances=1, provider="nspawn")
        """
    )
    assert result.uid != 0
    assert result.returncode == 0, result.output
    assert "1 passed" in result.output


@pytest.mark.needs_root
def test_a_cluster_of_containers_boots_survives_a_kill_and_leaves_nothing(
    coreos_cluster_factory,
) -> None:
    with coreos_cluster_factory(instances=3, provider="nspawn") as cluster:
        print(f"nspawn cluster of 3 ready in {cluster.timings['total']:.2f}s: {cluster.timings}")
        for machine in cluster.machines:
            assert machine.ssh.run("hostname").stdout == machine.name + "\n"
            assert machine.ssh.run(["systemctl", "is-active", "etcd", "ssh"]).ok
            # A container of its own: systemd is PID 1 there.
            assert machine.ssh.run("cat /proc/1/comm").stdout == "systemd\n"
            # What a container has no use for is masked, and nothing failed for it.
            masked = machine.ssh.run(
                "systemctl is-enabled networking.service serial-getty@ttyS0.service",
                check=False,
            )
            assert masked.stdout == "masked\nmasked\n"
            generators = machine.ssh.run("ls /etc/systemd/system-generators").stdout.split()
            assert "systemd-fstab-generator" in generators
            assert machine.ssh.run("systemctl list-units --failed --no-legend").stdout == ""
            # Docker as on CoreOS: its socket listens, the engine waits for a docker command.
            engine = "systemctl is-active docker.socket docker.service containerd.service"
            assert machine.ssh.run(engine, check=False).stdout == "active\ninactive\ninactive\n"
        assert len(cluster.etcd.members()) == 3
        containers = nspawn_processes(cluster.workdir)
        assert len(containers) == 3
        namespaces = lab_of(containers)
        assert len(namespaces) == 4
        assert namespaces <= set(lab_namespaces())
        victim = cluster["core-03"]
        victim.kill()
        assert not victim.running
        cluster.wait_until_healthy()
        cluster["core-01"].etcd.set("/after-kill", "yes")
        assert cluster["core-02"].etcd.get("/after-kill") == "yes"
        with pytest.raises(EtcdError):
            victim.etcd.get("/after-kill")
        # Booted again, it rejoins with its own data (its etcd folder outlives the boot).
        victim.start()
        cluster.wait_until_healthy(timeout=60)
        assert victim.etcd.get("/after-kill") == "yes"
        assert victim.ssh.run("hostname").stdout == "core-03\n"
        pids = cluster.pids
    assert not [pid for pid in pids if _alive(pid)]
    assert nspawn_processes(cluster.workdir) == {}
    assert not namespaces & set(lab_namespaces())


@pytest.mark.needs_root
def test_stop_start_and_pause_resume_a_container(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=3, provider="nspawn") as cluster:
        machine = cluster["core-02"]
        machine.stop()  # a clean shutdown of the container's systemd
        assert not machine.running
        cluster.etcd.set("/while-stopped", "1")
        machine.start()
        cluster.wait_until_healthy(timeout=60)
        assert machine.etcd.get("/while-stopped") == "1"
        machine.pause()
        with pytest.raises(BootTimeoutError, match="core-02"):
            cluster.wait_until_healthy(timeout=1)
        machine.resume()
        cluster.wait_until_healthy(timeout=60)
        # The container's own journal (its hostname), with etcd serving again.
        assert [
            line
            for line in machine.logs(200).replace("\\", "").splitlines()
            if " core-02 " in line and "ready to serve client requests" in line
        ]


@pytest.mark.needs_root
def test_the_user_test_file_passes_against_containers(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_examples=EXAMPLES.read_text())
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn", "--coreos-instances=3", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=7)
    assert nspawn_processes(inner.path) == {}


@pytest.mark.needs_root
def test_a_killed_pytest_leaves_containers_that_the_next_run_reaps(inner) -> None:
    """SIGKILL to pytest ends systemd-nspawn (pdeathsig) but not the container's init,
    which outlives it: the state record names that too, and --coreos-reap ends it."""
    inner.makepyfile(test_hold=HOLD)
    record = inner.path / "record.json"
    env = {**os.environ, "RECORD": str(record)}
    env.pop("PYTEST_ADDOPTS", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--coreos-provider=nspawn", "--coreos-instances=2"],
        cwd=inner.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not record.exists():
        assert run.poll() is None, run.communicate()[0]
        assert time.monotonic() < deadline, "the cluster never booted"
        time.sleep(0.05)
    pids = json.loads(record.read_text())["pids"]
    assert len(pids) == 4  # systemd-nspawn and the container's init, per machine
    namespaces = lab_of(nspawn_processes(inner.path))
    assert len(namespaces) == 3
    cgroups = [container_cgroup(pid) for pid in nspawn_processes(inner.path)]
    run.kill()
    run.communicate(timeout=30)
    reap = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--coreos-reap"],
        cwd=inner.path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert reap.returncode == 0, reap.stdout + reap.stderr
    deadline = time.monotonic() + 10
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if _alive(pid)]
    assert nspawn_processes(inner.path) == {}
    assert not namespaces & set(lab_namespaces())
    assert not [cgroup for cgroup in cgroups if cgroup.exists()]


@pytest.mark.needs_root
def test_each_container_has_a_cgroup_of_its_own(coreos_cluster_factory) -> None:
    """Containers started from one process would share its cgroup, and with it every
    unit's: the same unit in two containers would be one cgroup, which each systemd
    creates and removes under the other's feet (units failing with 219/CGROUP)."""
    with coreos_cluster_factory(instances=2, provider="nspawn") as cluster:
        cgroups = [container_cgroup(pid) for pid in nspawn_processes(cluster.workdir)]
        assert sorted(cgroup.name for cgroup in cgroups) == sorted(
            name for name in lab_of(nspawn_processes(cluster.workdir)) if not name.endswith("hub")
        )
        for cgroup in cgroups:  # each container's systemd runs its etcd in its own tree
            assert list(cgroup.glob("payload/system.slice/etcd.service"))
    assert not [cgroup for cgroup in cgroups if cgroup.exists()]


HOLD = """
import json, os, time

def test_hold(coreos_cluster):
    with open(os.environ["RECORD"] + ".tmp", "w") as out:
        json.dump({"pids": coreos_cluster.pids}, out)
    os.rename(os.environ["RECORD"] + ".tmp", os.environ["RECORD"])
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
