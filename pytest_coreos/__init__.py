"""pytest-coreos: a real CoreOS-style etcd cluster for integration tests.

Tests take the ``coreos_cluster`` fixture (or ``coreos_cluster_factory``) and get
:class:`Cluster` and :class:`Machine` handles with SSH and etcd clients.
"""

from pytest_coreos.cluster import Cluster, ClusterFactory, Machine
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
    SSHCommandError,
    SSHError,
    SSHHostKeyError,
    UnitError,
    UnitsError,
    UserDataError,
)
from pytest_coreos.etcd import EtcdClient
from pytest_coreos.fleet import Fleet, FleetMachine, FleetUnit, FleetUnitFile
from pytest_coreos.options import ClusterSpec
from pytest_coreos.ssh import CommandResult, SSHClient
from pytest_coreos.systemd import Systemd, Units, UnitStatus

__version__ = "0.1.0"

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
