"""systemd units through ``machine.systemd`` and ``cluster.units``: the parsing of
``systemctl show`` on captured output, the local provider's refusal, and everything else on
real systemd in real nspawn containers (root only, as CI runs)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from pytest_coreos import Cluster, UnitError, UnitsError, UnitStatus
from pytest_coreos.handles.systemd import journal_text, parse_unit_status, unit_name

# Only root can run containers; as root a missing systemd-nspawn is a failure to see.
# ``systemctl show --property=Id,Description,LoadState,ActiveState,SubState,MainPID,Result,
# UnitFileState,ExecMainStatus UNIT`` on the stand-in rootfs (systemd 252), as printed.
SHOW_RUNNING = (
    "MainPID=80\nResult=success\nExecMainStatus=0\nId=etcd.service\n"
    "Description=etcd - highly-available key value store\nLoadState=loaded\n"
    "ActiveState=active\nSubState=running\nUnitFileState=enabled\n"
)
SHOW_FAILED = (
    "MainPID=0\nResult=exit-code\nExecMainStatus=3\nId=boom.service\n"
    "Description=boom.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\n"
    "UnitFileState=static\n"
)
SHOW_AUTO_RESTART = (
    "MainPID=0\nResult=exit-code\nExecMainStatus=4\nId=crash.service\n"
    "Description=crash.service\nLoadState=loaded\nActiveState=activating\n"
    "SubState=auto-restart\nUnitFileState=static\n"
)
SHOW_BAD_SETTING = (
    "MainPID=0\nResult=success\nExecMainStatus=0\nId=bad.service\nDescription=bad.service\n"
    "LoadState=bad-setting\nActiveState=inactive\nSubState=dead\nUnitFileState=static\n"
)
SHOW_NOT_FOUND = (
    "MainPID=0\nResult=success\nExecMainStatus=0\nId=nope.service\nLoadState=not-found\n"
    "ActiveState=inactive\nSubState=dead\nUnitFileState=\n"
)

LOOP = """\
[Unit]
Description=A loop that marks its machine

[Service]
ExecStart=/bin/sh -c 'hostname > /run/{name}.ran; while sleep 1; do :; done'

