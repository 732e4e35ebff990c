"""The vagrant provider: a CoreOS cluster the coreos-vagrant way, ``vagrant up`` from a
Vagrantfile, ``config.rb`` and ``user-data``, driven through python-vagrant.

Each cluster gets a folder of its own (``<workdir>/vagrant``): the plugin's Vagrantfile
(or a copy of the user's coreos-vagrant checkout, ``--coreos-vagrant-dir``, whose files are
never changed), ``config.rb``, the rendered ``user-data``, ``pytest-coreos.json`` (what only
this run knows: the VM name prefix, each machine's private address, the box) and
``pytest-coreos.rb`` (the provider settings and provisioning both Vagrantfiles share).

Vagrant's whole output goes to ``<workdir>/vagrant.log``; the terminal gets one line per
machine step while ``vagrant up`` runs. SSH handles come from ``vagrant ssh-config`` with a
host key the plugin generated and the provisioner installed (pinned, never trusted on first
use); etcd handles from each machine's private address. A failed or interrupted ``up`` and
the end of the cluster run ``vagrant destroy -f``; with libvirt, domains and volumes are
named ``pytest-coreos-<session>-<cluster>-core-NN`` so that what a killed run left is found
by name (:func:`reap`, :func:`reap_workdir`).

python-vagrant has no streaming ``up --machine-readable`` that can be interrupted, and no
libvirt calls: those two go through ``subprocess`` (``vagrant`` found by python-vagrant,
and ``virsh``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import paramiko
import vagrant

from pytest_coreos.config import cloud_config
from pytest_coreos.config.images import docker_daemon_config
from pytest_coreos.errors import CoreOSError, SSHError
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.host import fleet_release
from pytest_coreos.host.image_registry import ImageRegistry, free_port
from pytest_coreos.host.images import read_archives
from pytest_coreos.host.process import tail
from pytest_coreos.host.sshd import generate_ed25519_key
from pytest_coreos.image import builder
from pytest_coreos.providers.common import ETCD_JOURNAL_UNITS, etcd_client_urls
from pytest_coreos.providers.protocol import BootContext, MachineDescription
from pytest_coreos.providers.vagrant.addresses import (
    claim_addresses,
    claim_exact,
    release_addresses,
)
from pytest_coreos.providers.vagrant.box import prune_stand_in_versions
from pytest_coreos.providers.vagrant.files import checkout_addresses, prepare_directory
from pytest_coreos.providers.vagrant.libvirt import (
    _network_connections,
    ensure_libvirt_network,
    network_name,
    release_libvirt_network,
    remove_libvirt_leftovers,
    virsh,
)
from pytest_coreos.providers.vagrant.output import Progress, log_line, parse_ssh_config
from pytest_coreos.providers.vagrant.settings import (
    DEFAULT_PRIVATE_NETWORK,
    INTERRUPT_GRACE_SECONDS,
    LIBVIRT_URI,
    NAME_PREFIX,
    SETTINGS_FILE,
    STAND_IN_BOX,
    VagrantError,
    check_ignition_support,
    libvirt_uri,
    private_network,
    session_tag,
    vagrant_environment,
    vagrant_provider_name,
)

# --- running vagrant ---------------------------------------------------------------------------


@contextlib.contextmanager
def _append(path: Path) -> Iterator[IO[str]]:
    with path.open("a") as handle:
        yield handle


class VagrantMachine:
    """One VM; its faults are Vagrant's commands (``halt``, ``up``, ``suspend``...)."""

    def __init__(self, provider: VagrantDeployment, name: str) -> None:
        self.provider = provider
        self.name = name
        self.ssh: SSHClient | None = None  # once booted
        self._running = True
        self.suspended = False  # by pause(), until resume() or start()

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """``vagrant up NAME``: the box's agent applies the user-data again at boot, and
        etcd rejoins with its data."""
        self.provider.call("up", self.name, provider=self.provider.provider_name)
        self._running = True
        self.suspended = False
        self.provider.refresh_ssh(self)

    def stop(self) -> None:
        """``vagrant halt NAME``: a clean shutdown."""
        self._running = False
        self.provider.call("halt", self.name)

    def kill(self) -> None:
        """``vagrant halt --force NAME``: power off."""
        self._running = False
        self.provider.call("halt", self.name, force=True)

    def pause(self) -> None:
        """``vagrant suspend NAME``."""
        self.provider.call("suspend", self.name)
        self.suspended = True

    def resume(self) -> None:
        """``vagrant resume NAME``."""
        self.provider.call("resume", self.name)
        self.suspended = False

    def logs(self, lines: int) -> str:
        """The last lines of etcd's journal on the machine (over SSH)."""
        if self.ssh is None:
            return ""
        try:
            units = [arg for unit in ETCD_JOURNAL_UNITS for arg in ("-u", unit)]
            result = self.ssh.run(
                ["sudo", "journalctl", "--no-pager", "-n", str(lines), *units],
                check=False,
                timeout=10,
            )
        except SSHError as error:
            return f"(no log: {error})"
        return result.stdout.rstrip("\n")

    def check_alive(self) -> None:
        """A VM's etcd is watched through its API; nothing to check on this host."""


