"""Returning a cluster of Vagrant VMs to its state at ready (``Cluster.reset``): not
available yet, and declared so (the provider's ``reset`` capability is False)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_coreos.errors import ResetError

if TYPE_CHECKING:
    from pytest_coreos.providers.vagrant.machines import VagrantDeployment


def _refuse(deployment: VagrantDeployment) -> ResetError:
    return ResetError(
        deployment.context.workdir.name,
        "the vagrant provider cannot reset its VMs (it declares reset=False); use "
        "coreos_cluster_factory for a fresh cluster",
    )


def save_ready(deployment: VagrantDeployment) -> None:
    """Refused."""
    raise _refuse(deployment)


def revive(deployment: VagrantDeployment) -> list[str]:
    """Refused."""
    raise _refuse(deployment)


def restore(deployment: VagrantDeployment) -> None:
    """Refused."""
    raise _refuse(deployment)
