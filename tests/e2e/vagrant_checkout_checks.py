"""What a coreos-vagrant checkout's machines must be, checked from inside the inner session
of ``test_vagrant_checkout.py`` (run with the checkout's own user-data). Not collected by
the outer run: its name is no ``test_*.py``; the inner run names it explicitly."""

from __future__ import annotations

import json


def test_vagrant_named_each_machine(coreos_cluster):
    # config.vm.hostname, applied through Vagrant's CoreOS guest by the box's agent
    for machine in coreos_cluster:
        assert machine.ssh.run(["hostname"]).stdout.strip() == machine.name
        assert machine.ssh.read_text("/etc/hostname") == f"{machine.name}\n"
        hostname = json.loads(
            machine.ssh.run(["sudo", "cat", "/run/coreos-agent/vagrant-hostname.json"]).stdout
        )
        assert hostname["hostname"] == machine.name


def test_vagrant_configured_the_private_network_through_the_agent(coreos_cluster):
    for machine in coreos_cluster:
        record = json.loads(
            machine.ssh.run(["sudo", "cat", "/run/coreos-agent/vagrant-networks.json"]).stdout
        )
        assert record["failures"] == []
        assert record["addresses"] == [f"eth1 {machine.private_ipv4}/24"]
        addresses = machine.ssh.run(["ip", "-4", "-o", "addr", "show", "dev", "eth1"]).stdout
        assert f"inet {machine.private_ipv4}/24" in addresses


def test_the_checkouts_provisioners_moved_the_user_data(coreos_cluster):
    for machine in coreos_cluster:
        listed = machine.ssh.run(["ls", "/var/lib/coreos-vagrant/", "/tmp/"]).stdout
        assert "vagrantfile-user-data" in listed.split("/tmp/:")[0]
        assert "vagrantfile-user-data" not in listed.split("/tmp/:")[1]


def test_the_agent_applied_the_user_data_with_the_private_address(coreos_cluster):
    for machine in coreos_cluster:
        status = json.loads(
            machine.ssh.run(["sudo", "cat", "/run/coreos-agent/status.json"]).stdout
        )
        assert status["failures"] == []
        assert status["private_ipv4"] == machine.private_ipv4
        # Vagrant's guest writes COREOS_PUBLIC_IPV4=127.0.0.1; $public_ipv4 is not that
        assert status["public_ipv4"] == machine.private_ipv4


def test_etcd_lists_every_machine_with_a_leader(coreos_cluster):
    members = coreos_cluster.etcd.members()
    assert sorted(member.name for member in members) == [m.name for m in coreos_cluster]
    assert coreos_cluster.etcd.leader() is not None
