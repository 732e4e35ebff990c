"""libvirt, through ``virsh``: the private network the VMs share, and removing what
``vagrant destroy`` could not."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

from pytest_coreos.providers.vagrant.addresses import addresses_in_use
from pytest_coreos.providers.vagrant.settings import LIBVIRT_URI, NAME_PREFIX, VagrantError


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
