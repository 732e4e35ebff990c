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
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import paramiko
import vagrant

from pytest_coreos import fleet_release, render
from pytest_coreos.cluster import Machine, machine_names
from pytest_coreos.errors import ConfigError, CoreOSError, SSHError
from pytest_coreos.options import ClusterSpec
from pytest_coreos.process import tail
from pytest_coreos.providers.base import BootContext
from pytest_coreos.ssh import SSHClient
from pytest_coreos.sshd import generate_ed25519_key
from pytest_coreos.vagrant_output import Progress, log_line, parse_ssh_config

DEFAULT_PRIVATE_NETWORK = "172.17.8"  # coreos-vagrant's: machines at .101, .102...
FIRST_HOST = 101
LIBVIRT_URI = "qemu:///system"  # vagrant-libvirt's default
NAME_PREFIX = "pytest-coreos-"
SETTINGS_FILE = "pytest-coreos.json"
PLUGIN_RUBY = "pytest-coreos.rb"
TEMPLATE = "Vagrantfile.template"
# How long an interrupted ``vagrant up`` may take to stop on its own before it is killed.
INTERRUPT_GRACE_SECONDS = 60.0
# config.rb globals the plugin decides itself; a user's config.rb value is overridden.
_OWN_GLOBALS = ("num_instances", "update_channel", "instance_name_prefix")
# coreos-vagrant's checkout gets this appended to its copied Vagrantfile.
CHECKOUT_EXTENSION = (
    "\n# Added by pytest-coreos to this copy: its provider settings and provisioning.\n"
    'load File.join(File.dirname(__FILE__), "pytest-coreos.rb")\n'
    "PytestCoreOS.extend_checkout\n"
)
_SIMPLE_GLOBAL = re.compile(
    r"""^\s*\$(?P<name>[a-z_][a-z0-9_]*)\s*=\s*(?P<value>
        -?\d+                      # an integer
      | true | false
      | "(?:[^"\\\#]|\\.)*"       # a double-quoted string without interpolation
      | '(?:[^'\\]|\\.)*'          # a single-quoted string
    )\s*(?:\#.*)?$""",
    re.VERBOSE,
)


class VagrantError(CoreOSError):
    """A Vagrant (or libvirt) command failed; the message says which, and why."""

    def __init__(self, command: str, problem: str, log_path: Path | None = None) -> None:
        self.command = command
        self.problem = problem
        self.log_path = log_path
        message = f"{command}: {problem}"
        if log_path is not None:
            message += f" (Vagrant's log: {log_path})"
        super().__init__(message)


# --- settings --------------------------------------------------------------------------------


def vagrant_provider_name(spec: ClusterSpec) -> str:
    """The Vagrant provider that runs the VMs: ``--coreos-vagrant-provider``, else
    ``VAGRANT_DEFAULT_PROVIDER``, else libvirt."""
    return spec.vagrant_provider or os.environ.get("VAGRANT_DEFAULT_PROVIDER") or "libvirt"


def read_config_rb(text: str) -> tuple[dict[str, str | int | bool], list[str]]:
    """The simple settings of a user's ``config.rb`` (``$name = literal``), and every other
    line with code in it, which the plugin leaves out: coreos-vagrant's sample config.rb
    fetches a discovery URL and rewrites user-data, which the plugin does itself."""
    settings: dict[str, str | int | bool] = {}
    skipped: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _SIMPLE_GLOBAL.match(line)
        if match is None:
            skipped.append(stripped)
            continue
        settings[match.group("name")] = _ruby_value(match.group("value"))
    return settings, skipped


def _ruby_value(literal: str) -> str | int | bool:
    if literal in ("true", "false"):
        return literal == "true"
    if literal[0] in "\"'":
        body = literal[1:-1]
        if literal[0] == "'":
            return body.replace("\\'", "'").replace("\\\\", "\\")
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)
    return int(literal)


