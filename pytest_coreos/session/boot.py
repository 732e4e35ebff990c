"""The one pipeline a cluster boots through:

options -> :class:`ClusterSpec` -> the provider's deployment (and its discovery) -> the
rendered files (user-data, config.rb, Ignition; written once, where the cluster's
:class:`ClusterPaths` say) -> ``deployment.boot()`` -> readiness -> handles. A boot that
fails halfway tears down what it started before the error propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pytest_coreos.config import cloud_config, config_rb, etcd_env, fleet_env, ignition, ssh_access
from pytest_coreos.errors import IgnitionError, UserDataError
from pytest_coreos.handles.cluster import Cluster
from pytest_coreos.handles.machine import Machine
from pytest_coreos.host.image_registry import docker_archives
from pytest_coreos.host.images import read_archives
from pytest_coreos.providers import get_provider
from pytest_coreos.providers.protocol import BootContext, MachineDescription
from pytest_coreos.session.readiness import Stopwatch, wait_ready

if TYPE_CHECKING:
    import paramiko

    from pytest_coreos.options import ClusterSpec


class BootSession(Protocol):
    """What the pipeline takes from the session (the factory)."""

    session_id: str
    progress: Callable[[str], None] | None
    user_data_hook: Callable[[ClusterSpec, dict[str, Any]], None] | None

    def session_key(self) -> tuple[paramiko.Ed25519Key, Path]:
        """The session's SSH key pair."""

    def discovery_url(self, spec: ClusterSpec) -> str:
        """A fresh discovery URL for a cluster of ``spec``."""


def context(session: BootSession, cluster: Cluster) -> BootContext:
    """What the cluster's provider is given."""
    key, public_path = session.session_key()
    return BootContext(
        spec=cluster.spec,
        workdir=cluster.workdir,
        user_data=cluster.user_data,
        ssh_key=key,
        ssh_public_key_path=public_path,
        progress=session.progress,
        remember=cluster.remember,
        key_prefix=cluster.prefix,
        session_id=session.session_id,
        write_ignition=(
            (lambda *args: write_ignition(session, cluster, *args))
            if cluster.spec.config == "ignition"
            else None
        ),
    )


def handles(descriptions: list[MachineDescription]) -> list[Machine]:
    """The Machine handles over what a provider describes."""
    return [
        Machine(
            described.name,
            private_ipv4=described.private_ipv4,
            public_ipv4=described.public_ipv4,
            ssh=described.ssh,
            etcd_endpoints=described.etcd_endpoints,
            control=described.control,
            http_session=described.http_session,
            systemd=described.systemd,
        )
        for described in descriptions
    ]


def start(session: BootSession, cluster: Cluster) -> None:
    """Boot ``cluster`` through the pipeline and wait until it is ready."""
    cluster.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    clock = Stopwatch(cluster.timings)
    try:
        cluster.remember({})  # on record before anything runs: a crash is reaped
        boot_context = context(session, cluster)
        cluster.deployment = deployment = get_provider(cluster.spec.provider).prepare(boot_context)
        # A deployment whose machines cannot reach the session's discovery service (a
        # network lab) brings its own.
        url = deployment.discovery_url()
        cluster.discovery_url = session.discovery_url(cluster.spec) if url is None else url
        clock.lap("discovery")
        write_config(session, cluster)
        boot_context.user_data = cluster.user_data
        clock.lap("config")
        cluster.booting = True
        cluster.machines = handles(deployment.boot())
        cluster.remember({})  # now with every process the machines run
        cluster.watch_machines()
        clock.lap("spawn")
        cluster.take_notices(deployment.notices)
        wait_ready(cluster, cluster.spec.boot_timeout, fresh=True)
        write_ssh_access(cluster)
        clock.lap("ready")
        if cluster.spec.images:
            serve_images(cluster)
            clock.lap("images")
        if (
            cluster.spec.fleet is not None
            and cluster.spec.config == "cloud-config"
            and fleet_env.starts_fleet(cluster.user_data)
        ):
            # Ready for fleet tests too: every machine's fleetd has registered.
            cluster.fleet.wait_for_machines(timeout=cluster.spec.boot_timeout)
            clock.lap("fleet")
        if cluster.resettable:
            cluster.save_ready()  # what Cluster.reset returns to
            clock.lap("save")
        cluster.timings["total"] = clock.total
    except BaseException:
        # The workdir is worth keeping only if machines ran: it holds their logs.
        cluster.boot_failed = cluster.booting
        cluster.close()
        raise


def attach(
    session: BootSession,
    cluster: Cluster,
    owner: str,
    record: Mapping[str, Any],
    timeout: float,
) -> None:
    """Adopt the running cluster ``record`` describes and check that it is healthy; on
    failure nothing is torn down."""
    cluster.attached = True
    cluster.owner_session = owner
    cluster.discovery_url = record["discovery_url"]
    cluster.user_data = dict(record["user_data"])
    cluster.recorded = dict(record)
    provider = get_provider(cluster.spec.provider)
    cluster.deployment = provider.attach(context(session, cluster), record)
    cluster.machines = handles(cluster.deployment.boot())
    cluster.watch_machines()
    wait_ready(cluster, timeout, fresh=False)
    write_ssh_access(cluster)


