"""Unit tests of pytest_coreos.config.guest: what a qemu VM reads from its config drive or
its firmware config (static address, hostname, keys), checked as the VM's own agent and
Ignition's published schema read them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_coreos.config import cloud_config, guest
from pytest_coreos.config.ignition import render_ignition
from pytest_coreos.image.agent import coreos_agent as agent

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7vJ1rG3dZb9c2N0w0l8Xq5gVqk pytest-coreos"
HOST_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
ADDRESS = "198.18.7.2"


def drive_user_data(user_data: dict[str, Any]) -> dict[str, Any]:
    text = guest.config_drive_user_data(
        user_data,
        hostname="core-02",
        address=ADDRESS,
        prefix_length=24,
        ssh_public_key=KEY + "\n",
        host_key=HOST_KEY,
    )
    return cloud_config.parse_user_data(text, "config-2 user_data")


def test_the_network_unit_is_a_static_address_on_eth0() -> None:
    unit = guest.network_unit(ADDRESS, 24)
    assert agent.network_unit_addresses(unit) == ("eth0", [f"{ADDRESS}/24"], False)


def test_the_config_drive_carries_the_machine_and_fills_its_addresses() -> None:
    data = drive_user_data(cloud_config.default_user_data())
    assert data["hostname"] == "core-02"
    assert data["ssh_authorized_keys"] == [KEY]
    assert data["write_files"] == [
        {"path": "/etc/ssh/ssh_host_ed25519_key", "permissions": "0600", "content": HOST_KEY}
    ]
    first = data["coreos"]["units"][0]
    assert first == {
        "name": "00-eth0.network",
        "runtime": True,
        "content": guest.network_unit(ADDRESS, 24),
    }
    rendered = json.dumps(data)
    assert "$private_ipv4" not in rendered
    assert "$public_ipv4" not in rendered
    assert data["coreos"]["etcd"]["addr"] == f"{ADDRESS}:4001"
    # The cluster's own units follow, unchanged.
    names = [unit["name"] for unit in data["coreos"]["units"]]
    assert names[1:] == [u["name"] for u in cloud_config.default_user_data()["coreos"]["units"]]


def test_the_users_hostname_keys_and_files_are_kept_first() -> None:
    user_data = {
        "hostname": "mine",
        "ssh_authorized_keys": ["ssh-ed25519 AAAA user"],
        "write_files": [{"path": "/etc/motd", "content": "hi\n"}],
        "coreos": {
            "etcd2": {"name": "core"},
            "units": [{"name": "00-eth0.network", "content": "[Match]\nName=eth9\n"}],
        },
    }
    data = drive_user_data(user_data)
    assert data["hostname"] == "mine"
    assert data["ssh_authorized_keys"] == ["ssh-ed25519 AAAA user", KEY]
    assert [entry["path"] for entry in data["write_files"]] == [
        "/etc/motd",
        "/etc/ssh/ssh_host_ed25519_key",
    ]
    # The machine's address wins over a unit of the same name.
    assert data["coreos"]["units"] == [
        {"name": "00-eth0.network", "runtime": True, "content": guest.network_unit(ADDRESS, 24)}
    ]
    assert user_data["hostname"] == "mine"
    assert len(user_data["write_files"]) == 1


def test_the_config_drive_folder_has_openstacks_layout(tmp_path: Path) -> None:
    folder = guest.write_config_drive(tmp_path / "config-2", "#cloud-config\n")
    assert (folder / "openstack" / "latest" / "user_data").read_text() == "#cloud-config\n"


@pytest.mark.parametrize("version", ["3.3.0", "3.4.0"])
def test_ignition_gets_the_host_key_and_network_file(
    validators: dict[str, Any], version: str
) -> None:
    config = render_ignition(
        cloud_config.default_user_data(),
        ssh_public_key=KEY,
        hostname="core-02",
        private_ipv4=ADDRESS,
        public_ipv4=ADDRESS,
    )
    config["ignition"]["version"] = version
    config["storage"]["files"].append(
        {"path": guest.NETWORK_FILE, "contents": {"source": "data:,old"}}
    )
    result = guest.ignition_with_machine_files(
        config, address=ADDRESS, prefix_length=24, host_key=HOST_KEY
    )
    errors = list(validators[version].iter_errors(result))
    assert not errors, errors
    planned = agent.plan_ignition(result)
    files = {str(path): data for path, (data, _) in planned.files.items()}
    assert files[guest.HOST_KEY].decode() == HOST_KEY
    assert files[guest.NETWORK_FILE].decode() == guest.network_unit(ADDRESS, 24)
    modes = {str(path): mode for path, (_, mode) in planned.files.items()}
    assert modes[guest.HOST_KEY] == 0o600
    paths = [entry["path"] for entry in result["storage"]["files"]]
    assert paths.count(guest.NETWORK_FILE) == 1
    assert config["storage"]["files"][-1]["contents"]["source"] == "data:,old"  # unchanged


# --- what the stand-in's agent makes of them -------------------------------------------------


def test_the_agent_applies_the_machines_part_of_a_config_drive_before_its_address() -> None:
    data = drive_user_data(cloud_config.default_user_data())
    todo = agent.plan_machine(data)
    assert todo.hostname == "core-02"
    assert todo.keys == [KEY]
    assert todo.files == {Path(guest.HOST_KEY): (HOST_KEY.encode(), 0o600)}
    assert todo.network.addresses == [("eth0", f"{ADDRESS}/24")]
    assert todo.network.interfaces == {}  # a runtime unit: the drive gives it at every boot
    assert (todo.notes, todo.network.notes) == ([], [])
    planned = agent.plan(data, ADDRESS, ADDRESS)
    assert not [note for note in planned.notes if "hostname" in note or "write_files" in note]
    assert planned.files[Path("/run/systemd/network/00-eth0.network")] == guest.network_unit(
        ADDRESS, 24
    )


def test_a_persistent_network_unit_is_kept_for_the_next_boot() -> None:
    unit = {"name": "10-static.network", "content": guest.network_unit(ADDRESS, 24)}
    todo = agent.plan_machine({"coreos": {"units": [unit]}})
    stanza = todo.network.interfaces[Path("/etc/network/interfaces.d/vagrant-10-static")]
    assert stanza.splitlines()[1:] == ["auto eth0", "iface eth0 inet static",
                                      f"    address {ADDRESS}/24"]  # fmt: skip


def test_write_files_permissions_read_as_yaml_numbers_are_modes() -> None:
    data = cloud_config.parse_user_data(
        "#cloud-config\nwrite_files:\n- {path: /etc/a, permissions: 0600, content: x}\n"
        "- {path: /etc/b, permissions: '0640', content: y}\ncoreos: {etcd2: {name: a}}\n",
        "user-data",
    )
    files = agent.plan_machine(data).files
    assert files == {Path("/etc/a"): (b"x", 0o600), Path("/etc/b"): (b"y", 0o640)}


def test_the_agent_refuses_keys_of_more_than_one_line() -> None:
    with pytest.raises(agent.AgentError, match="ssh_authorized_keys"):
        agent.plan_machine({"ssh_authorized_keys": ["ssh-ed25519 A\nssh-ed25519 B"]})


def test_the_network_files_of_an_ignition_config_give_the_address() -> None:
    config = guest.ignition_with_machine_files(
        {"ignition": {"version": "3.4.0"}}, address=ADDRESS, prefix_length=24, host_key=HOST_KEY
    )
    network = agent.ignition_network(agent.plan_ignition(config).files)
    assert network.addresses == [("eth0", f"{ADDRESS}/24")]
    assert network.interfaces == {}  # applied again at every boot, never by ifupdown


def test_a_config_drive_is_found_by_its_9p_tag(tmp_path: Path) -> None:
    devices = tmp_path / "9pnet_virtio"
    assert not agent.share_present("config-2", devices)
    (devices / "virtio1").mkdir(parents=True)
    (devices / "virtio1" / "mount_tag").write_bytes(b"other\0")
    assert not agent.share_present("config-2", devices)
    (devices / "virtio2").mkdir()
    (devices / "virtio2" / "mount_tag").write_bytes(b"config-2\0")
    assert agent.share_present("config-2", devices)
    assert agent.find_config_drive_user_data(tmp_path / "none", tmp_path / "mnt") is None
    assert not agent.install_fleet_share(devices, tmp_path / "bin")
