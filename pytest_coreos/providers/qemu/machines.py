"""The qemu provider's machines: each a QEMU process of its own, booting a copy-on-write
overlay of one image (:mod:`.image`), with no libvirt and no Vagrant.

Each VM's one NIC is a tap in its machine's namespace of a :class:`NetworkLab`, which
routes the machine's address to it (:meth:`NetworkLab.route_to_guest`): the VM is where
a netns or nspawn machine's processes would be, reached by the test process the same way,
cut off by the same partitions, and it reaches nothing but the lab (no user-mode network,
no default route). It learns everything from its config, as Flatcar's and CoreOS's QEMU
images do (:mod:`pytest_coreos.config.guest`): an Ignition config through QEMU's firmware
config, or a cloud-config on a 9p share tagged ``config-2``.

Faults are the VM's own: ``stop`` is an ACPI power-off (QMP ``system_powerdown``), ``kill``
SIGKILLs QEMU, ``pause``/``resume`` are QMP ``stop``/``cont`` (the guest's clock stops
with it). The serial console is appended to ``console.log`` in the machine's folder, and
shown where a VM never answers. A reset runs over SSH (:mod:`pytest_coreos.providers.vm_reset`).

Root only: the lab's namespaces need it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko

from pytest_coreos.config import guest
from pytest_coreos.errors import ConfigError, ProcessError, SSHError
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.host import fleet_release
from pytest_coreos.host.cache import read_json, write_json
from pytest_coreos.host.process import ManagedProcess, kill_all
from pytest_coreos.host.sshd import generate_ed25519_key
from pytest_coreos.image import builder
from pytest_coreos.providers import vm_reset
from pytest_coreos.providers.common import ETCD_JOURNAL_UNITS
from pytest_coreos.providers.lab import Lab, LabDeploymentBase, LabMachine, machine_record
from pytest_coreos.providers.protocol import BootContext, MachineDescription
from pytest_coreos.providers.qemu import qmp
from pytest_coreos.providers.qemu.image import Image, find_image

OPTION = "--coreos-provider"
QEMU = "qemu-system-x86_64"
# As the plugin's Vagrantfile asks libvirt for them (providers/vagrant/pytest-coreos.rb).
MEMORY_MIB = 512
CPUS = 1
LOGIN_USER = "core"  # Flatcar's and CoreOS's, made by the config on the stand-in
PREFIX_LENGTH = 24  # the lab's /24
IGNITION_FW_CFG = "opt/org.flatcar-linux/config"
QMP_SOCKET = "qmp.sock"
FLEET_TAG = "pytest-coreos-fleet"  # the 9p share the stand-in's agent links fleet from
# An ACPI power-off under TCG: systemd stops every unit first.
STOP_GRACE = 60.0
# /sys/module/kvm_pvm: a paravirtual KVM, under which a stock kernel does not boot.
PVM_MODULE = Path("/sys/module/kvm_pvm")


@functools.cache
def find_qemu() -> str:
    """QEMU's x86-64 system emulator; a ConfigError naming --coreos-provider without it."""
    path = shutil.which(QEMU)
    if path is None:
        raise ConfigError(
            OPTION, f"qemu: {QEMU} is not installed", "install Debian's qemu-system-x86"
        )
    return path


def choose_accelerator(qemu: str) -> tuple[str, str]:
    """``("kvm", why)`` where QEMU starts under KVM here and the KVM runs stock kernels,
    else ``("tcg", why)``; tried once per boot of this host and QEMU binary (cached)."""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    key = f"{boot_id}:{qemu}:{os.stat(qemu).st_mtime_ns}"
    cached = read_json("qemu-accelerator.json")
    if cached.get("key") == key:
        return str(cached["accelerator"]), str(cached["why"])
    accelerator, why = _try_kvm(qemu)
    write_json("qemu-accelerator.json", {"key": key, "accelerator": accelerator, "why": why})
    return accelerator, why