[Install]
WantedBy=multi-user.target
"""
# Prints a marker to its journal, then fails (as a service missing its database would).
FAILING = """\
[Service]
ExecStart=/bin/sh -c 'echo "{marker} giving up"; exit 3'
"""
SLOW = """\
[Service]
ExecStartPre=/bin/sleep {seconds}
ExecStart=/bin/sh -c 'while sleep 1; do :; done'
"""
# Held at its ExecStartPre until the file {gate} exists.
GATED = """\
[Service]
ExecStartPre=/bin/sh -c 'until [ -e {gate} ]; do sleep 0.05; done'
ExecStart=/bin/sh -c 'while sleep 1; do :; done'
"""


# -- parsing ---------------------------------------------------------------------------------
def test_a_running_service_is_parsed() -> None:
    assert parse_unit_status(SHOW_RUNNING) == UnitStatus(
        name="etcd.service",
        description="etcd - highly-available key value store",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        main_pid=80,
        result="success",
        unit_file_state="enabled",
        exit_status=0,
    )
    status = parse_unit_status(SHOW_RUNNING)
    assert status.active
    assert not status.failed
    assert str(status) == "etcd.service active (running)"


def test_a_failed_service_keeps_its_result_and_exit_status() -> None:
    status = parse_unit_status(SHOW_FAILED)
    assert status.failed
    assert not status.active
    assert status.main_pid is None  # MainPID=0: nothing runs
    assert (status.result, status.exit_status) == ("exit-code", 3)
    assert str(status) == "boom.service failed (failed), result exit-code, exit status 3"


def test_a_restarting_service_is_activating_with_the_last_failure() -> None:
    status = parse_unit_status(SHOW_AUTO_RESTART)
    assert (status.active_state, status.sub_state) == ("activating", "auto-restart")
    assert str(status) == (
        "crash.service activating (auto-restart), result exit-code, exit status 4"
    )


def test_unknown_and_broken_units_say_so_in_their_load_state() -> None:
    missing = parse_unit_status(SHOW_NOT_FOUND)
    assert (missing.load_state, missing.unit_file_state, missing.description) == (
        "not-found",
        "",
        "",
    )
    assert str(missing) == "nope.service inactive (dead), not-found"
    assert str(parse_unit_status(SHOW_BAD_SETTING)) == "bad.service inactive (dead), bad-setting"


def test_output_without_an_id_takes_the_unit_asked_for() -> None:
    text = SHOW_RUNNING.replace("Id=etcd.service\n", "")
    assert parse_unit_status(text, "etcd2.service").name == "etcd2.service"


@pytest.mark.parametrize("text", ["", "Failed to connect to bus: No such file or directory\n"])
def test_what_is_not_systemctl_show_output_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not the output of systemctl show"):
        parse_unit_status(text, "x.service")


def test_an_empty_journal_is_empty_text() -> None:
    assert journal_text("-- No entries --\n") == ""
    line = "Nov 25 23:45:59.457491 core-01 sh[179]: boom-marker\n"
    assert journal_text(line) == line


@pytest.mark.parametrize(
    ("given", "full"),
    [
        ("etcd", "etcd.service"),
        ("etcd.service", "etcd.service"),
        ("getty@tty1.service", "getty@tty1.service"),
        ("fleet.socket", "fleet.socket"),
        ("backup.timer", "backup.timer"),
    ],
)
def test_unit_names_get_service_as_systemctl_does(given: str, full: str) -> None:
    assert unit_name(given) == full


@pytest.mark.parametrize("name", ["", "a b.service", "../etc/passwd", "x;reboot", "x.conf"])
def test_what_is_not_a_unit_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a systemd unit name"):
        unit_name(name)


# -- the local provider: no systemd ----------------------------------------------------------
@pytest.fixture(scope="module")
def local_cluster(coreos_cluster_factory) -> Iterator[Cluster]:
    with coreos_cluster_factory(instances=1) as cluster:
        yield cluster


@pytest.mark.parametrize(
    "call",
    [
        lambda systemd: systemd.status("etcd"),
        lambda systemd: systemd.is_active("etcd"),
        lambda systemd: systemd.start("etcd"),
        lambda systemd: systemd.stop("etcd"),
        lambda systemd: systemd.restart("etcd"),
        lambda systemd: systemd.enable("etcd"),
        lambda systemd: systemd.disable("etcd"),
        lambda systemd: systemd.daemon_reload(),
        lambda systemd: systemd.journal("etcd"),
        lambda systemd: systemd.wait_until("etcd", timeout=1),
        lambda systemd: systemd.install("x.service", "[Service]\nExecStart=/bin/true\n"),
        lambda systemd: systemd.remove("x.service"),
    ],
    ids=[
        "status",
        "is_active",
        "start",
        "stop",
        "restart",
        "enable",
        "disable",
        "daemon_reload",
        "journal",
        "wait_until",
        "install",
        "remove",
    ],
)
def test_the_local_provider_has_no_systemd_and_says_which_providers_do(
    local_cluster: Cluster, call
) -> None:
    machine = local_cluster["core-01"]
    with pytest.raises(UnitError) as failure:
        call(machine.systemd)
    assert str(failure.value) == (
        "core-01: the local provider runs no systemd (its machines are etcd and sshd processes "
        "on this host); use --coreos-provider=nspawn or --coreos-provider=vagrant to test "
        "systemd units"
    )
    assert not isinstance(failure.value, UnitsError)


@pytest.mark.parametrize(
    "call",
    [
        lambda units: units.deploy("x.service", "[Service]\nExecStart=/bin/true\n"),
        lambda units: units.wait("etcd"),
        lambda units: units.status("etcd"),
        lambda units: units.remove("x.service"),
    ],
    ids=["deploy", "wait", "status", "remove"],
)
def test_the_local_provider_refuses_cluster_units_with_one_error(
    local_cluster: Cluster, call
) -> None:
    with pytest.raises(UnitError, match="local provider runs no systemd") as failure:
        call(local_cluster.units)
    assert not isinstance(failure.value, UnitsError)  # one error, not one per machine


# -- real systemd in nspawn containers -------------------------------------------------------
@pytest.fixture(scope="module")
def containers(coreos_cluster_factory) -> Iterator[Cluster]:
    """Three containers shared by this module's tests; each test names its own units."""
    if os.geteuid() != 0:
        pytest.skip("containers need root (CI runs these tests as root)")
    with coreos_cluster_factory(instances=3, provider="nspawn") as cluster:
        yield cluster


