"""The pytest plugin: options, fixtures and report hooks. The work lives elsewhere."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Generator, Iterator
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from pytest_coreos.errors import ConfigError, CoreOSError
from pytest_coreos.options import OPTIONS, ClusterSpec, resolve_spec
from pytest_coreos.providers import get_provider

if TYPE_CHECKING:
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.session.factory import ClusterFactory

SPEC_KEY = pytest.StashKey[ClusterSpec]()
FACTORY_KEY = pytest.StashKey["ClusterFactory"]()
SUMMARY_KEY = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``coreos`` group: every option with its ini twin."""
    group = parser.getgroup("coreos", "CoreOS cluster (pytest-coreos)")
    for option in OPTIONS:
        default = option.default_text.replace("`", "")
        ini = f"; ini: {option.ini}" if option.has_ini else "; command line only"
        help_text = f"{option.help} (default: {default}{ini})"
        dest = f"coreos_{option.name}"
        if option.kind in ("bool", "action"):
            group.addoption(
                option.flag, action="store_true", default=None, dest=dest, help=help_text
            )
        elif option.kind == "linelist":
            group.addoption(
                option.flag,
                action="append",
                default=None,
                dest=dest,
                metavar=option.metavar,
                help=help_text,
            )
        else:
            group.addoption(
                option.flag, default=None, dest=dest, metavar=option.metavar, help=help_text
            )
        if option.has_ini:
            # Booleans too are read as strings: options.parse_bool names the ini key when a
            # value is neither true nor false, where pytest's own reading would not.
            ini_type = "linelist" if option.kind == "linelist" else "string"
            parser.addini(option.ini, help=f"{option.help} ({option.flag})", type=ini_type)  # type: ignore[arg-type]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Declare the plugin's hooks (see :mod:`pytest_coreos.hooks`)."""
    from pytest_coreos import hooks

    pluginmanager.add_hookspecs(hooks)


MARKER = (
    "coreos(**spec): run this test (or module, class) against a cluster of this shape, e.g. "
    "coreos(instances=5); tests asking for the same shape share one cluster"
)


def _resolve(config: pytest.Config) -> ClusterSpec:
    ini_dir = config.inipath.parent if config.inipath is not None else config.rootpath
    spec = resolve_spec(
        lambda name: config.getoption(f"coreos_{name}"),
        lambda name: config.getini(name),
        invocation_dir=config.invocation_params.dir,
        ini_dir=ini_dir,
    )
    # A bad file stops the run before any test (read only when one is given: the YAML
    # and Ignition code is not loaded otherwise).
    if spec.user_data is not None:
        from pytest_coreos.config import cloud_config, ignition

        user_data = cloud_config.load_user_data(spec.user_data)
        if spec.config == "ignition":
            ignition.check_renders(user_data, spec.user_data)
    if spec.ignition is not None:
        from pytest_coreos.config import ignition

        ignition.load_ignition(spec.ignition)
    if spec.fleet is not None:
        from pytest_coreos.host import fleet_release  # only where fleet is asked for

        fleet_release.prepare(spec.fleet)  # unpacked (or downloaded) once, before any test
    return spec


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``pytest --coreos-reap``: remove what ended runs left, kept clusters too, and exit."""
    if not config.getoption("coreos_reap"):
        return None
    from pytest_coreos.session.reaper import reap

    removed = reap(include_kept=True)
    for line in removed:
        print(f"coreos: reaped {line}")
    print(f"coreos: reaped {len(removed)} item(s) left by ended pytest runs")
    return 0


def _end_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a cancelled CI job) would end pytest without teardown; as an interrupt,
    # pytest tears the session down and the clusters with it.
    raise KeyboardInterrupt(f"signal {signum}")


def _restore_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the options once (bad values are usage errors) and end on SIGTERM cleanly."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and (
        threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGTERM, _end_on_sigterm)
        config.add_cleanup(_restore_sigterm)
    config.stash[SUMMARY_KEY] = []
    config.addinivalue_line("markers", MARKER)
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
    """One line on the clusters this run boots."""
    spec = config.stash.get(SPEC_KEY, None)
    if spec is None:
        return None
    extra = get_provider(spec.provider).report_header(spec)
    return (
        f"coreos: provider {spec.provider}, {spec.instances} instance(s), "
        f"channel {spec.channel}, discovery {spec.discovery}{extra}"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.coreos(**spec)``: hand the test a cluster of that shape through
    ``coreos_cluster``, one per distinct shape for the whole session."""
    marker = metafunc.definition.get_closest_marker("coreos")
    if marker is None or "coreos_cluster" not in metafunc.fixturenames:
        return
    # A bad marker fails only the tests that carry it, at their setup, with one line:
    # the rest of the session (and tests deselected with -k) are not its business.
    problem = None
    if marker.args:
        problem = "takes keywords only, e.g. @pytest.mark.coreos(instances=5)"
    else:
        try:
            _spec(metafunc.config).replace(**marker.kwargs)
        except ConfigError as error:
            problem = str(error)
    if problem is not None:
        metafunc.parametrize(
            "coreos_cluster",
            [BadMarker(f"@pytest.mark.coreos{_shown(marker)}", problem)],
            indirect=True,
            scope="session",
            ids=["coreos(bad marker)"],
        )
        return
    shape = tuple(sorted(marker.kwargs.items()))
    label = ",".join(f"{key}={value}" for key, value in shape)
    metafunc.parametrize(
        "coreos_cluster", [shape], indirect=True, scope="session", ids=[f"coreos({label})"]
    )


