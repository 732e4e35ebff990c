"""The stand-in box's coreos-cloudinit and Ignition: applies the machine's config.

On CoreOS, Vagrant's provisioners copied the cluster's ``user-data`` to
``/var/lib/coreos-vagrant/vagrantfile-user-data`` and coreos-cloudinit applied it. The
Debian stand-in box runs this agent instead (from a systemd path unit, and at every boot):
``$private_ipv4``/``$public_ipv4`` become the machine's private network address, the
``coreos.etcd``/``coreos.etcd2`` section becomes etcd's ``ETCD_*`` environment through
:func:`pytest_coreos.config.etcd_env.etcd_environment` (the one mapping the local provider
uses too: the image build copies the package's pure ``config`` modules next to this file),
the ``coreos.fleet`` section becomes fleet's ``FLEET_*`` environment in a drop-in of
``fleet.service`` (:func:`pytest_coreos.config.fleet_env.fleet_environment`), and
``coreos.units`` are written, enabled and started with systemd. The box has fleet's units,
not fleet itself: fleetd and fleetctl are in ``/usr/bin`` only when the plugin was given
them (``--coreos-fleet``).

On Flatcar, Ignition applies a JSON config (spec 3.x) once, in the initramfs, before
systemd starts the system. Where the machine has one, this agent applies it instead of
user-data, at every boot (a container of the nspawn provider starts afresh each time):
from QEMU's firmware config, where Flatcar's images read it
(``/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-linux/config/raw``: the box loads
``qemu_fw_cfg``), or from ``/usr/share/oem/config.ign`` (a file the nspawn provider
mounts). It writes ``storage.files`` (``data:`` URLs, gzip, mode), ``systemd.units``
(contents, drop-ins, mask, enabled: enabled units are then started, as they would have
been by the boot Ignition precedes), the SSH keys of ``passwd.users`` (a user it does not
have is made, with passwordless sudo like Flatcar's ``core``) and the hostname; what else
the config asks for is listed in the status file, not applied.

Ignition configs written for Flatcar run etcd as ``etcd-member.service``, with their
``ETCD_*`` settings in a drop-in. The box has that unit itself (installed by the box
build, beside Debian's ``etcd.service``): it runs ``/usr/lib/flatcar/etcd-wrapper``, which
on Flatcar starts etcd's container and here execs Debian's etcd binary, so a drop-in
written for Flatcar configures it unchanged. That keeps the agent from renaming units: a
unit of the config is applied as named, and one the box lacks is reported, not started.

The functions that decide what to do are pure, so the plugin's tests run them on the host.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import gzip
import ipaddress
import json
import os
import pwd
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from pytest_coreos.config import cloud_config, etcd_env, fleet_env
from pytest_coreos.config.units import DROP_IN_NAME, UNIT_NAME, systemd_quote
from pytest_coreos.errors import UserDataError

USER_DATA = Path("/var/lib/coreos-vagrant/vagrantfile-user-data")
ENVIRONMENT = Path("/etc/environment")
STATUS = Path("/run/coreos-agent/status.json")
# What the box's etcdctl wrapper reads: v2, and this machine's member, as CoreOS's etcdctl.
ETCDCTL_SETTINGS = STATUS.with_name("etcdctl.env")
PERSISTENT_UNITS = Path("/etc/systemd/system")
RUNTIME_UNITS = Path("/run/systemd/system")
# The box's etcd unit; Debian's etcd-server also names it etcd2.service (an alias).
ETCD_UNIT = "etcd.service"
ETCD_DROP_IN = "20-cloudinit.conf"
FLEETD = Path("/usr/bin/fleetd")
# etcd's own default, where the user-data advertises no client URL.
DEFAULT_ETCD_CLIENT_URL = "http://127.0.0.1:2379"
ADDRESS_WAIT_SECONDS = 120.0
# Where an Ignition config is found, in this order: QEMU's firmware config under Flatcar's
# name, then a file the provider mounts (the nspawn provider).
IGNITION_SOURCES = (
    Path("/sys/firmware/qemu_fw_cfg/by_name/opt/org.flatcar-linux/config/raw"),
    Path("/usr/share/oem/config.ign"),
)
# A config drive (CoreOS's, OpenStack's layout): QEMU's 9p share tagged config-2, mounted
# where coreos-cloudinit mounted it; its user-data comes before Vagrant's.
CONFIG_DRIVE_TAG = "config-2"
CONFIG_DRIVE = Path("/media/configdrive")
CONFIG_DRIVE_USER_DATA = Path("openstack/latest/user_data")
NINEP_DEVICES = Path("/sys/bus/virtio/drivers/9pnet_virtio")
# fleetd and fleetctl, where the qemu provider gives them (--coreos-fleet): a 9p share of
# that tag, mounted read-only and linked into /usr/bin (the box carries no fleet).
FLEET_TAG = "pytest-coreos-fleet"
FLEET_MOUNT = Path("/opt/pytest-coreos/fleet")
FLEET_BINARIES = ("fleetd", "fleetctl")
# systemd-networkd's folders: .network files an Ignition config writes there are applied.
NETWORK_FOLDERS = (Path("/etc/systemd/network"), Path("/run/systemd/network"))
# The user CoreOS's ssh_authorized_keys went to, and the groups it had.
CORE_USER = "core"
# The user-data's keys plan_machine applies (beside coreos).
MACHINE_KEYS = ("hostname", "ssh_authorized_keys", "write_files")
CORE_GROUPS = ("systemd-journal", "docker")
SSH_CONFIG = Path("/etc/ssh")
HOSTNAME_FILE = Path("/etc/hostname")
SUDOERS = Path("/etc/sudoers.d")
INTERFACES_D = Path("/etc/network/interfaces.d")
NETWORK_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@-]+\.network$")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# etcd 3.4 serves the v2 API (what CoreOS's etcd and etcd2 spoke, and what the plugin's
# handles use) only when asked to.
STAND_IN_ETCD_ENVIRONMENT = {"ETCD_ENABLE_V2": "true", "ETCD_PRE_VOTE": "true"}
# The local provider's election timings, so that a lost leader is replaced in well under a
# second on every provider (etcd's own 100/1000 ms take seconds). Set as a pair, and only
# when the user-data sets neither: etcd refuses an election timeout under five heartbeats.
FAST_ELECTION = {"ETCD_HEARTBEAT_INTERVAL": "25", "ETCD_ELECTION_TIMEOUT": "250"}

# The unit commands coreos-cloudinit accepted.
UNIT_COMMANDS = frozenset(
    {
        "start",
        "stop",
        "restart",
        "reload",
        "try-restart",
        "reload-or-restart",
        "reload-or-try-restart",
    }
)


class AgentError(Exception):
    """The user-data asks for something the agent cannot do."""


# --- the machine's addresses ----------------------------------------------------------------


def read_environment(text: str) -> dict[str, str]:
    """``/etc/environment`` as a dict (``KEY=value`` lines, optional quotes)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def parse_addresses(ip_output: str) -> list[tuple[str, str]]:
    """(interface, IPv4 address) pairs from ``ip -4 -o addr show scope global``."""
    pairs = []
    for line in ip_output.splitlines():
        match = re.search(r"^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+(\d+\.\d+\.\d+\.\d+)/", line)
        if match:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def parse_default_interfaces(route_output: str) -> set[str]:
    """Interfaces that carry a default route, from ``ip -4 route show default``."""
    return set(re.findall(r"\bdev\s+(\S+)", route_output))


