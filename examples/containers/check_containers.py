"""What a user of pytest-coreos writes to test units that run Docker containers, as the
CoreOS guides wrote them: ``docker pull`` and ``docker run`` in the unit, a port published
on ``${COREOS_PUBLIC_IPV4}``, a sidekick announcing it with etcdctl's v2 syntax.

The machines must run systemd, docker and fleet (the nspawn or vagrant provider, given a
fleet release), booted from this folder's user-data, with the images the units pull
given as archives (Docker Hub is not needed: the plugin serves them)::

    examples/containers/build-image busybox.tar
    pytest --coreos-provider=nspawn --coreos-instances=3 \
        --coreos-fleet=fleet-v1.0.0-linux-amd64.tar.gz --coreos-images=busybox.tar \
        --coreos-user-data=examples/containers/user-data examples/containers/check_containers.py

The file is not named ``test_*.py``, so ``pytest examples/`` does not collect it. Its
last test kills a machine: run it last, or on a cluster of its own.
"""

import time
import uuid

import pytest

from pytest_coreos import EtcdKeyNotFoundError
from pytest_coreos.config.fleet_env import agent_ttl_seconds

# The "Launching Containers with fleet" guide's web unit, as a template: one busybox httpd
# per machine, published on the machine's public address.
WEB = """\
[Unit]
Description=web server {name} %i
After=docker.service
Requires=docker.service

[Service]
EnvironmentFile=/etc/environment
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker kill {name}-%i
ExecStartPre=-/usr/bin/docker rm {name}-%i
ExecStartPre=/usr/bin/docker pull busybox
ExecStart=/usr/bin/docker run --name {name}-%i -p ${{COREOS_PUBLIC_IPV4}}:8080:80 busybox \
/bin/sh -c "mkdir -p /www && echo hello from %H > /www/index.html && exec httpd -f -p 80 -h /www"
ExecStop=/usr/bin/docker stop {name}-%i

[X-Fleet]
Conflicts={name}@*.service
"""

# The "Service Discovery" guide's sidekick: announces the web unit in etcd while it runs.
SIDEKICK = """\
[Unit]
Description=announces {name}@%i
BindsTo={name}@%i.service
After={name}@%i.service

[Service]
ExecStart=/bin/sh -c "while true; do etcdctl set /services/{name}/%H '{{\\"port\\": 8080}}' \
--ttl 60; sleep 45; done"
ExecStop=/usr/bin/etcdctl rm /services/{name}/%H

[X-Fleet]
MachineOf={name}@%i.service
"""

# A container unit as fleet runs it anywhere: a ticker in busybox.
TICKER = """\
[Unit]
Description=ticker {name}
After=docker.service
Requires=docker.service

[Service]
TimeoutStartSec=0
ExecStartPre=-/usr/bin/docker rm -f {name}
ExecStart=/usr/bin/docker run --rm --name {name} busybox \
/bin/sh -c "trap 'exit 0' TERM; while true; do echo {name}; sleep 1; done"
ExecStop=/usr/bin/docker stop {name}
"""


def eventually(check, timeout=60.0, what="the condition"):
    """``check()``'s first true value, polled for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not seen within {timeout:.0f}s"
        time.sleep(0.25)
    return value


@pytest.fixture
def fleet(coreos_cluster):
    """The cluster's fleet; every unit a test submitted is destroyed afterwards."""
    fleet = coreos_cluster.fleet
    before = {unit.unit for unit in fleet.list_unit_files()}
    yield fleet
    mine = [unit.unit for unit in fleet.list_unit_files() if unit.unit not in before]
    if mine:
        fleet.destroy(*mine)


@pytest.fixture
def name():
    """A name of this test's own, for units and containers."""
    return f"check-{uuid.uuid4().hex[:8]}"


def value_of(etcd, key):
    """The value of ``key``, or None while it does not exist."""
    try:
        return etcd.get(key)
    except EtcdKeyNotFoundError:
        return None


def machine_at(cluster, address):
    (machine,) = [m for m in cluster if m.public_ipv4 == address]
    return machine


def test_the_user_data_container_runs_on_every_machine(coreos_cluster):
    # myapp.service pulled busybox as its machine booted, then ran it.
    coreos_cluster.units.wait("myapp.service", "active", timeout=60)
    for machine in coreos_cluster:
        eventually(
            lambda m=machine: (
                "Hello World" in m.ssh.run("docker logs busybox1", check=False).stdout
            ),
            what=f"Hello World from busybox1 on {machine.name}",
        )


