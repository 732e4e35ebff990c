"""The ssh provider attaches to machines that really run: a cluster kept by one pytest
run, then a second run that boots nothing and runs the same user test file over SSH."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_coreos.handles.etcd import EtcdClient

EXAMPLES = Path(__file__).parents[2] / "examples" / "test_etcd_cluster.py"


KEEP_AND_DESCRIBE = """
import json, os

def test_describe(coreos_cluster):
    with open(os.environ["RECORD"], "w") as out:
        json.dump({
            "hosts": [f"{m.ssh.username}@{m.private_ipv4}:{m.ssh.port}" for m in coreos_cluster],
            "key": str(coreos_cluster.workdir.parent / "id_ed25519"),
            "host_keys": [
                (m.private_ipv4, m.ssh.port,
                 (coreos_cluster.workdir / "machines" / m.name / "ssh_host_ed25519_key.pub")
                 .read_text().split()[:2])
                for m in coreos_cluster
            ],
            "endpoints": [url for m in coreos_cluster for url in m.etcd_endpoints],
            "pids": coreos_cluster.pids,
        }, out)
"""


@pytest.fixture
def kept(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """A 3-machine cluster kept running by an inner pytest run, reaped afterwards."""
    record = inner.path / "record.json"
    monkeypatch.setenv("RECORD", str(record))
    inner.makepyfile(test_keep=KEEP_AND_DESCRIBE)
    inner.runpytest_subprocess("--coreos-instances=3", "--coreos-keep").assert_outcomes(passed=1)
    (inner.path / "test_keep.py").unlink()
    yield json.loads(record.read_text())
    assert inner.runpytest_subprocess("--coreos-reap").ret == 0


def _known_hosts(path: Path, host_keys) -> Path:
    lines = [
        f"{host if port == 22 else f'[{host}]:{port}'} {kind} {blob}\n"
        for host, port, (kind, blob) in host_keys
    ]
    path.write_text("".join(lines))
    return path


def test_the_user_test_file_passes_against_attached_machines(
    inner: pytest.Pytester, kept: dict
) -> None:
    known_hosts = _known_hosts(inner.path / "known_hosts", kept["host_keys"])
    inner.makepyfile(test_examples=EXAMPLES.read_text())
    result = inner.runpytest_subprocess(
        "--coreos-provider=ssh",
        f"--coreos-hosts={','.join(kept['hosts'])}",
        f"--coreos-ssh-key={kept['key']}",
        f"--coreos-known-hosts={known_hosts}",
        "-rs",
    )
    result.assert_outcomes(passed=6, skipped=1)
    result.stdout.fnmatch_lines(["*faults on attached machines need --coreos-allow-faults*"])
    with EtcdClient(kept["endpoints"]) as etcd:
        assert len(etcd.members()) == 3  # still running: nothing was destroyed
        assert not etcd.exists("/pytest-coreos") or not etcd.ls("/pytest-coreos", recursive=True)


def test_an_unknown_host_key_is_refused(inner: pytest.Pytester, kept: dict) -> None:
    other = [
        (host, port, ("ssh-ed25519", kept["host_keys"][0][2][1]))
        for host, port, _ in kept["host_keys"][1:]
    ]
    known_hosts = _known_hosts(inner.path / "known_hosts", other)  # core-01 not in it
    inner.makepyfile("def test_it(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(
        "--coreos-provider=ssh",
        f"--coreos-hosts={','.join(kept['hosts'])}",
        f"--coreos-ssh-key={kept['key']}",
        f"--coreos-known-hosts={known_hosts}",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*host key*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--coreos-provider=ssh"], "--coreos-hosts: the ssh provider needs the machines*"),
        (
            ["--coreos-provider=ssh", "--coreos-hosts=core@10.0.0.1"],
            "--coreos-ssh-key: the ssh provider needs a private key*",
        ),
        (
            ["--coreos-provider=ssh", "--coreos-hosts=core@10.0.0.1,x y"],
            "--coreos-hosts: 'x y' is not user@host[[]:port[]]*",
        ),
    ],
)
def test_attach_needs_hosts_and_a_key(inner: pytest.Pytester, args, message) -> None:
    inner.makepyfile("def test_it(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


# -- what a kept cluster prints: the user's own ssh client and a second run -----------------

REACH_LINE = re.compile(r"^\s+(core-\d+): ((?:.* )?ssh -F (\S+) core-\d+); etcd (\S+)$")
ATTACH_LINE = re.compile(r"^\s+attach another run: (.+)$")


def _kept_summary(inner: pytest.Pytester, *args: str) -> tuple[dict[str, list[str]], list[str]]:
    """Keep a 3-machine cluster with ``args`` and return what its summary prints: each
    machine's ssh command, and the attach command, as argument lists."""
    inner.makepyfile(test_keep="def test_keep(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess("--coreos-instances=3", "--coreos-keep", *args)
    result.assert_outcomes(passed=1)
    (inner.path / "test_keep.py").unlink()
    reach = {}
    attach = []
    for line in result.stdout.lines:
        if found := REACH_LINE.match(line):
            name, command, ssh_config, _ = found.groups()
            assert Path(ssh_config).is_file()
            assert (Path(ssh_config).parent / "known_hosts").is_file()
            reach[name] = shlex.split(command)
        elif found := ATTACH_LINE.match(line):
            attach = shlex.split(found.group(1))
    assert sorted(reach) == ["core-01", "core-02", "core-03"], result.stdout.str()
    assert attach, result.stdout.str()
    return reach, attach


def _batch(command: list[str]) -> list[str]:
    """The printed ssh command, never prompting (a missing or wrong host key fails)."""
    at = command.index("ssh") + 1
    return [*command[:at], "-o", "BatchMode=yes", *command[at:]]


def _run_attach_line(inner: pytest.Pytester, attach: list[str]) -> subprocess.CompletedProcess:
    """The printed attach command, run as printed on the example suite (``pytest`` being
    this interpreter's)."""
    inner.makepyfile(test_examples=EXAMPLES.read_text())
    at = attach.index("pytest")
    command = [*attach[:at], sys.executable, "-m", "pytest", *attach[at + 1 :]]
    return subprocess.run(
        [*command, "-p", "no:cacheprovider", "test_examples.py"],
        cwd=inner.path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_kept_cluster_prints_ssh_commands_and_an_attach_line_that_work(
    inner: pytest.Pytester,
) -> None:
    try:
        reach, attach = _kept_summary(inner)
        for name, command in reach.items():
            assert command[0] == "ssh"
            done = subprocess.run(
                [*_batch(command), "echo", name], capture_output=True, text=True, timeout=30
            )
            assert (done.returncode, done.stdout, done.stderr) == (0, f"{name}\n", "")
        ran = _run_attach_line(inner, attach)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "6 passed, 1 skipped" in ran.stdout
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0


def test_a_changed_host_key_stops_the_printed_ssh_command(inner: pytest.Pytester) -> None:
    """The ssh_config checks host keys strictly, against the cluster's own known_hosts."""
    try:
        reach, _ = _kept_summary(inner)
        ssh_config = Path(reach["core-01"][reach["core-01"].index("-F") + 1])
        known_hosts = ssh_config.parent / "known_hosts"
        lines = known_hosts.read_text().splitlines()
        other_key = lines[1].split()[2]  # core-02's key filed under core-01's name
        known_hosts.write_text("\n".join([" ".join([*lines[0].split()[:2], other_key])]) + "\n")
        done = subprocess.run(
            [*_batch(reach["core-01"]), "true"], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 255
        assert "host key" in done.stderr.lower()
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0


@pytest.mark.needs_root("network namespaces")
def test_a_kept_cluster_in_network_namespaces_prints_commands_run_in_its_lab(
    inner: pytest.Pytester,
) -> None:
    try:
        reach, attach = _kept_summary(inner, "--coreos-network=netns")
        for name, command in reach.items():
            assert command[:3] == ["ip", "netns", "exec"]
            done = subprocess.run(
                [*_batch(command), "hostname"], capture_output=True, text=True, timeout=30
            )
            assert (done.returncode, done.stdout, done.stderr) == (0, f"{name}\n", "")
        assert attach[:3] == ["ip", "netns", "exec"]
        ran = _run_attach_line(inner, attach)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "6 passed, 1 skipped" in ran.stdout
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0


def test_reuse_leaves_no_session_folder_of_its_own_and_says_discovery_ended(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    try:
        first = inner.runpytest_subprocess("--coreos-instances=1", "--coreos-reuse")
        first.assert_outcomes(passed=1)
        (kept,) = (inner.path / "tmp").glob("pytest-coreos-*")
        second = inner.runpytest_subprocess("--coreos-instances=1", "--coreos-reuse")
        second.assert_outcomes(passed=1)
        second.stdout.fnmatch_lines(
            [
                f"reusing kept cluster {kept}/cluster-1 (its discovery URL http*//* is no "
                "longer served: that service ended with the session that booted it)"
            ]
        )
        assert list((inner.path / "tmp").glob("pytest-coreos-*")) == [kept]
        third = inner.runpytest_subprocess("--coreos-instances=1", "--coreos-reuse")
        third.assert_outcomes(passed=1)
        assert "reaped" not in third.stdout.str()
    finally:
        assert inner.runpytest_subprocess("--coreos-reap").ret == 0
