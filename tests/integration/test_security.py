"""What the plugin exposes: every listener on its machine's own address only, private
files, pinned host keys, and user values that never reach a shell unquoted."""

from __future__ import annotations

import stat
import subprocess

import paramiko
import pytest

from pytest_coreos import Cluster, SSHClient, SSHError


def _listeners(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket listening in these processes, from ss."""
    output = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in output.splitlines():
        if any(f"pid={pid}," in line for pid in pids):
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.append((address, int(port)))
    return found


def test_etcd_and_sshd_listen_only_on_their_machines_address(coreos_cluster: Cluster) -> None:
    everything = _listeners(coreos_cluster.pids)
    for machine in coreos_cluster:
        ports = {port for address, port in everything if address == machine.private_ipv4}
        assert ports == {4001, 7001, machine.ssh.port}  # the seed's etcd 0.4 addr/peer-addr
    machine_addresses = {machine.private_ipv4 for machine in coreos_cluster}
    assert everything
    assert {address for address, _ in everything} <= machine_addresses


def test_the_workdir_and_keys_are_private(coreos_cluster: Cluster) -> None:
    root = coreos_cluster.workdir.parent
    for folder in (root, coreos_cluster.workdir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "id_ed25519").stat().st_mode) == 0o600
    for machine in coreos_cluster:
        host_key = coreos_cluster.workdir / "machines" / machine.name / "ssh_host_ed25519_key"
        assert stat.S_IMODE(host_key.stat().st_mode) == 0o600


def test_a_host_with_another_key_is_refused(coreos_cluster: Cluster) -> None:
    machine = coreos_cluster["core-01"]
    impostor_key = paramiko.Ed25519Key.from_private_key_file(
        str(coreos_cluster.workdir / "machines" / "core-02" / "ssh_host_ed25519_key")
    )
    client = SSHClient(
        machine.ssh.host,
        machine.ssh.port,
        machine.ssh.username,
        paramiko.Ed25519Key.from_private_key_file(
            str(coreos_cluster.workdir.parent / "id_ed25519")
        ),
        host_keys=[impostor_key],
    )
    with pytest.raises(SSHError, match="host key"):
        client.run("true")
    client.close()


def test_list_commands_reach_the_remote_shell_quoted(coreos_cluster: Cluster) -> None:
    machine = coreos_cluster["core-01"]
    hostile = "$(touch /tmp/pytest-coreos-pwned); `id`; 'quoted' \"double\" \\ * ?"
    assert machine.ssh.run(["printf", "%s", hostile]).stdout == hostile
    assert machine.ssh.run(["test", "-e", "/tmp/pytest-coreos-pwned"], check=False).exit_status
