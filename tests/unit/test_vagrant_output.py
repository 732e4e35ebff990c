"""Reading Vagrant's output, on output captured from Vagrant 2.3.4 + vagrant-libvirt 0.11.2
booting three machines of the stand-in box (tests/data/vagrant/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coreos.providers.vagrant.output import (
    Event,
    Progress,
    error_messages,
    log_line,
    parse_line,
    parse_machine_readable,
    parse_ssh_config,
    parse_status,
    step_of,
)

DATA = Path(__file__).parents[1] / "data" / "vagrant"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def test_a_line_is_timestamp_target_kind_and_data_with_vagrants_escapes() -> None:
    event = parse_line(
        "1795642462,core-03,ui,warn,==> core-03: No version detected for box%!(VAGRANT_COMMA)"
        " using timestamp\\n==> core-03: generating a local metadata\n"
    )
    assert event == Event(
        timestamp=1795642462,
        target="core-03",
        kind="ui",
        data=(
            "warn",
            "==> core-03: No version detected for box, using timestamp\n"
            "==> core-03: generating a local metadata",
        ),
    )
    assert (
        event.message == "No version detected for box, using timestamp\ngenerating a local metadata"
    )


@pytest.mark.parametrize("line", ["", "Bringing machine up", "abc,core-01,ui,info,x", "1,2"])
def test_other_lines_are_no_events(line: str) -> None:
    assert parse_line(line) is None


def test_status_of_machines_not_yet_created() -> None:
    assert parse_status(sample("status-not-created.txt")) == {
        "core-01": "not_created",
        "core-02": "not_created",
        "core-03": "not_created",
    }


def test_status_running_paused_and_shut_off() -> None:
    assert parse_status(sample("status-running.txt")) == dict.fromkeys(
        ("core-01", "core-02", "core-03"), "running"
    )
    assert parse_status(sample("status-running-paused-shutoff.txt")) == {
        "core-01": "running",
        "core-02": "paused",
        "core-03": "shutoff",
    }
    assert set(parse_status(sample("status-destroyed.txt")).values()) == {"not_created"}


def test_ssh_config_of_every_machine() -> None:
    configs = parse_ssh_config(sample("ssh-config-3-machines.txt"))
    assert list(configs) == ["core-01", "core-02", "core-03"]
    core02 = configs["core-02"]
    assert (core02.hostname, core02.port, core02.user) == ("192.168.121.198", 22, "vagrant")
    assert core02.identity_files == ("/tmp/pcdev/vagrant.d/insecure_private_key",)
    assert core02.options["stricthostkeychecking"] == "no"


def test_ssh_config_with_quoted_paths_and_several_keys() -> None:
    configs = parse_ssh_config(
        "Host default\n  HostName 127.0.0.1\n  Port 2222\n  User core\n"
        '  IdentityFile "/home/a user/.vagrant.d/insecure_private_key"\n'
        "  IdentityFile /home/a/.ssh/id_ed25519\n"
    )
    assert configs["default"].port == 2222
    assert configs["default"].identity_files == (
        "/home/a user/.vagrant.d/insecure_private_key",
        "/home/a/.ssh/id_ed25519",
    )


def test_why_a_command_failed() -> None:
    events = parse_machine_readable(sample("error-machine-not-found.txt"))
    assert error_messages(events) == [
        "The machine with the name 'core-09' was not found configured for\n"
        "this Vagrant environment."
    ]


def test_progress_of_a_three_machine_up_is_one_line_per_machine_step() -> None:
    progress = Progress()
    shown = [
        line for raw in sample("up-3-machines.txt").splitlines() if (line := progress.feed(raw))
    ]
    # Vagrant's 132 lines become a handful per machine, in the order they happened.
    assert len(shown) < 40
    core01 = [line for line in shown if line.startswith("core-01:")]
    assert [line.split(": ", 1)[1].split(" (+")[0] for line in core01] == [
        "creating its disk",
        "creating the VM",
        "starting",
        "booting",
        "waiting for SSH",
        "booted",
        "configuring the network",
        "provisioning (user-data)",
        "provisioning (pytest-coreos-setup)",
        "running",
    ]
    assert core01[-1] == "core-01: running (+104s)"
    assert progress.steps == dict.fromkeys(("core-01", "core-02", "core-03"), "running")


def test_progress_of_the_fault_commands() -> None:
    def steps(name: str) -> list[str]:
        progress = Progress()
        return [line for raw in sample(name).splitlines() if (line := progress.feed(raw))]

    assert steps("suspend.txt") == ["core-02: suspending (+0s)", "core-02: suspended (+0s)"]
    assert [s.split(" (+")[0] for s in steps("resume.txt")] == [
        "core-02: resuming",
        "core-02: waiting for SSH",
        "core-02: booted",
        "core-02: running",
    ]
    assert [s.split(" (+")[0] for s in steps("halt.txt")] == [
        "core-03: shutting down",
        "core-03: halted",
    ]
    assert [s.split(" (+")[0] for s in steps("halt-force.txt")] == [
        "core-01: powering off",
        "core-01: halted",
    ]
    assert [s.split(" (+")[0] for s in steps("up-halted-machine.txt")][-1] == "core-01: running"
    # vagrant-libvirt failing to remove a network it did not make: the last machine's
    # domain is gone, its "destroyed" never comes, and the error says why
    assert [s.split(" (+")[0] for s in steps("destroy-with-network-error.txt")] == [
        "core-03: destroying",
        "core-03: destroyed",
        "core-02: destroying",
        "core-02: destroyed",
        "core-01: destroying",
    ]
    events = parse_machine_readable(sample("destroy-with-network-error.txt"))
    assert error_messages(events)[0].startswith(
        "Error while removing network pytest-coreos-172-17-8."
    )


def test_a_failure_is_a_step_too() -> None:
    event = Event(1, "core-01", "error-exit", ("Vagrant::Errors::VMBootTimeout", "Timed out\nmore"))
    assert step_of(event) == "failed: Timed out"


def test_the_log_file_reads_like_vagrants_own_output() -> None:
    lines = sample("up-3-machines.txt").splitlines()
    assert log_line(lines[3]) == "Bringing machine 'core-01' up with 'libvirt' provider..."
    assert log_line(lines[0]) == "[core-01] metadata provider libvirt"
    assert log_line("stray text from stderr\n") == "stray text from stderr"