def choose_private_address(
    environment: Mapping[str, str],
    addresses: Sequence[tuple[str, str]],
    default_interfaces: set[str],
) -> str | None:
    """The machine's private network address, as coreos-cloudinit's ``$private_ipv4``.

    The provisioner writes ``COREOS_PRIVATE_IPV4`` to ``/etc/environment`` as CoreOS's
    Vagrant support did; without it, the first global address of an interface that is
    not the management one (the one holding the default route).
    """
    given = environment.get("COREOS_PRIVATE_IPV4", "")
    if given:
        try:
            ipaddress.IPv4Address(given)
        except ValueError:
            raise AgentError(f"COREOS_PRIVATE_IPV4={given!r} is not an IPv4 address") from None
        return given
    for interface, address in addresses:
        if interface not in default_interfaces:
            return address
    return None


def choose_public_address(environment: Mapping[str, str], private: str) -> str:
    """``$public_ipv4``: ``COREOS_PUBLIC_IPV4`` where given, else the private address
    (coreos-vagrant's machines had no other). A loopback address is not given: Vagrant's
    CoreOS guest writes 127.0.0.1 for a machine without a public network."""
    given = environment.get("COREOS_PUBLIC_IPV4", "")
    with contextlib.suppress(ValueError):
        if ipaddress.IPv4Address(given).is_loopback:
            given = ""
    return given or private


# --- what to write and run ------------------------------------------------------------------


def etcd_drop_in(environment: Mapping[str, str]) -> str:
    """The drop-in that gives etcd (or fleet) its environment, as coreos-cloudinit wrote it."""
    lines = ["[Service]"]
    for key, value in environment.items():
        lines.append(f"Environment={systemd_quote(f'{key}={value}')}")
    return "\n".join(lines) + "\n"


def etcd_environment(
    user_data: Mapping[str, Any], private_ipv4: str, public_ipv4: str
) -> tuple[dict[str, str], tuple[str, ...]]:
    """etcd's environment for this user-data (the shared mapping, then what the stand-in's
    etcd 3.4 needs to speak like CoreOS's etcd), and the etcd 0.4 keys it had to drop."""
    converted = etcd_env.etcd_environment(
        user_data, private_ipv4=private_ipv4, public_ipv4=public_ipv4
    )
    env = dict(converted.env)
    for key, value in STAND_IN_ETCD_ENVIRONMENT.items():
        env.setdefault(key, value)
    if not FAST_ELECTION.keys() & env.keys():
        env.update(FAST_ELECTION)
    return env, converted.dropped


@dataclass
class Plan:
    """Everything one application of the user-data does, in order."""

    files: dict[Path, str] = field(default_factory=dict)
    masks: list[str] = field(default_factory=list)
    enables: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (command, unit)
    notes: list[str] = field(default_factory=list)


def _unit_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not UNIT_NAME.fullmatch(value):
        raise AgentError(f"{where}: {value!r} is not a systemd unit name")
    return value


