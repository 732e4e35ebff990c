"""Ignition on real machines: systemd-nspawn containers of the stand-in rootfs (root only)
whose agent applies each machine's Ignition config, rendered from the user-data or the
user's own, and whose ``etcd-member.service`` (Flatcar's name) runs the image's etcd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

USER_DATA = """\
#cloud-config
hostname: ignored-for-the-machines-name
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmHbVv8pQ0yZr0o8f1K5cQ8sJg9bXw0M1T0m7oKx3aB extra@test
write_files:
  - path: /etc/pytest-coreos/greeting
    permissions: "0640"
    content: |
      hello from the user-data
coreos:
  etcd2:
    discovery: https://discovery.etcd.io/placeholder
    advertise-client-urls: http://$private_ipv4:2379
    initial-advertise-peer-urls: http://$private_ipv4:2380
    listen-client-urls: http://0.0.0.0:2379
    listen-peer-urls: http://0.0.0.0:2380
  units:
    - name: etcd2.service
      command: start
    - name: hello.service
      command: start
      content: |
        [Unit]
        Description=Says where it runs
        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/bin/sh -c 'echo $private_ipv4 > /run/hello'
"""


def status_of(machine) -> dict:
    """The agent's report; it writes it once the units it starts are on their way, so etcd
    may be serving a moment before."""
    status = "/run/coreos-agent/status.json"
    wait = f"for i in $(seq 100); do test -s {status} && break; sleep 0.1; done; cat {status}"
    return json.loads(machine.ssh.run(wait).stdout)


def containers_under(path: Path) -> list[int]:
    """systemd-nspawn processes whose command line names ``path`` (their bind mounts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode()
            except OSError:
                continue
            if cmdline.startswith("/") and "systemd-nspawn" in cmdline and str(path) in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.needs_root
def test_containers_boot_from_ignition_rendered_from_the_user_data(
    coreos_cluster_factory, tmp_path: Path
) -> None:
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    with coreos_cluster_factory(
        instances=3, provider="nspawn", config="ignition", user_data=user_data
    ) as cluster:
        workdir = cluster.workdir
        # The workdir keeps the user-data the configs come from; the machines get Ignition.
        assert (workdir / "user-data").is_file()
        assert len(cluster.etcd.members()) == 3
        cluster.etcd.set("/ignition", "applied")
        # Ready is etcd's; the agent starts the config's other units without waiting for them.
        cluster.units.wait("hello.service", "active", timeout=60)
        session_key = (workdir.parent / "id_ed25519.pub").read_text().split()[1]
        for machine in cluster.machines:
            status = status_of(machine)
            assert status["ignition"] == "/usr/share/oem/config.ign"
            assert (
                machine.ssh.run(
                    ["test", "-e", "/var/lib/coreos-vagrant/vagrantfile-user-data"], check=False
                ).exit_status
                == 1
            )
            assert status["failures"] == []
            assert status["hostname"] == machine.name
            assert set(status["started"]) == {"etcd-member.service", "hello.service"}
            run = machine.ssh.run
            # The unit of the user-data is active, with this machine's own address.
            assert run("systemctl is-active hello.service etcd-member.service").stdout == (
                "active\nactive\n"
            )
            assert run("cat /run/hello").stdout == machine.private_ipv4 + "\n"
            assert run("hostname").stdout == machine.name + "\n"
            assert run("stat -c %a /etc/pytest-coreos/greeting").stdout == "640\n"
            assert run("cat /etc/pytest-coreos/greeting").stdout == "hello from the user-data\n"
            keys = run("cat /home/core/.ssh/authorized_keys").stdout
            assert session_key in keys
            assert "extra@test" in keys
            # etcd-member.service runs Debian's etcd with the drop-in's environment.
            environment = run("systemctl show -p Environment etcd-member.service").stdout
            assert f"ETCD_ADVERTISE_CLIENT_URLS=http://{machine.private_ipv4}:2379" in environment
            assert f"ETCD_DISCOVERY={cluster.discovery_url}" in environment
            assert run("systemctl is-active etcd.service", check=False).stdout == "inactive\n"
            # The image's wrapper gives etcd the fast election timings the config lacks.
            pid = run("systemctl show -p MainPID --value etcd-member.service").stdout.strip()
            running_with = run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
            assert {"ETCD_HEARTBEAT_INTERVAL=25", "ETCD_ELECTION_TIMEOUT=250"} <= set(running_with)
            assert "ETCD_PRE_VOTE=true" in running_with
            assert machine.etcd.get("/ignition") == "applied"
        # Nothing to say: Ignition carries every part of this user-data.
        assert not [n for n in cluster.notices if "Ignition does not carry" in n]
    assert containers_under(workdir) == []


OWN_CONFIG = {
    "ignition": {"version": "3.3.0"},
    "systemd": {
        "units": [
            {
                "name": "etcd-member.service",
                "enabled": True,
                "dropins": [
                    {
                        "name": "20-own.conf",
                        "contents": (
                            "[Service]\n"
                            "EnvironmentFile=/etc/environment\n"
                            "ExecStart=\n"
                            "ExecStart=/usr/bin/env"
                            " ETCD_ADVERTISE_CLIENT_URLS=http://${COREOS_PRIVATE_IPV4}:2379"
                            " ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"
                            " ETCD_INITIAL_ADVERTISE_PEER_URLS=http://${COREOS_PRIVATE_IPV4}:2380"
                            " ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380"
                            " /usr/lib/flatcar/etcd-wrapper $ETCD_OPTS\n"
                        ),
                    }
                ],
            },
            {"name": "locksmithd.service", "mask": True},
            {
                "name": "marker.service",
                "enabled": True,
                "contents": (
                    "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
                    "ExecStart=/usr/bin/touch /run/marker\n\n"
                    "[Install]\nWantedBy=multi-user.target\n"
                ),
            },
        ]
    },
}


@pytest.mark.needs_root
def test_containers_boot_from_the_users_own_ignition_config(
    coreos_cluster_factory, tmp_path: Path
) -> None:
    config = tmp_path / "cluster.ign"
    config.write_text(json.dumps(OWN_CONFIG))
    with coreos_cluster_factory(instances=3, provider="nspawn", ignition=config) as cluster:
        assert cluster.spec.config == "ignition"
        written = json.loads((cluster.workdir / "ignition" / "core-02.ign").read_text())
        dropins = written["systemd"]["units"][0]["dropins"]
        assert dropins[0] == OWN_CONFIG["systemd"]["units"][0]["dropins"][0]
        assert dropins[1]["name"] == "30-pytest-coreos-discovery.conf"
        assert len(cluster.etcd.members()) == 3
        cluster.units.wait("marker.service", "active", timeout=60)
        for machine in cluster.machines:
            status = status_of(machine)
            assert status["failures"] == [], status
            assert machine.ssh.run(["test", "-e", "/run/marker"], check=False).ok
            assert status["masked"] == ["locksmithd.service"]
            assert machine.etcd_endpoints == (f"http://{machine.private_ipv4}:2379",)
