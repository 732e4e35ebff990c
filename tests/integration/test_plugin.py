"""The plugin end to end, through pytester: help text, option resolution, usage errors,
and whole inner sessions that boot a real cluster and leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import textwrap
from pathlib import Path

import pytest

from pytest_coreos.errors import ConfigError
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
        if option.has_ini:
            assert f"ini: {option.ini}" in text
            assert f"{option.ini} (" in text  # listed among the ini options too
        else:  # an action (--coreos-reap): the command line only
            assert f"{option.ini} (" not in text


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


@pytest.fixture
def hanging_stand_in_etcd(inner: pytest.Pytester) -> Path:
    """A stand-in "etcd" script that reports a version and then never serves."""
    fake = inner.path / "hanging-etcd"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "etcd Version: 3.5.99"; exit 0; fi\n'
        "echo pretending to start; exec sleep 600\n"
    )
    fake.chmod(0o755)
    return fake


def test_a_boot_timing_out_on_a_hanging_etcd_stand_in_says_what_it_saw_and_leaves_nothing(
    inner: pytest.Pytester, hanging_stand_in_etcd: Path, assert_nothing_left
) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(
        "--coreos-instances=2",
        "--coreos-boot-timeout=2",
        f"--coreos-etcd-binary={hanging_stand_in_etcd}",
        "--coreos-discovery=local",
    )
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "timed out after 2.0s waiting for 2 machine(s) of the cluster to be ready" in text
    assert "core-01: etcd not answering" in text
    assert "pretending to start" in text  # the tail of each etcd log is attached
    assert "failed to boot; its logs:" in text
    assert_nothing_left(inner.path)


def test_a_failed_boot_with_a_hanging_stand_in_etcd_is_shown_once_then_pointed_at(
    inner: pytest.Pytester, hanging_stand_in_etcd: Path, assert_nothing_left
) -> None:
    inner.makepyfile(
        "\n".join(f"def test_{n}(coreos_cluster):\n    pass\n" for n in ("a", "b", "c"))
    )
    result = inner.runpytest_subprocess(
        "--coreos-instances=1",
        "--coreos-boot-timeout=1",
        f"--coreos-etcd-binary={hanging_stand_in_etcd}",
    )
    result.assert_outcomes(errors=3)
    # The errors themselves (pytest's short summary after them may quote the first whole,
    # as it does where $CI is set).
    text = result.stdout.str().split("= ERRORS =")[1].split("short test summary info")[0]
    assert text.count("pretending to start") == 1  # the log tail, once
    assert text.count("timed out after 1.0s waiting for") == 3
    pointers = [line for line in text.splitlines() if "(shown in full at " in line]
    assert len(pointers) == 2
    assert all(line.endswith("::test_a)") for line in pointers)
    assert_nothing_left(inner.path)


def test_a_failed_boots_logs_outlive_later_sessions_with_a_hanging_stand_in_etcd(
    inner: pytest.Pytester, hanging_stand_in_etcd: Path
) -> None:
    """The workdir of a boot that failed stays, with its logs, until --coreos-reap or
    until it is a week old; later sessions leave it alone."""
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    failed = inner.runpytest_subprocess(
        "--coreos-instances=1",
        "--coreos-boot-timeout=1",
        f"--coreos-etcd-binary={hanging_stand_in_etcd}",
    )
    failed.assert_outcomes(errors=1)
    (line,) = [line for line in failed.stdout.lines if "failed to boot; its logs: " in line]
    assert line.endswith("(kept for 7 days, or until pytest --coreos-reap)")
    workdir = Path(line.split("its logs: ")[1].split(" (kept")[0])
    assert (workdir / "machines" / "core-01" / "etcd.log").read_text().strip()
    later = inner.runpytest_subprocess("--coreos-instances=1")  # a session that boots
    later.assert_outcomes(passed=1)
    assert "reaped" not in later.stdout.str()
    assert workdir.is_dir()

    (record_file,) = (inner.path / "state").glob("*.json")
    record = json.loads(record_file.read_text())
    record["failed_boot_at"] -= 8 * 86400  # a week and a day ago
    record_file.write_text(json.dumps(record))
    aged = inner.runpytest_subprocess("--coreos-instances=1")
    aged.assert_outcomes(passed=1)
    aged.stdout.fnmatch_lines([f"*reaped folder {workdir.parent}*"])
    assert not workdir.exists()


FAILED_AFTER_A_GOOD_ONE = """
import os
from pathlib import Path

