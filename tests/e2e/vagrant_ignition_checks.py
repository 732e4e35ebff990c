"""What a VM given Ignition must be, checked from inside the inner session of
``test_vagrant_ignition.py``. Not collected by the outer run (no ``test_*.py`` name)."""

from __future__ import annotations

import json

FW_CFG = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-linux/config/raw"


def test_the_vm_applied_its_ignition_config_from_qemus_firmware_config(coreos_cluster):
    for machine in coreos_cluster:
        ssh = machine.ssh
        status = json.loads(ssh.run(["sudo", "cat", "/run/coreos-agent/status.json"]).stdout)
        assert status["ignition"] == FW_CFG
        assert status["failures"] == []
        assert status["hostname"] == machine.name
        assert not ssh.run(
            ["test", "-e", "/var/lib/coreos-vagrant/vagrantfile-user-data"], check=False
        ).ok
        # The config QEMU hands over is the one the plugin wrote for this machine.
        given = json.loads(ssh.run(["sudo", "cat", FW_CFG]).stdout)
        assert given["storage"]["files"][0]["contents"]["source"].endswith(machine.name + "%0A")


def test_the_user_data_unit_and_etcd_member_run(coreos_cluster):
    # Ready is etcd's; the agent starts the config's other units without waiting for them.
    coreos_cluster.units.wait("hello.service", "active", timeout=60)
    for machine in coreos_cluster:
        ssh = machine.ssh
        active = ssh.run(["systemctl", "is-active", "hello.service", "etcd-member.service"])
        assert active.stdout == "active\nactive\n"
        assert ssh.read_text("/run/hello") == f"hello from {machine.private_ipv4} (drop-in)\n"
    members = coreos_cluster.etcd.members()
    assert sorted(member.name for member in members) == [m.name for m in coreos_cluster]
    coreos_cluster.etcd.set("/ignition", "on a VM")
    assert coreos_cluster.machines[0].etcd.get("/ignition") == "on a VM"