@pytest.fixture
def unit(containers: Cluster) -> Iterator[str]:
    """A unit name of the test's own, removed from every container afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}.service"
    yield name
    containers.units.remove(name)


@pytest.mark.needs_root
def test_install_start_restart_enable_stop_and_remove_one_unit(
    containers: Cluster, unit: str
) -> None:
    machine = containers["core-02"]
    systemd = machine.systemd
    assert systemd.status(unit).load_state == "not-found"
    assert systemd.install(unit, LOOP.format(name=unit)) == f"/etc/systemd/system/{unit}"
    installed = systemd.status(unit)
    assert (installed.load_state, installed.active_state) == ("loaded", "inactive")
    assert installed.description == "A loop that marks its machine"
    assert installed.unit_file_state == "disabled"

    started = systemd.start(unit)
    assert (started.active_state, started.sub_state) == ("active", "running")
    assert started.main_pid is not None
    assert systemd.is_active(unit)
    machine.ssh.run(["kill", "-0", str(started.main_pid)])  # a process of that machine
    assert systemd.wait_until(unit, "active", timeout=5).active
    assert machine.ssh.read_text(f"/run/{unit}.ran") == "core-02\n"
    assert not containers["core-01"].systemd.is_active(unit)  # that machine only

    restarted = systemd.restart(unit)
    assert restarted.active
    assert restarted.main_pid not in (None, started.main_pid)

    systemd.enable(unit)
    assert systemd.status(unit).unit_file_state == "enabled"
    assert machine.ssh.run(
        ["test", "-L", f"/etc/systemd/system/multi-user.target.wants/{unit}"], check=False
    ).ok
    systemd.disable(unit)
    assert systemd.status(unit).unit_file_state == "disabled"

    stopped = systemd.stop(unit)
    assert (stopped.active_state, stopped.main_pid) == ("inactive", None)
    journal = systemd.journal(unit)
    assert f"Started {unit}" in journal or "Started A loop that marks its machine" in journal
    assert "Stopped" in journal
    assert len(systemd.journal(unit, lines=2).splitlines()) == 2

    systemd.remove(unit)
    assert systemd.status(unit).load_state == "not-found"
    assert not machine.ssh.run(["test", "-e", f"/etc/systemd/system/{unit}"], check=False).ok
    assert systemd.journal("never-ran.service") == ""


@pytest.mark.needs_root
def test_enable_now_and_a_runtime_unit(containers: Cluster, unit: str) -> None:
    systemd = containers["core-03"].systemd
    assert systemd.install(unit, LOOP.format(name=unit), runtime=True) == (
        f"/run/systemd/system/{unit}"
    )
    systemd.enable(unit, now=True, runtime=True)
    assert systemd.status(unit).active
    assert systemd.status(unit).unit_file_state == "enabled-runtime"
    systemd.disable(unit, now=True)
    assert systemd.status(unit).active_state == "inactive"


@pytest.mark.needs_root
def test_wait_until_follows_a_slow_start_and_a_stop(
    containers: Cluster, unit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = containers["core-01"]
    systemd = machine.systemd
    gate = f"/run/{unit}.gate"
    systemd.install(unit, GATED.format(gate=gate))
    # The start waits at its ExecStartPre until the gate opens, and the gate opens only
    # once the wait has seen the unit activating: the order is fixed, whoever is faster.
    seen: list[str] = []
    read_status = systemd.status

    def status_opening_the_gate_once_activating(name: str) -> UnitStatus:
        status = read_status(name)
        if not seen or seen[-1] != f"{status.active_state} ({status.sub_state})":
            seen.append(f"{status.active_state} ({status.sub_state})")
        if status.active_state == "activating":
            machine.ssh.run(["touch", gate])
        return status

    monkeypatch.setattr(systemd, "status", status_opening_the_gate_once_activating)
    machine.ssh.run(["systemctl", "--no-block", "start", unit])
    status = systemd.wait_until(unit, "active", timeout=30)
    assert (status.active_state, status.sub_state) == ("active", "running")
    # Maybe not yet started when first looked at; then held at start-pre; then running.
    assert seen[-2:] == ["activating (start-pre)", "active (running)"], seen
    assert set(seen[:-2]) <= {"inactive (dead)"}, seen
    machine.ssh.run(["systemctl", "--no-block", "stop", unit])
    assert systemd.wait_until(unit, "inactive", timeout=30).sub_state == "dead"
    machine.ssh.run(["rm", "-f", gate])


@pytest.mark.needs_root
def test_a_failing_unit_fails_the_wait_at_once_with_its_journal(
    containers: Cluster, unit: str
) -> None:
    machine = containers["core-02"]
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    machine.systemd.install(unit, FAILING.format(marker=marker))
    machine.systemd.start(unit)  # a simple service: started once its process runs
    began = time.monotonic()
    with pytest.raises(UnitError) as failure:
        machine.systemd.wait_until(unit, "active", timeout=60)
    # Failed is final: no waiting out the timeout (60 s). How fast: benchmarks/reaction.py.
    assert time.monotonic() - began < 30
    error = failure.value
    assert str(error).startswith(f"core-02: {unit} failed while waiting for active: ")
    assert "result exit-code, exit status 3" in str(error)
    assert f"{marker} giving up" in error.journal
    assert f"{marker} giving up" in str(error)
    assert (error.machine, error.unit) == ("core-02", unit)
    assert error.status is not None
    assert error.status.exit_status == 3
    # Waiting for the failure itself succeeds.
    assert machine.systemd.wait_until(unit, "failed", timeout=5).failed


@pytest.mark.needs_root
def test_a_wait_that_times_out_names_the_state_seen(containers: Cluster, unit: str) -> None:
    machine = containers["core-03"]
    machine.systemd.install(unit, SLOW.format(seconds=60))
    machine.ssh.run(["systemctl", "--no-block", "start", unit])
    began = time.monotonic()
    with pytest.raises(UnitError) as failure:
        machine.systemd.wait_until(unit, "active", timeout=1)
    assert 1 <= time.monotonic() - began < 20  # the timeout, not the 60 s start
    assert str(failure.value).startswith(
        f"core-03: {unit} not active after 1s; last seen: {unit} activating (start-pre)"
    )
    assert f"Starting {unit}" in failure.value.journal


@pytest.mark.needs_root
def test_a_start_that_fails_raises_with_the_state_and_journal(
    containers: Cluster, unit: str
) -> None:
    machine = containers["core-01"]
    machine.systemd.install(unit, "[Service]\nExecStart=relative/path\n")
    with pytest.raises(UnitError) as failure:
        machine.systemd.start(unit)
    error = failure.value
    assert f"'systemctl start {unit}' exited with status 1" in str(error)
    assert "bad unit file setting" in str(error)
    assert "Neither a valid executable name nor an absolute path" in error.journal
    with pytest.raises(UnitError, match=r"cannot become active: .* bad-setting"):
        machine.systemd.wait_until(unit, timeout=30)


@pytest.mark.needs_root
def test_bad_names_and_states_are_refused_before_anything_runs(containers: Cluster) -> None:
    systemd = containers["core-01"].systemd
    with pytest.raises(ValueError, match="is not a systemd unit name"):
        systemd.install("../../etc/passwd", "")
    with pytest.raises(ValueError, match="'running' is not a unit's active state; one of: "):
        systemd.wait_until("etcd", "running")


@pytest.mark.needs_root
def test_the_agent_started_etcd_as_a_unit(containers: Cluster) -> None:
    statuses = containers.units.status("etcd")
    assert sorted(statuses) == ["core-01", "core-02", "core-03"]
    assert all(status.active for status in statuses.values())
    assert all(status.name == "etcd.service" for status in statuses.values())


# -- cluster.units ----------------------------------------------------------------------------
@pytest.mark.needs_root
def test_deploy_to_every_machine_then_remove(containers: Cluster, unit: str) -> None:
    statuses = containers.units.deploy(unit, LOOP.format(name=unit), enable=True)
    assert sorted(statuses) == ["core-01", "core-02", "core-03"]
    for machine in containers:
        assert statuses[machine.name].active
        assert statuses[machine.name].unit_file_state == "enabled"
        assert machine.ssh.read_text(f"/run/{unit}.ran") == f"{machine.name}\n"
    assert containers.units.wait(unit, "active", timeout=5) == {
        name: containers[name].systemd.status(unit) for name in statuses
    }
    containers.units.remove(unit)
    for machine in containers:
        assert machine.systemd.status(unit).load_state == "not-found"


@pytest.mark.needs_root
def test_deploy_to_some_machines_only(containers: Cluster, unit: str) -> None:
    statuses = containers.units.deploy(
        unit, LOOP.format(name=unit), machines=["core-01", containers["core-03"]]
    )
    assert sorted(statuses) == ["core-01", "core-03"]
    assert containers["core-02"].systemd.status(unit).load_state == "not-found"
    assert containers.units.wait(unit, machines=["core-03"]).keys() == {"core-03"}
    with pytest.raises(KeyError, match="no machine 'core-09'"):
        containers.units.deploy(unit, LOOP.format(name=unit), machines=["core-09"])


@pytest.mark.needs_root
def test_a_deploy_that_fails_names_each_machine_with_its_journal(
    containers: Cluster, unit: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    with pytest.raises(UnitError) as failure:
        containers.units.deploy(unit, FAILING.format(marker=marker), timeout=60)
    # Not the timeout (60 s); how fast: benchmarks/reaction.py.
    assert time.monotonic() - began < 30
    error = failure.value
    assert isinstance(error, UnitsError)
    assert str(error).startswith(
        f"deploying {unit} failed on 3 of 3 machine(s): core-01, core-02, core-03\n"
    )
    assert [each.machine for each in error.errors] == ["core-01", "core-02", "core-03"]
    for each in error.errors:
        assert f"{each.machine}: {unit} failed while waiting for active" in str(error)
        assert f"{marker} giving up" in each.journal
        assert f"{each.machine} sh[" in each.journal  # the journal of that very machine
    assert error.journal.count(f"{marker} giving up") == 3
    # Expected to fail: waiting for failed succeeds.
    statuses = containers.units.deploy(unit, FAILING.format(marker=marker), state="failed")
    assert all(status.failed for status in statuses.values())


@pytest.mark.needs_root
def test_a_deploy_that_fails_on_one_machine_names_that_one(containers: Cluster, unit: str) -> None:
    # Fails where a file exists: on core-02 only.
    containers["core-02"].ssh.run(["touch", f"/run/{unit}.fail"])
    content = (
        "[Service]\nExecStart=/bin/sh -c 'test -e /run/%n.fail && echo fails-here && exit 3; "
        "while sleep 1; do :; done'\n"
    )
    with pytest.raises(UnitsError) as failure:
        containers.units.deploy(unit, content)
    error = failure.value
    assert error.machine == "core-02"
    assert str(error).startswith(f"deploying {unit} failed on 1 of 3 machine(s): core-02\n")
    assert "fails-here" in error.journal
    assert containers["core-01"].systemd.is_active(unit)
    assert containers["core-03"].systemd.is_active(unit)


@pytest.mark.needs_root
def test_a_slow_daemon_reload_leaves_the_unit_its_whole_timeout(
    containers: Cluster, unit: str
) -> None:
    """As on an emulated VM, where a daemon-reload takes seconds: deploy's timeout is the
    unit's, from its start, so a reload slower than the timeout does not cut the start
    short (it did: the start got what was left, at least 1 s, and was killed then)."""
    slow_generator = "/etc/systemd/system-generators/pytest-coreos-test-slow-generator"
    for machine in containers:
        machine.ssh.run(f"printf '#!/bin/sh\\nsleep 2.5\\n' > {slow_generator}")
        machine.ssh.run(["chmod", "+x", slow_generator])
    try:
        began = time.monotonic()
        statuses = containers.units.deploy(unit, SLOW.format(seconds=1.5), timeout=3)
        took = time.monotonic() - began
    finally:
        for machine in containers:
            machine.ssh.run(["rm", "-f", slow_generator])
    assert all(status.active for status in statuses.values())
    assert took >= 2.5 + 1.5  # the reload, then the unit's own start