def plan(
    user_data: Mapping[str, Any],
    private_ipv4: str,
    public_ipv4: str,
    *,
    persistent: Path = PERSISTENT_UNITS,
    runtime: Path = RUNTIME_UNITS,
    etcdctl_settings: Path = ETCDCTL_SETTINGS,
) -> Plan:
    """What the user-data asks of this machine: etcd's drop-in, then every unit's files,
    masks, enables and commands, in the order coreos-cloudinit applied them."""
    result = Plan()
    env, dropped = etcd_environment(user_data, private_ipv4, public_ipv4)
    result.files[runtime / f"{ETCD_UNIT}.d" / ETCD_DROP_IN] = etcd_drop_in(env)
    result.notes.extend(f"etcd key {key!r} has no etcd 3 equivalent; ignored" for key in dropped)
    # fleet's settings, as coreos-cloudinit wrote them; its etcd is this machine's own.
    etcd_urls = env.get("ETCD_ADVERTISE_CLIENT_URLS", DEFAULT_ETCD_CLIENT_URL)
    # A user-data of the etcd 0.4 or etcd2 era: its units' etcdctl speaks v2, to this member.
    result.files[etcdctl_settings] = f"ETCDCTL_API=2\nETCDCTL_ENDPOINTS={etcd_urls}\n"
    fleet = fleet_env.fleet_environment(
        user_data,
        private_ipv4=private_ipv4,
        public_ipv4=public_ipv4,
        etcd_client_urls=[url.strip() for url in etcd_urls.split(",") if url.strip()],
    )
    result.files[runtime / f"{fleet_env.FLEET_UNIT}.d" / fleet_env.FLEET_DROP_IN] = etcd_drop_in(
        fleet
    )
    coreos = user_data.get("coreos") or {}
    units = coreos.get("units") or []
    if not isinstance(units, list):
        raise AgentError("coreos.units is not a list")
    for index, unit in enumerate(units):
        where = f"coreos.units[{index}]"
        if not isinstance(unit, Mapping):
            raise AgentError(f"{where} is not a mapping")
        if NETWORK_UNIT_NAME.fullmatch(str(unit.get("name", ""))):
            # systemd-networkd's, written where networkd reads them; their addresses are
            # set by plan_machine (the box runs no networkd).
            folder = NETWORK_FOLDERS[1 if unit.get("runtime") is True else 0]
            result.files[folder / str(unit["name"])] = str(unit.get("content") or "")
            continue
        name = _unit_name(unit.get("name"), f"{where}.name")
        base = runtime if unit.get("runtime") is True else persistent
        content = unit.get("content")
        if content is not None:
            if not isinstance(content, str):
                raise AgentError(f"{where}.content is not text")
            result.files[base / name] = etcd_env.substitute(content, private_ipv4, public_ipv4)
        for drop_in_index, drop_in in enumerate(unit.get("drop-ins") or []):
            drop_where = f"{where}.drop-ins[{drop_in_index}]"
            if not isinstance(drop_in, Mapping):
                raise AgentError(f"{drop_where} is not a mapping")
            drop_name = drop_in.get("name")
            if not isinstance(drop_name, str) or not DROP_IN_NAME.fullmatch(drop_name):
                raise AgentError(f"{drop_where}.name: {drop_name!r} is not a *.conf name")
            text = drop_in.get("content")
            if not isinstance(text, str):
                raise AgentError(f"{drop_where}.content is not text")
            result.files[base / f"{name}.d" / drop_name] = etcd_env.substitute(
                text, private_ipv4, public_ipv4
            )
        if unit.get("mask") is True:
            result.masks.append(name)
        if unit.get("enable") is True:
            result.enables.append(name)
        command = unit.get("command")
        if command is not None:
            if command not in UNIT_COMMANDS:
                raise AgentError(
                    f"{where}.command: {command!r} is not one of {', '.join(sorted(UNIT_COMMANDS))}"
                )
            result.commands.append((str(command), name))
    ignored = [key for key in user_data if key not in ("coreos", *MACHINE_KEYS)]
    ignored += [f"coreos.{key}" for key in coreos if key not in ("etcd", "etcd2", "fleet", "units")]
    if ignored:
        result.notes.append("not applied by the stand-in box: " + ", ".join(ignored))
    return result


# --- Ignition -------------------------------------------------------------------------------


