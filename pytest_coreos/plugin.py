"""The pytest plugin: options, fixtures and report hooks. The work lives elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coreos import render
from pytest_coreos.cluster import Cluster, ClusterFactory
from pytest_coreos.errors import ConfigError
from pytest_coreos.options import OPTIONS, ClusterSpec, resolve_spec
from pytest_coreos.providers import get_provider

SPEC_KEY = pytest.StashKey[ClusterSpec]()
FACTORY_KEY = pytest.StashKey[ClusterFactory]()
SUMMARY_KEY = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coreos", "CoreOS cluster (pytest-coreos)")
    for option in OPTIONS:
        shown_default = "off" if option.kind == "bool" else option.default
        if option.name == "discovery":
            shown_default = "local, or public for the vagrant provider"
        help_text = f"{option.help} (default: {shown_default}; ini: {option.ini})"
        dest = f"coreos_{option.name}"
        if option.kind == "bool":
            group.addoption(
                option.flag, action="store_true", default=None, dest=dest, help=help_text
            )
        else:
            group.addoption(
                option.flag, default=None, dest=dest, metavar=option.metavar, help=help_text
            )
        parser.addini(
            option.ini,
            help=f"{option.help} ({option.flag})",
            type="bool" if option.kind == "bool" else "string",
        )


def _resolve(config: pytest.Config) -> ClusterSpec:
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    spec = resolve_spec(
        lambda name: config.getoption(f"coreos_{name}"),
        lambda name: config.getini(name),
        invocation_dir=config.invocation_params.dir,
        ini_dir=ini_dir,
    )
    if spec.user_data is not None:
        render.load_user_data(spec.user_data)  # a bad file stops the run before any test
    return spec


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[SUMMARY_KEY] = []
    if config.getoption("help", default=False):
        return
    try:
        config.stash[SPEC_KEY] = _resolve(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None


def _spec(config: pytest.Config) -> ClusterSpec:
    try:
        return config.stash[SPEC_KEY]
    except KeyError:
        return _resolve(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    spec = config.stash.get(SPEC_KEY, None)
    if spec is None:
        return None
    return (
        f"coreos: provider {spec.provider}, {spec.instances} instance(s), "
        f"channel {spec.channel}, discovery {spec.discovery}"
    )


@pytest.fixture(scope="session")
def coreos_cluster_factory(request: pytest.FixtureRequest) -> Iterator[ClusterFactory]:
    """Makes further clusters: ``coreos_cluster_factory(instances=5)`` returns a ready
    cluster, torn down when its ``with`` block ends or at the end of the session."""
    config = request.config
    factory = ClusterFactory(_spec(config), provider_factory=get_provider)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        factory.progress = lambda line: reporter.write_line(f"coreos: {line}")
    config.stash[FACTORY_KEY] = factory
    try:
        yield factory
    finally:
        summary = config.stash[SUMMARY_KEY]
        for cluster in factory.clusters:
            summary.extend(n for n in cluster.notices if n not in summary)
        try:
            factory.close()
        finally:
            summary.extend(_kept_lines(factory))


@pytest.fixture(scope="session")
def coreos_cluster(coreos_cluster_factory: ClusterFactory) -> Cluster:
    """The session's ready cluster, of the shape the ``--coreos-*`` options give."""
    return coreos_cluster_factory.default()


def _kept_lines(factory: ClusterFactory) -> list[str]:
    lines = []
    for cluster in factory.clusters:
        if cluster.boot_failed:
            lines.append(f"{cluster.workdir.name} failed to boot; its logs: {cluster.workdir}")
        elif cluster.spec.keep and cluster.machines:
            lines.extend(_how_to_reach(cluster, factory.root))
    return lines


def _how_to_reach(cluster: Cluster, root: Path) -> list[str]:
    lines = [f"cluster kept running (--coreos-keep): {cluster.workdir}"]
    key = root / "id_ed25519"
    for machine in cluster.machines:
        ssh = machine.ssh
        lines.append(
            f"  {machine.name}: ssh -i {key} -p {ssh.port} {ssh.username}@{ssh.host}; "
            f"etcd {','.join(machine.etcd_endpoints)}"
        )
    pids = [str(pid) for pid in cluster.pids]
    lines.append(f"  remove it: kill {' '.join(pids)}; rm -rf {root}")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(SUMMARY_KEY, [])
    if lines:
        terminalreporter.write_sep("-", "coreos")
        for line in lines:
            terminalreporter.write_line(line)
