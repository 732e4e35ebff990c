"""The handle tests get for a whole cluster: its machines, etcd over every member, fleet,
units, partitions, and its teardown.

Booting it is the session's (:mod:`pytest_coreos.session.boot`): a cluster is made by a
:class:`~pytest_coreos.session.factory.ClusterFactory`, which it asks to start it, wait
for it and record it, so that this module needs nothing above the handles.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_coreos.config.paths import ClusterPaths
from pytest_coreos.config.ssh_access import MachineAccess
from pytest_coreos.errors import CoreOSError, ResetError
from pytest_coreos.handles.etcd import EtcdClient
from pytest_coreos.handles.fleet import Fleet
from pytest_coreos.handles.machine import Machine
from pytest_coreos.handles.pristine import EtcdAtReady
from pytest_coreos.handles.systemd import Units

if TYPE_CHECKING:
    from pytest_coreos.options import ClusterSpec
    from pytest_coreos.providers.protocol import Deployment


# The unit that runs fleetd on the machines, as on CoreOS.
FLEET_UNIT = "fleet.service"


class ClusterSession(Protocol):
    """What a cluster asks of the session that made it (the factory)."""

    session_id: str

    def start_cluster(self, cluster: Cluster) -> None:
        """Render the config, boot the machines and wait until they are ready."""

    def attach_cluster(
        self, cluster: Cluster, owner: str, record: Mapping[str, Any], timeout: float
    ) -> None:
        """Adopt the running cluster ``record`` describes and wait until it is healthy."""

    def wait_ready(self, cluster: Cluster, timeout: float, *, fresh: bool) -> None:
        """Wait until every running machine is ready (see :meth:`Cluster.wait_until_healthy`)."""

    def record_cluster(self, cluster: Cluster) -> None:
        """Bring the cluster's entry of the state record up to date."""


