"""A VM's own configuration, where CoreOS's and Flatcar's QEMU images read it.

A machine booted from a QEMU image is told everything in its config, as kola and
Flatcar's launch script tell theirs: with no DHCP server in the lab, its static address
comes from the config as ``$private_ipv4`` does, and so do its hostname, the session's SSH
key and the host key the plugin pins.

- cloud-config, on a 9p share tagged ``config-2`` holding ``openstack/latest/user_data``
  (CoreOS's config drive): the cluster's user-data with ``$private_ipv4``/``$public_ipv4``
  filled in (a config drive gives no metadata for them), and the keys coreos-cloudinit
  applied: ``hostname``, ``ssh_authorized_keys`` (the ``core`` user's), ``write_files``
  (the host key) and a ``coreos.units`` entry ``00-eth0.network`` (systemd-networkd's
  static address, CoreOS's documented recipe);
- Ignition, through QEMU's firmware config (``opt/org.flatcar-linux/config``): the
  machine's config with two more ``storage.files``, the host key and
  ``/etc/systemd/network/00-eth0.network``.

Pure functions of the configs: the qemu provider writes what they return.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_coreos.config import cloud_config, etcd_env
from pytest_coreos.config.ignition.render import data_url

INTERFACE = "eth0"
NETWORK_UNIT = "00-eth0.network"
NETWORK_FILE = f"/etc/systemd/network/{NETWORK_UNIT}"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# Where a config drive keeps the user-data (OpenStack's layout, as coreos-cloudinit read it).
USER_DATA = Path("openstack/latest/user_data")
CONFIG_DRIVE_TAG = "config-2"


def network_unit(address: str, prefix_length: int) -> str:
    """systemd-networkd's unit giving ``eth0`` its static ``address``/``prefix_length``."""
    interface = ipaddress.IPv4Interface(f"{address}/{prefix_length}")
    return f"[Match]\nName={INTERFACE}\n\n[Network]\nAddress={interface.with_prefixlen}\n"


def config_drive_user_data(
    user_data: Mapping[str, Any],
    *,
    hostname: str,
    address: str,
    prefix_length: int,
    ssh_public_key: str,
    host_key: str,
) -> str:
    """Machine ``hostname``'s ``openstack/latest/user_data``: the cluster's user-data, its
    addresses filled in, with the machine's hostname, network unit, login key and host
    key (the user's own ``hostname`` and keys are kept, before the plugin's)."""
    data: dict[str, Any] = copy.deepcopy(dict(user_data))
    data.setdefault("hostname", hostname)
    keys = list(data.get("ssh_authorized_keys") or [])
    data["ssh_authorized_keys"] = [*keys, ssh_public_key.strip()]
    files = list(data.get("write_files") or [])
    files.append({"path": HOST_KEY, "permissions": "0600", "content": host_key})
    data["write_files"] = files
    coreos = dict(data.get("coreos") or {})
    units = [unit for unit in coreos.get("units") or [] if unit.get("name") != NETWORK_UNIT]
    units.insert(
        0, {"name": NETWORK_UNIT, "runtime": True, "content": network_unit(address, prefix_length)}
    )
    coreos["units"] = units
    data["coreos"] = coreos
    text = cloud_config.render_user_data(data)
    return etcd_env.substitute(text, address, address)


def write_config_drive(folder: Path, text: str) -> Path:
    """The config drive's folder (shared with the VM read-only), holding ``text`` as its
    user-data."""
    path = folder / USER_DATA
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_text(text)
    return folder


def ignition_with_machine_files(
    config: Mapping[str, Any], *, address: str, prefix_length: int, host_key: str
) -> dict[str, Any]:
    """Machine's Ignition ``config`` with its host key and network unit added to
    ``storage.files`` (replacing entries of the same paths)."""
    result: dict[str, Any] = copy.deepcopy(dict(config))
    storage = dict(result.get("storage") or {})
    ours = {
        HOST_KEY: {"path": HOST_KEY, "mode": 0o600, "overwrite": True,
                   "contents": {"source": data_url(host_key)}},
        NETWORK_FILE: {"path": NETWORK_FILE, "mode": 0o644, "overwrite": True,
                       "contents": {"source": data_url(network_unit(address, prefix_length))}},
    }  # fmt: skip
    files = [entry for entry in storage.get("files") or [] if entry.get("path") not in ours]
    storage["files"] = [*files, *ours.values()]
    result["storage"] = storage
    return result
