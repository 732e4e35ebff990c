"""What a user of pytest-coreos writes to verify fleet units against a real fleet.

The machines must run systemd and fleet: the nspawn (or vagrant) provider, given a fleet
release, booted from this folder's user-data (the seed's, with fleet metadata and a short
agent TTL)::

    pytest --coreos-provider=nspawn --coreos-instances=3 \
        --coreos-fleet=fleet-v1.0.0-linux-amd64.tar.gz \
        --coreos-user-data=examples/fleet/user-data examples/fleet/check_fleet.py

The file is not named ``test_*.py``, so ``pytest examples/`` does not collect it. Its
last test kills a machine: run it last, or on a cluster of its own.
"""

import time
import uuid

import pytest

from pytest_coreos import FleetError
from pytest_coreos.config.fleet_env import agent_ttl_seconds

TICKER = """\
[Unit]
Description={description}

[Service]
ExecStart=/bin/sh -c 'while :; do echo "{marker} $$(hostname)"; sleep 1; done'
"""


def ticker(marker, *x_fleet):
    """A unit that logs ``marker`` every second, with these ``[X-Fleet]`` options."""
    text = TICKER.format(description=f"ticker {marker}", marker=marker)
    if x_fleet:
        text += "\n[X-Fleet]\n" + "".join(f"{option}\n" for option in x_fleet)
    return text


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
    """A unit name (without suffix) of this test's own."""
    return f"check-{uuid.uuid4().hex[:8]}"


def rows_of(fleet, unit):
    return [row for row in fleet.list_units() if row.unit == unit]


def test_every_machine_runs_fleet_with_its_address_and_metadata(coreos_cluster, fleet):
    for machine in coreos_cluster:
        assert machine.systemd.is_active("fleet.service")
    machines = fleet.list_machines()
    assert sorted(m.ip for m in machines) == sorted(m.public_ipv4 for m in coreos_cluster)
    for listed in machines:
        # The user-data's metadata, $public_ipv4 replaced by each machine's own address.
        assert listed.metadata == {"role": "worker", "address": listed.ip}


def test_a_global_unit_runs_on_every_machine_when_start_returns(coreos_cluster, fleet, name):
    unit = f"{name}.service"
    fleet.submit((unit, ticker(name, "Global=true")))
    fleet.start(unit)
    rows = rows_of(fleet, unit)
    assert sorted(row.machine_ip for row in rows) == sorted(m.public_ipv4 for m in coreos_cluster)
    assert all((row.active, row.sub) == ("active", "running") for row in rows)
    (listed,) = [f for f in fleet.list_unit_files() if f.unit == unit]
    assert listed.is_global


def test_conflicting_template_instances_run_on_different_machines(fleet, name):
    template = f"{name}@.service"
    fleet.submit((template, ticker(name, f"Conflicts={name}@*.service")))
    first, second = f"{name}@1.service", f"{name}@2.service"
    fleet.start(first, second)
    (one,), (two,) = rows_of(fleet, first), rows_of(fleet, second)
    assert one.machine_id != two.machine_id


def test_machine_of_puts_a_unit_beside_another(fleet, name):
    leader, follower = f"{name}-leader.service", f"{name}-follower.service"
    fleet.submit((leader, ticker(name)), (follower, ticker(name, f"MachineOf={leader}")))
    fleet.start(leader, follower)
    (lead,), (follow,) = rows_of(fleet, leader), rows_of(fleet, follower)
    assert follow.machine_id == lead.machine_id


def test_machine_metadata_places_a_unit_on_the_machines_it_matches(coreos_cluster, fleet, name):
    target = coreos_cluster.machines[-1]
    unit = f"{name}.service"
    fleet.submit((unit, ticker(name, f"MachineMetadata=address={target.public_ipv4}")))
    fleet.start(unit)
    (row,) = rows_of(fleet, unit)
    assert row.machine_ip == target.public_ipv4


def test_stop_unload_and_destroy_return_once_fleet_agrees(fleet, name):
    unit = f"{name}.service"
    fleet.submit((unit, ticker(name)))
    fleet.start(unit)
    fleet.stop(unit)
    (row,) = rows_of(fleet, unit)
    assert row.active in ("inactive", "failed")
    fleet.unload(unit)
    assert rows_of(fleet, unit) == []
    (listed,) = [f for f in fleet.list_unit_files() if f.unit == unit]
    assert listed.dstate == "inactive"
    fleet.destroy(unit)
    assert rows_of(fleet, unit) == []
    assert unit not in [f.unit for f in fleet.list_unit_files()]


def test_status_and_journal_come_from_the_units_machine(fleet, name):
    unit = f"{name}.service"
    fleet.submit((unit, ticker(name)))
    fleet.start(unit)
    assert "Active: active (running)" in fleet.status(unit)
    deadline = time.monotonic() + 30
    while name not in (journal := fleet.journal(unit, lines=5)):
        assert time.monotonic() < deadline, f"{name} never logged:\n{journal}"
    assert f"{name} core-" in journal


def test_a_failing_unit_is_reported_with_its_journal(fleet, name):
    unit = f"{name}.service"
    # A oneshot is never active before it fails; a plain service that exits at once is,
    # for a moment, and start() may see that moment and return.
    broken = (
        "[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh -c 'echo \"{name}: cannot reach the database\"; exit 3'\n"
    )
    fleet.submit((unit, broken))
    with pytest.raises(FleetError) as raised:
        fleet.start(unit)
    message = str(raised.value)
    assert f"{unit} failed on " in message
    assert f"{name}: cannot reach the database" in message


def test_fleet_moves_the_units_of_a_lost_machine(coreos_cluster, fleet, name):
    """fleet's core promise. Last: it kills a machine (started again at the end)."""
    unit = f"{name}.service"
    fleet.submit((unit, ticker(name)))
    fleet.start(unit)
    (row,) = rows_of(fleet, unit)
    (lost,) = [m for m in coreos_cluster if m.public_ipv4 == row.machine_ip]
    ttl = agent_ttl_seconds(coreos_cluster.user_data)
    lost.kill()
    try:
        survivor = fleet.on(next(m for m in coreos_cluster if m.running))
        started = time.monotonic()
        # Its row stays until the lost machine's registration expires (the agent TTL);
        # then fleet's engine schedules the unit onto a machine that is left.
        deadline = started + ttl + 120  # and VMs under emulation start units slowly
        while True:
            # The lost machine's row may linger, without its IP once fleet forgets it.
            rows = [r for r in rows_of(survivor, unit) if r.machine_id != row.machine_id]
            if rows and rows[0].active == "active":
                break
            assert time.monotonic() < deadline, f"{unit} not moved off {lost.name} in time"
            time.sleep(0.25)
        moved_after = time.monotonic() - started
        (moved_to,) = [m for m in coreos_cluster if m.public_ipv4 == rows[0].machine_ip]
        print(f"{unit} moved from {lost.name} to {moved_to.name} after {moved_after:.1f}s")
    finally:
        lost.start()
        coreos_cluster.wait_until_healthy(timeout=300)  # a VM boots again in minutes
        fleet.on(lost).wait_for_machines(len(coreos_cluster), timeout=300)
