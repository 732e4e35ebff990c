"""Ignition on a real VM: one machine of the stand-in box booted through the plugin with
``--coreos-config=ignition``, its config handed to QEMU as Flatcar's firmware config entry
and applied by the box's agent (``vagrant_ignition_checks.py`` checks it from inside the
inner session). The VM, libvirtd and every request to the VM live in a network namespace
this test makes, as in ``test_vagrant_e2e.py``, whose helpers it uses.

Select it with ``-m vagrant_e2e``; it needs root and takes a few minutes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.vagrant_e2e

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "vagrant_ignition_checks.py"
_spec = importlib.util.spec_from_file_location("vagrant_e2e_helpers", HERE / "test_vagrant_e2e.py")
assert _spec is not None
assert _spec.loader is not None
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)


def test_one_vm_boots_from_its_ignition_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e2e._check_prerequisites()
    box, box_seconds, how = e2e._build_box()
    namespace = e2e.Namespace(f"pytest-coreos-e2e-{secrets.token_hex(3)}")
    vagrant_home = Path(tempfile.mkdtemp(prefix="pytest-coreos-e2e-vagrant-", dir="/var/tmp"))
    vagrant_home.chmod(0o755)  # QEMU runs as libvirt-qemu and reads the box's kernel here
    log = tmp_path / "inner.log"
    status: int | None = None
    lines: list[tuple[float, str]] = []
    left: list[str] = []
    daemons: dict[str, int] = {}
    try:
        with contextlib.ExitStack() as cleanup:
            subprocess.run(["ip", "netns", "add", namespace.name], check=True)
            cleanup.callback(subprocess.run, ["ip", "netns", "delete", namespace.name], check=False)
            namespace.run("ip", "link", "set", "lo", "up")
            cleanup.enter_context(e2e._kvm_device_for_libvirt())
            cleanup.enter_context(e2e._libvirt_host_files())
            cleanup.callback(namespace.stop_daemons)
            namespace.start_daemon("virtlogd")
            namespace.start_daemon("libvirtd")
            namespace.virsh("version")
            daemons.update(namespace.daemons)
            pool_existed = "default" in namespace.names("pool-list", "--all")
            cleanup.callback(lambda: e2e._clean_libvirt(namespace, pool_existed))
            e2e._clean_libvirt(namespace, pool_existed=True)
            networks_before = set(namespace.names("net-list"))
            status, lines = e2e._run_inner(
                namespace,
                vagrant_home,
                [
                    *e2e._cluster_args(box, 1),
                    "--coreos-config=ignition",
                    str(CHECKS.relative_to(e2e.REPO)),
                ],
                log,
            )
            left = e2e._leftovers(namespace, networks_before)
    finally:
        shutil.rmtree(vagrant_home, ignore_errors=True)

    output = "\n".join(line for _, line in lines)
    up = e2e._seconds(lines, r"coreos: vagrant up finished in ([\d.]+)s")
    with capsys.disabled():
        print(
            f"\nvagrant ignition e2e: box {box_seconds:.1f}s ({how}), vagrant up {up}s, "
            f"inner session {lines[-1][0] if lines else 0:.1f}s"
        )
    assert status == 0, f"the inner pytest failed ({log}):\n{output[-6000:]}"
    summary = lines[-1][1] if lines else ""
    assert re.search(r"2 passed", summary), output[-3000:]
    assert left == [], f"left in libvirt after the inner run: {left}"
    assert (
        namespace.name
        not in subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True
        ).stdout
    )
    for daemon, pid in daemons.items():
        assert not e2e._alive(pid), f"{daemon} (pid {pid}) still runs"
    assert not e2e._processes(r"qemu-system-x86_64 .*guest=pytest-coreos-")
