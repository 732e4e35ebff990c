"""Ignition configs (spec 3.x, JSON) for Flatcar, as dicts in and dicts out: rendered from
a cloud-config (:mod:`.render`), or the user's own, read, checked and given a discovery
URL (:mod:`.load`), through a parser of systemd unit files (:mod:`.unitfile`)."""

from pytest_coreos.config.ignition.load import (
    etcd_unit_name,
    inject_discovery_ignition,
    load_ignition,
)
from pytest_coreos.config.ignition.render import (
    CORE_USER,
    COREOS_ENVIRONMENT,
    COREOS_ETCD_UNITS,
    DISCOVERY_DROPIN,
    ETCD_DROPIN,
    ETCD_MEMBER_UNIT,
    ETCD_WRAPPER,
    FLATCAR_CUSTOM_METADATA,
    IGNITION_VERSION,
    SUPPORTED_VERSIONS,
    AddressVariables,
    check_renders,
    data_url,
    not_rendered,
    render_ignition,
    to_json,
)
from pytest_coreos.errors import IgnitionError

__all__ = [
    "COREOS_ENVIRONMENT",
    "COREOS_ETCD_UNITS",
    "CORE_USER",
    "DISCOVERY_DROPIN",
    "ETCD_DROPIN",
    "ETCD_MEMBER_UNIT",
    "ETCD_WRAPPER",
    "FLATCAR_CUSTOM_METADATA",
    "IGNITION_VERSION",
    "SUPPORTED_VERSIONS",
    "AddressVariables",
    "IgnitionError",
    "check_renders",
    "data_url",
    "etcd_unit_name",
    "inject_discovery_ignition",
    "load_ignition",
    "not_rendered",
    "render_ignition",
    "to_json",
]
