"""Containers on nspawn machines, with the real Docker Engine inside each: the user-style
suite (``examples/containers/check_containers.py``) against real fleet on three machines
given the test image (built from Debian's busybox-static, without docker), the failure
report's ``docker ps -a``, a reset that removes what a test made, and nothing left on this
host afterwards: no process, no cgroup, no iptables rule, no docker bridge (root only, as
CI runs; fleet from ``$PYTEST_COREOS_FLEET``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_coreos.image.archive import busybox_image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "containers"


def host_network_state() -> tuple[str, str]:
    """This host's own iptables rules and its links: docker must change neither."""
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    names = sorted(line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines())
    kept = [name for name in names if not name.startswith(("vh", "veth"))]
    return "\n".join(r for r in rules.stdout.splitlines() if not r.startswith("#")), str(kept)


def machine_cgroups() -> set[Path]:
    """The cgroups of nspawn machines under this process's, in every hierarchy: the
    systemd ones and each cgroup v1 controller's (named for their network namespaces)."""
    found = set()
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.removeprefix("name=") or "unified"
        base = Path("/sys/fs/cgroup") / name / path.lstrip("/")
        found |= set(base.glob("pytest-coreos-*"))
    return found


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """The test image: busybox:latest, as ``docker save`` writes it."""
    return busybox_image(tmp_path / "busybox.tar")


@pytest.mark.needs_root
def test_the_containers_suite_passes_against_real_fleet_and_docker(
    inner: pytest.Pytester, assert_nothing_left, fleet_release: str, image: Path
) -> None:
    before, cgroups = host_network_state(), machine_cgroups()
    suite = inner.path / "check_containers.py"
    suite.write_text((EXAMPLE / "check_containers.py").read_text())
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn",
        "--coreos-instances=3",
        f"--coreos-fleet={fleet_release}",
        f"--coreos-images={image}",
        f"--coreos-user-data={EXAMPLE / 'user-data'}",
        "-p",
        "no:cacheprovider",
        str(suite),
    )
    result.assert_outcomes(passed=8)
    # The pull of an image no archive held: docker's error in the test, a line here.
    result.stdout.fnmatch_lines(
        ["*docker pull found no image for alpine:latest on cluster-1's machines: only the "
         "images given with --coreos-images are served*"]
    )  # fmt: skip
    assert_nothing_left(inner.path)
    assert machine_cgroups() <= cgroups
    assert host_network_state() == before


REPORT_AND_RESET = """
def test_a_test_makes_containers_volumes_and_networks(coreos_fresh_cluster):
    machine = coreos_fresh_cluster.machines[0]
    machine.ssh.run("docker network create made-by-a-test")
    machine.ssh.run("docker volume create made-by-a-test")
    machine.ssh.run("docker run -d --name sleeper -v made-by-a-test:/data busybox sleep 600")
    machine.ssh.run("docker run --name done busybox true")


def test_the_next_test_finds_none_of_them(coreos_fresh_cluster):
    machine = coreos_fresh_cluster.machines[0]
    assert coreos_fresh_cluster.last_reset in ("in place", "restore")
    assert machine.ssh.run("docker ps -aq").stdout == ""
    assert machine.ssh.run("docker volume ls -q").stdout == ""
    networks = machine.ssh.run("docker network ls --format '{{.Name}}'").stdout.split()
    assert sorted(networks) == ["bridge", "host", "none"]
    # Images stay: pulling them again would only cost time.
    assert "busybox" in machine.ssh.run("docker images --format '{{.Repository}}'").stdout


def test_images_of_other_registries_were_loaded(coreos_fresh_cluster):
    for machine in coreos_fresh_cluster:
        for image in ("registry.example.test/team/tool:1.0", "quay.io/example/oci-tool:2"):
            assert machine.ssh.run(["docker", "run", "--rm", image, "echo", "ok"]).stdout == "ok\\n"


def test_a_failing_test_shows_the_containers(coreos_fresh_cluster):
    machine = coreos_fresh_cluster.machines[0]
    machine.ssh.run("docker run --name talker busybox echo said-before-it-exited")
    raise AssertionError("the service under test misbehaved")
"""


@pytest.mark.needs_root
def test_failure_reports_show_containers_and_a_reset_removes_what_a_test_made(
    inner: pytest.Pytester, assert_nothing_left, image: Path, tmp_path: Path
) -> None:
    cgroups = machine_cgroups()
    # Names of other registries: a docker archive, and an OCI one (written by skopeo).
    other = busybox_image(tmp_path / "tool.tar", "registry.example.test/team/tool:1.0")
    oci = tmp_path / "oci-tool.tar"
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", f"docker-archive:{image}",
         f"oci-archive:{oci}:quay.io/example/oci-tool:2"],
        check=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path),
             "XDG_DATA_HOME": str(tmp_path), "_CONTAINERS_ROOTLESS_UID": "65534"},
    )  # fmt: skip
    inner.makepyfile(test_containers=REPORT_AND_RESET)
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn",
        "--coreos-instances=2",
        f"--coreos-images={image},{other}",
        f"--coreos-images={oci}",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*coreos cluster-* core-01 containers*",
            "docker ps -a on core-01:",
            "  talker  busybox  Exited (0) *",
            "docker logs --tail 20 talker:",
            "  said-before-it-exited",
        ]
    )
    assert_nothing_left(inner.path)
    assert machine_cgroups() <= cgroups


def test_the_containers_suite_is_not_collected_with_the_other_examples() -> None:
    """``pytest examples/`` runs on the default local provider, which has no docker."""
    assert not list(EXAMPLE.glob("test_*.py"))
    assert "docker pull busybox" in (EXAMPLE / "user-data").read_text()
