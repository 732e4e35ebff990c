"""A user's coreos-vagrant checkout, unmodified, boots the stand-in box through the plugin.

``tests/e2e/data/checkout-2014`` and ``checkout-2016`` are checkouts as users had them in
the two eras of coreos-vagrant's cloud-config years (``config.rb`` made from the sample as
the README said: three machines, the stable channel; the era's ``user-data``). The 2014 one
asks for ``coreos-stable`` with ``box_version = ">= 308.0.1"`` and a ``box_url`` to CoreOS's
box metadata; the 2016 one has ``$image_version``, ``ssh.insert_key = false``,
``forward_agent``, VirtualBox and VMware blocks, ``$vm_memory``. Both set
``config.vm.hostname`` and move the user-data with a file and a shell provisioner. The
plugin is given the stand-in ``.box`` file and the checkout, as a user would, and Vagrant
runs with its home inside a private home (mode 0700), as a user's is.

The inner run (inside this test's network namespace, ``conftest.py``) runs the example
suite, the systemd units suite (2016), ``vagrant_checkout_checks.py`` and, last (2016),
``vagrant_reset_checks.py``: ``cluster.reset()`` on the VMs. Select it with
``-m vagrant_e2e``; it needs root and takes a few minutes per checkout.
"""

from __future__ import annotations

import re
import stat
import types
from pathlib import Path

import pytest

pytestmark = pytest.mark.vagrant_e2e

HERE = Path(__file__).resolve().parent
CHECKS = "tests/e2e/vagrant_checkout_checks.py"
RESET_CHECKS = "tests/e2e/vagrant_reset_checks.py"  # last: it puts etcd's data back
SUITES = {
    "checkout-2014": ["examples/", CHECKS],
    "checkout-2016": ["examples/", "examples/systemd/check_units.py", CHECKS, RESET_CHECKS],
}


@pytest.mark.parametrize("checkout", sorted(SUITES))
def test_a_users_checkout_boots_unmodified(
    e2e: types.SimpleNamespace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkout: str,
) -> None:
    folder = HERE / "data" / checkout
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    box, _, _ = e2e.build_box()
    log = tmp_path / "inner.log"
    args = [arg for arg in e2e.cluster_args(box, 3) if not arg.startswith("--coreos-user-data=")]
    with e2e.open_lab() as lab:
        home = lab.vagrant_home.parent
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        status, lines = lab.run_inner(
            [
                *args,
                f"--coreos-vagrant-dir={folder}",
                f"--coreos-user-data={folder / 'user-data'}",
                *SUITES[checkout],
            ],
            log,
        )
        boxes = sorted(
            str(path.relative_to(lab.vagrant_home / "boxes"))
            for path in (lab.vagrant_home / "boxes").glob("*/*/*")
        )
        left = lab.leftovers()

    output = "\n".join(line for _, line in lines)
    up = e2e.seconds(lines, r"coreos: vagrant up finished in ([\d.]+)s")
    ready = e2e.seconds(lines, r"ready: .*\bready ([\d.]+)s")
    with capsys.disabled():
        print(f"\n{checkout}: vagrant up {up}s, ready after up {ready}s")
    assert status == 0, f"the inner pytest failed ({log}):\n{output[-6000:]}"
    summary = lines[-1][1] if lines else ""
    assert re.search(r"\d+ passed", summary), output[-3000:]
    assert "skipped" not in summary, output[-3000:]
    if RESET_CHECKS in SUITES[checkout]:
        assert f"{RESET_CHECKS}::test_a_reset_returns_the_vms_to_the_state_kept PASSED" in output
    # Vagrant added the stand-in under the name and a version the Vagrantfile asks for.
    assert len(boxes) == 1, boxes
    name, version, provider = boxes[0].split("/")
    assert (name, provider) == ("coreos-stable", "libvirt")
    assert [int(part) for part in version.split(".")] >= [308, 0, 1]
    # The checkout itself is never changed.
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert left == [], f"left in libvirt after the inner run: {left}"
    e2e.assert_lab_gone(lab)
