"""pytest-coreos: a real CoreOS-style etcd cluster for integration tests.

Tests take the ``coreos_cluster`` fixture (or ``coreos_cluster_factory``) and get
:class:`Cluster` and :class:`Machine` handles with SSH and etcd clients.

The names below are resolved on first use (PEP 562): importing the package, as pytest
does for every run with the plugin installed, loads none of the handles, their SSH and
HTTP libraries, or the providers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_EXPORTS = {
    "BinaryNotFoundError": "pytest_coreos.errors",
    "BootTimeoutError": "pytest_coreos.errors",
    "Cluster": "pytest_coreos.handles.cluster",
    "ClusterFactory": "pytest_coreos.session.factory",
    "ClusterSpec": "pytest_coreos.options",
    "CommandResult": "pytest_coreos.handles.ssh",
    "ConfigError": "pytest_coreos.errors",
    "CoreOSError": "pytest_coreos.errors",
    "DiscoveryError": "pytest_coreos.errors",
    "EtcdClient": "pytest_coreos.handles.etcd",
    "EtcdError": "pytest_coreos.errors",
    "EtcdKeyNotFoundError": "pytest_coreos.errors",
    "EtcdOutcomeUnknownError": "pytest_coreos.errors",
    "Fleet": "pytest_coreos.handles.fleet",
    "FleetError": "pytest_coreos.errors",
    "FleetMachine": "pytest_coreos.handles.fleet",
    "FleetUnit": "pytest_coreos.handles.fleet",
    "FleetUnitFile": "pytest_coreos.handles.fleet",
    "IgnitionError": "pytest_coreos.errors",
    "Machine": "pytest_coreos.handles.machine",
    "ProcessError": "pytest_coreos.errors",
    "ResetError": "pytest_coreos.errors",
    "SSHClient": "pytest_coreos.handles.ssh",
    "SSHCommandError": "pytest_coreos.errors",
    "SSHError": "pytest_coreos.errors",
    "SSHHostKeyError": "pytest_coreos.errors",
    "Systemd": "pytest_coreos.handles.systemd",
    "UnitError": "pytest_coreos.errors",
    "UnitStatus": "pytest_coreos.handles.systemd",
    "Units": "pytest_coreos.handles.systemd",
    "UnitsError": "pytest_coreos.errors",
    "UserDataError": "pytest_coreos.errors",
}

__all__ = [
    "BinaryNotFoundError",
    "BootTimeoutError",
    "Cluster",
    "ClusterFactory",
    "ClusterSpec",
    "CommandResult",
    "ConfigError",
    "CoreOSError",
    "DiscoveryError",
    "EtcdClient",
    "EtcdError",
    "EtcdKeyNotFoundError",
    "EtcdOutcomeUnknownError",
    "Fleet",
    "FleetError",
    "FleetMachine",
    "FleetUnit",
    "FleetUnitFile",
    "IgnitionError",
    "Machine",
    "ProcessError",
    "ResetError",
    "SSHClient",
    "SSHCommandError",
    "SSHError",
    "SSHHostKeyError",
    "Systemd",
    "UnitError",
    "UnitStatus",
    "Units",
    "UnitsError",
    "UserDataError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from pytest_coreos.errors import (
        BinaryNotFoundError,
        BootTimeoutError,
        ConfigError,
        CoreOSError,
        DiscoveryError,
        EtcdError,
        EtcdKeyNotFoundError,
        EtcdOutcomeUnknownError,
        FleetError,
        IgnitionError,
        ProcessError,
        ResetError,
        SSHCommandError,
        SSHError,
        SSHHostKeyError,
        UnitError,
        UnitsError,
        UserDataError,
    )
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.handles.etcd import EtcdClient
    from pytest_coreos.handles.fleet import Fleet, FleetMachine, FleetUnit, FleetUnitFile
    from pytest_coreos.handles.machine import Machine
    from pytest_coreos.handles.ssh import CommandResult, SSHClient
    from pytest_coreos.handles.systemd import Systemd, Units, UnitStatus
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.session.factory import ClusterFactory
