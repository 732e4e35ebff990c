"""The Vagrant phase benchmark's arithmetic, on progress lines of the plugin's kind."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

LINES = [
    "coreos: vagrant up: 2 machine(s), log in /tmp/x/vagrant.log",
    "coreos: core-01: starting (+2s)",
    "coreos: core-02: starting (+3s)",
    "coreos: core-01: booting (+4s)",
    "coreos: core-01: booted (+40s)",
    "coreos: core-02: booted (+45s)",
    "coreos: core-01: setting the hostname (+40s)",
    "coreos: core-01: configuring the network (+42s)",
    "coreos: core-02: setting the hostname (+45s)",
    "coreos: core-02: configuring the network (+46s)",
    "coreos: core-01: provisioning (file) (+44s)",
    "coreos: core-02: provisioning (file) (+49s)",
    "coreos: core-01: provisioning (shell) (+46s)",
    "coreos: core-01: provisioning (pytest-coreos-setup) (+48s)",
    "coreos: core-01: running (+50s)",
    "coreos: core-02: running (+54s)",
    "coreos: vagrant up finished in 55.2s",
    "cluster-1 ready: discovery 0.100s, config 0.050s, spawn 56.500s, ready 3.000s, total 59.650s",
]


@pytest.fixture(scope="module")
def phases(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("vagrant_phases")


def test_each_phase_is_its_slowest_machines(phases: ModuleType) -> None:
    figures = phases.run_phases(LINES)
    assert figures["boot to SSH"] == 42  # core-02: +3s to +45s
    assert figures["hostname"] == 2
    assert figures["network"] == 3  # core-02: +46s to its first provisioner at +49s
    assert figures["provisioners"] == 6  # core-01: +44s to +50s; core-02: +49s to +54s
    assert figures["vagrant up"] == 55.2
    assert figures["ready after up"] == 3.0
    assert figures["plugin's own work"] == pytest.approx(56.5 - 55.2 + 0.1 + 0.05)
    assert figures["up to ready"] == pytest.approx(58.2)


def test_a_vagrantfile_without_a_hostname_has_no_hostname_phase(phases: ModuleType) -> None:
    lines = [line for line in LINES if "hostname" not in line]
    assert "hostname" not in phases.run_phases(lines)
