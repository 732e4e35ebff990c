"""What a user of pytest-coreos writes to test systemd units on a cluster's machines.

The machines must run systemd (not the default local provider's)::

    pytest --coreos-provider=nspawn --coreos-instances=3 \
        --coreos-user-data=examples/systemd/user-data examples/systemd/check_units.py

The file is not named ``test_*.py``, so ``pytest examples/`` does not collect it.
"""

import uuid

import pytest

from pytest_coreos import UnitError

TICKER = """\
[Unit]
Description=Counts the seconds in /run/{name}

[Service]
ExecStart=/bin/sh -c 'n=0; while :; do n=$((n+1)); echo $n > /run/{name}; sleep 1; done'
"""

BROKEN = """\
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "{marker}: cannot reach the database"; exit 3'
"""


@pytest.fixture
def unit(coreos_cluster):
    """A unit name of this test's own, removed from every machine afterwards."""
    name = f"check-{uuid.uuid4().hex[:8]}.service"
    yield name
    coreos_cluster.units.remove(name)


def test_the_user_data_unit_runs_on_every_machine(coreos_cluster):
    # The user-data's units are started as the machines boot; give them a moment.
    coreos_cluster.units.wait("hello.service", "active", timeout=60)
    for machine in coreos_cluster:
        status = machine.systemd.status("hello.service")
        assert status.active
        assert status.unit_file_state == "enabled"
        # $private_ipv4 in the unit became the machine's own address.
        assert machine.ssh.read_text("/run/hello").startswith(f"hello from {machine.private_ipv4}")


def test_a_unit_deployed_from_a_test_runs_on_every_machine(coreos_cluster, unit):
    statuses = coreos_cluster.units.deploy(unit, TICKER.format(name=unit))
    assert sorted(statuses) == sorted(machine.name for machine in coreos_cluster)
    assert all(status.active for status in statuses.values())
    for machine in coreos_cluster:
        assert machine.systemd.is_active(unit)
        assert "Started" in machine.systemd.journal(unit)


def test_a_unit_deployed_to_one_machine_runs_there_only(coreos_cluster, unit):
    chosen, *others = coreos_cluster.machines
    coreos_cluster.units.deploy(unit, TICKER.format(name=unit), machines=[chosen])
    assert chosen.systemd.is_active(unit)
    for machine in others:
        assert machine.systemd.status(unit).load_state == "not-found"


def test_a_failing_unit_reports_its_journal(coreos_cluster, unit):
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UnitError) as failure:
        coreos_cluster.units.deploy(unit, BROKEN.format(marker=marker), timeout=30)
    error = failure.value
    for machine in coreos_cluster:
        assert machine.name in str(error)
    assert "failed" in str(error)
    assert f"{marker}: cannot reach the database" in error.journal
    for machine in coreos_cluster:
        assert machine.systemd.status(unit).failed