class BadMarker(ConfigError):
    """A ``@pytest.mark.coreos`` whose shape cannot be built: raised by ``coreos_cluster``
    for the tests that carry it."""


def _shown(marker: pytest.Mark) -> str:
    parts = [repr(arg) for arg in marker.args]
    parts += [f"{key}={value!r}" for key, value in marker.kwargs.items()]
    return f"({', '.join(parts)})"


@pytest.fixture(scope="session")
def coreos_cluster_factory(request: pytest.FixtureRequest) -> Iterator[ClusterFactory]:
    """Makes further clusters: ``coreos_cluster_factory(instances=5)`` returns a ready
    cluster, torn down when its ``with`` block ends or at the end of the session."""
    from pytest_coreos.session.factory import ClusterFactory
    from pytest_coreos.session.reaper import reap

    config = request.config
    summary = config.stash[SUMMARY_KEY]
    # What runs of a dead pytest left (but clusters kept on purpose) goes first.
    summary.extend(f"reaped {line}" for line in reap(include_kept=False))
    worker = getattr(config, "workerinput", None)
    # An xdist worker's session belongs to the controller, which outlives every worker.
    factory = ClusterFactory(_spec(config), owner_pid=os.getppid() if worker else None)
    factory.user_data_hook = lambda spec, data: config.hook.pytest_coreos_user_data(
        spec=spec, data=data
    )
    factory.ready_hook = lambda cluster: _announce_ready(config, cluster)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        # Shown while a slow boot runs, not captured with the fixture's output.
        capture = config.pluginmanager.get_plugin("capturemanager")

        def show_progress(line: str) -> None:
            with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
                reporter.write_line(f"coreos: {line}")

        factory.progress = show_progress
    config.stash[FACTORY_KEY] = factory
    try:
        yield factory
    finally:
        try:
            factory.close()
        finally:
            # After closing: providers report what they had to clean up as they close.
            for notice in factory.notices + [n for c in factory.clusters for n in c.notices]:
                if notice not in summary:
                    summary.append(notice)
            summary.extend(_kept_lines(factory))


@pytest.fixture(scope="session")
def coreos_cluster(
    request: pytest.FixtureRequest, coreos_cluster_factory: ClusterFactory
) -> Cluster:
    """The session's ready cluster, of the shape the ``--coreos-*`` options give. Under
    pytest-xdist every worker gets the same cluster: the first boots it, the others
    attach, the last to finish tears it down."""
    shape = getattr(request, "param", None)
    if isinstance(shape, BadMarker):
        raise shape
    if shape is not None:
        return coreos_cluster_factory.shaped(**dict(shape))
    worker = getattr(request.config, "workerinput", None)
    if worker is not None:
        return coreos_cluster_factory.shared(worker["testrunuid"])
    return coreos_cluster_factory.default()


@pytest.fixture
def coreos_fresh_cluster(coreos_cluster_factory: ClusterFactory) -> Cluster:
    """A pristine cluster of the session's shape for each test: one cluster (per xdist
    worker) booted when first asked for and reset (``Cluster.reset``) before every later
    test that asks for it, so that no key, unit, fault or partition of one test reaches
    the next. A reset that fails is reported and a new cluster booted in its place."""
    return coreos_cluster_factory.fresh()