class VagrantDeployment:
    """A cluster of Vagrant VMs; ``close`` destroys them."""

    def __init__(self, context: BootContext, record: Mapping[str, Any] | None = None) -> None:
        self.context = context
        spec = context.spec
        self.notices: list[str] = []
        self.provider_name = vagrant_provider_name(spec)
        self.directory = context.paths.vagrant
        self.log_path = context.paths.vagrant_log
        self.machines: list[VagrantMachine] = []
        self.timings: dict[str, float] = {}
        self._closed = False
        self._up_started = record is not None  # whether any VM may exist
        self._early_ssh_config: str | None = None
        self._uri = libvirt_uri(spec) if self.provider_name == "libvirt" else LIBVIRT_URI
        self.registry: ImageRegistry | None = None  # with --coreos-images
        if record is None:
            check_ignition_support(spec)
            self.name_prefix = f"{NAME_PREFIX}{session_tag(context)}-"
            self.network = private_network(spec)
            self.addresses: list[str] = []
            self.network_name = ""
        else:
            self.name_prefix = record["name_prefix"]
            self.network = record["network"]
            self.addresses = list(record["addresses"])
            self.network_name = record.get("network_name", "")
            self.directory = Path(record["directory"])
        self.vagrant = vagrant.Vagrant(  # type: ignore[no-untyped-call]
            root=str(self.directory),
            env=vagrant_environment(self.provider_name),
            out_cm=lambda: _append(self.log_path),
            err_cm=lambda: _append(self.log_path),
        )

    @property
    def libvirt(self) -> bool:
        return self.provider_name == "libvirt"

    @property
    def pids(self) -> list[int]:
        return []

    @property
    def faults_allowed(self) -> bool:
        return True

    def discovery_url(self) -> str | None:
        return None  # the VMs reach the session's discovery

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        raise CoreOSError("the vagrant provider cannot partition machines")

    def heal(self) -> None:
        """Nothing was cut."""

    def wait_for_images(self, timeout: float) -> None:
        return None  # its registry is filled before the VMs boot (see serve_images)

    def shell_prefix(self) -> list[str]:
        """None: the machines are wherever libvirt's networks route them."""
        return []

    def describe(self) -> dict[str, Any]:
        return {
            "processes": self.registry.describe() if self.registry is not None else [],
            "namespaces": [],
            "vagrant": {
                "directory": str(self.directory),
                "name_prefix": self.name_prefix,
                "provider": self.provider_name,
                "uri": self._uri,
                "network": self.network,
                "network_name": self.network_name,
                "addresses": self.addresses,
            },
        }

    # -- booting ------------------------------------------------------------------------
    def boot(self) -> list[MachineDescription]:
        context = self.context
        spec = context.spec
        names = machine_names(spec.instances)
        checkout = spec.vagrant_dir is not None and (spec.vagrant_dir / "Vagrantfile").is_file()
        if checkout:
            addresses = checkout_addresses(spec.instances)
            claim_exact(addresses)
            self.network = DEFAULT_PRIVATE_NETWORK
        else:
            addresses = claim_addresses(self.network, spec.instances)
        self.addresses = addresses
        user_data_path = context.paths.user_data
        user_data_text: str | None = None
        if context.write_ignition is None:
            user_data_text = (
                user_data_path.read_text()
                if user_data_path.is_file()
                else cloud_config.render_user_data(context.user_data)
            )
        machines = [
            {"name": name, "ip": address} for name, address in zip(names, addresses, strict=True)
        ]
        if context.write_ignition is not None:
            for machine in machines:
                written = context.write_ignition(machine["name"], machine["ip"], machine["ip"])
                machine["ignition"] = str(self._fw_cfg_file(machine["name"], written))
        self.notices.extend(
            prepare_directory(
                self.directory,
                spec=spec,
                user_data_text=user_data_text,
                machines=machines,
                name_prefix=self.name_prefix,
                network=self.network,
                box=self._stand_in_box() if spec.box == STAND_IN_BOX else None,
            )
        )
        self._prepare_box()
        fleet = None if spec.fleet is None else fleet_release.prepare(spec.fleet)
        for name in names:
            generate_ed25519_key(self._host_key_path(name), comment=name)
            if fleet is not None:  # provisioned into /usr/bin with the host key
                fleet_release.copy_binaries(fleet, self._host_key_path(name).parent)
        if spec.box is None and user_data_text is not None:  # the stand-in box has no fleet
            notice = fleet_release.missing_fleet_notice(spec.fleet, context.user_data)
            self.notices.extend([notice] if notice is not None else [])
        if self.libvirt:
            self.network_name = network_name(self.network)
        # On record before anything is made, so that a run killed now is still reaped.
        context.remember(self.describe())
        if self.libvirt:
            ensure_libvirt_network(self.network, self._uri)
        self.serve_images(names)
        self.machines = [VagrantMachine(self, name) for name in names]
        self.up()
        return self.handles()

    def serve_images(self, names: Sequence[str]) -> None:
        """With ``--coreos-images``: a registry on this host's side of the VMs' network
        (where they reach the session's discovery service), filled before they boot (a
        fraction of a second beside a VM's boot), and each machine's docker configuration
        naming it as the Docker Hub mirror, provisioned with its host key."""
        spec = self.context.spec
        if not spec.images:
            return
        address = f"{self.network}.1"
        self.registry = ImageRegistry(
            self.context.workdir / "registry",
            address=address,
            port=free_port(address),
            die_with_parent=not spec.keep,
        )
        self.context.remember(self.describe())
        self.registry.start(timeout=spec.boot_timeout)
        self.context.remember(self.describe())
        self.registry.fill(read_archives(tuple(str(path) for path in spec.images)))
        config = docker_daemon_config(self.registry.host)
        for name in names:
            (self._host_key_path(name).parent / "daemon.json").write_text(config)

    def _stand_in_box(self) -> str:
        """The stand-in box's file, built from the installed package (a few minutes,
        once; then found in its cache)."""
        context = self.context
        return str(builder.build("box", context.paths.image_log, context.progress))

    def _prepare_box(self) -> None:
        """A box file's kernel and initrd (copied into the cluster's folder) are given to
        QEMU's user like the Ignition files; stand-in builds other than this one are
        removed from Vagrant's boxes, so that a version constraint picks this one."""
        settings = json.loads((self.directory / SETTINGS_FILE).read_text())
        for key in ("kernel", "initrd"):
            if settings.get(key):
                self._give_to_qemu(Path(settings[key]))
        added = settings.get("box_added_version")
        if added:
            home = Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
            for removed in prune_stand_in_versions(home, settings["box"], added):
                self.notices.append(f"removed an older stand-in box from Vagrant: {removed}")

    def _fw_cfg_file(self, name: str, written: Path) -> Path:
        """The copy of machine ``name``'s Ignition config that QEMU reads for ``-fw_cfg``
        (see :meth:`_give_to_qemu`)."""
        directory = self.directory / "fw_cfg"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{name}.ign"
        path.write_bytes(written.read_bytes())
        path.chmod(0o400)
        self._give_to_qemu(path)
        return path

    def _give_to_qemu(self, path: Path) -> None:
        """Let libvirt's QEMU user read ``path``, a file of this cluster's folder.

        libvirt's system daemon runs QEMU as its own user (Debian: ``libvirt-qemu``), which
        must be able to reach the files QEMU opens (a kernel, an initrd, a file named on its
        command line) whatever the home they come from: the file is given to that user
        (read-only), and the folders above it let it pass (``o+x``, no listing)."""
        qemu_user = _qemu_user()
        if os.geteuid() == 0 and qemu_user is not None:
            os.chown(path, qemu_user, -1)
            for folder in path.parents:
                if folder.stat().st_uid != 0 or folder == Path(folder.anchor):
                    break
                folder.chmod(folder.stat().st_mode | 0o001)
                if folder == self.context.workdir.parent:
                    break  # the session's folder: nothing above it is the plugin's

    def _host_key_path(self, name: str) -> Path:
        path = self.directory / "machines" / name / "ssh_host_ed25519_key"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def up(self) -> None:
        """``vagrant up`` every machine (in parallel where the provider can), one progress
        line per machine step; on failure or interruption, raise, leaving the destroying
        to :meth:`close`."""
        argv = [
            _vagrant_executable(),
            "up",
            "--machine-readable",
            f"--provider={self.provider_name}",
        ]
        setpriv = shutil.which("setpriv")
        if setpriv is not None and not self.context.spec.keep:
            # Should pytest be killed outright, Vagrant stops making VMs at once; the
            # next run reaps what it made, by name.
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        progress = Progress()
        early = _EarlySSHConfig(self)
        started = time.monotonic()
        self.context.progress(
            f"vagrant up: {len(self.machines)} machine(s), log in {self.log_path}"
        )
        self._up_started = True
        with self.log_path.open("a") as log:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            with subprocess.Popen(
                argv,
                cwd=self.directory,
                env=self.vagrant.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                # Its own session: a Ctrl-C reaches pytest, which stops Vagrant itself.
                start_new_session=True,
            ) as process:
                try:
                    assert process.stdout is not None
                    for line in process.stdout:
                        log.write(log_line(line) + "\n")
                        log.flush()
                        step = progress.feed(line)
                        if step is not None:
                            self.context.progress(step)
                            early.maybe_start(progress.steps)
                    status = process.wait()
                except BaseException:
                    _stop_vagrant(process)
                    raise
                finally:
                    self._early_ssh_config = early.result()
        self.timings["up"] = time.monotonic() - started
        if status != 0:
            error = VagrantError(
                "vagrant up", f"exited with status {status}", log_path=self.log_path
            )
            error.add_note(f"--- last lines of {self.log_path} ---\n{tail(self.log_path, 30)}")
            raise error
        self.context.progress(f"vagrant up finished in {self.timings['up']:.1f}s")

    def handles(self) -> list[MachineDescription]:
        """Every machine with its SSH handle, from ``vagrant ssh-config`` (taken while the
        provisioners ran, where it could be)."""
        early, self._early_ssh_config = self._early_ssh_config, None
        configs = parse_ssh_config(early) if early is not None else {}
        if any(machine.name not in configs for machine in self.machines):
            configs = parse_ssh_config(self._ssh_config())
        handles = []
        for machine, address in zip(self.machines, self.addresses, strict=True):
            config = configs.get(machine.name)
            if config is None:
                raise VagrantError("vagrant ssh-config", f"no Host section for {machine.name}")
            host_key = paramiko.Ed25519Key.from_private_key_file(
                str(self._host_key_path(machine.name))
            )
            ssh = SSHClient(
                config.hostname,
                config.port,
                config.user,
                _identity(config.identity_files),
                host_keys=[host_key],
                identity_file=_first_usable(config.identity_files),
                name=machine.name,
            )
            machine.ssh = ssh
            handles.append(
                MachineDescription(
                    machine.name,
                    private_ipv4=address,
                    public_ipv4=address,
                    ssh=ssh,
                    etcd_endpoints=etcd_client_urls(self.context.user_data, address),
                    control=machine,
                )
            )
        return handles

    def _ssh_config(self, name: str | None = None) -> str:
        try:
            text: str = self.vagrant.ssh_config(vm_name=name)  # type: ignore[no-untyped-call]
        except subprocess.CalledProcessError as error:
            raise VagrantError(
                "vagrant ssh-config", f"exited with status {error.returncode}", self.log_path
            ) from error
        return text

    def refresh_ssh(self, machine: VagrantMachine) -> None:
        """Follow a machine whose management address changed across a restart."""
        if machine.ssh is None:
            return
        config = parse_ssh_config(self._ssh_config(machine.name)).get(machine.name)
        if config is not None and (config.hostname, config.port) != (
            machine.ssh.host,
            machine.ssh.port,
        ):
            machine.ssh.close()
            machine.ssh.host = config.hostname
            machine.ssh.port = config.port

    def call(self, command: str, name: str, **options: Any) -> None:
        """Run python-vagrant's ``command`` on machine ``name``, logging to the log file."""
        started = time.monotonic()
        with self.log_path.open("a") as log:
            log.write(f"$ vagrant {command} {name} {options or ''}\n")
        try:
            getattr(self.vagrant, command)(vm_name=name, **options)
        except subprocess.CalledProcessError as error:
            failure = VagrantError(
                f"vagrant {command} {name}",
                f"exited with status {error.returncode}",
                self.log_path,
            )
            failure.add_note(f"--- last lines of {self.log_path} ---\n{tail(self.log_path, 20)}")
            raise failure from error
        self.context.progress(f"{name}: vagrant {command} took {time.monotonic() - started:.1f}s")

    # -- the end --------------------------------------------------------------------------
    def close(self) -> None:
        """``vagrant destroy -f``, then whatever of this cluster libvirt still holds."""
        if self._closed:
            return
        self._closed = True
        removed: list[str] = []
        started = time.monotonic()
        try:
            if not self._up_started:
                return  # no VM was ever asked for
            removed = destroy(
                self.directory,
                name_prefix=self.name_prefix,
                provider=self.provider_name,
                uri=self._uri,
                env=self.vagrant.env,
                log_path=self.log_path,
            )
        finally:
            if self.registry is not None:
                notice = self.registry.unserved_notice(self.context.workdir.name)
                self.notices.extend([notice] if notice is not None else [])
                self.registry.close()
            release_addresses(self.addresses)
            if self.libvirt and self.network_name:
                with contextlib.suppress(VagrantError):
                    release_libvirt_network(self.network_name, self._uri)
        self.timings["destroy"] = time.monotonic() - started
        self.context.progress(f"vagrant destroy finished in {self.timings['destroy']:.1f}s")
        leftovers = [line for line in removed if line.startswith("libvirt")]
        if leftovers:
            self.notices.append("removed after vagrant destroy: " + ", ".join(leftovers))

    def detach(self) -> None:
        """Leave the VMs running (a kept cluster); ``vagrant destroy`` in the folder, or
        ``pytest --coreos-reap``, removes them."""
        self._closed = True

    # -- reset: see pytest_coreos.providers.vm_reset -------------------------------------
    def save_ready(self) -> None:
        from pytest_coreos.providers import vm_reset

        vm_reset.save_ready(self)

    def revive(self) -> list[str]:
        """``vagrant up`` the halted VMs (one after another: Vagrant locks its folder) and
        ``vagrant resume`` the suspended ones; the names of those started."""
        started = []
        for machine in self.machines:
            if not machine.running:
                machine.start()
                started.append(machine.name)
            elif machine.suspended:
                machine.resume()
        return started

    def restore(self) -> None:
        from pytest_coreos.providers import vm_reset

        vm_reset.restore(self)


