"""Ignition on a real VM: one machine of the stand-in box booted through the plugin with
``--coreos-config=ignition``, its config handed to QEMU as Flatcar's firmware config entry
and applied by the box's agent (``vagrant_ignition_checks.py`` checks it from inside the
inner session). The VM, libvirtd and every request to the VM live in a network namespace
this test makes (``conftest.py``), as for ``test_vagrant_e2e.py``.

Select it with ``-m vagrant_e2e``; it needs root and takes a few minutes.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.vagrant_e2e

CHECKS = Path(__file__).resolve().parent / "vagrant_ignition_checks.py"


def test_one_vm_boots_from_its_ignition_config(
    e2e: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box, box_seconds, how = e2e.build_box()
    log = tmp_path / "inner.log"
    with e2e.open_lab() as lab:
        status, lines = lab.run_inner(
            [
                *e2e.cluster_args(box, 1),
                "--coreos-config=ignition",
                str(CHECKS.relative_to(e2e.REPO)),
            ],
            log,
        )
        left = lab.leftovers()

    output = "\n".join(line for _, line in lines)
    up = e2e.seconds(lines, r"coreos: vagrant up finished in ([\d.]+)s")
    with capsys.disabled():
        print(
            f"\nvagrant ignition e2e: box {box_seconds:.1f}s ({how}), vagrant up {up}s, "
            f"inner session {lines[-1][0] if lines else 0:.1f}s"
        )
    assert status == 0, f"the inner pytest failed ({log}):\n{output[-6000:]}"
    summary = lines[-1][1] if lines else ""
    assert re.search(r"2 passed", summary), output[-3000:]
    assert left == [], f"left in libvirt after the inner run: {left}"
    e2e.assert_lab_gone(lab)