@dataclass
class IgnitionPlan:
    """Everything one application of an Ignition config does, in order."""

    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)  # content, mode
    hostname: str | None = None
    users: dict[str, list[str]] = field(default_factory=dict)  # name: SSH keys
    masks: list[str] = field(default_factory=list)
    enables: list[str] = field(default_factory=list)
    disables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def decode_data_url(source: object, where: str) -> bytes:
    """The bytes of a ``data:`` URL (RFC 2397: percent-encoded, or ``;base64``)."""
    if not isinstance(source, str) or not source.startswith("data:") or "," not in source:
        raise AgentError(f"{where}: only data: URLs are applied by the stand-in, not {source!r}")
    header, _, payload = source[len("data:") :].partition(",")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(unquote_to_bytes(payload), validate=True)
        except ValueError as error:
            raise AgentError(f"{where}: bad base64 ({error})") from None
    return unquote_to_bytes(payload)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AgentError(f"{where} is not an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise AgentError(f"{where} is not an array")
    return value


def _others(section: Mapping[str, Any], known: set[str], prefix: str) -> list[str]:
    return [f"{prefix}{key}" for key in section if key not in known and section[key]]


def plan_ignition(
    config: Mapping[str, Any], *, persistent: Path = PERSISTENT_UNITS
) -> IgnitionPlan:
    """What an Ignition config asks of this machine, as far as the stand-in applies it."""
    result = IgnitionPlan()
    version = _mapping(config.get("ignition"), "ignition").get("version")
    if not isinstance(version, str) or not version.startswith("3."):
        raise AgentError(f"ignition.version {version!r} is not a spec 3 version")
    ignored = _others(config, {"ignition", "storage", "systemd", "passwd"}, "")
    ignored += _others(_mapping(config.get("ignition"), "ignition"), {"version"}, "ignition.")
    storage = _mapping(config.get("storage"), "storage")
    ignored += _others(storage, {"files"}, "storage.")
    for index, entry in enumerate(_list(storage.get("files"), "storage.files")):
        where = f"storage.files[{index}]"
        entry = _mapping(entry, where)
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/") or "/../" in f"{path}/":
            raise AgentError(f"{where}.path: {path!r} is not an absolute path")
        contents = _mapping(entry.get("contents"), f"{where}.contents")
        data = b""
        if contents.get("source") is not None:
            data = decode_data_url(contents["source"], f"{where}.contents.source")
        compression = contents.get("compression") or ""
        if compression == "gzip":
            data = gzip.decompress(data)
        elif compression:
            raise AgentError(f"{where}: compression {compression!r} is not gzip")
        mode = entry.get("mode", 0o644)
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise AgentError(f"{where}.mode: {mode!r} is not a file mode")
        ignored += _others(entry, {"path", "contents", "mode", "overwrite"}, f"{where}.")
        result.files[Path(path)] = (data, mode)
        if path == str(HOSTNAME_FILE):
            result.hostname = data.decode("utf-8", "replace").strip() or None
    systemd = _mapping(config.get("systemd"), "systemd")
    for index, unit in enumerate(_list(systemd.get("units"), "systemd.units")):
        where = f"systemd.units[{index}]"
        unit = _mapping(unit, where)
        name = _unit_name(unit.get("name"), f"{where}.name")
        if unit.get("contents") is not None:
            if not isinstance(unit["contents"], str):
                raise AgentError(f"{where}.contents is not text")
            result.files[persistent / name] = (unit["contents"].encode(), 0o644)
        for position, dropin in enumerate(_list(unit.get("dropins"), f"{where}.dropins")):
            dropin = _mapping(dropin, f"{where}.dropins[{position}]")
            dropin_name = dropin.get("name")
            if not isinstance(dropin_name, str) or not DROP_IN_NAME.fullmatch(dropin_name):
                raise AgentError(f"{where}.dropins[{position}].name: {dropin_name!r}")
            text = dropin.get("contents") or ""
            if not isinstance(text, str):
                raise AgentError(f"{where}.dropins[{position}].contents is not text")
            result.files[persistent / f"{name}.d" / dropin_name] = (text.encode(), 0o644)
        if unit.get("mask") is True:
            result.masks.append(name)
        if unit.get("enabled") is True:
            result.enables.append(name)
        elif unit.get("enabled") is False:
            result.disables.append(name)
    passwd = _mapping(config.get("passwd"), "passwd")
    ignored += _others(passwd, {"users"}, "passwd.")
    for index, user in enumerate(_list(passwd.get("users"), "passwd.users")):
        where = f"passwd.users[{index}]"
        user = _mapping(user, where)
        user_name = user.get("name")
        if not isinstance(user_name, str) or not _USER_NAME.fullmatch(user_name):
            raise AgentError(f"{where}.name: {user_name!r} is not a user name")
        keys = _list(user.get("sshAuthorizedKeys"), f"{where}.sshAuthorizedKeys")
        if any(not isinstance(key, str) or "\n" in key for key in keys):
            raise AgentError(f"{where}.sshAuthorizedKeys: each key is one line of text")
        result.users.setdefault(user_name, []).extend(key for key in keys if key)
        ignored += _others(user, {"name", "sshAuthorizedKeys"}, f"{where}.")
    if ignored:
        result.notes.append("not applied by the stand-in box: " + ", ".join(ignored))
    return result


def find_ignition(sources: Sequence[Path] = IGNITION_SOURCES) -> Path | None:
    """The first place that holds an Ignition config, or None."""
    for path in sources:
        try:
            # Read, not stat'ed: sysfs gives the firmware config entry a size of 0.
            with path.open("rb") as handle:
                if handle.read(1):
                    return path
        except OSError:
            continue
    return None


def _same_file(path: Path, data: bytes, mode: int) -> bool:
    try:
        return path.read_bytes() == data and path.stat().st_mode & 0o7777 == mode
    except OSError:
        return False


def _write_file(path: Path, data: bytes, mode: int) -> None:
    if _same_file(path, data, mode):
        return  # also where it cannot be replaced (the nspawn provider's read-only hostname)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # On disk before the agent goes on, as Ignition's files are: a VM's power cut (kill())
    # soon after boot must not leave a new file empty (a sudoers entry, a host key).
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.chmod(mode)
    temporary.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _install_keys(name: str, keys: Sequence[str]) -> str | None:
    """Give user ``name`` these SSH keys, making the user (with sudo) if there is none;
    ``core`` is made in the groups CoreOS's had (the journal's and docker's), and has sudo
    at every boot, as CoreOS's core had."""
    made = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        groups = [group for group in CORE_GROUPS if name == CORE_USER and _group_exists(group)]
        extra = ["--groups", ",".join(groups)] if groups else []
        done = _run(["useradd", "--create-home", "--shell", "/bin/bash", *extra, name])
        if done.returncode != 0:
            return f"user {name}: {done.stderr.strip()}"
        made = True
    if made or name == CORE_USER:
        _write_file(
            SUDOERS / f"ignition-{name}", f"{name} ALL=(ALL) NOPASSWD:ALL\n".encode(), 0o440
        )
    entry = pwd.getpwnam(name)
    ssh = Path(entry.pw_dir) / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_file(ssh / "authorized_keys", "".join(f"{key}\n" for key in keys).encode(), 0o600)
    for path in (ssh, ssh / "authorized_keys"):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return None


def apply_ignition(text: str, source: Path) -> dict[str, Any]:
    """Apply Ignition config ``text`` to this machine; return what was done."""
    config = json.loads(text)
    if not isinstance(config, dict):
        raise AgentError(f"{source}: not an Ignition config object")
    todo = plan_ignition(config)
    ssh_changed = _write_files(todo.files)
    failures: list[str] = []
    network = ignition_network(todo.files)
    for path, content in network.interfaces.items():
        _write_file(path, content.encode(), 0o644)
    failures += apply_addresses(network.addresses)
    if todo.hostname is not None and _run(["hostname", todo.hostname]).returncode != 0:
        failures.append(f"hostname {todo.hostname}")
    for name, keys in todo.users.items():
        problem = _install_keys(name, keys)
        if problem is not None:
            failures.append(problem)
    if ssh_changed:
        _reload_sshd()
    for name in todo.masks:
        if _run(["systemctl", "--no-reload", "mask", name]).returncode != 0:
            failures.append(f"mask {name}")
    _reload_systemd()
    skipped: list[str] = []
    started: list[str] = []
    for name in todo.disables:
        _run(["systemctl", "--no-reload", "disable", name])
    for name in todo.enables:
        if not _unit_exists(name):
            skipped.append(name)  # a Flatcar unit the stand-in box does not have
            continue
        enabled = _run(["systemctl", "--no-reload", "enable", name])
        if enabled.returncode != 0:
            failures.append(f"enable {name}: {enabled.stderr.strip()}")
            continue
        # Ignition runs before the boot that starts enabled units; this runs during it.
        done = _run(["systemctl", "--no-block", "start", name])
        if done.returncode != 0:
            failures.append(f"start {name}: {done.stderr.strip()}")
        else:
            started.append(name)
    notes = list(todo.notes) + network.notes
    if skipped:
        notes.append("no such unit in the stand-in box, not enabled: " + ", ".join(skipped))
    return {
        "ignition": str(source),
        "addresses": [f"{device} {address}" for device, address in network.addresses],
        "files": sorted(str(path) for path in todo.files),
        "users": sorted(todo.users),
        "hostname": todo.hostname,
        "started": started,
        "masked": todo.masks,
        "notes": notes,
        "failures": failures,
    }


# --- doing it -------------------------------------------------------------------------------


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


def _reload_systemd() -> None:
    """systemd reads the units again, once: the agent's masks, enables and disables say
    --no-reload, since each reload costs seconds on an emulated VM (2.7 s under TCG)."""
    subprocess.run(["systemctl", "daemon-reload"], check=True)


def _unit_exists(name: str) -> bool:
    shown = _run(["systemctl", "show", "--property=LoadState", "--value", name])
    return shown.stdout.strip() not in ("", "not-found")


def wait_for_private_address(timeout: float = ADDRESS_WAIT_SECONDS) -> str:
    """The private address, waiting for the network to be configured."""
    deadline = time.monotonic() + timeout
    while True:
        environment = read_environment(ENVIRONMENT.read_text() if ENVIRONMENT.exists() else "")
        addresses = parse_addresses(
            _run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout
        )
        defaults = parse_default_interfaces(_run(["ip", "-4", "route", "show", "default"]).stdout)
        address = choose_private_address(environment, addresses, defaults)
        if address is not None:
            return address
        if time.monotonic() > deadline:
            raise AgentError(f"no private network address after {timeout:g}s: {addresses}")
        time.sleep(1)


def apply(text: str) -> dict[str, Any]:
    """Apply user-data ``text`` to this machine; return what was done, for the status file."""
    user_data = cloud_config.parse_user_data(text, USER_DATA)
    machine = plan_machine(user_data)
    failures = apply_machine(machine)
    private_ipv4 = wait_for_private_address()
    environment = read_environment(ENVIRONMENT.read_text() if ENVIRONMENT.exists() else "")
    public_ipv4 = choose_public_address(environment, private_ipv4)
    todo = plan(user_data, private_ipv4, public_ipv4)
    for path, content in todo.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(content)
        temporary.replace(path)
    skipped: list[str] = []
    for name in todo.masks:
        if _run(["systemctl", "--no-reload", "mask", name]).returncode != 0:
            failures.append(f"mask {name}")
    _reload_systemd()
    for name in todo.enables:
        enabled = _run(["systemctl", "--no-reload", "enable", name])
        if enabled.returncode != 0:
            failures.append(f"enable {name}: {enabled.stderr.strip()}")
    for command, name in todo.commands:
        if name in (fleet_env.FLEET_UNIT, fleet_env.FLEET_SOCKET) and not FLEETD.exists():
            # Its unit's condition skips it anyway; the status file says why.
            skipped.append(f"{name} (no {FLEETD}: the plugin's --coreos-fleet gives fleet)")
            continue
        if not _unit_exists(name):
            # A CoreOS unit the stand-in box does not have (docker.service): said, not fatal.
            skipped.append(name)
            continue
        done = _run(["systemctl", "--no-block", command, name])
        if done.returncode != 0:
            failures.append(f"{command} {name}: {done.stderr.strip()}")
    notes = machine.notes + machine.network.notes + list(todo.notes)
    if skipped:
        notes.append("no such unit in the stand-in box, not started: " + ", ".join(skipped))
    return {
        "private_ipv4": private_ipv4,
        "public_ipv4": public_ipv4,
        "hostname": machine.hostname,
        "addresses": [f"{device} {address}" for device, address in machine.network.addresses],
        "files": sorted(str(path) for path in todo.files),
        "commands": [f"{command} {name}" for command, name in todo.commands],
        "notes": notes,
        "failures": failures,
    }


# --- what a machine is told about itself ----------------------------------------------------


@dataclass
class NetworkPlan:
    """What systemd-networkd units ask for, done by the agent itself (the box keeps
    ifupdown, not networkd): their static addresses, set at once with ``ip``, and the
    ifupdown stanzas that set them again at the next boot (persistent units only)."""

    addresses: list[tuple[str, str]] = field(default_factory=list)  # (device, address/prefix)
    interfaces: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_unit(self, name: str, content: str, *, persistent: bool, where: str) -> None:
        """Plan the ``.network`` unit ``name`` (``where`` prefixes its notes)."""
        device, addresses, dhcp = network_unit_addresses(content)
        if device is None:
            self.notes.append(f"{where}{name} names no [Match] Name=, not applied")
            return
        self.addresses += [(device, address) for address in addresses]
        if addresses and persistent:
            # ifupdown (the box's network at boot) sets them again after a restart, before
            # the agent starts etcd on them.
            stanza = [f"auto {device}", f"iface {device} inet static"]
            stanza += [f"    address {address}" for address in addresses[:1]]
            stanza += [f"    up ip addr add {address} dev {device}" for address in addresses[1:]]
            self.interfaces[INTERFACES_D / f"vagrant-{name.removesuffix('.network')}"] = (
                f"# Written by coreos-agent from {name}\n" + "\n".join(stanza) + "\n"
            )
        if dhcp:
            self.notes.append(f"{where}{name} asks for DHCP on {device}, not applied")


def network_unit_addresses(content: str) -> tuple[str | None, list[str], bool]:
    """A systemd-networkd ``.network`` unit's ``[Match] Name=``, its ``[Network]
    Address=`` values and whether it asks for DHCP."""
    section = ""
    device: str | None = None
    addresses: list[str] = []
    dhcp = False
    for raw in content.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if section == "Match" and key == "Name":
            device = value
        elif section == "Network" and key == "Address":
            addresses.append(value)
        elif section == "Network" and key == "DHCP":
            dhcp = value.lower() in ("yes", "true", "ipv4", "both")
    return device, addresses, dhcp


def plan_write_files(entries: object) -> tuple[dict[Path, tuple[bytes, int]], list[str]]:
    """cloud-config's ``write_files``: each file's content and mode, and the notes on
    what of them is not applied."""
    files: dict[Path, tuple[bytes, int]] = {}
    notes: list[str] = []
    for index, entry in enumerate(_list(entries, "write_files")):
        entry = _mapping(entry, f"write_files[{index}]")
        path = Path(str(entry.get("path", "")))
        if not path.is_absolute():
            raise AgentError(f"write_files[{index}]: path {str(path)!r} is not absolute")
        permissions = entry.get("permissions", "0644")
        # YAML reads an unquoted 0600 as the number it is in octal: that is the mode.
        mode = permissions if isinstance(permissions, int) else int(str(permissions), 8)
        files[path] = (str(entry.get("content", "")).encode(), mode)
        notes += [
            f"{key}: not applied"
            for key in _others(entry, {"path", "content", "permissions"}, f"write_files[{index}].")
        ]
    return files, notes


@dataclass
class MachinePlan:
    """What a user-data tells the machine about itself, applied before the agent waits for
    its address (a config drive's machine has none until then): ``write_files``, the
    hostname, the ``core`` user's SSH keys and the static addresses of its ``.network``
    units, as coreos-cloudinit applied them."""

    hostname: str | None = None
    keys: list[str] = field(default_factory=list)
    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)
    network: NetworkPlan = field(default_factory=NetworkPlan)
    notes: list[str] = field(default_factory=list)


