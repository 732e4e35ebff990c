"""Hooks a conftest.py (or another plugin) can implement to shape the clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.options import ClusterSpec


@pytest.hookspec
def pytest_coreos_user_data(spec: ClusterSpec, data: dict[str, Any]) -> None:
    """Change a cluster's cloud-config before it is written and the machines boot.

    ``data`` is the parsed ``#cloud-config`` with the discovery URL already injected;
    change it in place (add units, set etcd keys, ...). ``spec`` is the cluster's
    :class:`~pytest_coreos.options.ClusterSpec`. Called once per cluster.
    """


@pytest.hookspec
def pytest_coreos_cluster_ready(cluster: Cluster) -> None:
    """Called once a cluster booted by this session is ready, before any test uses it:
    seed keys, deploy units, wait for your own services."""
