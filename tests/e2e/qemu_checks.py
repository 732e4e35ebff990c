"""What a qemu cluster's VMs must be, checked from inside the inner session of
``test_qemu.py`` (the seed's user-data, on the ``config-2`` share): their config, their
network, and their faults (QMP pause, a power cut, an ACPI power-off, a partition). Not
collected by the outer run: its name is no ``test_*.py``; the inner run names it."""

from __future__ import annotations

import time
import uuid

import pytest

# A QMP pause is checked as vagrant's suspend is: the same test, collected here too.
from vagrant_machines import test_a_suspended_member_comes_back  # noqa: F401

from pytest_coreos import EtcdError


def test_each_vm_took_its_name_address_and_keys_from_the_config_drive(coreos_cluster):
    for machine in coreos_cluster:
        ssh = machine.ssh
        assert ssh.username == "core"
        assert ssh.run(["hostname"]).stdout.strip() == machine.name
        addresses = ssh.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"inet {machine.private_ipv4}/24" in addresses
        # The lab is all it reaches: no default route, no other interface with an address.
        assert ssh.run(["ip", "-4", "route", "show", "default"]).stdout == ""
        drive = ssh.run(["cat", "/media/configdrive/openstack/latest/user_data"]).stdout
        assert drive.startswith("#cloud-config\n")
        assert "$private_ipv4" not in drive
        assert machine.private_ipv4 in drive


def test_the_serial_console_is_kept(coreos_cluster):
    for machine in coreos_cluster:
        console = coreos_cluster.workdir / "machines" / machine.name / "console.log"
        assert "login:" in console.read_text(errors="replace"), machine.name


def test_a_minority_is_cut_off_and_heals(coreos_cluster):
    lonely, *majority = coreos_cluster.machines
    coreos_cluster.partition([lonely], majority)
    try:
        writer = lonely.etcd_client(lonely.etcd_endpoints, timeout=2, deadline=2)
        with pytest.raises(EtcdError):
            writer.set("/e2e/minority", "must not be accepted")
        writer.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                majority[0].etcd.set("/e2e/majority", "accepted")
                break
            except EtcdError:
                assert time.monotonic() < deadline, "the majority never accepted a write"
                time.sleep(0.2)
        assert not majority[1].etcd.exists("/e2e/minority")
    finally:
        coreos_cluster.heal()
    coreos_cluster.wait_until_healthy()
    assert lonely.etcd.get("/e2e/majority") == "accepted"


def test_a_killed_vm_boots_again_and_rejoins(coreos_cluster):
    victim = coreos_cluster["core-02"]
    victim.kill()
    assert not victim.running
    key = f"/e2e/{uuid.uuid4().hex}"
    coreos_cluster["core-01"].etcd.set(key, "while core-02 was off")
    victim.start()
    coreos_cluster.wait_until_healthy()
    assert victim.etcd.get(key) == "while core-02 was off"


def test_a_stopped_vm_powers_off_and_starts_again(coreos_cluster):
    victim = coreos_cluster["core-03"]
    victim.stop()
    assert not victim.running
    with victim.etcd_client(victim.etcd_endpoints, timeout=3) as probe, pytest.raises(EtcdError):
        probe.version()
    victim.start()
    coreos_cluster.wait_until_healthy()
    assert victim.ssh.run(["hostname"]).stdout.strip() == "core-03"
