"""The plugin end to end, through pytester: help text, option resolution, usage errors,
and whole inner sessions that boot a real cluster and leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import pytest_coreos
from pytest_coreos.host.binaries import find_etcd
from pytest_coreos.host.discovery import DiscoveryService
from pytest_coreos.options import OPTIONS, ClusterSpec
from pytest_coreos.plugin import SPEC_KEY

INNER_INI = """
[pytest]
filterwarnings = error
"""


def test_help_lists_every_option_with_its_ini_twin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert result.ret == 0
    text = " ".join(result.stdout.str().split())  # help wraps lines at any space
    assert "CoreOS cluster (pytest-coreos):" in text
    for option in OPTIONS:
        assert option.flag in text
        assert f"ini: {option.ini}" in text
        assert f"{option.ini} (" in text  # listed among the ini options too


def _spec(pytester: pytest.Pytester, *args: str) -> ClusterSpec:
    config = pytester.parseconfigure(*args)
    return config.stash[SPEC_KEY]


def test_defaults(pytester: pytest.Pytester) -> None:
    spec = _spec(pytester)
    assert spec == ClusterSpec(
        instances=3,
        provider="local",
        channel="stable",
        discovery="local",
        boot_timeout=60.0,
        keep=False,
    )


def test_ini_values_are_used_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    (pytester.path / "user-data").write_text("#cloud-config\ncoreos:\n  etcd2: {}\n")
    pytester.makeini(
        """
        [pytest]
        coreos_instances = 5
        coreos_channel = beta
        coreos_boot_timeout = 12.5
        coreos_keep = true
        coreos_user_data = user-data
        """
    )
    spec = _spec(pytester)
    assert (spec.instances, spec.channel, spec.boot_timeout, spec.keep) == (5, "beta", 12.5, True)
    assert spec.user_data == pytester.path / "user-data"
    spec = _spec(pytester, "--coreos-instances=1", "--coreos-channel=alpha")
    assert (spec.instances, spec.channel, spec.boot_timeout) == (1, "alpha", 12.5)


def test_bad_ini_value_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncoreos_instances = many\n")
    pytester.makepyfile("def test_never(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: coreos_instances (ini): 'many' is not a whole number*"])


INNER_SESSION = """
    import json, os, pytest

    def test_replication(coreos_cluster):
        coreos_cluster.etcd.set("/greeting", "hello")
        for machine in coreos_cluster.machines:
            assert machine.etcd.get("/greeting") == "hello"
            assert machine.ssh.run(["echo", machine.name]).stdout == machine.name + "\\n"

    def test_record(coreos_cluster, coreos_cluster_factory):
        with open(os.environ["RECORD"], "w") as out:
            json.dump({
                "pids": coreos_cluster.pids,
                "workdir": str(coreos_cluster.workdir),
                "root": str(coreos_cluster_factory.root),
                "size": len(coreos_cluster),
                "user_data": coreos_cluster.user_data_path.read_text(),
                "config_rb": coreos_cluster.config_rb_path.read_text(),
                "discovery_url": coreos_cluster.discovery_url,
            }, out)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1]
    except OSError:
        return False
    return not state.startswith("Z")


def test_inner_session_boots_a_real_cluster_and_leaves_nothing(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, assert_nothing_left
) -> None:
    record = inner.path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    inner.makepyfile(textwrap.dedent(INNER_SESSION))
    result = inner.runpytest_subprocess("--coreos-instances=3", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["coreos: provider local, 3 instance(s)*"])
    seen = json.loads(record.read_text())
    assert seen["size"] == 3
    assert len(seen["pids"]) == 6  # an etcd and an sshd per machine
    assert seen["user_data"].startswith("#cloud-config\n")
    assert seen["discovery_url"] in seen["user_data"]
    assert "$num_instances=3" in seen["config_rb"]
    assert not [pid for pid in seen["pids"] if _alive(pid)]
    assert not Path(seen["root"]).exists()
    assert_nothing_left(inner.path)


def test_a_boot_that_times_out_says_what_it_saw_and_leaves_nothing(
    inner: pytest.Pytester, assert_nothing_left
) -> None:
    # An "etcd" that reports a version and then never serves: boot must time out.
    fake = inner.path / "hanging-etcd"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "etcd Version: 3.5.99"; exit 0; fi\n'
        "echo pretending to start; exec sleep 600\n"
    )
    fake.chmod(0o755)
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(
        "--coreos-instances=2",
        "--coreos-boot-timeout=2",
        f"--coreos-etcd-binary={fake}",
        "--coreos-discovery=local",
    )
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "timed out after 2.0s waiting for 2 machine(s) of the cluster to be ready" in text
    assert "core-01: etcd not answering" in text
    assert "pretending to start" in text  # the tail of each etcd log is attached
    assert "failed to boot; its logs:" in text
    assert_nothing_left(inner.path)


def test_etcd_binary_missing_says_how_to_install(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(f"--coreos-etcd-binary={inner.path / 'nope'}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*etcd not found*is not an executable file*"])


