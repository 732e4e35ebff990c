"""The box boot benchmark's reading of a box: the kernel command line its Vagrantfile gives."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

VAGRANTFILE = """Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
  end
end
"""


@pytest.fixture(scope="module")
def box_boot(load_benchmark: Callable[[str], ModuleType]) -> ModuleType:
    return load_benchmark("box_boot")


def make_box(path: Path, vagrantfile: str) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, text in {"Vagrantfile": vagrantfile, "metadata.json": "{}"}.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_unpack_gives_the_boxs_command_line(box_boot: ModuleType, tmp_path: Path) -> None:
    box = make_box(tmp_path / "stand-in.box", VAGRANTFILE)
    folder = tmp_path / "unpacked"
    folder.mkdir()
    cmd_line = box_boot.unpack(box, folder)
    assert cmd_line == "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
    assert (folder / "metadata.json").read_text() == "{}"


def test_a_box_without_a_command_line_is_named(box_boot: ModuleType, tmp_path: Path) -> None:
    box = make_box(tmp_path / "other.box", 'Vagrant.configure("2") do |config|\nend\n')
    folder = tmp_path / "unpacked"
    folder.mkdir()
    with pytest.raises(SystemExit, match=r"other\.box: its Vagrantfile gives no libvirt\.cmd_line"):
        box_boot.unpack(box, folder)


def test_a_killed_runs_folder_is_removed_a_running_ones_kept(
    box_boot: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen(["true"])  # a process that has exited
    gone.wait()
    left = tmp_path / f"{box_boot.PREFIX}killed"
    running = tmp_path / f"{box_boot.PREFIX}running"
    other = tmp_path / "someone-elses"
    for folder, pid in ((left, gone.pid), (running, os.getpid()), (other, gone.pid)):
        folder.mkdir()
        (folder / "pid").write_text(f"{pid}\n")
    box_boot.remove_left_folders()
    assert not left.exists()
    assert running.exists()
    assert other.exists()