def plan_machine(user_data: Mapping[str, Any]) -> MachinePlan:
    """The user-data's :class:`MachinePlan` (its ``.network`` units themselves are written
    by :func:`plan`, with the other units)."""
    todo = MachinePlan()
    if user_data.get("hostname") is not None:
        todo.hostname = str(user_data["hostname"])
    keys = _list(user_data.get("ssh_authorized_keys"), "ssh_authorized_keys")
    if any(not isinstance(key, str) or "\n" in key.strip() for key in keys):
        raise AgentError("ssh_authorized_keys: each key is one line of text")
    todo.keys = [key.strip() for key in keys if key.strip()]
    todo.files, todo.notes = plan_write_files(user_data.get("write_files"))
    coreos = user_data.get("coreos") or {}
    for unit in coreos.get("units") or [] if isinstance(coreos, Mapping) else []:
        if not isinstance(unit, Mapping):
            continue
        name = str(unit.get("name", ""))
        content = unit.get("content")
        if NETWORK_UNIT_NAME.fullmatch(name) and isinstance(content, str):
            persistent = unit.get("runtime") is not True
            todo.network.add_unit(name, content, persistent=persistent, where="coreos.units: ")
    return todo


def ignition_network(files: Mapping[Path, tuple[bytes, int]]) -> NetworkPlan:
    """The static addresses of the ``.network`` files an Ignition config writes (Flatcar's
    networkd reads them at the boot Ignition precedes)."""
    todo = NetworkPlan()
    for path, (data, _) in files.items():
        if path.parent in NETWORK_FOLDERS and NETWORK_UNIT_NAME.fullmatch(path.name):
            # No ifupdown stanza: the agent applies the config again at every boot, and a
            # stanza of the box's eth0 would have ifupdown try DHCP on it first.
            content = data.decode("utf-8", "replace")
            todo.add_unit(path.name, content, persistent=False, where="storage.files: ")
    return todo