class Cluster:
    """A ready CoreOS-style cluster; a context manager that tears it down on exit.

    Made by a :class:`ClusterFactory` (the ``coreos_cluster_factory`` fixture), which
    provides what a session shares: discovery, the SSH key pair, the state record.
    """

    def __init__(self, spec: ClusterSpec, *, workdir: Path, session: ClusterSession) -> None:
        self.spec = spec
        self.workdir = workdir
        self.paths = ClusterPaths(workdir)
        self.name = workdir.name
        self.session = session
        # What the provider made for this cluster; set by the session as it boots.
        self.deployment: Deployment | None = None
        self.machines: list[Machine] = []
        self.discovery_url = ""
        self.user_data: dict[str, Any] = {}
        self.ignition: dict[str, Any] | None = None  # the user's own (--coreos-ignition)
        self.notices: list[str] = []
        self._etcd: EtcdClient | None = None
        self._closed = False
        self._destroyed = False
        self.booting = False
        self.recorded: dict[str, Any] = {}
        self.boot_failed = False
        # Seconds each boot phase took (discovery, config, spawn, ready, total), and per
        # machine when its etcd was serving with every member and when SSH first let in.
        self.timings: dict[str, float] = {}
        self.attached = False  # True when adopted from a record, not booted here
        # Set before it boots: keep its state at ready, so that reset() can return to it.
        self.resettable = False
        self.etcd_at_ready: EtcdAtReady | None = None
        # How the last reset went: "in place" (keys deleted through the API) or "restore".
        self.last_reset = ""
        self.partitioned = False  # cut through partition() and not healed since
        self.reset_failed = False  # a reset did not complete: it is no pristine cluster
        self.owner_session = session.session_id  # whose state record holds this cluster

    def __repr__(self) -> str:
        return f"<Cluster {self.spec.provider} x{self.size} {self.workdir}>"

    # -- the collection of machines --------------------------------------------------
    @property
    def size(self) -> int:
        """The number of machines the cluster was asked for."""
        return self.spec.instances

    def __len__(self) -> int:
        return len(self.machines)

    def __iter__(self) -> Iterator[Machine]:
        return iter(self.machines)

    def __getitem__(self, key: str | int) -> Machine:
        if isinstance(key, int):
            return self.machines[key]
        for machine in self.machines:
            if machine.name == key:
                return machine
        names = ", ".join(machine.name for machine in self.machines)
        raise KeyError(f"no machine {key!r} in this cluster (machines: {names})")

    @property
    def etcd(self) -> EtcdClient:
        """An etcd client over every member, failing over to the next when one is down."""
        if self._etcd is None:
            endpoints = [url for machine in self.machines for url in machine.etcd_endpoints]
            self._etcd = self.machines[0].etcd_client(endpoints)
        return self._etcd

    @property
    def fleet(self) -> Fleet:
        """``fleetctl`` over SSH on the first running machine (``cluster.fleet.on(machine)``
        for another); the machines must have fleet (see :mod:`pytest_coreos.handles.fleet`)."""
        # Kept, so that it looks for fleetctl once, not at every use.
        fleet: Fleet | None = self.__dict__.get("_fleet")
        if fleet is None:
            fleet = self.__dict__["_fleet"] = Fleet(self)
        return fleet

    @property
    def units(self) -> Units:
        """One systemd unit on every running machine (or those given) at once: deploy,
        wait, status, remove."""
        return Units(self)

    @property
    def prefix(self) -> str:
        """An etcd key prefix that is this session's own. On machines the plugin did not
        boot (the ssh provider) everything under it is deleted at the end."""
        return f"/pytest-coreos/{self.session.session_id}"

    @property
    def faults_allowed(self) -> bool:
        """Whether ``stop``/``kill``/``pause`` and partitions may be used on its machines
        (not on attached machines unless ``--coreos-allow-faults``)."""
        return self.deployment.faults_allowed if self.deployment is not None else True

    def partition(self, *groups: Sequence[Machine | str]) -> None:
        """Cut the network between groups of machines (``Machine`` objects or names):
        machines of different groups can no longer reach each other, established
        connections included; a machine in no group still reaches all. The plugin's own
        handles keep reaching every machine. Needs ``--coreos-network=netns``."""
        names = [[m if isinstance(m, str) else m.name for m in group] for group in groups]
        for name in (n for group in names for n in group):
            self[name]  # an unknown name is a KeyError naming the machines
        if self.deployment is None:
            raise CoreOSError(f"the {self.spec.provider} provider cannot partition machines")
        self.deployment.partition(names)
        self.partitioned = True

    def heal(self) -> None:
        """Undo :meth:`partition`: every machine reaches every other again."""
        if self.deployment is not None:
            self.deployment.heal()
        self.partitioned = False

    @property
    def ssh_config(self) -> Path:
        """An OpenSSH client config for the machines: ``ssh -F PATH core-01`` logs in with
        the host key checked against the cluster's own ``known_hosts``."""
        return self.paths.ssh_config

    def ssh_access(self) -> list[MachineAccess]:
        """What an SSH client needs to log in to each machine."""
        return [
            MachineAccess(
                name=machine.name,
                host=machine.ssh.host,
                port=machine.ssh.port,
                user=machine.ssh.username,
                identity_file=machine.ssh.identity_file,
                host_keys=tuple((k.get_name(), k.get_base64()) for k in machine.ssh.host_keys),
                known_hosts=machine.ssh.known_hosts,
            )
            for machine in self.machines
        ]

    @property
    def pids(self) -> list[int]:
        """Every process ID the cluster's machines run as."""
        return self.deployment.pids if self.deployment is not None else []

    @property
    def user_data_path(self) -> Path:
        """The rendered #cloud-config in the workdir."""
        return self.paths.user_data

    @property
    def config_rb_path(self) -> Path:
        """The rendered Vagrant ``config.rb`` in the workdir."""
        return self.paths.config_rb

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> Cluster:
        """Render the config, boot every machine and wait until the cluster is ready.

        A boot that fails halfway tears down what it started before the error propagates.
        """
        if self.deployment is None:
            self.session.start_cluster(self)
        return self

    def attach(self, owner: str, record: Mapping[str, Any], timeout: float) -> Cluster:
        """Adopt a running cluster from its record in session ``owner``'s state (a kept
        one, or one an xdist worker booted) and check that it is healthy; on failure
        nothing is torn down."""
        self.session.attach_cluster(self, owner, record, timeout)
        return self

    def watch_machines(self) -> None:
        """Record the cluster again whenever one of its machines' processes change."""
        for machine in self.machines:
            machine.on_change = lambda: self.remember({})
            machine.etcd_deadline = self.spec.boot_timeout

    def describe(self) -> dict[str, Any]:
        """The cluster's state record: enough to reap it, or to attach to it again."""
        record: dict[str, Any] = {
            **self.recorded,
            "name": self.name,
            "workdir": str(self.workdir),
            "provider": self.spec.provider,
            "spec": self.spec.to_record(),
            "keep": self.spec.keep,
            "discovery_url": self.discovery_url,
            "user_data": self.user_data,
        }
        if self.deployment is not None:
            record.update(self.deployment.describe())
        return record

    def remember(self, extra: Mapping[str, Any]) -> None:
        """Merge ``extra`` into this cluster's state record and write it at once, so that
        a provider can record a resource before it creates it."""
        self.recorded.update(extra)
        self.session.record_cluster(self)

    def take_notices(self, notices: Sequence[str]) -> None:
        """Add what a provider reported, each notice once."""
        self.notices.extend(n for n in notices if n not in self.notices)

    @property
    def kept(self) -> bool:
        """True once closed if it was left running on purpose."""
        return self.spec.keep and not self.boot_failed and not self._destroyed

    def close(self, *, destroy: bool = False) -> None:
        """Destroy every machine, unless the cluster is kept (``--coreos-keep``) and not
        ``destroy``. The workdir stays when the boot failed (to read its logs); the factory
        removes it otherwise."""
        if self._closed:
            return
        self._closed = True
        self._destroyed = destroy
        if self._etcd is not None:
            self._etcd.close()
        for machine in self.machines:
            machine.ssh.close()
            machine.etcd.close()
        if self.deployment is not None:
            if self.kept:
                self.deployment.detach()
            else:
                self.deployment.close()
            # What the provider found while closing (things it had to remove) is news too.
            self.take_notices(self.deployment.notices)
        self.session.record_cluster(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reset ---------------------------------------------------------------------
    def save_ready(self) -> None:
        """Keep the state :meth:`reset` returns to (the session calls it once the cluster
        is ready, for a cluster made ``resettable``)."""
        if self.deployment is None:
            raise ResetError(self.name, "it was never booted")
        self.deployment.save_ready()
        self.etcd_at_ready = EtcdAtReady.record(self.etcd)
        self._on_systemd_machines(lambda machine: machine.docker.save_ready())

    def reset(self, timeout: float | None = None) -> None:
        """Return the cluster to its state right after it became ready: every machine
        running (paused ones resumed, stopped and killed ones started), partitions
        healed, etcd's data as it was (the same members, none of the keys, directories
        and leases written since), the units and files tests deployed through the
        machines' handles removed, and :meth:`wait_until_healthy` passing.

        Where every machine still ran and a test only wrote keys, they are deleted
        through etcd's API, no member stopped (see :mod:`pytest_coreos.handles.pristine`);
        otherwise every member's data is put back as it was at ready, all together.

        A reset that cannot complete raises :class:`ResetError`; the cluster is then no
        pristine one (``reset_failed``): close it and boot another, as the
        ``coreos_fresh_cluster`` fixture does.
        """
        at_ready = self.etcd_at_ready
        if at_ready is None or self.deployment is None:
            raise ResetError(
                self.name,
                "no state at ready was kept for it: ask for coreos_fresh_cluster, or for "
                "coreos_cluster_factory(..., resettable=True)",
            )
        if self._closed:
            raise ResetError(self.name, "it is closed")
        wait = self.spec.boot_timeout if timeout is None else timeout
        started = time.perf_counter()
        # A fault done through the handles: the cluster must settle after it is undone.
        disturbed = self.partitioned or any(m.paused or not m.running for m in self.machines)
        try:
            restarted = self.deployment.revive()
            self.partitioned = False
            for machine in self.machines:
                machine.paused = False
            # Units first: one still running could write to etcd after its data is back.
            self._remove_deployed([m for m in self.machines if m.name not in restarted])
            if not restarted and at_ready.clear_in_place(self.etcd):
                self.last_reset = "in place"
            else:
                self.deployment.restore()
                self.remember({})  # its processes changed
                self.last_reset = "restore"
                self._restart_fleet()
            if disturbed or self.last_reset == "restore" or not self._all_healthy():
                self.session.wait_ready(self, wait, fresh=False)
            self._remove_deployed([m for m in self.machines if m.name in restarted])
            self._on_systemd_machines(lambda machine: machine.docker.remove_since_ready())
            at_ready.since = self.etcd.index(quorum=False)
        except (CoreOSError, OSError) as error:
            self.reset_failed = True
            if isinstance(error, ResetError):
                raise
            raise ResetError(self.name, str(error)) from error
        except BaseException:
            self.reset_failed = True
            raise
        self.reset_failed = False
        self.timings["reset"] = time.perf_counter() - started

    def _restart_fleet(self) -> None:
        """fleetd keeps in memory what it last read from and wrote to etcd; once etcd's
        data is back as it was at ready, fleetd starts again where it runs, and reads it
        anew."""

        def restart(machine: Machine) -> bool:
            if machine.systemd.status(FLEET_UNIT).active_state not in ("active", "activating"):
                return False
            machine.systemd.try_restart(FLEET_UNIT)
            return True

        machines = [m for m in self.machines if m.systemd.available]
        if not machines:
            return
        with ThreadPoolExecutor(len(machines), thread_name_prefix="coreos-reset") as pool:
            restarted = [future.result() for future in [pool.submit(restart, m) for m in machines]]
        if any(restarted):
            # Back once fleet lists every machine again, as a fleet cluster is at ready.
            self.fleet.wait_for_machines()

    def _all_healthy(self) -> bool:
        """Every member healthy, each asked at once over its own handle."""
        with ThreadPoolExecutor(len(self.machines), thread_name_prefix="coreos-reset") as pool:
            return all(pool.map(lambda machine: machine.etcd.health(), self.machines))

    def _on_systemd_machines(self, step: Callable[[Machine], object]) -> None:
        """``step`` on every machine that runs systemd, all at once."""
        machines = [m for m in self.machines if m.systemd.available]
        if machines:
            with ThreadPoolExecutor(len(machines), thread_name_prefix="coreos-docker") as pool:
                for future in [pool.submit(step, machine) for machine in machines]:
                    future.result()

    def _remove_deployed(self, machines: Sequence[Machine]) -> None:
        """Remove what tests deployed through the machines' handles (see
        :class:`~pytest_coreos.handles.ssh.Deployed`), on every machine at once."""

        def remove(machine: Machine) -> None:
            deployed = machine.ssh.deployed
            for unit in sorted(deployed.units):
                machine.systemd.remove(unit)
            if deployed.files:
                machine.ssh.run("rm -f -- " + " ".join(map(shlex.quote, sorted(deployed.files))))
                deployed.files.clear()

        busy = [m for m in machines if m.ssh.deployed.units or m.ssh.deployed.files]
        if busy:
            with ThreadPoolExecutor(len(busy), thread_name_prefix="coreos-reset") as pool:
                for future in [pool.submit(remove, machine) for machine in busy]:
                    future.result()

    # -- waiting -------------------------------------------------------------------
    def wait_until_healthy(self, timeout: float | None = None) -> None:
        """Wait until every running machine's etcd lists all members with client URLs, is
        healthy and names a running member as leader, and every running machine accepts
        an SSH login."""
        self.session.wait_ready(
            self, self.spec.boot_timeout if timeout is None else timeout, fresh=False
        )
