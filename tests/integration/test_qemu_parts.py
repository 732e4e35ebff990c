"""The qemu provider's parts that need no VM: the disk it boots (real qemu-img, a box
unpacked once), its accelerator choice (QEMU itself, tried here), MAC addresses, and QMP
against a real QEMU that runs no guest (``-machine none``)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from pytest_coreos.errors import ConfigError, ProcessError
from pytest_coreos.providers.qemu import image, machines, qmp

VAGRANTFILE = 'Vagrant.configure("2") { |c| c.vm.provider :libvirt { |l| l.cmd_line = "root=/dev/vda quiet" } }\n'  # noqa: E501


def make_box(path: Path, disk: Path, *, provider: str = "libvirt") -> Path:
    members = {
        "box.img": disk.read_bytes(),
        "vmlinuz": b"kernel",
        "initrd.img": b"initrd",
        "Vagrantfile": VAGRANTFILE.encode(),
        "metadata.json": f'{{"provider": "{provider}", "format": "qcow2"}}'.encode(),
        "../escape": b"never extracted",
    }
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def qcow2(path: Path, size: str = "8M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def test_a_qcow2_or_raw_image_is_booted_by_its_own_bootloader(tmp_path: Path) -> None:
    disk = qcow2(tmp_path / "flatcar_production_qemu_image.img")
    found = image.find_image(disk, lambda: pytest.fail("no box to build"))
    assert (found.disk, found.format, found.boot_arguments()) == (disk, "qcow2", [])
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(2 << 20))
    assert image.find_image(raw, lambda: raw).format == "raw"


def test_a_libvirt_box_is_unpacked_once_and_boots_its_kernel(tmp_path: Path) -> None:
    box = make_box(tmp_path / "stand-in.box", qcow2(tmp_path / "box.img"))
    cache = tmp_path / "cache"
    found = image.find_image(box, lambda: pytest.fail("no box to build"), cache)
    assert found.format == "qcow2"
    assert found.boot_arguments() == [
        "-kernel", str(found.kernel), "-initrd", str(found.initrd),
        "-append", "root=/dev/vda quiet",
    ]  # fmt: skip
    folder = found.disk.parent
    assert sorted(path.name for path in folder.iterdir()) == [
        "Vagrantfile", "box.img", "initrd.img", "metadata.json", "vmlinuz",
    ]  # fmt: skip
    assert not (cache / "escape").exists()
    stamp = found.disk.stat().st_mtime_ns
    again = image.unpack_box(box, cache)
    assert again == found
    assert again.disk.stat().st_mtime_ns == stamp  # not unpacked again
    assert [path.name for path in cache.iterdir()] == [folder.name]


def test_the_default_image_is_the_box_the_builder_gives(tmp_path: Path) -> None:
    box = make_box(tmp_path / "0123456789abcdef.box", qcow2(tmp_path / "box.img"))
    found = image.find_image(None, lambda: box, tmp_path / "cache")
    assert found.disk.parent.name.startswith("0123456789abcdef-")


def test_a_box_of_another_provider_is_refused(tmp_path: Path) -> None:
    box = make_box(tmp_path / "vbox.box", qcow2(tmp_path / "box.img"), provider="virtualbox")
    with pytest.raises(ConfigError, match=r"--coreos-image: .*vbox\.box is a box for virtualbox"):
        image.find_image(box, lambda: box, tmp_path / "cache")


def test_qemu_is_tried_under_kvm_and_the_choice_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_COREOS_CACHE", str(tmp_path))
    accelerator, why = machines.choose_accelerator(machines.find_qemu())
    assert accelerator in ("kvm", "tcg")
    if machines.PVM_MODULE.exists():  # this machine's paravirtual KVM runs no stock kernel
        assert (accelerator, "kvm_pvm" in why) == ("tcg", True)
    assert (tmp_path / "qemu-accelerator.json").exists()
    assert machines.choose_accelerator(machines.find_qemu()) == (accelerator, why)


def test_mac_addresses_are_local_and_one_per_lab_and_machine() -> None:
    first = machines.mac_address("abc", 1)
    assert first == machines.mac_address("abc", 1)
    assert len({first, machines.mac_address("abc", 2), machines.mac_address("abd", 1)}) == 3
    assert first.startswith("52:54:")
    assert int(first.split(":")[0], 16) & 0b10  # locally administered


def test_qmp_runs_commands_on_a_real_qemu(tmp_path: Path) -> None:
    socket_path = tmp_path / "qmp.sock"
    process = subprocess.Popen(
        [machines.find_qemu(), "-machine", "none", "-nodefaults", "-display", "none",
         "-qmp", f"unix:{socket_path},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            assert time.monotonic() < deadline, "QEMU made no QMP socket"
            time.sleep(0.02)
        assert qmp.execute(socket_path, "query-status", "core-01")["status"] == "running"
        qmp.execute(socket_path, "stop", "core-01")
        assert qmp.execute(socket_path, "query-status", "core-01")["status"] == "paused"
        qmp.execute(socket_path, "cont", "core-01")
        with pytest.raises(ProcessError, match=r"core-01 qemu \(QMP no-such\).*CommandNotFound"):
            qmp.execute(socket_path, "no-such", "core-01")
    finally:
        process.kill()
        process.wait()
    with pytest.raises(ProcessError, match="QMP query-status"):
        qmp.execute(socket_path, "query-status", "core-01")