def test_factory_clusters_get_their_own_addresses(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1) as one, coreos_cluster_factory(instances=2) as two:
        addresses = [m.private_ipv4 for m in one] + [m.private_ipv4 for m in two]
        assert len(set(addresses)) == 3
        one.etcd.set("/who", "one")
        two.etcd.set("/who", "two")
        assert one.etcd.get("/who") == "one"
        assert two.etcd.get("/who") == "two"
    assert not one.pids
    assert not two.pids


def test_user_data_keeps_values_as_written(inner: pytest.Pytester) -> None:
    (inner.path / "user-data").write_text(
        textwrap.dedent(
            """\
            #cloud-config
            hostname: my-host
            coreos:
              update:
                reboot-strategy: off
              etcd2:
                advertise-client-urls: http://$private_ipv4:2379
                listen-client-urls: http://0.0.0.0:2379
                initial-advertise-peer-urls: http://$private_ipv4:2380
                listen-peer-urls: http://$private_ipv4:2380
              units:
                - name: etcd2.service
                  command: start
                - name: app.service
                  command: start
            """
        )
    )
    inner.makepyfile(
        """
        def test_it(coreos_cluster):
            text = coreos_cluster.user_data_path.read_text()
            assert "reboot-strategy: 'off'" in text or 'reboot-strategy: "off"' in text
            for m in coreos_cluster:
                assert m.etcd_endpoints == ("http://%s:2379" % m.private_ipv4,)
                assert m.etcd.health()
        """
    )
    result = inner.runpytest_subprocess("--coreos-instances=2", "--coreos-user-data=user-data")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*the local provider runs only etcd and sshd; not applied from user-data: hostname,"
            " coreos.update, coreos.units (app.service)*"
        ]
    )


UNPRIVILEGED_USER = "pytest-coreos"


@dataclass
class UnprivilegedRun:
    returncode: int
    output: str
    record: str
    folder: Path
    uid: int