def serve_images(cluster: Cluster) -> None:
    """Every image of ``--coreos-images`` on every machine: Docker Hub names once the
    deployment's registry is filled (it fills while the machines boot), the others by
    ``docker load`` on each machine, all at once."""
    assert cluster.deployment is not None
    cluster.deployment.wait_for_images(cluster.spec.boot_timeout)
    folder = cluster.workdir / "images-to-load"
    files = [
        path
        for archive in read_archives(cluster.spec.images)
        for path in docker_archives(archive, folder)
    ]
    if not files:
        return
    with ThreadPoolExecutor(len(cluster.machines), thread_name_prefix="coreos-images") as pool:
        loads = [
            pool.submit(machine.docker.load, path) for machine in cluster.machines for path in files
        ]
        for load in loads:
            load.result()


def write_ssh_access(cluster: Cluster) -> None:
    """The workdir's ``ssh_config`` and ``known_hosts``: what OpenSSH needs to log in to
    every machine with its host key checked (printed for a kept cluster)."""
    machines = cluster.ssh_access()
    cluster.paths.known_hosts.write_text(ssh_access.render_known_hosts(machines))
    cluster.paths.ssh_config.write_text(
        ssh_access.render_ssh_config(machines, cluster.paths.known_hosts)
    )


def write_config(session: BootSession, cluster: Cluster) -> None:
    """Render the cluster's config once, into its workdir: the user-data (with the
    discovery URL and the user's hook applied) and config.rb, or, with Ignition, what each
    machine's config is rendered from."""
    spec = cluster.spec
    if spec.ignition is not None:
        load_ignition(cluster, spec.ignition)
        return
    if spec.user_data is not None:
        data = cloud_config.load_user_data(spec.user_data)
    else:
        data = cloud_config.default_user_data()
    if cluster.discovery_url:
        data = cloud_config.inject_discovery(data, cluster.discovery_url)
    else:  # static: the provider gives each member the initial cluster instead
        section_name, section = etcd_env.etcd_section(data)
        section.pop("discovery", None)
        data = {**data, "coreos": {**data["coreos"], section_name: section}}
    if session.user_data_hook is not None:
        session.user_data_hook(spec, data)
    cluster.user_data = data
    cluster.paths.config_rb.write_text(config_rb.render_config_rb(spec.instances, spec.channel))
    # Written with Ignition too: the cloud-config the .ign files are rendered from.
    cluster.paths.user_data.write_text(cloud_config.render_user_data(data))
    if spec.config == "ignition":
        # Rendered per machine, once its addresses are known (write_ignition).
        ignition.check_renders(data, spec.user_data or "(the default user-data)")
        if left := ignition.not_rendered(data):
            cluster.notices.append(
                "--coreos-config=ignition: Ignition does not carry these parts of the "
                "user-data: " + ", ".join(left)
            )


def load_ignition(cluster: Cluster, path: Path) -> None:
    """The user's own Ignition config with the discovery URL injected, for every machine.
    The plugin's handles reach etcd at each machine's private address, port 2379, as the
    minimal cloud-config kept in ``user_data`` says."""
    config = ignition.load_ignition(path)
    try:
        cluster.ignition = ignition.inject_discovery_ignition(config, cluster.discovery_url)
    except ValueError as error:
        raise IgnitionError(path, str(error)) from error
    cluster.user_data = {
        "coreos": {
            "etcd2": {
                "discovery": cluster.discovery_url,
                "advertise-client-urls": f"http://{etcd_env.PRIVATE_IPV4}:2379",
            }
        }
    }
    cluster.paths.config_rb.write_text(
        config_rb.render_config_rb(cluster.spec.instances, cluster.spec.channel)
    )


def write_ignition(
    session: BootSession, cluster: Cluster, name: str, private_ipv4: str, public_ipv4: str
) -> Path:
    """Machine ``name``'s Ignition config, ``<workdir>/ignition/<name>.ign``: the user's
    (``--coreos-ignition``), or the user-data rendered with the machine's addresses."""
    config = cluster.ignition
    if config is None:
        _, public_key = session.session_key()
        try:
            config = ignition.render_ignition(
                cluster.user_data,
                ssh_public_key=public_key.read_text(),
                hostname=name,
                private_ipv4=private_ipv4,
                public_ipv4=public_ipv4,
            )
        except ValueError as error:
            raise UserDataError(
                cluster.spec.user_data or "(the default user-data)",
                f"cannot be rendered as Ignition for {name}: {error}",
            ) from error
    path = cluster.paths.ignition(name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(ignition.to_json(config))
    return path