# Steps after which a machine's SSH address is known and stays: Vagrant logged in.
_BOOTED_STEPS = ("booted", "setting the hostname", "configuring the network", "provisioning")


class _EarlySSHConfig:
    """``vagrant ssh-config`` run in a thread once every machine has booted, while
    ``vagrant up`` still provisions: its few seconds of Ruby then cost the boot nothing.
    (It takes no machine lock, so it runs beside ``up``.)"""

    def __init__(self, deployment: VagrantDeployment) -> None:
        self._deployment = deployment
        self._thread: threading.Thread | None = None
        self._text: str | None = None

    def maybe_start(self, steps: Mapping[str, str]) -> None:
        names = [machine.name for machine in self._deployment.machines]
        if self._thread is not None or not names:
            return
        if all(steps.get(name, "").startswith(_BOOTED_STEPS) for name in names):
            self._thread = threading.Thread(target=self._run, name="vagrant-ssh-config")
            self._thread.daemon = True
            self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(CoreOSError, OSError):
            self._text = self._deployment._ssh_config()

    def result(self) -> str | None:
        """Its output, or None (not started, or failed: ``handles`` asks again)."""
        if self._thread is None:
            return None
        self._thread.join(timeout=60)
        return self._text


def _qemu_user() -> int | None:
    """The uid libvirt's system daemon runs QEMU as: ``user`` of its qemu.conf, else
    Debian's default ``libvirt-qemu``; None where there is no such user."""
    name = "libvirt-qemu"
    with contextlib.suppress(OSError):
        for line in Path("/etc/libvirt/qemu.conf").read_text().splitlines():
            match = re.match(r'^\s*user\s*=\s*"([^"]+)"', line)
            if match:
                name = match.group(1)
    if name.startswith("+"):
        return int(name[1:]) if name[1:].isdigit() else None
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _vagrant_executable() -> str:
    executable: str | None = vagrant.get_vagrant_executable()  # type: ignore[no-untyped-call]
    if not executable:
        raise VagrantError("vagrant", "not installed (Debian: apt-get install vagrant)")
    return executable