def run_inner_session_unprivileged(test_source: str, folder: Path) -> UnprivilegedRun:
    """Run ``test_source`` in a pytest of its own as an ordinary user: this one if it is
    not root, else the ``pytest-coreos`` user that scripts/bootstrap creates. The package
    under test is copied so that the checkout's own folder need not be readable."""
    drop: list[str] = []
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    uid = os.getuid()
    if uid == 0:
        try:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            pytest.fail(f"no user {UNPRIVILEGED_USER!r}: run scripts/bootstrap, which creates it")
        uid = user.pw_uid
        drop = ["setpriv", f"--reuid={uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    folder.chmod(0o755)
    shutil.copytree(Path(pytest_coreos.__file__).parent, folder / "src" / "pytest_coreos")
    (folder / "tmp").mkdir()
    (folder / "test_inner.py").write_text(test_source)
    (folder / "pytest.ini").write_text(INNER_INI)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, -1)
    env.update(
        PYTHONPATH=str(folder / "src"),
        TMPDIR=str(folder / "tmp"),
        RECORD=str(folder / "record.json"),
    )
    probe = subprocess.run(
        [*drop, sys.executable, "-c", "import pytest, paramiko, yaml, tenacity, requests"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"{sys.executable} and its packages must be readable by uid {uid}; "
            f"scripts/bootstrap installs them where they are:\n{probe.stderr}"
        )
    run = subprocess.run(
        [*drop, sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    record = folder / "record.json"
    return UnprivilegedRun(
        run.returncode,
        run.stdout + run.stderr,
        record.read_text() if record.exists() else "{}",
        folder,
        uid,
    )


@pytest.mark.unprivileged
def test_works_as_an_ordinary_user(tmp_path_factory, assert_nothing_left) -> None:
    folder = Path(tempfile.mkdtemp(prefix="coreos-unprivileged-"))
    try:
        result = run_inner_session_unprivileged(textwrap.dedent(INNER_SESSION), folder)
        assert result.returncode == 0, result.output
        assert result.uid != 0
        assert "2 passed" in result.output
        seen = json.loads(result.record)
        assert len(seen["pids"]) == 6
        assert not [pid for pid in seen["pids"] if _alive(pid)]
        assert_nothing_left(folder)
        assert not Path(seen["root"]).exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_keep_leaves_the_cluster_up_and_says_how_to_reach_and_remove_it(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = inner.path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    inner.makepyfile(textwrap.dedent(INNER_SESSION))
    result = inner.runpytest_subprocess("--coreos-instances=2", "--coreos-keep")
    result.assert_outcomes(passed=2)
    seen = json.loads(record.read_text())
    try:
        assert all(_alive(pid) for pid in seen["pids"])
        assert Path(seen["workdir"]).is_dir()
        text = result.stdout.str()
        assert f"cluster kept running (--coreos-keep): {seen['workdir']}" in text
        ssh_line = next(line for line in text.splitlines() if "core-01: ssh -i" in line)
        assert "etcd http://" in ssh_line
        remove = next(line for line in text.splitlines() if "remove it:" in line)
        assert "pytest --coreos-reap" in remove
        assert all(str(pid) in remove for pid in seen["pids"])
        reaped = inner.runpytest_subprocess("--coreos-reap")
        assert reaped.ret == 0
        reaped.stdout.fnmatch_lines(["coreos: reaped process *(etcd)*", "coreos: reaped *item(s)*"])
        assert not [pid for pid in seen["pids"] if _alive(pid)]
        assert not Path(seen["root"]).exists()
    finally:
        for pid in seen["pids"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(seen["root"], ignore_errors=True)


def test_an_existing_discovery_service_is_used_by_url(
    inner: pytest.Pytester, tmp_path: Path
) -> None:
    with DiscoveryService(find_etcd(), tmp_path / "discovery") as service:
        assert service.url, "etcd-discovery (discovery.etcd.io) is installed by bootstrap"
        inner.makepyfile(
            f"""
            def test_it(coreos_cluster):
                assert coreos_cluster.discovery_url.startswith("{service.url}/")
                assert len(coreos_cluster.etcd.members()) == 2
            """
        )
        result = inner.runpytest_subprocess(
            "--coreos-instances=2", f"--coreos-discovery={service.url}"
        )
        result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/nothing-here", "cannot be reached (ConnectionError)"),
        ("/v2/keys", "answered HTTP 404"),
    ],
)
def test_a_bad_discovery_url_fails_the_boot_clearly(
    inner: pytest.Pytester, tmp_path: Path, path: str, message: str, assert_nothing_left
) -> None:
    with DiscoveryService(find_etcd(), tmp_path / "discovery") as service:
        url = service.etcd_url + path if path != "/nothing-here" else "http://127.0.0.1:9"
        inner.makepyfile("def test_it(coreos_cluster):\n    pass\n")
        result = inner.runpytest_subprocess(f"--coreos-discovery={url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*DiscoveryError: discovery service {url}*{message}*"])
    assert_nothing_left(inner.path)


def test_a_failing_test_reports_each_machines_etcd_log(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_fails(coreos_cluster):
            assert coreos_cluster.etcd.get("/missing-on-purpose") == "x"
        """
    )
    result = inner.runpytest_subprocess("--coreos-instances=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- coreos cluster-1 core-01 etcd log -*",
            "workdir: *cluster-1",
            '{"level":*',
            "*- coreos cluster-1 core-02 etcd log -*",
        ]
    )


def test_hooks_change_user_data_and_see_the_ready_cluster(inner: pytest.Pytester) -> None:
    inner.makeconftest(
        """
        READY = []

        def pytest_coreos_user_data(spec, data):
            data["coreos"]["etcd"]["snapshot-count"] = 5000
            data["write_files"] = [{"path": "/etc/marker", "content": str(spec.instances)}]

        def pytest_coreos_cluster_ready(cluster):
            cluster.etcd.set("/seeded-by-hook", "yes")
            READY.append(cluster)
        """
    )
    inner.makepyfile(
        """
        import conftest

        def test_it(coreos_cluster):
            text = coreos_cluster.user_data_path.read_text()
            assert "snapshot-count: 5000" in text and "/etc/marker" in text
            env = (coreos_cluster.workdir / "machines" / "core-01" / "etcd.env").read_text()
            assert "ETCD_SNAPSHOT_COUNT=5000" in env
            assert coreos_cluster.etcd.get("/seeded-by-hook") == "yes"
            assert conftest.READY == [coreos_cluster]
        """
    )
    result = inner.runpytest_subprocess("--coreos-instances=1")
    result.assert_outcomes(passed=1)


def test_the_coreos_marker_asks_for_a_cluster_shape_shared_per_shape(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        """
        import pytest

        SEEN = {}

        @pytest.mark.coreos(instances=1)
        def test_one_a(coreos_cluster):
            assert len(coreos_cluster) == 1
            SEEN["one_a"] = coreos_cluster

        @pytest.mark.coreos(instances=1)
        def test_one_b(coreos_cluster):
            assert coreos_cluster is SEEN["one_a"]

        def test_default(coreos_cluster):
            assert len(coreos_cluster) == 2
            assert coreos_cluster is not SEEN["one_a"]
        """
    )
    result = inner.runpytest_subprocess("--coreos-instances=2", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*test_one_a[[]coreos(instances=1)[]] PASSED*"])


def test_a_bad_marker_is_a_usage_error(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.coreos(instances=0)
        def test_it(coreos_cluster):
            pass
        """
    )
    result = inner.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run
    result.stdout.fnmatch_lines(["*@pytest.mark.coreos*instances: 0 machines is out of range*"])


def test_header_and_verbose_timings(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_it(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess("--coreos-instances=2", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "coreos: provider local, 2 instance(s), channel stable, discovery local, etcd 3.*",
            "cluster-1 ready: discovery *s, config *s, spawn *s, ready *s, total *s",
            "  core-01 127.*: etcd serving after *s, ssh after *s",
        ]
    )