def private_network(spec: ClusterSpec) -> str:
    """The first three octets of the cluster's private network: ``$private_network`` of the
    user's config.rb, else coreos-vagrant's 172.17.8."""
    if spec.vagrant_dir is not None:
        config = spec.vagrant_dir / "config.rb"
        if config.is_file():
            value = read_config_rb(config.read_text())[0].get("private_network")
            if value is not None:
                return _check_network(str(value))
    return DEFAULT_PRIVATE_NETWORK


def _check_network(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(f"{value}.0/24")
    except ValueError:
        raise ConfigError(
            "config.rb $private_network", f"{value!r} is not three octets such as 172.17.8"
        ) from None
    if not network.is_private:
        raise ConfigError("config.rb $private_network", f"{value}.0/24 is not a private network")
    return value


def session_tag(context: BootContext) -> str:
    """``<session>-<cluster>``, which names every VM, disk and network of this cluster."""
    workdir = context.workdir
    session = getattr(context, "session_id", None)
    if not session:
        match = re.match(r"^pytest-coreos-([0-9a-f]{8})-", workdir.parent.name)
        session = match.group(1) if match else hashlib.sha256(str(workdir).encode()).hexdigest()[:8]
    cluster = re.sub(r"[^A-Za-z0-9]+", "-", workdir.name.removeprefix("cluster-")).strip("-")
    return f"{session}-{cluster or '1'}"


def vagrant_environment(provider: str) -> dict[str, str]:
    """The environment Vagrant runs in: ours, without what would point it elsewhere, and
    without its version check over the network."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VAGRANT_CWD", "VAGRANT_VAGRANTFILE", "VAGRANT_DOTFILE_PATH")
    }
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"
    env["VAGRANT_DEFAULT_PROVIDER"] = provider
    return env


def box_settings(box: str | None) -> dict[str, str]:
    """``config.vm.box`` (and ``box_url``) for ``--coreos-box``: a box name, or the path
    of a ``.box`` file (added by Vagrant on first use, named after the file)."""
    if box is None:
        return {}
    path = Path(box).expanduser()
    if box.endswith(".box") or path.is_file():
        if not path.is_file():
            raise ConfigError("--coreos-box", f"{box} is not a file")
        path = path.resolve()
        return {"box": f"pytest-coreos-{path.stem}", "box_url": path.as_uri()}
    return {"box": box}


_PROVIDER_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_RUBY_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_RUBY_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
OPTIONS_MARK = "  # @vagrant-options@\n"


def option_value(text: str) -> str:
    """A ``--coreos-vagrant-option`` value as Ruby: ``true``/``false`` and plain decimal
    numbers as such, anything else a double-quoted string with nothing interpolated
    (``0755`` stays a string: Ruby would read it as octal)."""
    if text in ("true", "false") or _RUBY_INTEGER.fullmatch(text) or _RUBY_FLOAT.fullmatch(text):
        return text
    return render.ruby_literal(text)


def provider_options_block(provider: str, options: Sequence[str]) -> str:
    """The Vagrantfile lines that give ``provider``'s block the ``key=value`` settings of
    ``--coreos-vagrant-option``, after the plugin's own (so the user's win)."""
    if not options:
        return ""
    if not _PROVIDER_NAME.fullmatch(provider):
        raise ConfigError(
            "--coreos-vagrant-provider",
            f"{provider!r} is not a Vagrant provider name",
            "e.g. libvirt, virtualbox, aws, google",
        )
    lines = [
        "  # --coreos-vagrant-option",
        f"  config.vm.provider :{provider} do |provider|",
    ]
    for option in options:
        key, _, value = option.partition("=")
        lines.append(f"    provider.{key} = {option_value(value)}")
    lines.append("  end")
    return "\n".join(lines) + "\n"


def vagrant_option(spec: ClusterSpec, key: str) -> str | None:
    """The last value ``--coreos-vagrant-option`` gives ``key``, or None."""
    found = None
    for option in spec.vagrant_options:
        name, _, value = option.partition("=")
        if name == key:
            found = value
    return found


def libvirt_uri(spec: ClusterSpec) -> str:
    """The libvirt the VMs run on: ``uri=`` of ``--coreos-vagrant-option``, else the local
    system daemon."""
    return vagrant_option(spec, "uri") or LIBVIRT_URI


def remote_libvirt(spec: ClusterSpec) -> bool:
    """Whether the VMs run on another host's libvirt (``uri=qemu+ssh://host/...`` or
    vagrant-libvirt's ``host=``)."""
    uri = urlsplit(libvirt_uri(spec))
    return bool(uri.hostname) or bool(vagrant_option(spec, "host"))


