"""Nothing lost, nothing leaked: pytest interrupted, terminated or killed outright, and
what the next run (or --coreos-reap) does about it; reusing a kept cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_coreos.host.netns import routes_taken
from pytest_coreos.session import registry as state

SLOW_TEST = """
import json, os, time

def test_hold(coreos_cluster, coreos_cluster_factory):
    with open(os.environ["RECORD"] + ".tmp", "w") as out:
        json.dump({"pids": coreos_cluster.pids, "root": str(coreos_cluster_factory.root),
                   "session": coreos_cluster_factory.session_id}, out)
    os.rename(os.environ["RECORD"] + ".tmp", os.environ["RECORD"])
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_pytest(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RECORD": str(folder / "record.json")}  # TMPDIR, state: `inner`
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell's background job ignores SIGINT, and children inherit that: Ctrl-C
        # must reach the inner pytest whatever started this one.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return json.loads(path.read_text())


@pytest.fixture
def folder(inner: pytest.Pytester) -> Path:
    inner.makepyfile(test_hold=SLOW_TEST)
    return inner.path


def _records_under(path: Path) -> list[dict]:
    return [r for r in state.read_records() if r.get("root", "").startswith(str(path))]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_pytest_tears_everything_down(folder, signum, assert_nothing_left) -> None:
    run = _start_pytest(folder)
    seen = _wait_for(folder / "record.json", run)
    assert all(_alive(pid) for pid in seen["pids"])
    run.send_signal(signum)
    output = run.communicate(timeout=60)[0]
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert not [pid for pid in seen["pids"] if _alive(pid)]
    assert not Path(seen["root"]).exists()
    assert not _records_under(folder)
    assert_nothing_left(folder)


def test_ctrl_c_during_a_boot_on_a_hanging_etcd_stand_in_leaves_nothing(
    folder, assert_nothing_left
) -> None:
    # The stand-in: a script that reports an etcd version, then never serves.
    hanging = folder / "hanging-etcd"
    hanging.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "etcd Version: 3.5.99"; exit 0; fi\n'
        'echo started > "$ETCD_DATA_DIR.started"; exec sleep 600\n'
    )
    hanging.chmod(0o755)
    run = _start_pytest(folder, f"--coreos-etcd-binary={hanging}", "--coreos-boot-timeout=120")
    deadline = time.monotonic() + 60
    while not list(
        (folder / "tmp").glob("pytest-coreos-*/cluster-1/machines/core-03/etcd.started")
    ):
        assert run.poll() is None, run.communicate()[0]
        assert time.monotonic() < deadline, "the machines never started"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    output = run.communicate(timeout=60)[0]
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert_nothing_left(folder)
    assert not [r for r in _records_under(folder) if r["clusters"]]


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


@pytest.mark.parametrize("network", ["loopback", "netns"])
def test_a_killed_pytest_is_reaped_by_the_next_run(folder, network, assert_nothing_left) -> None:
    run = _start_pytest(folder, f"--coreos-network={network}")
    seen = _wait_for(folder / "record.json", run)
    run.kill()
    run.communicate(timeout=30)
    # The kernel ends the machines with pytest (pdeathsig); the folder and the record stay.
    deadline = time.monotonic() + 10
    while [pid for pid in seen["pids"] if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in seen["pids"] if _alive(pid)]
    assert Path(seen["root"]).exists()
    assert _records_under(folder)
    # The run's own namespaces, from its record: other tests may make some meanwhile.
    own = {
        name
        for record in _records_under(folder)
        for cluster in record["clusters"].values()
        for name in cluster.get("namespaces", [])
    }
    links = {
        name
        for record in _records_under(folder)
        for cluster in record["clusters"].values()
        for name in cluster.get("host_links", [])
    }
    if network == "netns":  # namespaces and links are no process: only reaping removes them
        assert len(own) == 4
        assert own <= _namespaces()
        # The lab's link in this namespace stays too, and with it the route into the
        # lab's subnet: nothing sent there meanwhile leaves the host.
        assert len(links) == 1
        (link,) = links
        assert Path("/sys/class/net", link).exists()
        addresses = subprocess.run(
            ["ip", "-o", "-4", "addr", "show", "dev", link], capture_output=True, text=True
        ).stdout.split()
        host_address = addresses[addresses.index("inet") + 1].split("/")[0]
        unused = host_address.rsplit(".", 1)[0] + ".200"
        assert routes_taken([unused]) == {unused: link}
    else:
        assert not own
        assert not links

    (folder / "test_hold.py").write_text("def test_quick(coreos_cluster):\n    pass\n")
    second = _start_pytest(folder, "-rA")
    output = second.communicate(timeout=120)[0]
    assert second.returncode == 0, output
    assert f"reaped folder {seen['root']}" in output
    assert not Path(seen["root"]).exists()
    assert not _records_under(folder)
    assert not own & _namespaces()
    for link in links:
        assert f"reaped host link {link}" in output
        assert not Path("/sys/class/net", link).exists()
    assert_nothing_left(folder)


def test_reap_option_removes_what_a_killed_run_left(folder) -> None:
    run = _start_pytest(folder)
    seen = _wait_for(folder / "record.json", run)
    run.kill()
    run.communicate(timeout=30)
    reaped = _start_pytest(folder, "--coreos-reap")
    output = reaped.communicate(timeout=60)[0]
    assert reaped.returncode == 0, output
    assert f"coreos: reaped folder {seen['root']}" in output
    assert not Path(seen["root"]).exists()
    assert not _records_under(folder)


def test_reuse_attaches_to_a_kept_cluster_of_the_same_spec(folder, assert_nothing_left) -> None:
    (folder / "test_hold.py").write_text(
        "import json, os\n"
        "def test_record(coreos_cluster):\n"
        "    coreos_cluster.etcd.set('/runs', str(int(coreos_cluster.etcd.get('/runs')) + 1)\n"
        "                            if coreos_cluster.etcd.exists('/runs') else '1')\n"
        "    with open(os.environ['RECORD'], 'w') as out:\n"
        "        json.dump({'pids': sorted(coreos_cluster.pids),\n"
        "                   'runs': coreos_cluster.etcd.get('/runs')}, out)\n"
    )
    runs = []
    for _ in range(2):
        run = _start_pytest(folder, "--coreos-reuse", "--coreos-instances=2", "-rA")
        output = run.communicate(timeout=120)[0]
        assert run.returncode == 0, output
        runs.append((json.loads((folder / "record.json").read_text()), output))
    (first, _), (second, second_output) = runs
    assert "reusing kept cluster" in second_output
    assert second["pids"] == first["pids"]
    assert (first["runs"], second["runs"]) == ("1", "2")

    other = _start_pytest(folder, "--coreos-reuse", "--coreos-instances=1")
    output = other.communicate(timeout=120)[0]
    assert other.returncode == 0, output
    assert "reusing kept cluster" not in output  # another shape: a cluster of its own

    reaped = _start_pytest(folder, "--coreos-reap")
    output = reaped.communicate(timeout=60)[0]
    assert reaped.returncode == 0, output
    for pid in first["pids"]:  # the kept cluster's etcds and sshds, each by name
        assert f"coreos: reaped process {pid} (" in output
    assert not [pid for pid in first["pids"] if _alive(pid)]
    assert not _records_under(folder)
    assert_nothing_left(folder)