def _stop_vagrant(process: subprocess.Popen[str]) -> None:
    """Stop an interrupted Vagrant the way Ctrl-C would (it then cleans up after itself),
    and kill it if it takes too long."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=INTERRUPT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _first_usable(paths: Sequence[str]) -> Path | None:
    return next((Path(path) for path in paths if Path(path).is_file()), None)


def _identity(paths: Sequence[str]) -> paramiko.PKey:
    problems = []
    for path in paths:
        try:
            return paramiko.PKey.from_path(path)
        except (OSError, paramiko.SSHException, ValueError) as error:
            problems.append(f"{path}: {error}")
    raise VagrantError("vagrant ssh-config", "no usable IdentityFile: " + "; ".join(problems))


def destroy(
    directory: Path,
    *,
    name_prefix: str,
    provider: str,
    uri: str = LIBVIRT_URI,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> list[str]:
    """``vagrant destroy -f`` in ``directory``, then, with libvirt, every domain and volume
    named ``name_prefix``*; return what was removed."""
    removed: list[str] = []
    created_networks = _created_networks(directory)
    if (directory / "Vagrantfile").is_file() and (directory / ".vagrant").is_dir():
        log = log_path or directory / "vagrant-destroy.log"
        runner = vagrant.Vagrant(  # type: ignore[no-untyped-call]
            root=str(directory),
            env=dict(env) if env is not None else vagrant_environment(provider),
            out_cm=lambda: _append(log),
            err_cm=lambda: _append(log),
        )
        try:
            runner.destroy()  # type: ignore[no-untyped-call]
            removed.append(f"vagrant machines in {directory}")
        except subprocess.CalledProcessError:
            pass  # what it could not remove, the libvirt pass below does
    if provider == "libvirt":
        removed += remove_libvirt_leftovers(name_prefix, uri)
        removed += _remove_networks(created_networks, uri)
    return removed


def _created_networks(directory: Path) -> set[str]:
    """The UUIDs of the networks vagrant-libvirt made for the machines of ``directory``."""
    return {
        line.strip()
        for path in directory.glob(".vagrant/machines/*/libvirt/created_networks")
        for line in path.read_text().splitlines()
        if line.strip()
    }


def _remove_networks(uuids: set[str], uri: str) -> list[str]:
    """Those of ``uuids`` that no machine uses any more: what vagrant-libvirt's own
    ``destroy`` removes when it runs to the end."""
    removed = []
    for uuid in sorted(uuids):
        xml = virsh(["net-dumpxml", uuid], uri=uri, check=False)
        if not xml or _network_connections(xml):
            continue
        name = ElementTree.fromstring(xml).findtext("name") or uuid  # noqa: S314 - ours
        if name.startswith(NAME_PREFIX):
            continue  # the private network: release_libvirt_network's, which knows its users
        virsh(["net-destroy", uuid], uri=uri, check=False)
        virsh(["net-undefine", uuid], uri=uri, check=False)
        removed.append(f"libvirt network {name}")
    return removed


def reap(record: Mapping[str, Any]) -> list[str]:
    """Remove the VMs (and, once unused, the private network) of a cluster whose run died,
    from its state record. What cannot be removed is reported, not raised: the reaper goes
    on with the other records."""
    described = record.get("vagrant")
    if not described:
        return []
    uri = described.get("uri", LIBVIRT_URI)
    try:
        removed = destroy(
            Path(described["directory"]),
            name_prefix=described["name_prefix"],
            provider=described.get("provider", "libvirt"),
            uri=uri,
        )
        if described.get("network_name"):
            removed += release_libvirt_network(described["network_name"], uri)
    except VagrantError as error:
        return [f"not removed: VMs named {described['name_prefix']}* ({error})"]
    return removed


def reap_workdir(workdir: Path) -> list[str]:
    """Remove the VMs of the cluster whose folder is ``workdir`` (left by a dead run)."""
    directory = workdir / "vagrant"
    try:
        settings = json.loads((directory / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return []
    prefix = settings.get("name_prefix", "")
    if not prefix.startswith(NAME_PREFIX):
        return []
    provider = "libvirt"
    with contextlib.suppress(OSError):
        machines = directory / ".vagrant" / "machines"
        found = {child.name for entry in machines.iterdir() for child in entry.iterdir()}
        provider = next(iter(found)) if len(found) == 1 else provider
    return reap(
        {
            "vagrant": {
                "directory": str(directory),
                "name_prefix": prefix,
                "provider": provider,
            }
        }
    )


class AttachedVagrantDeployment(VagrantDeployment):
    """VMs a kept cluster left running, adopted from its state record."""

    def __init__(self, context: BootContext, record: Mapping[str, Any]) -> None:
        super().__init__(context, record["vagrant"])
        names = machine_names(context.spec.instances)
        claim_exact(self.addresses)
        self.machines = [VagrantMachine(self, name) for name in names]

    def boot(self) -> list[MachineDescription]:
        return self.handles()