def share_present(tag: str, devices: Path = NINEP_DEVICES) -> bool:
    """Whether a 9p share tagged ``tag`` is offered (one of ``devices``' mount_tag files)."""
    for entry in devices.glob("virtio*/mount_tag") if devices.is_dir() else []:
        with contextlib.suppress(OSError):
            if entry.read_bytes().rstrip(b"\0\n").decode() == tag:
                return True
    return False


# --- the cloud-configs of Vagrant's CoreOS guest ---------------------------------------------


@dataclass
class GuestPlan:
    """What one of Vagrant's small cloud-configs asks for."""

    hostname: str | None = None
    files: dict[Path, tuple[bytes, int]] = field(default_factory=dict)
    network_units: dict[Path, str] = field(default_factory=dict)
    interfaces: dict[Path, str] = field(default_factory=dict)  # ifupdown stanzas, for boot
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (device, address/prefix)
    notes: list[str] = field(default_factory=list)


def plan_guest_config(data: Mapping[str, Any]) -> GuestPlan:
    """Plan a cloud-config of Vagrant's CoreOS guest (``config.vm.hostname``, private
    networks, ``/etc/environment``): the hostname, ``write_files`` and networkd units.

    The box has no systemd-networkd running (ifupdown keeps the management interface), so
    a ``.network`` unit is written for the record, its static addresses are set at once
    with ``ip`` and written as an ifupdown stanza, which sets them at the next boot: the
    same result, without starting a network daemon on every machine.
    """
    todo = GuestPlan()
    hostname = data.get("hostname")
    if hostname is not None:
        todo.hostname = str(hostname)
    todo.files, todo.notes = plan_write_files(data.get("write_files", []))
    network = NetworkPlan()
    coreos = _mapping(data.get("coreos", {}), "coreos")
    for index, unit in enumerate(_list(coreos.get("units", []), "coreos.units")):
        unit = _mapping(unit, f"coreos.units[{index}]")
        name = str(unit.get("name", ""))
        if not NETWORK_UNIT_NAME.fullmatch(name):
            todo.notes.append(f"coreos.units: {name!r} is not a .network unit, not applied")
            continue
        content = str(unit.get("content", ""))
        runtime = str(unit.get("runtime", "no")).lower() in ("yes", "true")
        folder = Path("/run/systemd/network" if runtime else "/etc/systemd/network")
        todo.network_units[folder / name] = content
        network.add_unit(name, content, persistent=not runtime, where="coreos.units: ")
        todo.notes += network.notes  # in the units' order
        network.notes.clear()
    todo.addresses, todo.interfaces = network.addresses, network.interfaces
    todo.notes += [
        f"{key}: not applied by the stand-in box"
        for key in data
        if key not in ("hostname", "write_files", "coreos")
    ]
    return todo


