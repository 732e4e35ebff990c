"""What a coreos-vagrant checkout's machines must be, checked from inside the inner session
of ``test_vagrant_checkout.py`` (run with the checkout's own user-data). Not collected by
the outer run: its name is no ``test_*.py``; the inner run names it explicitly."""

from __future__ import annotations

import json


def test_vagrant_named_each_machine(coreos_cluster):
    # config.vm.hostname, sent by Vagrant's CoreOS guest as cloud-config, which the box's
    # agent applied. (What the agent recorded in /run is gone on a machine an example
    # restarted: vagrant-libvirt's start of a halted VM sets no hostname; the files stay.)
    for machine in coreos_cluster:
        assert machine.ssh.run(["hostname"]).stdout.strip() == machine.name
        assert machine.ssh.read_text("/etc/hostname") == f"{machine.name}\n"
        sent = machine.ssh.read_text("/var/tmp/hostname.yml")
        assert sent.startswith("#cloud-config\n")
        assert f"hostname: {machine.name}" in sent


def test_vagrant_configured_the_private_network_through_the_agent(coreos_cluster):
    for machine in coreos_cluster:
        assert machine.ssh.read_text("/var/tmp/networks.yml").startswith("#cloud-config\n")
        # kept for the next boot, which Vagrant does not configure again
        stanza = machine.ssh.read_text("/etc/network/interfaces.d/vagrant-50-vagrant1")
        assert f"address {machine.private_ipv4}/24" in stanza
        addresses = machine.ssh.run(["ip", "-4", "-o", "addr", "show", "dev", "eth1"]).stdout
        assert f"inet {machine.private_ipv4}/24" in addresses


def test_the_checkouts_provisioners_moved_the_user_data(coreos_cluster):
    for machine in coreos_cluster:
        moved = machine.ssh.run(["sudo", "ls", "/var/lib/coreos-vagrant/"]).stdout.split()
        assert moved == ["vagrantfile-user-data"]
        assert "vagrantfile-user-data" not in machine.ssh.run(["ls", "/tmp/"]).stdout.split()


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