def test_docker_pull_is_served_without_docker_hub(coreos_cluster):
    machine = coreos_cluster.machines[0]
    for image in ("busybox", "library/busybox:latest", "docker.io/library/busybox"):
        assert "busybox:latest" in machine.ssh.run(["docker", "pull", image]).stdout
    assert machine.ssh.run("docker run --rm busybox echo hi").stdout == "hi\n"


def test_etcdctl_speaks_v2_to_the_machines_own_member(coreos_cluster, name):
    machine = coreos_cluster.machines[0]
    machine.ssh.run(["etcdctl", "set", f"/{name}", "v2", "--ttl", "60"])
    assert coreos_cluster.etcd.get(f"/{name}") == "v2"
    assert machine.ssh.run(["etcdctl", "get", f"/{name}"]).stdout == "v2\n"
    # The v3 API is still there, when asked for.
    assert machine.ssh.run(f"ETCDCTL_API=3 etcdctl put /{name}/v3 yes").stdout == "OK\n"


def test_a_web_unit_publishes_its_port_and_its_sidekick_announces_it(coreos_cluster, fleet, name):
    fleet.submit((f"{name}@.service", WEB.format(name=name)))
    fleet.submit((f"{name}-discovery@.service", SIDEKICK.format(name=name)))
    fleet.start(f"{name}@1.service", f"{name}-discovery@1.service")
    (row,) = [r for r in fleet.list_units() if r.unit == f"{name}@1.service"]
    server = machine_at(coreos_cluster, row.machine_ip)
    client = next(m for m in coreos_cluster if m is not server)
    # A client on another machine reaches the container at its machine's public address.
    page = eventually(
        lambda: (
            client.ssh.run(
                ["curl", "-sf", "-m", "5", f"http://{server.public_ipv4}:8080/"], check=False
            ).stdout
        ),
        what=f"the web container on {server.name}",
    )
    assert page == f"hello from {server.name}\n"
    announced = eventually(
        lambda: value_of(coreos_cluster.etcd, f"/services/{name}/{server.name}"),
        what="the sidekick's key",
    )
    assert announced == '{"port": 8080}'


def test_a_global_container_unit_runs_on_every_machine(coreos_cluster, fleet, name):
    unit = f"{name}.service"
    fleet.submit((unit, TICKER.format(name=name) + "\n[X-Fleet]\nGlobal=true\n"))
    fleet.start(unit)
    for machine in coreos_cluster:
        eventually(
            lambda m=machine: name in m.ssh.run(["docker", "logs", name], check=False).stdout,
            what=f"{name}'s container on {machine.name}",
        )


def test_a_container_unit_deployed_through_systemd_runs_on_one_machine(coreos_cluster, name):
    machine = coreos_cluster.machines[-1]
    unit = f"{name}.service"
    try:
        coreos_cluster.units.deploy(unit, TICKER.format(name=name), machines=[machine])
        listed = ["docker", "ps", "--filter", f"name={name}", "-q"]
        eventually(lambda: machine.ssh.run(listed).stdout.strip(), what=f"{name}'s container")
        for other in coreos_cluster.machines[:-1]:
            assert not other.ssh.run(listed, check=False).stdout.strip()
    finally:
        coreos_cluster.units.remove(unit)


def test_pulling_an_image_that_was_not_given_fails_with_dockers_error(coreos_cluster):
    result = coreos_cluster.machines[0].ssh.run(["docker", "pull", "alpine"], check=False)
    assert result.exit_status != 0
    assert "Error response from daemon" in result.stderr


def test_fleet_moves_a_container_unit_off_a_lost_machine(coreos_cluster, fleet, name):
    """Last: it kills a machine (started again at the end)."""
    unit = f"{name}.service"
    fleet.submit((unit, TICKER.format(name=name)))
    fleet.start(unit)
    (row,) = [r for r in fleet.list_units() if r.unit == unit]
    lost = machine_at(coreos_cluster, row.machine_ip)
    ttl = agent_ttl_seconds(coreos_cluster.user_data)
    lost.kill()
    try:
        survivor = fleet.on(next(m for m in coreos_cluster if m.running))

        def moved():
            rows = [
                r
                for r in survivor.list_units()
                if r.unit == unit and r.machine_id != row.machine_id and r.active == "active"
            ]
            return rows[0] if rows else None

        new_row = eventually(moved, timeout=ttl + 120, what=f"{unit} moved off {lost.name}")
        moved_to = machine_at(coreos_cluster, new_row.machine_ip)
        eventually(
            lambda: name in moved_to.ssh.run(["docker", "logs", name], check=False).stdout,
            what=f"{name}'s container on {moved_to.name}",
        )
    finally:
        lost.start()
        coreos_cluster.wait_until_healthy(timeout=300)
        fleet.on(lost).wait_for_machines(len(coreos_cluster), timeout=300)