def apply_guest_config(text: str, source: Path) -> dict[str, Any]:
    """Apply one of Vagrant's cloud-configs (``system-cloudinit@.service``)."""
    todo = plan_guest_config(cloud_config.parse_cloud_config(text, source))
    failures: list[str] = []
    if todo.hostname is not None:
        _set_hostname(todo.hostname)
    for path, (data, mode) in todo.files.items():
        _write_file(path, data, mode)
    for path, content in {**todo.network_units, **todo.interfaces}.items():
        _write_file(path, content.encode(), 0o644)
    failures += apply_addresses(todo.addresses)
    return {
        "source": str(source),
        "hostname": todo.hostname,
        "files": sorted(str(path) for path in todo.files),
        "addresses": [f"{device} {address}" for device, address in todo.addresses],
        "notes": todo.notes,
        "failures": failures,
    }


def apply_addresses(addresses: Sequence[tuple[str, str]]) -> list[str]:
    """Bring each device up and give it its address (``ip addr replace``: again is fine);
    the failures."""
    failures = []
    for device, address in addresses:
        for argv in (
            ["ip", "link", "set", device, "up"],
            ["ip", "addr", "replace", address, "dev", device],
        ):
            done = _run(argv)
            if done.returncode != 0:
                failures.append(f"{' '.join(argv)}: {done.stderr.strip()}")
    return failures


