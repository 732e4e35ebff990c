"""The vagrant provider's settings, from the spec and the environment: pure, and light
enough for its checks to run when pytest configures."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pytest_coreos.config import config_rb
from pytest_coreos.errors import ConfigError, CoreOSError

if TYPE_CHECKING:
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import BootContext

DEFAULT_PRIVATE_NETWORK = "172.17.8"  # coreos-vagrant's: machines at .101, .102...
FIRST_HOST = 101
LIBVIRT_URI = "qemu:///system"  # vagrant-libvirt's default
NAME_PREFIX = "pytest-coreos-"
# --coreos-box=stand-in: the stand-in box, built from the installed package (cached).
STAND_IN_BOX = "stand-in"
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
    session = context.session_id
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
    """``config.vm.box`` for ``--coreos-box``: a box name, or the path of a ``.box`` file
    (``box_file``: Vagrant adds it from a metadata file the plugin writes, as
    ``coreos-<channel>``)."""
    if box is None:
        return {}
    path = Path(box).expanduser()
    if box.endswith(".box") or path.is_file():
        if not path.is_file():
            raise ConfigError("--coreos-box", f"{box} is not a file")
        return {"box_file": str(path.resolve())}
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
    return config_rb.ruby_literal(text)


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


def check_discovery(spec: ClusterSpec) -> None:
    """With ``--coreos-discovery=local``, the discovery service listens on the host's
    address on the private network (172.17.8.1), which the machines reach: only a local
    libvirt makes that network beforehand."""
    if spec.discovery != "local":
        return
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


def check_images(spec: ClusterSpec) -> None:
    """``--coreos-images`` serves the images from a registry on the host's address on the
    private network, as local discovery does: only a local libvirt makes that network
    beforehand; and a kept cluster's registry is not attached to again."""
    if not spec.images:
        return
    provider = vagrant_provider_name(spec)
    if provider != "libvirt" or remote_libvirt(spec):
        where = f"not {provider}" if provider != "libvirt" else f"not {libvirt_uri(spec)}"
        raise ConfigError(
            "--coreos-images",
            "the images are served from this host's address on the VMs' network, which only "
            f"a local libvirt Vagrant provider makes beforehand ({where})",
            "use the libvirt provider on this host, or load images in a test with "
            "machine.docker.load(PATH)",
        )
    if spec.reuse:
        raise ConfigError(
            "--coreos-images",
            "does not go with --coreos-reuse on the vagrant provider (a kept cluster's "
            "registry is not attached to again)",
            "leave one of them out",
        )