import pytest

from pytest_coreos.errors import BootTimeoutError


def test_a_good_cluster(coreos_cluster_factory):
    cluster = coreos_cluster_factory(instances=1)
    Path(os.environ["GOOD"]).write_text(str(cluster.workdir))
    assert (cluster.workdir / "machines" / "core-01" / "etcd").is_dir()


def test_a_failed_boot(coreos_cluster_factory):
    with pytest.raises(BootTimeoutError):
        coreos_cluster_factory(
            instances=1, etcd_binary=Path(os.environ["HANGING"]), boot_timeout=1.0
        )
"""


def test_a_failed_boot_keeps_its_own_folder_not_the_sessions_other_clusters(
    inner: pytest.Pytester, hanging_stand_in_etcd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session folder stays for the failed boot's logs; the folders of its clusters
    that booted and ended (their etcd data: 64 MiB of WAL per member) go at once."""
    good = inner.path / "good.txt"
    monkeypatch.setenv("GOOD", str(good))
    monkeypatch.setenv("HANGING", str(hanging_stand_in_etcd))
    inner.makepyfile(FAILED_AFTER_A_GOOD_ONE)
    result = inner.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    (line,) = [line for line in result.stdout.lines if "failed to boot; its logs: " in line]
    failed = Path(line.split("its logs: ")[1].split(" (kept")[0])
    assert (failed / "machines" / "core-01" / "etcd.log").read_text().strip()
    good_workdir = Path(good.read_text())
    assert good_workdir.parent == failed.parent  # one session folder
    assert not good_workdir.exists()
    assert failed.parent.is_dir()


def test_reap_removes_a_failed_boots_logs_with_a_hanging_stand_in_etcd(
    inner: pytest.Pytester, hanging_stand_in_etcd: Path
) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    inner.runpytest_subprocess(
        "--coreos-instances=1",
        "--coreos-boot-timeout=1",
        f"--coreos-etcd-binary={hanging_stand_in_etcd}",
    ).assert_outcomes(errors=1)
    (folder,) = (inner.path / "tmp").glob("pytest-coreos-*")
    reaped = inner.runpytest_subprocess("--coreos-reap")
    assert reaped.ret == 0
    reaped.stdout.fnmatch_lines([f"coreos: reaped folder {folder}"])
    assert not folder.exists()


def test_etcd_binary_missing_is_a_usage_error_before_any_test(inner: pytest.Pytester) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(f"--coreos-etcd-binary={inner.path / 'nope'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --coreos-etcd-binary: */nope is not an executable file*"])
    assert "test_uses" not in result.stdout.str()


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


@pytest.mark.unprivileged
def test_works_as_an_ordinary_user(run_unprivileged, assert_nothing_left) -> None:
    result = run_unprivileged(INNER_SESSION)
    assert result.returncode == 0, result.output
    assert result.uid != 0
    assert "2 passed" in result.output
    seen = json.loads(result.record)
    assert len(seen["pids"]) == 6
    assert not [pid for pid in seen["pids"] if _alive(pid)]
    assert_nothing_left(result.folder)
    assert not Path(seen["root"]).exists()


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
        ssh_line = next(line for line in text.splitlines() if "core-01: ssh -F" in line)
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


def _report_section(lines: list[str], title: str) -> list[str]:
    """The body of the report section called ``title`` in a pytest run's output."""
    start = next(i for i, line in enumerate(lines) if f" {title} " in line and line[0] == "-")
    body = []
    for line in lines[start + 1 :]:
        if line[:3] in ("---", "===", "___"):
            break
        body.append(line)
    return body


