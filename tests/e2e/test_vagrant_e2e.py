"""The vagrant provider on real VMs: Vagrant + vagrant-libvirt + QEMU boot three machines
of the stand-in box (``box/build-box``) through the plugin, and the same example suite the
local provider runs passes against them, with checks of the VMs' own on top
(``vagrant_machines.py``: etcd peers, SSH, units, a suspended and a halted member), the
systemd units suite users run on nspawn (``examples/systemd/check_units.py``) and, given
fleet (``$PYTEST_COREOS_FLEET``, as for the nspawn tests), the container suite
(``examples/containers/check_containers.py``, with the busybox test image given as
``--coreos-images``) and the real-fleet suite (``examples/fleet/check_fleet.py``, last:
it kills a machine).

Everything that talks to the VMs' addresses happens inside a network namespace this test
creates (``conftest.py``): libvirtd and virtlogd are started in it, and an inner pytest
runs in it. At the end (always) the namespace, the daemons, every domain, volume and
network are gone, checked.

Select it with ``-m vagrant_e2e``; it takes a few minutes (the box is built once and
cached). It needs root, and the Debian packages ``scripts/bootstrap`` installs.
"""

from __future__ import annotations

import os
import re
import signal
import types
from pathlib import Path

import pytest

from pytest_coreos.image.archive import busybox_image

pytestmark = pytest.mark.vagrant_e2e

CHECKS = Path(__file__).resolve().parent / "vagrant_machines.py"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The systemd units suite users run on nspawn, unchanged on VMs.
UNITS_SUITE = EXAMPLES / "systemd" / "check_units.py"
# The real-fleet suite users run on nspawn, unchanged on VMs; the release as for nspawn.
FLEET_SUITE = EXAMPLES / "fleet" / "check_fleet.py"
CONTAINERS_SUITE = EXAMPLES / "containers" / "check_containers.py"
FLEET_ENVIRONMENT = "PYTEST_COREOS_FLEET"
# The test an interrupted or killed inner run is about to run: any that needs the cluster.
PROBE = "test_private_addresses_are_the_seeds"


def test_three_vms_through_the_plugin(
    e2e: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timings: dict[str, str] = {}
    box, seconds, how = e2e.build_box()
    timings["box build"] = f"{seconds:.1f}s ({how})"
    dnsmasq_before = set(e2e.processes(r"dnsmasq .*libvirt"))
    checks = str(CHECKS.relative_to(e2e.REPO))
    log = tmp_path / "inner.log"
    fleet = os.environ.get(FLEET_ENVIRONMENT)
    image = busybox_image(tmp_path / "busybox.tar")
    fleet_args = (
        [
            f"--coreos-fleet={fleet}",
            # Both suites kill a machine in their last test; fleet's comes last.
            str(CONTAINERS_SUITE.relative_to(e2e.REPO)),
            str(FLEET_SUITE.relative_to(e2e.REPO)),
        ]
        if fleet
        else []
    )
    timings["fleet suite"] = "run" if fleet else f"not run ({FLEET_ENVIRONMENT} not set)"
    with e2e.open_lab() as lab:
        inner_status, lines = lab.run_inner(
            [
                *e2e.cluster_args(box, 3),
                f"--coreos-images={image}",
                # Files, not the examples/ folder: pytest drops a file argument that lies in
                # a folder argument, and the folder collects only test_*.py.
                str((EXAMPLES / "test_etcd_cluster.py").relative_to(e2e.REPO)),
                checks,
                str(UNITS_SUITE.relative_to(e2e.REPO)),
                *fleet_args,  # last: its last test kills a machine
            ],
            log,
        )
        left = lab.leftovers()

        # Ctrl-C while the VM boots: the session stops Vagrant and destroys the VM.
        interrupted = lab.run_inner(
            [*e2e.cluster_args(box, 1), f"{checks}::{PROBE}"],
            tmp_path / "interrupted.log",
            signal_when=(r"coreos: core-01: booting", signal.SIGINT),
        )
        left_interrupted = lab.leftovers()

        # kill -9 while the VM boots: the next run's --coreos-reap removes the VM.
        killed = lab.run_inner(
            [*e2e.cluster_args(box, 1), f"{checks}::{PROBE}"],
            tmp_path / "killed.log",
            signal_when=(r"coreos: core-01: booting", signal.SIGKILL),
        )
        left_killed = lab.leftovers()
        reaped = lab.run_inner(["--coreos-reap"], tmp_path / "reap.log")
        left_reaped = lab.leftovers()

    output = "\n".join(line for _, line in lines)
    up = e2e.seconds(lines, r"coreos: vagrant up finished in ([\d.]+)s")
    ready = e2e.seconds(lines, r"ready: .*\bready ([\d.]+)s")
    destroy = e2e.seconds(lines, r"coreos: vagrant destroy finished in ([\d.]+)s")
    timings["vagrant up (3 VMs)"] = f"{up}s"
    timings["ready after up"] = f"{ready}s"
    timings["vagrant destroy"] = f"{destroy}s"
    timings["inner session"] = f"{lines[-1][0]:.1f}s" if lines else "-"
    with capsys.disabled():
        print("\nvagrant e2e timings: " + ", ".join(f"{k} {v}" for k, v in timings.items()))

    assert inner_status == 0, f"the inner pytest failed ({log}):\n{output[-6000:]}"
    summary = lines[-1][1] if lines else ""
    assert re.search(r"\d+ passed", summary), output[-3000:]
    assert "skipped" not in summary, output[-3000:]
    assert "check_units.py::test_a_unit_deployed_from_a_test_runs_on_every_machine PASSED" in output
    assert "check_units.py::test_a_failing_unit_reports_its_journal PASSED" in output
    if fleet:
        assert "check_fleet.py::test_fleet_moves_the_units_of_a_lost_machine PASSED" in output
        moved = "test_fleet_moves_a_container_unit_off_a_lost_machine PASSED"
        assert f"check_containers.py::{moved}" in output
    assert left == [], f"left in libvirt after the inner run: {left}"

    interrupted_output = "\n".join(line for _, line in interrupted[1])
    assert interrupted[0] == 2, interrupted_output[-3000:]  # pytest's "interrupted"
    assert "vagrant destroy finished" in interrupted_output, interrupted_output[-3000:]
    assert left_interrupted == [], f"left after an interrupted vagrant up: {left_interrupted}"

    assert killed[0] == -signal.SIGKILL
    assert any(name.startswith("domain pytest-coreos-") for name in left_killed), left_killed
    reaped_output = "\n".join(line for _, line in reaped[1])
    assert reaped[0] == 0, reaped_output[-3000:]
    assert re.search(
        r"coreos: reaped (libvirt domain pytest-coreos-\S+-core-01|vagrant machines in /)",
        reaped_output,
    ), reaped_output[-3000:]
    assert left_reaped == [], f"left after --coreos-reap: {left_reaped}"
    e2e.assert_lab_gone(lab)
    assert set(e2e.processes(r"dnsmasq .*libvirt")) <= dnsmasq_before