def _announce_ready(config: pytest.Config, cluster: Cluster) -> None:
    """Run the ready hook and, with -v, show how long each phase and machine took."""
    if config.get_verbosity() > 0 and cluster.timings:
        phases = ", ".join(f"{name} {seconds:.3f}s" for name, seconds in cluster.timings.items())
        lines = [f"{cluster.name} ready: {phases}"]
        for machine in cluster.machines:
            etcd, ssh = machine.etcd_ready_after, machine.ssh_ready_after
            lines.append(
                f"  {machine.name} {machine.private_ipv4}: etcd serving after "
                f"{etcd if etcd is not None else float('nan'):.3f}s, ssh after "
                f"{ssh if ssh is not None else float('nan'):.3f}s"
            )
        config.stash[SUMMARY_KEY].extend(lines)
    config.hook.pytest_coreos_cluster_ready(cluster=cluster)


def _kept_lines(factory: ClusterFactory) -> list[str]:
    from pytest_coreos.session.reaper import FAILED_BOOT_KEPT_DAYS

    lines = []
    for cluster in factory.clusters:
        if cluster.boot_failed:
            lines.append(
                f"{cluster.workdir.name} failed to boot; its logs: {cluster.workdir} (kept for "
                f"{FAILED_BOOT_KEPT_DAYS} days, or until pytest --coreos-reap)"
            )
        elif cluster.kept and cluster.machines and cluster.name not in factory.handed_over:
            lines.extend(get_provider(cluster.spec.provider).how_to_reach(cluster))
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a cluster gets a report section per machine: the tail of
    its etcd log and where the cluster's files are; and, where the machine's Docker Engine
    ran, its ``docker ps -a`` and the tail of each exited container's log."""
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    if report.when == "setup" and isinstance(error, CoreOSError):
        # The plugin's own errors say what is wrong and what to do: the traceback through
        # the plugin's internals would only bury that. A session fixture's error comes
        # back for every test that asks for it: shown whole once, then pointed at.
        first = item.config.stash.setdefault(FIRST_SEEN_KEY, {}).setdefault(error, item.nodeid)
        if first != item.nodeid:
            report.longrepr = (
                f"{type(error).__name__}: {_first_line(error)} (shown in full at {first})"
            )
        else:
            notes = "".join(f"\n{note}" for note in getattr(error, "__notes__", []))
            report.longrepr = f"{type(error).__name__}: {error}{notes}"
    if report.failed and report.when in ("setup", "call"):
        for cluster in _clusters_of(item):
            for machine in cluster.machines:
                report.sections.append(
                    (
                        f"coreos {cluster.name} {machine.name} etcd log",
                        f"workdir: {cluster.workdir}\n{machine.logs(DIAGNOSTIC_LINES)}",
                    )
                )
                containers = (
                    machine.docker.report(DIAGNOSTIC_LINES)
                    if machine.systemd.available and machine.running and not machine.paused
                    else ""
                )
                if containers:
                    report.sections.append(
                        (f"coreos {cluster.name} {machine.name} containers", containers)
                    )
    return report


DIAGNOSTIC_LINES = 20
# Each setup error of the plugin's, by identity, and the test that showed it first.
FIRST_SEEN_KEY = pytest.StashKey[dict[BaseException, str]]()


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _clusters_of(item: pytest.Item) -> list[Cluster]:
    factory = item.config.stash.get(FACTORY_KEY, None)
    if factory is None:  # no cluster was asked for: nothing of the plugin's is loaded
        return []
    from pytest_coreos.handles.cluster import Cluster
    from pytest_coreos.session.factory import ClusterFactory

    clusters: list[Cluster] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Cluster):
            candidates = [value]
        elif isinstance(value, ClusterFactory):  # its clusters still up (not closed by a with)
            candidates = [cluster for cluster in value.clusters if not cluster.closed]
        else:
            continue
        clusters += [c for c in candidates if c.machines and c not in clusters]
    return clusters


WORKER_SUMMARY = "coreos_summary"


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its summary lines to the controller, which shows them."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[WORKER_SUMMARY] = session.config.stash.get(SUMMARY_KEY, [])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """(xdist controller) Take a finished worker's summary lines, each line once."""
    lines = getattr(node, "workeroutput", {}).get(WORKER_SUMMARY, [])
    summary = node.config.stash.setdefault(SUMMARY_KEY, [])  # type: ignore[attr-defined]
    summary.extend(line for line in lines if line not in summary)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Notices, kept clusters and failed boots, once, at the end."""
    lines = terminalreporter.config.stash.get(SUMMARY_KEY, [])
    if lines:
        terminalreporter.write_sep("-", "coreos")
        for line in lines:
            terminalreporter.write_line(line)
