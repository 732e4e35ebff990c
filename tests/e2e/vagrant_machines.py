"""What the vagrant provider's machines must be, checked from inside the inner session of
``test_vagrant_e2e.py`` (run with ``tests/e2e/data/user-data``). Not collected by the
outer run: its name is no ``test_*.py``; the inner run names it explicitly."""

from __future__ import annotations

import json
import uuid

import pytest

from pytest_coreos import BootTimeoutError, EtcdError


def test_private_addresses_are_the_seeds(coreos_cluster):
    assert [machine.private_ipv4 for machine in coreos_cluster] == [
        f"172.17.8.{100 + index}" for index in range(1, len(coreos_cluster) + 1)
    ]
    for machine in coreos_cluster:
        addresses = machine.ssh.run(["ip", "-4", "-o", "addr", "show", "dev", "eth1"]).stdout
        assert f"inet {machine.private_ipv4}/24" in addresses


def test_etcd_peers_are_the_machines_private_addresses(coreos_cluster):
    members = coreos_cluster.etcd.members()
    assert sorted(member.name for member in members) == [m.name for m in coreos_cluster]
    for member in members:
        machine = coreos_cluster[member.name]
        assert member.peer_urls == (f"http://{machine.private_ipv4}:2380",)
        assert member.client_urls == (f"http://{machine.private_ipv4}:2379",)


def test_etcdctl_inside_each_machine_sees_the_cluster(coreos_cluster):
    key = f"/e2e/{uuid.uuid4().hex}"
    coreos_cluster.etcd.set(key, "from the host")
    for machine in coreos_cluster:
        listed = machine.ssh.run(["etcdctl", "--endpoints=http://127.0.0.1:2379", "member", "list"])
        assert len(listed.stdout.splitlines()) == len(coreos_cluster)
        # the v2 store, as CoreOS's etcd served it
        assert machine.etcd.get(key) == "from the host"


def test_docker_etcdctl_and_the_environment_as_coreos_had_them(coreos_cluster):
    """Docker Engine on the VMs, its pulls served by the session's registry
    (--coreos-images), etcdctl speaking v2 to the machine's member, and /etc/environment's
    addresses."""
    key = f"/e2e/{uuid.uuid4().hex}"
    for machine in coreos_cluster:
        ssh = machine.ssh
        environment = ssh.read_text("/etc/environment")
        assert f"COREOS_PRIVATE_IPV4={machine.private_ipv4}" in environment
        assert f"COREOS_PUBLIC_IPV4={machine.public_ipv4}" in environment
        ssh.run(["etcdctl", "set", f"{key}/{machine.name}", "v2", "--ttl", "600"])
        assert coreos_cluster.etcd.get(f"{key}/{machine.name}") == "v2"
    machine = coreos_cluster.machines[0]
    assert "busybox:latest" in machine.ssh.run(["docker", "pull", "busybox"]).stdout
    run = "docker run --rm -p $COREOS_PUBLIC_IPV4:8080:80 busybox echo from a container"
    assert machine.ssh.run(f". /etc/environment; {run}").stdout == "from a container\n"


def test_units_were_written_enabled_and_started(coreos_cluster):
    # Ready is etcd's; the agent starts the user-data's other units without waiting for them.
    coreos_cluster.units.wait("hello.service", "active", timeout=60)
    for machine in coreos_cluster:
        ssh = machine.ssh
        assert ssh.run(["systemctl", "is-enabled", "hello.service"]).stdout.strip() == "enabled"
        # $private_ipv4 substituted in the unit's content, and the drop-in applied
        assert ssh.read_text("/run/hello") == f"hello from {machine.private_ipv4} (drop-in)\n"
        assert ssh.run(["systemctl", "is-active", "etcd2.service"]).stdout.strip() == "active"


def test_the_agent_reports_what_it_did(coreos_cluster):
    for machine in coreos_cluster:
        status = json.loads(
            machine.ssh.run(["sudo", "cat", "/run/coreos-agent/status.json"]).stdout
        )
        assert status["private_ipv4"] == machine.private_ipv4
        assert status["failures"] == []
        assert "start etcd2.service" in status["commands"]
        if coreos_cluster.spec.fleet is not None:  # provisioned, then started by the agent
            assert "start fleet.service" in status["commands"]
            assert "/run/systemd/system/fleet.service.d/20-cloudinit.conf" in status["files"]
        else:  # the stand-in box has no fleet of its own: said, not fatal
            assert any("fleet.service" in note for note in status["notes"])


def test_the_pinned_host_key_is_the_machines(coreos_cluster):
    for machine in coreos_cluster:
        offered = machine.ssh.read_text("/etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        (pinned,) = machine.ssh.host_keys
        assert offered == pinned.get_base64()


def test_the_login_user_reads_the_system_journal(coreos_cluster):
    # As CoreOS's core user could: fleetctl journal runs journalctl as the login user.
    for machine in coreos_cluster:
        assert machine.ssh.username != "root"
        shown = machine.ssh.run(["journalctl", "--no-pager", "-n", "1", "-u", "etcd.service"])
        assert shown.stdout.strip(), machine.name
        assert "No entries" not in shown.stdout, machine.name


def test_a_suspended_member_comes_back(coreos_cluster):
    # A follower: a suspended leader would stall writes until the others elect another.
    leader = coreos_cluster.etcd.leader()
    machine, writer = [m for m in coreos_cluster if m.name != leader.name][:2]
    probe = machine.etcd_client(machine.etcd_endpoints, timeout=3)
    assert probe.version()["etcdserver"]
    machine.pause()
    try:
        # Down means down: the member answers nothing while suspended.
        with pytest.raises(EtcdError):
            probe.version()
        with pytest.raises(BootTimeoutError, match=machine.name):
            coreos_cluster.wait_until_healthy(timeout=5)
        key = f"/e2e/{uuid.uuid4().hex}"
        writer.etcd.set(key, f"while {machine.name} slept")
    finally:
        probe.close()
        machine.resume()
    coreos_cluster.wait_until_healthy()
    assert machine.etcd.get(key) == f"while {machine.name} slept"


def test_a_halted_member_is_brought_back(coreos_cluster):
    # Last: a clean halt and up of one member, which must rejoin with its data.
    victim = coreos_cluster["core-03"]
    key = f"/e2e/{uuid.uuid4().hex}"
    coreos_cluster.etcd.set(key, "before the halt")
    victim.stop()
    assert not victim.running
    # Halted means down: the member answers nothing, not only the handle's flag.
    with victim.etcd_client(victim.etcd_endpoints, timeout=3) as probe, pytest.raises(EtcdError):
        probe.version()
    coreos_cluster.wait_until_healthy()
    coreos_cluster["core-01"].etcd.set(key, "during the halt")
    victim.start()
    coreos_cluster.wait_until_healthy()
    assert victim.etcd.get(key) == "during the halt"
    assert victim.ssh.run(["hostname"]).stdout.strip() == "core-03"


def test_commands_over_ssh_do_not_read_the_login_users_bashrc(coreos_cluster):
    for machine in coreos_cluster:
        machine.ssh.run(
            "cp -p ~/.bashrc ~/.bashrc.before 2>/dev/null; echo 'echo NOISE >&2' >> ~/.bashrc"
        )
        try:
            result = machine.ssh.run("echo $SHLVL")
            assert (result.stdout, result.stderr) == ("2\n", ""), machine.name
        finally:
            machine.ssh.run(
                "if [ -e ~/.bashrc.before ]; then mv ~/.bashrc.before ~/.bashrc; "
                "else rm ~/.bashrc; fi"
            )
