"""The ssh provider attaches to machines that really run: a cluster kept by one pytest
run, then a second run that boots nothing and runs the same user test file over SSH."""

from __future__ import annotations

import json
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