def test_a_failing_test_reports_each_machines_etcd_log(inner: pytest.Pytester) -> None:
    """Each machine's section holds the workdir and the tail of that member's own etcd log,
    whatever etcd's log format (3.4 writes text, 3.5 JSON). The cluster is kept so that its
    log files can be read afterwards."""
    inner.makepyfile(
        """
        def test_fails(coreos_cluster):
            assert coreos_cluster.etcd.get("/missing-on-purpose") == "x"
        """
    )
    result = inner.runpytest_subprocess("--coreos-instances=2", "--coreos-keep")
    try:
        result.assert_outcomes(failed=1)
        tails = {}
        for name in ("core-01", "core-02"):
            workdir_line, *tail = _report_section(
                result.stdout.lines, f"coreos cluster-1 {name} etcd log"
            )
            assert workdir_line.startswith("workdir: ")
            workdir = Path(workdir_line.removeprefix("workdir: "))
            assert workdir.name == "cluster-1"
            tails[name] = (workdir, tail)
        for name, (workdir, tail) in tails.items():
            assert tail, f"{name}: the etcd log section is empty"
            own = (workdir / "machines" / name / "etcd.log").read_text().splitlines()
            # The tail is a run of consecutive lines of the member's own log (which may
            # have grown since), and of no other member's.
            assert any(own[i : i + len(tail)] == tail for i in range(len(own))), name
            for other in tails.keys() - {name}:
                theirs = (workdir / "machines" / other / "etcd.log").read_text().splitlines()
                assert not any(theirs[i : i + len(tail)] == tail for i in range(len(theirs)))
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0


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


BAD_MARKERS = """
    import pytest

    @pytest.mark.coreos(instances=30)
    def test_too_many(coreos_cluster):
        pass

    @pytest.mark.coreos(nope=1)
    def test_unknown_keyword(coreos_cluster):
        pass

    @pytest.mark.coreos(3)
    def test_positional(coreos_cluster):
        pass

    def test_unmarked():
        pass
"""


def test_a_bad_marker_fails_only_its_tests_with_one_line(inner: pytest.Pytester) -> None:
    inner.makepyfile(BAD_MARKERS)
    result = inner.runpytest_subprocess("-rE")
    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_too_many*",
            "BadMarker: @pytest.mark.coreos(instances=30): instances: 30 machines is out of range*",
            "*ERROR at setup of test_unknown_keyword*",
            "BadMarker: @pytest.mark.coreos(nope=1): nope: unknown keyword of a cluster's "
            "shape (allowed: instances, provider, *)",
            "*ERROR at setup of test_positional*",
            "BadMarker: @pytest.mark.coreos(3): takes keywords only*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "pluggy/_" not in result.stdout.str()  # no traceback through pytest's hooks


def test_a_bad_marker_on_a_deselected_test_changes_nothing(inner: pytest.Pytester) -> None:
    inner.makepyfile(BAD_MARKERS)
    result = inner.runpytest_subprocess("-k", "unmarked")
    result.assert_outcomes(passed=1, deselected=3)


def test_an_unknown_factory_keyword_lists_the_allowed_ones(coreos_cluster_factory) -> None:
    with pytest.raises(ConfigError, match=r"nope: unknown keyword .*\(allowed: instances, "):
        coreos_cluster_factory(instances=1, nope=1)


def test_a_bad_ini_boolean_names_the_ini_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncoreos_keep = maybe\n")
    pytester.makepyfile("def test_never(): pass")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: coreos_keep (ini): 'maybe' is not true or false*"])


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


def test_reap_is_an_action_with_no_ini_twin(inner: pytest.Pytester) -> None:
    """``coreos_reap = true`` in an ini file is not a setting pytest-coreos has: pytest
    says so, and nothing is reaped."""
    (inner.path / "pytest.ini").write_text("[pytest]\ncoreos_reap = true\n")
    inner.makepyfile("def test_runs(): pass")
    result = inner.runpytest_subprocess("-W", "default::pytest.PytestConfigWarning")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*Unknown config option: coreos_reap*"])
    assert "coreos: reaped" not in result.stdout.str()


def test_the_seeds_own_user_data_brings_no_notice_but_the_users_does(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    seed = inner.runpytest_subprocess("--coreos-instances=1")
    seed.assert_outcomes(passed=1)
    assert "not applied from user-data" not in seed.stdout.str()
    (inner.path / "user-data").write_text(
        "#cloud-config\ncoreos:\n  etcd2: {}\n  fleet:\n    public-ip: $public_ipv4\n"
    )
    own = inner.runpytest_subprocess("--coreos-instances=1", "--coreos-user-data=user-data")
    own.assert_outcomes(passed=1)
    own.stdout.fnmatch_lines(["*not applied from user-data: coreos.fleet*"])


def test_a_failing_test_reports_no_cluster_its_with_block_closed(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        """
        def test_fails(coreos_cluster_factory):
            with coreos_cluster_factory(instances=1) as cluster:
                cluster.etcd.set("/k", "v")
            assert False, "after the cluster is gone"
        """
    )
    result = inner.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    assert "etcd log" not in result.stdout.str()