def _write_files(files: Mapping[Path, tuple[bytes, int]]) -> bool:
    """Write every file; whether one of sshd's (its host key) changed."""
    ssh_changed = False
    for path, (data, mode) in files.items():
        if path.is_relative_to(SSH_CONFIG) and not _same_file(path, data, mode):
            ssh_changed = True
        _write_file(path, data, mode)
    return ssh_changed


def _reload_sshd() -> None:
    """sshd reads its host keys again, if it runs already (the agent applied the config
    again: at boot, sshd starts after the agent)."""
    _run(["systemctl", "--no-block", "try-reload-or-restart", "ssh.service"])


def apply_machine(todo: MachinePlan) -> list[str]:
    """Apply a :class:`MachinePlan`; the failures."""
    failures: list[str] = []
    if _write_files(todo.files):
        _reload_sshd()
    if todo.hostname is not None:
        _set_hostname(todo.hostname)
    if todo.keys:
        problem = _install_keys(CORE_USER, todo.keys)
        if problem is not None:
            failures.append(problem)
    for path, content in todo.network.interfaces.items():
        _write_file(path, content.encode(), 0o644)
    failures += apply_addresses(todo.network.addresses)
    return failures


def _mount_share(tag: str, mount_point: Path) -> None:
    """Mount the 9p share ``tag`` read-only at ``mount_point`` (once)."""
    if os.path.ismount(mount_point):
        return
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = _run(["mount", "-t", "9p", "-o", "ro,trans=virtio,version=9p2000.L",
                    tag, str(mount_point)])  # fmt: skip
    if mounted.returncode != 0:
        raise AgentError(f"9p share {tag}: {mounted.stderr.strip()}")


def find_config_drive_user_data(
    devices: Path = NINEP_DEVICES, mount_point: Path = CONFIG_DRIVE
) -> Path | None:
    """The config drive's user-data, its 9p share mounted read-only first (as CoreOS's
    media-configdrive.mount did); None without a config drive."""
    if not share_present(CONFIG_DRIVE_TAG, devices):
        return None
    _mount_share(CONFIG_DRIVE_TAG, mount_point)
    path = mount_point / CONFIG_DRIVE_USER_DATA
    return path if path.is_file() else None


def install_fleet_share(devices: Path = NINEP_DEVICES, binaries: Path = FLEETD.parent) -> bool:
    """fleetd and fleetctl from the fleet share, linked into ``binaries``; whether there
    was one."""
    if not share_present(FLEET_TAG, devices):
        return False
    _mount_share(FLEET_TAG, FLEET_MOUNT)
    for name in FLEET_BINARIES:
        link = binaries / name
        if not link.exists():
            link.symlink_to(FLEET_MOUNT / name)
    return True


def _set_hostname(name: str) -> None:
    """The hostname now and after a reboot, and ``127.0.1.1`` in ``/etc/hosts``."""
    _write_file(HOSTNAME_FILE, f"{name}\n".encode(), 0o644)
    _run(["hostname", name])
    hosts = Path("/etc/hosts")
    lines = [
        line
        for line in (hosts.read_text().splitlines() if hosts.exists() else [])
        if not re.match(r"^127\.0\.1\.1\s", line)
    ]
    _write_file(hosts, ("\n".join([*lines, f"127.0.1.1\t{name}"]) + "\n").encode(), 0o644)


def main_guest_config(path: Path) -> int:
    """``coreos_agent.py --vagrant-guest FILE``: apply one of Vagrant's cloud-configs and
    record what was done next to the agent's own status."""
    try:
        status = apply_guest_config(path.read_text(), path)
    except (AgentError, UserDataError, ValueError, OSError) as error:
        status = {"source": str(path), "error": str(error)}
        print(f"coreos-agent: {path}: {error}", file=sys.stderr)
    record = STATUS.with_name(f"vagrant-{path.stem}.json")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(status, indent=1) + "\n")
    for note in status.get("notes", []):
        print(f"coreos-agent: {path}: {note}")
    for failure in status.get("failures", []):
        print(f"coreos-agent: {path}: failed: {failure}", file=sys.stderr)
    return 1 if "error" in status or status.get("failures") else 0


def main(argv: Sequence[str] = ()) -> int:
    if len(argv) == 2 and argv[0] == "--vagrant-guest":
        return main_guest_config(Path(argv[1]))
    ignition = None if argv else find_ignition()
    path = Path(argv[0]) if argv else USER_DATA
    try:
        install_fleet_share()
        if ignition is None and not argv:
            path = find_config_drive_user_data() or USER_DATA
    except (AgentError, OSError) as error:
        print(f"coreos-agent: {error}", file=sys.stderr)
    if ignition is None and not path.is_file():
        print(f"coreos-agent: {path} is not a file (yet); nothing to apply")
        return 0
    try:
        if ignition is not None:  # Ignition is the machine's config: no user-data then
            status = apply_ignition(ignition.read_text(), ignition)
        else:
            status = apply(path.read_text())
    except (AgentError, UserDataError, ValueError, OSError) as error:
        status = {"error": str(error)}
        print(f"coreos-agent: {error}", file=sys.stderr)
    STATUS.parent.mkdir(parents=True, exist_ok=True)
    STATUS.write_text(json.dumps(status, indent=1) + "\n")
    for note in status.get("notes", []):
        print(f"coreos-agent: {note}")
    for failure in status.get("failures", []):
        print(f"coreos-agent: failed: {failure}", file=sys.stderr)
    return 1 if "error" in status or status.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
