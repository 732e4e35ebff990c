"""The network lab a provider's machines may live in, shared by composition: the local
provider holds one with ``--coreos-network=netns``, the nspawn and qemu providers always.

:class:`Lab` wraps the host's :class:`~pytest_coreos.host.netns.NetworkLab`: it makes it
(on record before anything of it exists), gives the cluster a discovery service of its
own on the lab's hub (machines in a lab reach nothing outside it), cuts and heals
partitions, describes machines whose every connection is made inside the lab, and tears
it all down. :class:`LabDeploymentBase` is what a deployment whose machines are this host's
processes (local machines, nspawn containers, QEMU VMs) does through its lab, and
:class:`LabMachine` what a container and a VM are alike: a process that boots a machine.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko

from pytest_coreos.config.images import ImageArchive
from pytest_coreos.errors import ConfigError, ImagesError, ProcessError
from pytest_coreos.handles.machine import machine_names
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.host.binaries import find_etcd
from pytest_coreos.host.discovery import DiscoveryService
from pytest_coreos.host.image_registry import ImageRegistry
from pytest_coreos.host.netns import (
    NAMESPACE_PREFIX,
    MachineNetwork,
    NetworkError,
    NetworkLab,
    netns_supported,
)
from pytest_coreos.host.process import ManagedProcess, kill_all
from pytest_coreos.providers.protocol import BootContext, MachineDescription

if TYPE_CHECKING:
    from pytest_coreos.handles.machine import MachineControl


class Lab:
    """One cluster's network lab, or none (machines on this host's loopback)."""

    def __init__(self, context: BootContext, network: NetworkLab | None = None) -> None:
        self.context = context
        self.network = network
        self.discovery: DiscoveryService | None = None  # the lab's own
        self.registry: ImageRegistry | None = None  # the lab's own, with --coreos-images
        self._filling: threading.Thread | None = None
        self._fill_error: BaseException | None = None
        # An adopted lab's services (its discovery service, its registry): what another
        # session started, ended here with the lab.
        self.adopted: list[ManagedProcess] = []

    @classmethod
    def create(
        cls,
        context: BootContext,
        option: str = "--coreos-network",
        hint: str = "use --coreos-network=loopback",
    ) -> Lab:
        """A network lab for the cluster, on record before anything of it exists; a
        ConfigError naming ``option`` where labs cannot be made here."""
        reason = netns_supported()
        if reason is not None:
            raise ConfigError(option, f"netns is not available here: {reason}", hint)
        network = NetworkLab(secrets.token_hex(5))
        names = [network.hub] + [
            f"{NAMESPACE_PREFIX}{network.lab_id}-{name}"
            for name in machine_names(context.spec.instances)
        ]
        context.remember({"namespaces": names, "host_links": [network.host_link]})
        network.create()
        return cls(context, network)

    @classmethod
    def adopt(
        cls, context: BootContext, record: Mapping[str, Any], machine_process_names: set[str]
    ) -> Lab:
        """The lab of a cluster another session booted, from its state record: the network
        (:meth:`NetworkLab.adopt`) and its services' processes, every process of the record
        but those named ``machine_process_names``. A ConfigError naming --coreos-reuse
        where the record names no lab that still exists."""
        described = record.get("lab") or {}
        try:
            network = NetworkLab.adopt(
                described["id"],
                described["subnet"],
                [
                    (machine["name"], int(machine["address"].rsplit(".", 1)[1]))
                    for machine in record["machines"]
                ],
            )
        except (KeyError, ValueError, NetworkError) as error:
            raise ConfigError(
                "--coreos-reuse", f"the cluster's network lab cannot be adopted: {error}"
            ) from error
        lab = cls(context, network)
        lab.adopted = [
            ManagedProcess.from_record(process, die_with_parent=False)
            for process in record.get("processes", [])
            if process["name"] not in machine_process_names
        ]
        return lab

    @property
    def active(self) -> bool:
        """True where the machines live in network namespaces."""
        return self.network is not None

    def add_machine(self, name: str, index: int) -> MachineNetwork:
        """Machine ``name``'s namespace, its address the ``index``th of the lab."""
        assert self.network is not None
        return self.network.add_machine(name, index)

    @property
    def namespaces(self) -> list[str]:
        """The names of its network namespaces, for the state record."""
        return self.network.namespaces if self.network is not None else []

    @property
    def host_links(self) -> list[str]:
        """The link it has on this host, for the state record."""
        return self.network.host_links if self.network is not None else []

    def processes(self) -> list[ManagedProcess]:
        """The processes of its discovery service and its image registry."""
        services = [self.discovery, self.registry]
        return self.adopted + [
            process for service in services if service is not None for process in service.processes
        ]

    def discovery_url(self, remember: Callable[[], None]) -> str | None:
        """The lab's own discovery service's URL for the cluster; None outside a lab or
        with static discovery (the session's service, or none). ``remember()`` records
        the service's processes, before and after it starts."""
        spec = self.context.spec
        if self.network is None or spec.discovery == "static":
            return None
        self.discovery = DiscoveryService(
            find_etcd(),
            self.context.paths.discovery,
            address=self.network.hub_address,
            command=self.network.hub_command,
            session=self.network.requests_session(),
            die_with_parent=not spec.keep,
        )
        remember()
        self.discovery.start(timeout=spec.boot_timeout)
        remember()
        return self.discovery.new_cluster(spec.instances)

    def serve_images(
        self,
        archives: Sequence[ImageArchive],
        remember: Callable[[], None],
        done: Callable[[], None],
    ) -> str:
        """Start the lab's image registry on its hub (where every machine reaches it, as
        its discovery service) and fill it in the background, while the machines boot;
        ``done()`` is called once every image is served. Returns the registry's
        ``ADDRESS:PORT``. ``remember()`` records its process, before and after it starts."""
        assert self.network is not None
        spec = self.context.spec
        self.registry = ImageRegistry(
            self.context.workdir / "registry",
            address=self.network.hub_address,
            command=self.network.hub_command,
            session=self.network.requests_session(),
            die_with_parent=not spec.keep,
        )
        remember()
        self.registry.start(timeout=spec.boot_timeout)
        remember()
        registry = self.registry

        def fill() -> None:
            try:
                registry.fill(archives)
                done()
            except BaseException as error:  # handed to wait_for_images
                self._fill_error = error

        self._filling = threading.Thread(target=fill, name="coreos-images", daemon=True)
        self._filling.start()
        return registry.host

    def wait_for_images(self, timeout: float) -> None:
        """Wait until :meth:`serve_images` has filled the registry; its error, if any."""
        if self._filling is None:
            return
        self._filling.join(timeout)
        if self._filling.is_alive():
            raise ImagesError(
                self.context.workdir.name, f"the registry was not filled within {timeout:.0f}s"
            )
        if self._fill_error is not None:
            raise ImagesError(
                self.context.workdir.name, str(self._fill_error)
            ) from self._fill_error

    def registry_notices(self) -> list[str]:
        """What its registry has to say in the run's summary (see unserved_notice)."""
        if self.registry is None:
            return []
        notice = self.registry.unserved_notice(self.context.workdir.name)
        return [notice] if notice is not None else []

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Cut the lab between groups of machines; outside a lab, a ConfigError."""
        if self.network is None:
            raise ConfigError(
                "--coreos-network",
                "partitions need machines in network namespaces",
                "run with --coreos-network=netns (as root)",
            )
        self.network.partition(*groups)

    def heal(self) -> None:
        """Undo :meth:`partition`."""
        if self.network is not None:
            self.network.heal()

    def shell_prefix(self) -> list[str]:
        """``ip netns exec HUB``: where a shell command reaches the lab's addresses."""
        return [] if self.network is None else ["ip", "netns", "exec", self.network.hub]

    def describe_machine(
        self,
        description: Mapping[str, Any],
        *,
        port: int,
        user: str,
        host_key: str,
        key: paramiko.PKey,
        identity_file: Path,
        control: MachineControl,
        systemd: bool = True,
    ) -> MachineDescription:
        """One described machine (name, address, etcd endpoints) for its handle. In a
        network lab every socket is bound to the lab's host link: it can reach nothing
        else, and fails once the lab is gone."""
        network = self.network
        address = description["address"]
        return MachineDescription(
            description["name"],
            private_ipv4=address,
            public_ipv4=address,
            ssh=SSHClient(
                address,
                port,
                user,
                key,
                host_keys=[paramiko.Ed25519Key.from_private_key_file(host_key)],
                identity_file=identity_file,
                name=description["name"],
                sock_factory=network.connect if network is not None else None,
            ),
            etcd_endpoints=description["etcd_endpoints"],
            control=control,
            http_session=network.requests_session if network is not None else None,
            systemd=systemd,
        )

    def close(self) -> None:
        """Stop its discovery service and image registry, and destroy the lab."""
        if self._filling is not None:
            self._filling.join(10.0)  # skopeo's copies end once the registry is gone
        if self.registry is not None:
            self.registry.close()
        if self.discovery is not None:
            self.discovery.close()
        kill_all(self.adopted)
        if self.network is not None:
            self.network.destroy()

    def detach(self) -> None:
        """Leave the lab and its services running (a kept cluster)."""
        for process in self.processes():
            process.detach()


