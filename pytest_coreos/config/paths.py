"""Where a cluster's files go in its workdir, worked out in one place: the session writes
the rendered config there and every provider finds (and adds) its files through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClusterPaths:
    """The layout of one cluster's workdir."""

    workdir: Path

    @property
    def user_data(self) -> Path:
        """The rendered #cloud-config."""
        return self.workdir / "user-data"

    @property
    def config_rb(self) -> Path:
        """The rendered Vagrant ``config.rb``."""
        return self.workdir / "config.rb"

    def ignition(self, machine: str) -> Path:
        """Machine ``machine``'s Ignition config."""
        return self.workdir / "ignition" / f"{machine}.ign"

    def machine(self, machine: str) -> Path:
        """The folder of one machine's own files (its etcd data, keys, logs)."""
        return self.workdir / "machines" / machine

    def etcd_at_ready(self, machine: str) -> Path:
        """The copy of machine ``machine``'s etcd data taken when the cluster became ready,
        which a reset puts back."""
        return self.machine(machine) / "etcd-at-ready"

    @property
    def ssh_config(self) -> Path:
        """An OpenSSH client config for the machines (``ssh -F``)."""
        return self.workdir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        """The machines' host keys, as that ssh_config checks them."""
        return self.workdir / "known_hosts"

    @property
    def authorized_keys(self) -> Path:
        """The session key's public half, as sshd reads it."""
        return self.workdir / "authorized_keys"

    @property
    def discovery(self) -> Path:
        """The folder of a discovery service of the cluster's own (a network lab's)."""
        return self.workdir / "discovery"

    @property
    def vagrant(self) -> Path:
        """The Vagrant folder (Vagrantfile, config.rb, user-data...)."""
        return self.workdir / "vagrant"

    @property
    def vagrant_log(self) -> Path:
        """Everything Vagrant said."""
        return self.workdir / "vagrant.log"

    @property
    def image_log(self) -> Path:
        """The output of a machine image build started for this cluster."""
        return self.workdir / "build-box.log"