def _try_kvm(qemu: str) -> tuple[str, str]:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    try:
        done = subprocess.run(
            [qemu, "-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none",
             "-monitor", "stdio"],
            input="quit\n", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return "tcg", f"QEMU did not start under KVM: {error}"
    if done.returncode != 0:
        return "tcg", "QEMU did not start under KVM: " + (
            done.stderr.strip().splitlines() or ["?"]
        )[-1]
    if PVM_MODULE.exists():
        return (
            "tcg",
            "/dev/kvm is a paravirtual KVM (kvm_pvm), which stock kernels do not boot under",
        )
    return "kvm", "/dev/kvm works"


def mac_address(lab_id: str, index: int) -> str:
    """Machine ``index``'s MAC address: locally administered, one per lab and machine."""
    digest = hashlib.sha256(lab_id.encode()).digest()[:3]
    return "52:54:" + ":".join(f"{byte:02x}" for byte in (*digest, index % 256))


class QemuMachine(LabMachine):
    """One VM: its QEMU process, QMP socket and folder."""

    kind = "qemu"

    def __init__(self, name: str, process: ManagedProcess, folder: Path) -> None:
        super().__init__(name, process)
        self.folder = folder
        self.ssh: SSHClient | None = None  # once described
        self.paused = False

    @property
    def qmp_socket(self) -> Path:
        """Its QMP socket, reached through QEMU's working folder: the folder's own path
        may be longer than a unix socket's address can be (108 bytes)."""
        pid = self.process.pid
        return Path(f"/proc/{pid}/cwd/{QMP_SOCKET}") if pid else self.folder / QMP_SOCKET

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    def start(self) -> None:
        """Boot it again, on its overlay: its etcd rejoins with the data it had."""
        if self.running:
            return
        (self.folder / QMP_SOCKET).unlink(missing_ok=True)
        self.process.start()
        self.paused = False

    def stop(self) -> None:
        """An ACPI power-off, waited for; killed if the guest does not power off."""
        if not self.running:
            return
        self.resume()
        with contextlib.suppress(ProcessError):
            qmp.execute(self.qmp_socket, "system_powerdown", self.name)
            if self.process.wait(STOP_GRACE):
                return
        self.kill()

    def kill(self) -> None:
        """SIGKILL of QEMU: a power cut."""
        kill_all([self.process])
        self.paused = False

    def pause(self) -> None:
        """QMP ``stop``: the VM's vCPUs stop, its network and clock with them."""
        qmp.execute(self.qmp_socket, "stop", self.name)
        self.paused = True

    def resume(self) -> None:
        """QMP ``cont``."""
        if self.paused and self.running:
            qmp.execute(self.qmp_socket, "cont", self.name)
        self.paused = False

    def logs(self, lines: int) -> str:
        """etcd's journal on the VM (over SSH); where it cannot be read, the serial
        console's last lines, which say why a VM never reached SSH."""
        if self.ssh is not None and self.running and not self.paused:
            units = [arg for unit in ETCD_JOURNAL_UNITS for arg in ("-u", unit)]
            with contextlib.suppress(SSHError):
                result = self.ssh.run(
                    ["sudo", "journalctl", "--no-pager", "-q", "-n", str(lines), *units],
                    check=False,
                    timeout=10,
                )
                if result.ok and result.stdout.strip():
                    return result.stdout.rstrip("\n")
        return "(serial console)\n" + self.process.log_tail(lines)


class QemuDeployment(LabDeploymentBase):
    """A cluster of QEMU VMs in a network lab of its own."""

    def __init__(self, context: BootContext, record: Mapping[str, Any] | None = None) -> None:
        self.context = context
        self.notices: list[str] = []
        self.vms: list[QemuMachine] = []
        self._descriptions: list[dict[str, Any]] = []
        if os.geteuid() != 0:
            raise ConfigError(
                OPTION,
                "qemu needs root (its VMs' network lab is made of network namespaces)",
                "run pytest as root, or use --coreos-provider=local",
            )
        self.qemu = find_qemu()
        if record is not None:
            self._adopt(record)
            return
        self.accelerator, _ = choose_accelerator(self.qemu)
        # The key its machines let in: the session's, which an attached session names.
        self.key_path = context.ssh_public_key_path.with_suffix("")
        context.workdir.mkdir(parents=True, exist_ok=True)
        self.image: Image | None = find_image(
            context.spec.image,
            lambda: builder.build("box", context.paths.image_log, context.progress),
        )
        self.image_path = str(self.image.disk)
        fleet = context.spec.fleet
        self.fleet = None if fleet is None else fleet_release.prepare(fleet)
        self.lab = Lab.create(context, OPTION, "use --coreos-provider=local")

    def _adopt(self, record: Mapping[str, Any]) -> None:
        """The VMs and lab of a cluster another session booted (a kept one reused, or one
        shared by xdist workers), from its state record."""
        self.accelerator = str(record["accelerator"])
        self.key_path = Path(record["ssh_key"])
        self.image = None  # its VMs have their overlays: QEMU starts again as recorded
        self.fleet = None
        self.image_path = str(record["image"])
        processes = {process["name"]: process for process in record.get("processes", [])}
        names = {f"{described['name']} qemu" for described in record["machines"]}
        self.lab = Lab.adopt(self.context, record, names)
        for described in record["machines"]:
            name = described["name"]
            if f"{name} qemu" not in processes:
                raise ConfigError("--coreos-reuse", f"the record names no QEMU for {name}")
            process = ManagedProcess.from_record(processes[f"{name} qemu"], die_with_parent=False)
            vm = QemuMachine(name, process, self.context.paths.machine(name))
            if vm.running:
                with contextlib.suppress(ProcessError):
                    vm.paused = (
                        qmp.execute(vm.qmp_socket, "query-status", name)["status"] == "paused"
                    )
            self.vms.append(vm)
            self._descriptions.append(dict(described))

    @property
    def machines(self) -> Sequence[QemuMachine]:
        return self.vms

    # -- booting ---------------------------------------------------------------------------
    def boot(self) -> list[MachineDescription]:
        if self.vms:  # adopted: they run already
            return self.handles()
        context = self.context
        lab = self.lab
        image = self.image
        assert lab.network is not None
        assert image is not None
        public_key = context.ssh_public_key_path.read_text()
        die_with_parent = not context.spec.keep
        if context.spec.image is None:  # the stand-in box carries no fleet
            notice = fleet_release.missing_fleet_notice(context.spec.fleet, context.user_data)
            if notice is not None and context.write_ignition is None:
                self.notices.append(notice)
        fleet: list[str] = []
        if self.fleet is not None:  # the same binaries for every machine, read-only
            share = self.fleet.shared_copy(context.workdir / "fleet")
            fleet = [
                "-fsdev",
                f"local,id=fleet,security_model=none,readonly=on,path={share}",
                "-device", f"virtio-9p-pci,fsdev=fleet,mount_tag={FLEET_TAG}",
            ]  # fmt: skip
        for index, name in enumerate(machine_names(context.spec.instances), 1):
            network = lab.add_machine(name, index)
            mac = mac_address(lab.network.lab_id, index)
            tap = lab.network.route_to_guest(name, mac)
            folder = context.paths.machine(name)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            host_key = folder / "ssh_host_ed25519_key"
            generate_ed25519_key(host_key, comment=name)
            overlay = self._overlay(folder, image)
            config = self._config_arguments(name, network.address, folder, host_key, public_key)
            argv = [
                self.qemu,
                "-name", name,
                "-machine", f"pc,accel={self.accelerator}",
                "-cpu", "host" if self.accelerator == "kvm" else "qemu64",
                "-m", str(MEMORY_MIB),
                "-smp", str(CPUS),
                "-nodefaults", "-no-user-config", "-display", "none",
                *image.boot_arguments(),
                # QEMU's own cache mode: what the guest flushed survives a kill (a power cut).
                "-drive", f"file={overlay},if=virtio,format=qcow2,discard=unmap",
                "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net0,mac={mac}",
                "-chardev", f"file,id=console,path={folder / 'console.log'},append=on",
                "-serial", "chardev:console",
                "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",  # in its cwd, the folder
                *config,
                *fleet,
            ]  # fmt: skip
            process = ManagedProcess(
                f"{name} qemu",
                network.command(argv),
                log_path=folder / "console.log",
                cwd=folder,
                die_with_parent=die_with_parent,
            )
            self.vms.append(QemuMachine(name, process, folder))
            self._descriptions.append(machine_record(context, network, host_key))
        context.remember(self.describe())
        for vm in self.vms:
            vm.start()
        context.remember(self.describe())
        return self.handles()

    def _overlay(self, folder: Path, image: Image) -> Path:
        """The machine's copy-on-write disk over the image, in its folder."""
        overlay = folder / "disk.qcow2"
        done = subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.format,
             "-b", str(image.disk.resolve()), str(overlay)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ProcessError("qemu-img create", done.stderr.strip() or "failed")
        return overlay

    def _config_arguments(
        self, name: str, address: str, folder: Path, host_key: Path, public_key: str
    ) -> list[str]:
        """The machine's config and QEMU's arguments that give it: Ignition through the
        firmware config, or cloud-config on the ``config-2`` share."""
        context = self.context
        key_text = host_key.read_text()
        if context.write_ignition is not None:
            written = context.write_ignition(name, address, address)
            config = guest.ignition_with_machine_files(
                json.loads(written.read_text()),
                address=address,
                prefix_length=PREFIX_LENGTH,
                host_key=key_text,
            )
            path = folder / "config.ign"
            path.write_text(json.dumps(config, separators=(",", ":")))
            return ["-fw_cfg", f"name={IGNITION_FW_CFG},file={path}"]
        text = guest.config_drive_user_data(
            context.user_data,
            hostname=name,
            address=address,
            prefix_length=PREFIX_LENGTH,
            ssh_public_key=public_key,
            host_key=key_text,
        )
        drive = guest.write_config_drive(folder / "config-2", text)
        return [
            "-fsdev", f"local,id=config2,security_model=none,readonly=on,path={drive}",
            "-device", f"virtio-9p-pci,fsdev=config2,mount_tag={guest.CONFIG_DRIVE_TAG}",
        ]  # fmt: skip

    def handles(self) -> list[MachineDescription]:
        """Its machines, every connection to them made from the lab's host link."""
        key = paramiko.Ed25519Key.from_private_key_file(str(self.key_path))
        identity_file = self.key_path
        described = []
        for description, vm in zip(self._descriptions, self.vms, strict=True):
            machine = self.lab.describe_machine(
                description,
                port=22,
                user=LOGIN_USER,
                host_key=description["host_key"],
                key=key,
                identity_file=identity_file,
                control=vm,
            )
            vm.ssh = machine.ssh
            described.append(machine)
        return described

    # -- the state record ------------------------------------------------------------------
    def machine_processes(self) -> list[ManagedProcess]:
        return [vm.process for vm in self.vms]

    def describe(self) -> dict[str, Any]:
        return {
            **self.lab_record(),
            "machines": self._descriptions,
            "image": self.image_path,
            "accelerator": self.accelerator,
            "ssh_key": str(self.key_path),
        }

    # -- reset -----------------------------------------------------------------------------
    def save_ready(self) -> None:
        vm_reset.save_ready(self)

    def revive(self) -> list[str]:
        """Heal the lab, let paused VMs run on and boot stopped ones; waits until every VM
        started runs etcd again (restore() stops it), and returns their names."""
        self.lab.heal()
        started = []
        for vm in self.vms:
            if vm.running:
                vm.resume()
            else:
                vm.start()
                started.append(vm.name)
        vm_reset.wait_for_etcd(
            [vm for vm in self.vms if vm.name in started], self.context.spec.boot_timeout
        )
        return started

    def restore(self) -> None:
        vm_reset.restore(self)

    # -- teardown --------------------------------------------------------------------------
    def detach(self) -> None:
        """Leave the VMs running (a kept cluster) and let go of them."""
        for process in self.machine_processes():
            process.detach()
        self.lab.detach()

    def close(self) -> None:
        for vm in self.vms:
            if vm.running and vm.paused:
                with contextlib.suppress(ProcessError):
                    vm.resume()
        kill_all(self.machine_processes())
        for vm in self.vms:  # the overlays go with the workdir; the sockets now
            (vm.folder / QMP_SOCKET).unlink(missing_ok=True)
        self.lab.close()