class LabMachine:
    """What a lab's booted machine (an nspawn container, a QEMU VM) is in every provider
    that has one: a name and the process of this host that boots it (``kind`` names that
    program in errors)."""

    kind = "machine"

    def __init__(self, name: str, process: ManagedProcess) -> None:
        self.name = name
        self.process = process

    @property
    def running(self) -> bool:
        return self.process.running

    def check_alive(self) -> None:
        if self.process.started and not self.process.running:
            status = self.process.exit_status
            raise ProcessError(
                f"{self.name} {self.kind}",
                "exited" if status is None else f"exited with status {status}",
                self.process.log_tail(),
            )


def machine_record(
    context: BootContext, network: MachineNetwork, host_key: Path | str
) -> dict[str, Any]:
    """What the state record keeps of a lab's machine that applies the user-data itself:
    its name, address, pinned host key and the etcd endpoints its user-data gives."""
    from pytest_coreos.providers.common import etcd_client_urls

    return {
        "name": network.name,
        "address": network.address,
        "host_key": str(host_key),
        "etcd_endpoints": etcd_client_urls(context.user_data, network.address),
    }


class LabDeploymentBase:
    """The part of a deployment that its :class:`Lab` and its machines' processes on this
    host answer: pids, faults, the lab's discovery service, partitions, the shell prefix
    and the processes and lab parts of the state record. A subclass sets ``context`` and
    ``lab`` and says which processes are its machines'."""

    context: BootContext
    lab: Lab

    def machine_processes(self) -> list[ManagedProcess]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def lab_record(self) -> dict[str, Any]:
        """The state record's processes (the machines' and the lab's that started), network
        namespaces and host links: what a later session reaps if this one is killed."""
        processes = self.machine_processes() + self.lab.processes()
        network = self.lab.network
        return {
            "processes": [process.to_record() for process in processes if process.started],
            "namespaces": self.lab.namespaces,
            "host_links": self.lab.host_links,
            "lab": {"id": network.lab_id, "subnet": network.subnet}
            if network is not None and network.created
            else {},
        }

    @property
    def pids(self) -> list[int]:
        return [
            process.pid
            for process in self.machine_processes()
            if process.pid is not None and process.running
        ]

    @property
    def faults_allowed(self) -> bool:
        return True

    def discovery_url(self) -> str | None:
        return self.lab.discovery_url(lambda: self.context.remember(self.describe()))

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        self.lab.partition(groups)

    def heal(self) -> None:
        self.lab.heal()

    def wait_for_images(self, timeout: float) -> None:
        self.lab.wait_for_images(timeout)

    def shell_prefix(self) -> list[str]:
        return self.lab.shell_prefix()