def etcd_client_urls(user_data: Mapping[str, Any], address: str) -> list[str]:
    """Where the machine at ``address`` serves etcd's clients, as its user-data says."""
    env = render.etcd_environment(user_data, private_ipv4=address, public_ipv4=address).env
    urls = env.get("ETCD_ADVERTISE_CLIENT_URLS", f"http://{address}:2379")
    return [url.strip() for url in urls.split(",") if url.strip()]


# --- the cluster's folder --------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    """Write ``text`` as a new file: never through a symlink into the user's checkout."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)


def _vagrant_files() -> Any:
    return resources.files("pytest_coreos.vagrant")


def prepare_directory(
    directory: Path,
    *,
    spec: ClusterSpec,
    user_data_text: str | None,
    machines: Sequence[Mapping[str, str]],
    name_prefix: str,
    network: str,
) -> list[str]:
    """Write the cluster's Vagrant folder; return notices for the user.

    With ``spec.vagrant_dir`` holding a Vagrantfile, the folder is a copy of it (without
    ``.vagrant`` and ``.git``) whose Vagrantfile loads the plugin's part at its end;
    otherwise the plugin's own Vagrantfile. Either way the plugin writes ``config.rb``
    (the user's simple settings, then the cluster's), ``user-data`` and its own files.
    """
    notices: list[str] = []
    user_settings: dict[str, str | int | bool] = {}
    checkout = spec.vagrant_dir
    if checkout is not None:
        if not checkout.is_dir():
            raise ConfigError("--coreos-vagrant-dir", f"{checkout} is not a folder")
        shutil.copytree(
            checkout,
            directory,
            symlinks=True,
            ignore=shutil.ignore_patterns(".vagrant", ".git"),
            dirs_exist_ok=True,
        )
        config = checkout / "config.rb"
        if config.is_file():
            user_settings, skipped = read_config_rb(config.read_text())
            if skipped:
                notices.append(
                    f"{config}: only its $name = value settings are used; left out: "
                    + "; ".join(line[:60] for line in skipped[:5])
                    + (" ..." if len(skipped) > 5 else "")
                )
            for name in _OWN_GLOBALS:
                if name in user_settings:
                    notices.append(f"{config}: ${name} is set by pytest-coreos")
                    del user_settings[name]
        if (checkout / "user-data").is_file():
            notices.append(
                f"{checkout / 'user-data'} is replaced by the cluster's user-data "
                "(give it with --coreos-user-data to use it)"
            )
    else:
        directory.mkdir(parents=True, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    files = _vagrant_files()
    vagrantfile = directory / "Vagrantfile"
    options = provider_options_block(vagrant_provider_name(spec), spec.vagrant_options)
    if checkout is not None and (checkout / "Vagrantfile").is_file():
        text = (checkout / "Vagrantfile").read_text().rstrip("\n") + "\n" + CHECKOUT_EXTENSION
        if options:
            text += 'Vagrant.configure("2") do |config|\n' + options + "end\n"
        _write(vagrantfile, text)
    else:
        _write(vagrantfile, files.joinpath(TEMPLATE).read_text().replace(OPTIONS_MARK, options))
    _write(directory / PLUGIN_RUBY, files.joinpath(PLUGIN_RUBY).read_text())
    extra: dict[str, str | int | bool] = dict(user_settings)
    extra.update(instance_name_prefix="core", private_network=network)
    _write(directory / "config.rb", render.render_config_rb(spec.instances, spec.channel, extra))
    if user_data_text is not None:
        _write(directory / "user-data", user_data_text)
    elif (directory / "user-data").exists() or (directory / "user-data").is_symlink():
        (directory / "user-data").unlink()  # a checkout's: Ignition configures the machines
    settings: dict[str, Any] = {
        "created_by": "pytest-coreos",
        "name_prefix": name_prefix,
        "machines": [dict(machine) for machine in machines],
        **box_settings(spec.box),
    }
    _write(directory / SETTINGS_FILE, json.dumps(settings, indent=1) + "\n")
    return notices


def checkout_addresses(count: int) -> list[str]:
    """The addresses coreos-vagrant's own Vagrantfile gives its machines."""
    return [f"{DEFAULT_PRIVATE_NETWORK}.{100 + index}" for index in range(1, count + 1)]


# --- private addresses handed out in this process ---------------------------------------------

_addresses_lock = threading.Lock()
_addresses_in_use: dict[str, set[int]] = {}


def claim_addresses(network: str, count: int) -> list[str]:
    """``count`` consecutive free addresses from .101 on, so that two clusters of one
    session share the private network without clashing."""
    with _addresses_lock:
        used = _addresses_in_use.setdefault(network, set())
        first = FIRST_HOST
        while any(host in used for host in range(first, first + count)):
            first += 1
        if first + count - 1 > 254:
            raise CoreOSError(f"no {count} free addresses left on {network}.0/24")
        hosts = range(first, first + count)
        used.update(hosts)
    return [f"{network}.{host}" for host in hosts]


def claim_exact(addresses: Sequence[str]) -> None:
    with _addresses_lock:
        for address in addresses:
            network, _, host = address.rpartition(".")
            used = _addresses_in_use.setdefault(network, set())
            if int(host) in used:
                raise CoreOSError(
                    f"{address} is already used by another cluster of this session; a "
                    "coreos-vagrant checkout always uses 172.17.8.101 and up"
                )
        for address in addresses:
            network, _, host = address.rpartition(".")
            _addresses_in_use[network].add(int(host))


def release_addresses(addresses: Sequence[str]) -> None:
    with _addresses_lock:
        for address in addresses:
            network, _, host = address.rpartition(".")
            _addresses_in_use.get(network, set()).discard(int(host))


def addresses_in_use(network: str) -> bool:
    with _addresses_lock:
        return bool(_addresses_in_use.get(network))


# --- libvirt ---------------------------------------------------------------------------------


def virsh(args: Sequence[str], *, uri: str = LIBVIRT_URI, check: bool = True) -> str:
    """Run ``virsh -c URI ARGS...`` and return its output."""
    if shutil.which("virsh") is None:
        raise VagrantError("virsh", "not installed (Debian: apt-get install libvirt-clients)")
    try:
        done = subprocess.run(
            ["virsh", "-q", "-c", uri, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise VagrantError(f"virsh {' '.join(args)}", "no answer within 120s") from error
    if check and done.returncode != 0:
        problem = done.stderr.strip() or f"exit status {done.returncode}"
        if "Failed to connect" in problem or "failed to connect" in problem:
            problem += " (is libvirtd running where this process runs?)"
        raise VagrantError(f"virsh {' '.join(args)}", problem)
    return done.stdout


def network_name(network: str) -> str:
    return NAME_PREFIX + network.replace(".", "-")


def _network_xml(name: str, network: str) -> str:
    root = ElementTree.Element("network")
    ElementTree.SubElement(root, "name").text = name
    ElementTree.SubElement(root, "ip", address=f"{network}.1", netmask="255.255.255.0")
    return ElementTree.tostring(root, encoding="unicode")


def _network_addresses(xml: str) -> list[str]:
    root = ElementTree.fromstring(xml)  # noqa: S314 - from our own libvirtd
    return [ip.get("address", "") for ip in root.findall("ip")]


def _network_connections(xml: str) -> int:
    root = ElementTree.fromstring(xml)  # noqa: S314 - from our own libvirtd
    return int(root.get("connections", "0"))


def ensure_libvirt_network(network: str, uri: str = LIBVIRT_URI) -> str:
    """Make sure libvirt's network for ``network``.0/24 exists and runs, with the host at
    ``network``.1, and return its name. vagrant-libvirt finds it by its address, puts the
    machines' private interfaces on it, and removes it with the last machine; the plugin
    removes it too when its clusters are gone (:func:`release_libvirt_network`), and so
    does the reaper after a killed run."""
    name = network_name(network)
    names = virsh(["net-list", "--all", "--name"], uri=uri).split()
    if name in names:
        info = virsh(["net-info", name], uri=uri)
        if re.search(r"^Active:\s+yes", info, re.M) is None:
            virsh(["net-start", name], uri=uri)
        return name
    host = f"{network}.1"
    for other in names:
        xml = virsh(["net-dumpxml", other], uri=uri, check=False)
        if xml and any(address.rsplit(".", 1)[0] == network for address in _network_addresses(xml)):
            raise VagrantError(
                "libvirt network",
                f"{other} already holds {network}.0/24, which the cluster's private network "
                f"needs ({host}); remove it (virsh net-destroy {other}) or set "
                "$private_network in your config.rb",
            )
    with tempfile.NamedTemporaryFile("w", prefix="pytest-coreos-net-", suffix=".xml") as xml_file:
        xml_file.write(_network_xml(name, network))
        xml_file.flush()
        virsh(["net-define", xml_file.name], uri=uri)
    try:
        virsh(["net-start", name], uri=uri)
    except VagrantError:
        virsh(["net-undefine", name], uri=uri, check=False)
        raise
    return name


def release_libvirt_network(name: str, uri: str = LIBVIRT_URI) -> list[str]:
    """Remove the network ``name`` if no machine uses it any more."""
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"refusing to remove the libvirt network {name}")
    xml = virsh(["net-dumpxml", name], uri=uri, check=False)
    if not xml or _network_connections(xml):
        return []
    network = name.removeprefix(NAME_PREFIX).replace("-", ".")
    if addresses_in_use(network):
        return []
    virsh(["net-destroy", name], uri=uri, check=False)
    virsh(["net-undefine", name], uri=uri, check=False)
    return [f"libvirt network {name}"]


def remove_libvirt_leftovers(name_prefix: str, uri: str = LIBVIRT_URI) -> list[str]:
    """Destroy and undefine every domain whose name starts with ``name_prefix``, and delete
    every volume of the default pool that does: what ``vagrant destroy`` could not, or a
    killed ``vagrant up`` left without Vagrant knowing it."""
    if not name_prefix.startswith(NAME_PREFIX):
        raise ValueError(f"refusing to remove libvirt objects named {name_prefix}*")
    removed = []
    for domain in virsh(["list", "--all", "--name"], uri=uri).split():
        if domain.startswith(name_prefix):
            virsh(["destroy", domain], uri=uri, check=False)
            virsh(["undefine", domain, "--nvram"], uri=uri, check=False)
            removed.append(f"libvirt domain {domain}")
    pools = virsh(["pool-list", "--all", "--name"], uri=uri).split()
    if "default" in pools:
        virsh(["pool-refresh", "default"], uri=uri, check=False)
        for volume in virsh(["vol-list", "default"], uri=uri, check=False).splitlines():
            fields = volume.split()
            if fields and fields[0].startswith(name_prefix):
                virsh(["vol-delete", fields[0], "--pool", "default"], uri=uri, check=False)
                removed.append(f"libvirt volume {fields[0]}")
    return removed


def check_ignition_support(spec: ClusterSpec) -> None:
    """With ``--coreos-config=ignition`` each VM gets its config the way Flatcar's images
    take it on QEMU: a firmware config entry (``-fw_cfg``) naming a file that QEMU reads,
    which only a local libvirt can be given."""
    if spec.config != "ignition":
        return
    provider = vagrant_provider_name(spec)
    if provider != "libvirt":
        raise ConfigError(
            "--coreos-config",
            f"Ignition is passed to VMs of the libvirt Vagrant provider only, not {provider} "
            "(Flatcar on VirtualBox reads the guest property /Ignition/Config, which "
            "pytest-coreos does not set)",
            "use --coreos-vagrant-provider=libvirt, or cloud-config",
        )
    if remote_libvirt(spec):
        raise ConfigError(
            "--coreos-config",
            "Ignition goes to a VM as a file that QEMU reads on the libvirt host, and the "
            f"plugin writes it on this one, not where {libvirt_uri(spec)} runs",
            "use cloud-config with a remote libvirt",
        )


def discovery_address(spec: ClusterSpec) -> str | None:
    """With ``--coreos-discovery=local``, the discovery service listens on the host's
    address on the private network (172.17.8.1), which the machines reach; it exists once
    libvirt's network does, so the network is made here (vagrant-libvirt reuses it)."""
    if spec.discovery != "local":
        return None
    provider = vagrant_provider_name(spec)
    if provider != "libvirt":
        raise ConfigError(
            "--coreos-discovery",
            f"local discovery needs the host's address on the VMs' network, which only the "
            f"libvirt Vagrant provider makes beforehand (not {provider})",
            "use --coreos-discovery=public or the URL of a discovery service",
        )
    if remote_libvirt(spec):
        raise ConfigError(
            "--coreos-discovery",
            f"local discovery listens on this host's address on the VMs' network, and the "
            f"VMs run on another host ({libvirt_uri(spec)})",
            "use --coreos-discovery=public or the URL of a discovery service they reach",
        )
    network = private_network(spec)
    ensure_libvirt_network(network)
    return f"{network}.1"


# --- running vagrant ---------------------------------------------------------------------------


@contextlib.contextmanager
def _append(path: Path) -> Iterator[IO[str]]:
    with path.open("a") as handle:
        yield handle


class VagrantMachine:
    """One VM; its faults are Vagrant's commands (``halt``, ``up``, ``suspend``...)."""

    def __init__(self, provider: VagrantProvider, name: str) -> None:
        self.provider = provider
        self.name = name
        self.handle: Machine | None = None
        self._running = True

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """``vagrant up NAME``: the box's agent applies the user-data again at boot, and
        etcd rejoins with its data."""
        self.provider.call("up", self.name, provider=self.provider.provider_name)
        self._running = True
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

    def resume(self) -> None:
        """``vagrant resume NAME``."""
        self.provider.call("resume", self.name)

    def logs(self, lines: int) -> str:
        """The last lines of etcd's journal on the machine (over SSH)."""
        if self.handle is None:
            return ""
        try:
            units = ["-u", "etcd.service", "-u", "etcd-member.service"]  # cloud-config, Ignition
            result = self.handle.ssh.run(
                ["sudo", "journalctl", "--no-pager", "-n", str(lines), *units],
                check=False,
                timeout=10,
            )
        except SSHError as error:
            return f"(no log: {error})"
        return result.stdout.rstrip("\n")

    def check_alive(self) -> None:
        """A VM's etcd is watched through its API; nothing to check on this host."""


class VagrantProvider:
    """Boots a cluster of Vagrant VMs; ``close`` destroys them."""

    def __init__(self, context: BootContext, record: Mapping[str, Any] | None = None) -> None:
        self.context = context
        spec = context.spec
        self.notices: list[str] = []
        self.provider_name = vagrant_provider_name(spec)
        self.directory = context.workdir / "vagrant"
        self.log_path = context.workdir / "vagrant.log"
        self.machines: list[VagrantMachine] = []
        self.timings: dict[str, float] = {}
        self._closed = False
        self._up_started = record is not None  # whether any VM may exist
        self._uri = libvirt_uri(spec) if self.provider_name == "libvirt" else LIBVIRT_URI
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

    def describe(self) -> dict[str, Any]:
        return {
            "processes": [],
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
    def boot(self) -> list[Machine]:
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
        user_data_path = context.workdir / "user-data"
        user_data_text: str | None = None
        if context.write_ignition is None:
            user_data_text = (
                user_data_path.read_text()
                if user_data_path.is_file()
                else render.render_user_data(context.user_data)
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
            )
        )
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
        self.machines = [VagrantMachine(self, name) for name in names]
        self.up()
        return self.handles()

    def _fw_cfg_file(self, name: str, written: Path) -> Path:
        """The copy of machine ``name``'s Ignition config that QEMU reads for ``-fw_cfg``.

        libvirt's system daemon runs QEMU as its own user (Debian: ``libvirt-qemu``), which
        relabels disks and kernels but not files named on QEMU's command line: the copy is
        given to that user (read-only), and the folders above it let it pass (``o+x``, no
        listing)."""
        directory = self.directory / "fw_cfg"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{name}.ign"
        path.write_bytes(written.read_bytes())
        path.chmod(0o400)
        qemu_user = _qemu_user()
        if os.geteuid() == 0 and qemu_user is not None:
            os.chown(path, qemu_user, -1)
            for folder in (directory, *directory.parents):
                if folder.stat().st_uid != 0 or folder == Path(folder.anchor):
                    break
                folder.chmod(folder.stat().st_mode | 0o001)
                if folder == self.context.workdir.parent:
                    break  # the session's folder: nothing above it is the plugin's
        return path

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
                    status = process.wait()
                except BaseException:
                    _stop_vagrant(process)
                    raise
        self.timings["up"] = time.monotonic() - started
        if status != 0:
            error = VagrantError(
                "vagrant up", f"exited with status {status}", log_path=self.log_path
            )
            error.add_note(f"--- last lines of {self.log_path} ---\n{tail(self.log_path, 30)}")
            raise error
        self.context.progress(f"vagrant up finished in {self.timings['up']:.1f}s")

    def handles(self) -> list[Machine]:
        """SSH and etcd handles of every machine, from ``vagrant ssh-config``."""
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
                name=machine.name,
            )
            handle = Machine(
                machine.name,
                private_ipv4=address,
                public_ipv4=address,
                ssh=ssh,
                etcd_endpoints=etcd_client_urls(self.context.user_data, address),
                control=machine,
            )
            machine.handle = handle
            handles.append(handle)
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
        if machine.handle is None:
            return
        config = parse_ssh_config(self._ssh_config(machine.name)).get(machine.name)
        if config is not None and (config.hostname, config.port) != (
            machine.handle.ssh.host,
            machine.handle.ssh.port,
        ):
            machine.handle.ssh.close()
            machine.handle.ssh.host = config.hostname
            machine.handle.ssh.port = config.port

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


def create(context: BootContext) -> VagrantProvider:
    return VagrantProvider(context)


def attach(context: BootContext, record: Mapping[str, Any]) -> AttachedVagrantProvider:
    return AttachedVagrantProvider(context, record)


class AttachedVagrantProvider(VagrantProvider):
    """VMs a kept cluster left running, adopted from its state record."""

    def __init__(self, context: BootContext, record: Mapping[str, Any]) -> None:
        super().__init__(context, record["vagrant"])
        names = machine_names(context.spec.instances)
        claim_exact(self.addresses)
        self.machines = [VagrantMachine(self, name) for name in names]

    def boot(self) -> list[Machine]:
        return self.handles()
