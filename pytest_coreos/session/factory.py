"""The session's clusters: :class:`ClusterFactory` builds them (the
``coreos_cluster_factory`` fixture) and tears every one of them down at the end."""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paramiko

from pytest_coreos.errors import ConfigError, CoreOSError, ResetError
from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.host.sshd import generate_ed25519_key
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers import get_provider
from pytest_coreos.session import boot, registry
from pytest_coreos.session.discovery import SessionDiscovery
from pytest_coreos.session.readiness import wait_ready


class ClusterFactory:
    """Builds clusters for one pytest session and tears every one of them down at its end.

    Session-wide resources are made once, when first needed: the session's folder and
    state record, its SSH key pair, the private discovery service.
    """

    def __init__(
        self, spec: ClusterSpec, *, root: Path | None = None, owner_pid: int | None = None
    ) -> None:
        self.spec = spec
        self.session_id = secrets.token_hex(4)
        self._shared: tuple[str, Cluster] | None = None
        # Shared clusters this session left running for another worker to tear down.
        self._handed_over: set[str] = set()
        self._given_root = root
        self.progress: Callable[[str], None] | None = None
        self.user_data_hook: Callable[[ClusterSpec, dict[str, Any]], None] | None = None
        self.ready_hook: Callable[[Cluster], None] | None = None
        self._shaped: dict[ClusterSpec, Cluster] = {}
        self._root: Path | None = None
        self._discovery = SessionDiscovery(lambda: self.root, self._discovery_changed)
        self._ssh_key: tuple[paramiko.Ed25519Key, Path] | None = None
        self.clusters: list[Cluster] = []
        self._default: Cluster | None = None
        self._fresh: Cluster | None = None
        self.notices: list[str] = []
        self._lock = threading.RLock()
        self._atexit_registered = False
        self._record: dict[str, Any] = {
            "session_id": self.session_id,
            **registry.owner_record(owner_pid),
            "root": "",
            "clusters": {},
            "discovery": [],
        }

    # -- session resources ---------------------------------------------------------
    @property
    def root(self) -> Path:
        """The session's folder: the key pair, the discovery service and one per cluster."""
        if self._root is None:
            if self._given_root is not None:
                self._given_root.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._root = self._given_root
            else:
                self._root = Path(tempfile.mkdtemp(prefix=f"pytest-coreos-{self.session_id}-"))
            self._record["root"] = str(self._root)
            self._save_record()
            if not self._atexit_registered:
                atexit.register(self.close)
                self._atexit_registered = True
        return self._root

    def session_key(self) -> tuple[paramiko.Ed25519Key, Path]:
        """The session's SSH key pair, made once (ed25519, in the session folder, 0600)."""
        if self._ssh_key is None:
            private = self.root / "id_ed25519"
            self._ssh_key = (generate_ed25519_key(private), private.with_suffix(".pub"))
        return self._ssh_key

    def discovery_url(self, spec: ClusterSpec) -> str:
        """A fresh discovery URL for a cluster of ``spec``, as its discovery mode says
        ("" for static: the members are given each other's addresses instead)."""
        return self._discovery.url(spec)

    def _discovery_changed(self, records: list[Any]) -> None:
        self._record["discovery"] = records
        self._save_record()

    # -- the state record ------------------------------------------------------------
    def _save_record(self) -> None:
        with registry.registry_lock():
            registry.write_record(self.session_id, self._record)

    def record_cluster(self, cluster: Cluster) -> None:
        """Bring ``cluster``'s entry of the session record up to date."""
        with self._lock:
            gone = cluster.closed and not cluster.kept
            if cluster.attached:  # its record belongs to the session that booted it
                registry.update_cluster(
                    cluster.owner_session, cluster.name, None if gone else cluster.describe()
                )
                return
            clusters = self._record["clusters"]
            if gone:
                clusters.pop(cluster.name, None)
            else:
                clusters[cluster.name] = cluster.describe()
            self._save_record()

    # -- booting, through the one pipeline (see pytest_coreos.session.boot) --------------
    def start_cluster(self, cluster: Cluster) -> None:
        """Boot ``cluster`` and wait until it is ready."""
        boot.start(self, cluster)

    def attach_cluster(
        self, cluster: Cluster, owner: str, record: Mapping[str, Any], timeout: float
    ) -> None:
        """Adopt the running cluster ``record`` describes; see :meth:`Cluster.attach`."""
        boot.attach(self, cluster, owner, record, timeout)

    def wait_ready(self, cluster: Cluster, timeout: float, *, fresh: bool) -> None:
        """Wait until every running machine of ``cluster`` is ready."""
        wait_ready(cluster, timeout, fresh=fresh)

    # -- clusters ----------------------------------------------------------------------
    def __call__(
        self, instances: int | None = None, *, resettable: bool = False, **changes: Any
    ) -> Cluster:
        """A new, ready cluster; ``instances`` and any spec field can be changed.
        ``resettable``: keep its state at ready, for :meth:`Cluster.reset`."""
        if instances is not None:
            changes["instances"] = instances
        spec = self.spec.replace(**changes) if changes else self.spec
        if resettable:
            check_resettable(spec)
        cluster = self.create(spec)
        cluster.resettable = resettable
        return self._ready(cluster.start())

    def _ready(self, cluster: Cluster) -> Cluster:
        if self.ready_hook is not None:
            self.ready_hook(cluster)
        return cluster

    def create(self, spec: ClusterSpec) -> Cluster:
        """A cluster for ``spec``, registered for teardown but not started."""
        with self._lock:
            workdir = self.root / f"cluster-{len(self.clusters) + 1}"
            cluster = Cluster(spec, workdir=workdir, session=self)
            self.clusters.append(cluster)
        return cluster

    def default(self) -> Cluster:
        """The session's cluster of the configured spec, booted on first use, or, with
        ``--coreos-reuse``, a kept one of the same spec if it is healthy."""
        if self._default is None:
            reused = self.reuse(self.spec) if self.spec.reuse else None
            self._default = reused or self()
        return self._default

    def fresh(self) -> Cluster:
        """A pristine cluster of the configured spec (``coreos_fresh_cluster``): booted on
        first use, reset (:meth:`Cluster.reset`) at every later one. Where a reset fails,
        that cluster is destroyed and a new one booted in its place, and the notices say
        so: a test never gets a half-reset cluster."""
        cluster = self._fresh
        if cluster is not None and not cluster.closed:
            try:
                if cluster.reset_failed:  # an earlier reset ended with another error
                    raise ResetError(cluster.name, "its last reset did not complete")
                cluster.reset()
                return cluster
            except ResetError as error:
                message = f"{error}; it was destroyed and a new cluster booted in its place"
                self.notices.append(message)
                if self.progress is not None:
                    self.progress(message)
                with contextlib.suppress(CoreOSError):
                    cluster.close(destroy=True)
        self._fresh = self(resettable=True)
        return self._fresh

    def shaped(self, **changes: Any) -> Cluster:
        """The session's cluster of the base spec with ``changes``, booted on first use and
        shared by every later call with the same changes (``@pytest.mark.coreos``)."""
        spec = self.spec.replace(**changes)
        if spec == self.spec:
            return self.default()
        if spec not in self._shaped:
            self._shaped[spec] = self(**changes)
        return self._shaped[spec]

    def shared(self, key: str) -> Cluster:
        """The cluster shared by every session that names ``key`` (the workers of one
        xdist run): the first to come boots it, the others attach, and whoever is last to
        finish tears it down (see :meth:`close`)."""
        if self._shared is not None:
            return self._shared[1]
        spec = self.spec.replace(keep=True)  # outlives the worker that booted it
        with registry.share_lock(key):
            share = registry.read_share(key)
            record = registry.find_cluster(share["session"], share["cluster"]) if share else None
            if share is not None and record is not None:
                cluster = Cluster(spec, workdir=Path(record["workdir"]), session=self)
                cluster.attach(share["session"], record, timeout=spec.boot_timeout)
                with self._lock:
                    self.clusters.append(cluster)
                share["users"] += 1
            else:
                # The first worker boots it, or with --coreos-reuse adopts a kept one: the
                # other workers attach to whichever it is, as in one process.
                reused = self.reuse(spec) if self.spec.reuse else None
                cluster = reused or self._ready(self.create(spec).start())
                share = {"session": cluster.owner_session, "cluster": cluster.name, "users": 1}
            registry.write_share(key, share)
        self._shared = (key, cluster)
        return cluster

    def _leave_shared(self) -> None:
        if self._shared is None:
            return
        key, cluster = self._shared
        with registry.share_lock(key):
            share = registry.read_share(key)
            last = share is None or share["users"] <= 1
            if last:
                cluster.close(destroy=not self.spec.keep)
                # A kept cluster stays the run's: a worker that starts only now (the
                # others were quicker) attaches to it instead of keeping one of its own.
                left = {**share, "users": 0} if share is not None else None
                registry.write_share(key, left if self.spec.keep else None)
            else:
                assert share is not None
                share["users"] -= 1
                registry.write_share(key, share)
                cluster.close()
                self._handed_over.add(cluster.name)

    def reuse(self, spec: ClusterSpec) -> Cluster | None:
        """Attach to a healthy kept cluster of ``spec`` left by an earlier session."""
        for owner, cluster_record in registry.kept_clusters(spec.to_record()):
            cluster = Cluster(spec, workdir=Path(cluster_record["workdir"]), session=self)
            try:
                cluster.attach(owner, cluster_record, timeout=min(spec.boot_timeout, 5.0))
            except CoreOSError as error:
                self.notices.append(f"kept cluster {cluster_record['workdir']} not reused: {error}")
                continue
            self.notices.append(
                f"reusing kept cluster {cluster_record['workdir']} (its discovery URL "
                f"{cluster.discovery_url} is no longer served: that service ended with the "
                "session that booted it)"
            )
            with self._lock:
                self.clusters.append(cluster)
            return cluster
        return None

    @property
    def kept(self) -> bool:
        """True if a cluster this session booted is left running on purpose (a reused one
        stays on the record of the session that booted it)."""
        return any(cluster.kept and not cluster.attached for cluster in self.clusters)

    @property
    def handed_over(self) -> frozenset[str]:
        """The names of the shared clusters this session left to another xdist worker."""
        return frozenset(self._handed_over)

    @property
    def failed_boots(self) -> list[Cluster]:
        """The clusters whose machines started but never became ready."""
        return [cluster for cluster in self.clusters if cluster.boot_failed]

    def close(self) -> None:
        """Tear down every cluster and the discovery service; remove the session folder
        and record unless a cluster is kept or failed to boot (its logs are the
        diagnosis; the next session reaps it)."""
        errors: list[BaseException] = []
        try:
            self._leave_shared()
        except Exception as error:
            errors.append(error)
        for cluster in reversed(self.clusters):
            try:
                cluster.close()
            except Exception as error:
                errors.append(error)
        self._discovery.close()
        self._record["discovery"] = []
        if self._atexit_registered:
            atexit.unregister(self.close)
            self._atexit_registered = False
        if self._root is not None:
            if self.failed_boots:
                # See reaper.FAILED_BOOT_KEPT_DAYS.
                self._record["failed_boot_at"] = time.time()
            if self.kept or self.failed_boots:
                self._remove_finished_workdirs()
                if self._handed_over:
                    registry.finish_record(self.session_id, self._record, self._handed_over)
                else:
                    self._save_record()
            else:
                if self._given_root is None:
                    shutil.rmtree(self._root, ignore_errors=True)
                else:
                    for cluster in self.clusters:
                        shutil.rmtree(cluster.workdir, ignore_errors=True)
                with registry.registry_lock():
                    registry.remove_record(self.session_id)
        if errors:
            raise CoreOSError(f"tearing down {len(errors)} cluster(s) failed") from errors[0]

    def _remove_finished_workdirs(self) -> None:
        """Where the session folder stays (a cluster kept, a boot that failed), remove the
        folders of this session's clusters that are done with: only a kept cluster's and a
        failed boot's stay, with the discovery service's logs. The others hold nothing to
        read and their machines' etcd data (64 MiB of preallocated WAL per member): a
        session of many clusters would otherwise leave gigabytes for a week."""
        for cluster in self.clusters:
            if (
                cluster.boot_failed
                or cluster.kept
                or cluster.attached  # another session's folder
                or cluster.name in self._handed_over  # another xdist worker tears it down
                or cluster.workdir.parent != self._root
            ):
                continue
            shutil.rmtree(cluster.workdir, ignore_errors=True)


def check_resettable(spec: ClusterSpec) -> None:
    """A ConfigError naming the provider where its clusters cannot be reset."""
    if not get_provider(spec.provider).capabilities.reset:
        raise ConfigError(
            "--coreos-provider",
            f"the {spec.provider} provider cannot reset a cluster (coreos_fresh_cluster, "
            "resettable=True); local (also with --coreos-network=netns), nspawn and vagrant can",
            "use coreos_cluster_factory() for a new cluster where a test needs one",
        )
