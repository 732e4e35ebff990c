"""The Cluster and Machine handles on real local clusters: sizes, faults, SSH files, and
what a boot leaves on disk."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from pytest_coreos import BootTimeoutError, Cluster, EtcdError
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.host.addresses import claim_block, lock_directory
from pytest_coreos.host.process import descendants_of
from pytest_coreos.providers.local.machines import joins_statically
from pytest_coreos.session import readiness


@pytest.mark.parametrize("instances", [1, 3, 5])
def test_clusters_of_each_size_are_ready_and_agree(coreos_cluster_factory, instances) -> None:
    with coreos_cluster_factory(instances=instances) as cluster:
        assert len(cluster) == cluster.size == instances
        assert [m.name for m in cluster] == [f"core-{i:02d}" for i in range(1, instances + 1)]
        cluster.etcd.set("/size", str(instances))
        for machine in cluster:
            assert sorted(m.name for m in machine.etcd.members()) == [m.name for m in cluster]
            assert machine.etcd.get("/size") == str(instances)
            assert machine.ssh.run("echo $SSH_CONNECTION").stdout.split()[2] == (
                machine.private_ipv4
            )


def test_rendered_config_is_in_the_workdir(coreos_cluster: Cluster) -> None:
    text = coreos_cluster.user_data_path.read_text()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    etcd = data["coreos"]["etcd"]
    assert etcd["discovery"] == coreos_cluster.discovery_url
    assert etcd["addr"] == "$public_ipv4:4001"
    assert etcd["peer-addr"] == "$public_ipv4:7001"
    assert data["coreos"]["fleet"]["public-ip"] == "$public_ipv4"
    assert [u["name"] for u in data["coreos"]["units"]] == ["etcd.service", "fleet.service"]
    config_rb = coreos_cluster.config_rb_path.read_text()
    assert f"$num_instances={coreos_cluster.size}" in config_rb
    assert '$update_channel="stable"' in config_rb
    # The seed's etcd 0.4 addresses, with $public_ipv4 being each machine's own address.
    for machine in coreos_cluster:
        assert machine.etcd_endpoints == (f"http://{machine.private_ipv4}:4001",)
        env = (coreos_cluster.workdir / "machines" / machine.name / "etcd.env").read_text()
        assert f"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{machine.private_ipv4}:7001" in env
        assert "ETCD_DISCOVERY_FALLBACK=exit" in env


def test_machines_are_found_by_name_and_index(coreos_cluster: Cluster) -> None:
    assert coreos_cluster["core-01"] is coreos_cluster[0] is coreos_cluster.machines[0]
    with pytest.raises(KeyError, match="no machine 'core-99' in this cluster"):
        coreos_cluster["core-99"]


def test_files_go_both_ways_over_sftp(coreos_cluster: Cluster, tmp_path: Path) -> None:
    machine = coreos_cluster["core-01"]
    remote = str(coreos_cluster.workdir / "sftp-test.txt")
    machine.ssh.write_text(remote, "written over sftp\n", mode=0o600)
    assert machine.ssh.read_text(remote) == "written over sftp\n"
    machine.ssh.get(remote, tmp_path / "copy.txt")
    assert (tmp_path / "copy.txt").read_text() == "written over sftp\n"
    assert machine.ssh.run(["stat", "-c", "%a", remote]).stdout.strip() == "600"


def test_a_killed_member_leaves_a_writable_quorum_and_rejoins(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=3) as cluster:
        victim = cluster["core-03"]
        victim.kill()
        assert not victim.running
        cluster.wait_until_healthy()  # until the others have a running leader again
        cluster["core-01"].etcd.set("/after-kill", "yes")
        assert cluster["core-02"].etcd.get("/after-kill") == "yes"
        with pytest.raises(EtcdError):
            victim.etcd.get("/after-kill")
        victim.start()
        cluster.wait_until_healthy(timeout=30)
        assert victim.etcd.get("/after-kill") == "yes"
        assert victim.ssh.run("true").ok


def test_stop_start_and_pause_resume(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=3) as cluster:
        machine = cluster["core-02"]
        machine.stop()
        assert not machine.running
        cluster.etcd.set("/while-stopped", "1")
        machine.start()
        cluster.wait_until_healthy(timeout=30)
        assert machine.etcd.get("/while-stopped") == "1"

        machine.pause()
        with pytest.raises(BootTimeoutError) as raised:
            cluster.wait_until_healthy(timeout=1)
        assert "core-02: etcd not answering" in str(raised.value)
        assert any("core-02 etcd log" in note for note in raised.value.__notes__)
        machine.resume()
        cluster.wait_until_healthy(timeout=30)
        assert "ready to serve client requests" in machine.logs(200).replace("\\", "")


def test_teardown_kills_every_process_and_ssh_child(coreos_cluster_factory) -> None:
    cluster = coreos_cluster_factory(instances=2)
    # Connections of clients the cluster does not own: closing its own handles cannot
    # end them, only teardown can. Each is served by sshd children that left sshd's
    # process group (setsid), so killing the group alone would miss them.
    outsiders = [
        SSHClient(
            machine.ssh.host,
            machine.ssh.port,
            machine.ssh.username,
            machine.ssh.private_key,
            host_keys=machine.ssh.host_keys,
        )
        for machine in cluster
    ]
    try:
        for machine, outsider in zip(cluster, outsiders, strict=True):
            machine.ssh.run("true")
            assert outsider.run("echo open").stdout == "open\n"
        pids = cluster.pids
        assert len(pids) == 4
        ssh_children = [pid for pid in descendants_of(pids) if _command(pid).startswith("sshd")]
        assert len(ssh_children) >= 4, ssh_children  # at least one per connection
        commands = {pid: _command(pid) for pid in [*pids, *ssh_children]}
        cluster.close()
        # SIGKILLed children need a moment to be gone; without teardown they never are.
        deadline = time.monotonic() + 5
        while (left := [pid for pid in commands if _still_runs(pid)]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.01)
        left = [f"{pid}: {commands[pid].strip()}" for pid in left]
        assert not left, "still running after teardown:\n" + "\n".join(left)
        assert not cluster.pids
    finally:
        for outsider in outsiders:
            outsider.close()


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _still_runs(pid: int) -> bool:
    """True unless the process is gone or a zombie (dead, only not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_address_blocks_are_exclusive_and_leave_no_lock_files() -> None:
    first = claim_block(3, [2379])
    second = claim_block(3, [2379])
    assert first.network != second.network
    lock = lock_directory() / f"127.{first.a}.{first.b}.lock"
    assert lock.exists()
    first.close()
    second.close()
    assert not lock.exists()


def test_static_discovery_gives_members_an_initial_cluster(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=3, discovery="static") as cluster:
        assert cluster.discovery_url == ""
        assert (
            "discovery" not in yaml.safe_load(cluster.user_data_path.read_text())["coreos"]["etcd"]
        )
        env = (cluster.workdir / "machines" / "core-02" / "etcd.env").read_text()
        assert "ETCD_DISCOVERY=" not in env
        peers = ",".join(f"{m.name}=http://{m.private_ipv4}:7001" for m in cluster)
        assert f"ETCD_INITIAL_CLUSTER={peers}\n" in env
        assert len(cluster.etcd.members()) == 3


@pytest.mark.parametrize(
    ("discovery", "version", "static"),
    [
        ("local", (3, 4, 23), False),
        ("local", (3, 5, 1), False),
        ("http://127.0.0.1:8087", (3, 5, 1), False),
        ("static", (3, 5, 1), True),
        ("local", (3, 6, 0), True),  # v2 discovery is gone from etcd 3.6 on
        ("public", (3, 7, 2), True),
    ],
)
def test_members_join_statically_when_asked_or_when_etcd_lacks_v2_discovery(
    discovery, version, static
) -> None:
    assert joins_statically(discovery, version) is static


def test_an_interrupt_as_the_wait_starts_leaves_no_watcher_running(
    coreos_cluster_factory, monkeypatch
) -> None:
    """Ctrl-C right after the watchers started: they stop with the wait, or the interpreter
    would wait for them at exit (a paused member keeps its watcher polling)."""
    start = readiness.ReadyWatch.start

    def start_then_interrupt(watch: readiness.ReadyWatch) -> None:
        start(watch)
        raise KeyboardInterrupt

    with coreos_cluster_factory(instances=3) as cluster:
        cluster["core-03"].pause()
        monkeypatch.setattr(readiness.ReadyWatch, "start", start_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            cluster.wait_until_healthy(timeout=60)
        watchers = [t.name for t in threading.enumerate() if t.name.startswith("coreos-ready")]
        assert watchers == []
        cluster["core-03"].resume()
