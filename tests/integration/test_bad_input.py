"""Bad input, one table: each case stops the run with one readable message that names the
option or file and what to do, with pytest's usage-error exit code where it is one, and
leaves nothing running."""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass, field

import pytest

from pytest_coreos.host.binaries import find_etcd
from pytest_coreos.host.discovery import DiscoveryService

USAGE = pytest.ExitCode.USAGE_ERROR


def tar_of_a_text_file() -> str:
    """A tar archive of one small text file: each of its bytes is ASCII, so it is text."""
    data = b"not an image\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue().decode("ascii")


TAR_OF_A_TEXT_FILE = tar_of_a_text_file()
TEST_ERROR = pytest.ExitCode.TESTS_FAILED  # found only when a test asks for a cluster


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    exit_code: int
    message: str
    files: dict[str, str] = field(default_factory=dict)


CASES = {
    "instances 0": Case(
        ("--coreos-instances=0",),
        USAGE,
        "--coreos-instances: 0 machines is out of range (use 1 to 25*",
    ),
    "instances -1": Case(
        ("--coreos-instances=-1",), USAGE, "--coreos-instances: -1 machines is out of range*"
    ),
    "instances abc": Case(
        ("--coreos-instances=abc",),
        USAGE,
        "--coreos-instances: 'abc' is not a whole number (use 1 to 25)",
    ),
    "instances absurd": Case(
        ("--coreos-instances=100000",),
        USAGE,
        "--coreos-instances: 100000 machines is out of range*",
    ),
    "unknown provider": Case(
        ("--coreos-provider=docker",),
        USAGE,
        "--coreos-provider: unknown value 'docker' (allowed: local, vagrant, ssh, nspawn, qemu)",
    ),
    "unknown channel": Case(
        ("--coreos-channel=nightly",),
        USAGE,
        "--coreos-channel: unknown value 'nightly' (allowed: stable, beta, alpha)",
    ),
    "discovery not a URL": Case(
        ("--coreos-discovery=ftp://x",),
        USAGE,
        "--coreos-discovery: 'ftp://x' is neither a mode nor*",
    ),
    "boot timeout too small": Case(
        ("--coreos-boot-timeout=0.1",),
        USAGE,
        "--coreos-boot-timeout: 0.1 seconds is too short*at least 1*",
    ),
    "boot timeout not a number": Case(
        ("--coreos-boot-timeout=soon",),
        USAGE,
        "--coreos-boot-timeout: 'soon' is not a number of seconds",
    ),
    "user-data missing": Case(
        ("--coreos-user-data=missing.yml",), USAGE, "--coreos-user-data *missing.yml: *"
    ),
    "user-data not YAML": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: not valid YAML at line 3*",
        {"ud.yml": "#cloud-config\ncoreos: [a\n"},
    ),
    "user-data not cloud-config": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: the first line is 'coreos:', not '#cloud-config'*",
        {"ud.yml": "coreos:\n  etcd2: {}\n"},
    ),
    "user-data without coreos": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: has no coreos section*",
        {"ud.yml": "#cloud-config\nhostname: x\n"},
    ),
    "user-data without etcd": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: has neither coreos.etcd nor coreos.etcd2*",
        {"ud.yml": "#cloud-config\ncoreos:\n  update: {}\n"},
    ),
    "user-data unknown etcd key": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: unknown key in coreos.etcd2: discvery*did you mean*",
        {"ud.yml": "#cloud-config\ncoreos:\n  etcd2:\n    discvery: x\n"},
    ),
    "user-data with YAML aliases": Case(
        ("--coreos-user-data=ud.yml",),
        USAGE,
        "--coreos-user-data *ud.yml: not valid YAML at line 5, column 10: an alias (*a0): "
        "aliases are not accepted in user-data; write the value out where it is used",
        {
            # "Billion laughs": nine levels of nine aliases each, 9**9 strings once expanded.
            "ud.yml": "#cloud-config\ncoreos:\n  etcd2: {}\n"
            + "a0: &a0 [lol]\n"
            + "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 10))
        },
    ),
    "config not a format": Case(
        ("--coreos-config=yaml",),
        USAGE,
        "--coreos-config: unknown value 'yaml' (allowed: cloud-config, ignition)",
    ),
    "ignition missing": Case(
        ("--coreos-provider=nspawn", "--coreos-ignition=missing.json"),
        USAGE,
        "--coreos-ignition *missing.json: the file does not exist",
    ),
    "ignition not Ignition": Case(
        ("--coreos-provider=nspawn", "--coreos-ignition=config.json"),
        USAGE,
        "--coreos-ignition *config.json: has no ignition.version*",
        {"config.json": '{"passwd": {"users": []}}\n'},
    ),
    "ignition a cloud-config": Case(
        ("--coreos-provider=nspawn", "--coreos-ignition=user-data"),
        USAGE,
        "--coreos-ignition *user-data: not JSON*this is a cloud-config: give it with "
        "--coreos-user-data*",
        {"user-data": "#cloud-config\ncoreos:\n  etcd2: {}\n"},
    ),
    "ignition with cloud-config": Case(
        ("--coreos-provider=nspawn", "--coreos-ignition=x.ign", "--coreos-config=cloud-config"),
        USAGE,
        "--coreos-config: cloud-config does not go with --coreos-ignition*",
    ),
    "ignition with user-data": Case(
        ("--coreos-provider=nspawn", "--coreos-ignition=x.ign", "--coreos-user-data=ud.yml"),
        USAGE,
        "--coreos-ignition: cannot be given with --coreos-user-data*",
    ),
    "ignition on the local provider": Case(
        ("--coreos-ignition=x.ign",),
        USAGE,
        "--coreos-ignition: the local provider runs etcd and sshd as processes, with no "
        "systemd to apply an Ignition config*",
    ),
    "user-data Ignition cannot carry": Case(
        ("--coreos-config=ignition", "--coreos-user-data=ud.yml"),
        USAGE,
        "--coreos-user-data *ud.yml: cannot be rendered as Ignition: "
        "*unknown command 'frobnicate'*",
        {
            "ud.yml": "#cloud-config\ncoreos:\n  etcd2: {}\n  units:\n"
            "    - name: x.service\n      command: frobnicate\n"
        },
    ),
    "vagrant option not key=value": Case(
        ("--coreos-vagrant-option=uri",),
        USAGE,
        "--coreos-vagrant-option: 'uri' is not key=value with a setting's name as key*",
    ),
    "vagrant option key not a name": Case(
        ('--coreos-vagrant-option=x; system("id")=1',),
        USAGE,
        "--coreos-vagrant-option: 'x; system(\"id\")=1' is not key=value*",
    ),
    "etcd missing": Case(
        ("--coreos-etcd-binary=/nonexistent/etcd",),
        USAGE,
        "--coreos-etcd-binary: /nonexistent/etcd is not an executable file (point it at an "
        "etcd executable, or leave it out to find etcd on PATH)",
    ),
    "sshd missing": Case(
        ("--coreos-sshd-binary=/nonexistent/sshd",),
        USAGE,
        "--coreos-sshd-binary: /nonexistent/sshd is not an executable file (point it at "
        "OpenSSH's sshd, or leave it out to find sshd)",
    ),
    "etcd missing, from the ini file": Case(
        (),
        USAGE,
        "coreos_etcd_binary (ini): */nonexistent/etcd is not an executable file*",
        {
            "pytest.ini": "[pytest]\nfilterwarnings = error\n"
            "coreos_etcd_binary = /nonexistent/etcd\n"
        },
    ),
    "ssh provider's hosts with local": Case(
        ("--coreos-hosts=core@127.0.0.1",),
        USAGE,
        "--coreos-hosts: applies to the ssh provider only, not to local (leave it out, or use "
        "--coreos-provider=ssh)",
    ),
    "ssh provider's key with local": Case(
        ("--coreos-ssh-key=key",),
        USAGE,
        "--coreos-ssh-key: applies to the ssh provider only, not to local*",
    ),
    "vagrant's box with nspawn": Case(
        ("--coreos-provider=nspawn", "--coreos-box=coreos-stable"),
        USAGE,
        "--coreos-box: applies to the vagrant provider only, not to nspawn (leave it out, or "
        "use --coreos-provider=vagrant)",
    ),
    "vagrant option with local": Case(
        ("--coreos-vagrant-option=memory=1024",),
        USAGE,
        "--coreos-vagrant-option: applies to the vagrant provider only, not to local*",
    ),
    "local's sshd with nspawn": Case(
        ("--coreos-provider=nspawn", "--coreos-sshd-binary=/usr/sbin/sshd"),
        USAGE,
        "--coreos-sshd-binary: applies to the local provider only, not to nspawn*",
    ),
    "network with vagrant": Case(
        ("--coreos-provider=vagrant", "--coreos-network=netns"),
        USAGE,
        "--coreos-network: applies to the local and nspawn providers only, not to vagrant*",
    ),
    "discovery unreachable": Case(
        ("--coreos-discovery=http://127.0.0.1:9",),
        TEST_ERROR,
        "DiscoveryError: discovery service http://127.0.0.1:9: cannot be reached*",
    ),
    "images with the local provider": Case(
        ("--coreos-images=busybox.tar",),
        USAGE,
        "--coreos-images: applies to the vagrant and nspawn providers only (machines that "
        "run docker), not to local*",
    ),
    "images archive missing": Case(
        ("--coreos-provider=nspawn", "--coreos-images=missing.tar"),
        USAGE,
        "--coreos-images: */missing.tar: no such file*",
    ),
    "images archive not a tar": Case(
        ("--coreos-provider=nspawn", "--coreos-images=notes.tar"),
        USAGE,
        "--coreos-images: */notes.tar: not a tar archive*",
        files={"notes.tar": "hello, not an image\n"},
    ),
    "images archive of no image": Case(
        ("--coreos-provider=nspawn", "--coreos-images=files.tar"),
        USAGE,
        "--coreos-images: */files.tar: a tar archive, but no image archive*",
        # A tar of one text file (all of its bytes are ASCII).
        files={"files.tar": TAR_OF_A_TEXT_FILE},
    ),
    "image with the local provider": Case(
        ("--coreos-image=disk.img",),
        USAGE,
        "--coreos-image: applies to the qemu provider only, not to local*",
    ),
    "image missing": Case(
        ("--coreos-provider=qemu", "--coreos-image=missing.img"),
        USAGE,
        "--coreos-image: */missing.img is not a file (give a QEMU image*",
    ),
    "image not a disk": Case(
        ("--coreos-provider=qemu", "--coreos-image=notes.img"),
        USAGE,
        "--coreos-image: */notes.img is not a disk image (19 bytes) (give a QEMU image*",
        files={"notes.img": "hello, not a disk.\n"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(inner: pytest.Pytester, case: Case, assert_nothing_left) -> None:
    for name, text in case.files.items():
        (inner.path / name).write_text(text)
    inner.makepyfile("def test_uses(coreos_cluster):\n    pass\n")
    result = inner.runpytest_subprocess(*case.args)
    assert result.ret == case.exit_code
    if case.exit_code == USAGE:
        result.stderr.fnmatch_lines(["ERROR: " + case.message])
    else:
        result.stdout.fnmatch_lines([case.message])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert_nothing_left(inner.path)
    assert not list((inner.path / "tmp").glob("pytest-coreos-*"))


def test_a_discovery_token_answering_404_or_already_full(
    inner: pytest.Pytester, tmp_path, assert_nothing_left
) -> None:
    pytester = inner
    pytester.makepyfile("def test_uses(coreos_cluster):\n    pass\n")

    def refused(result: pytest.RunResult, message: str) -> None:
        assert result.ret == TEST_ERROR
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines([message])
        assert "Traceback" not in result.stderr.str() + result.stdout.str()

    with DiscoveryService(find_etcd(), tmp_path / "discovery") as service:
        full = service.new_cluster(1)
        first = pytester.runpytest_subprocess("--coreos-instances=1", f"--coreos-discovery={full}")
        first.assert_outcomes(passed=1)  # the token is used up by this cluster
        again = pytester.runpytest_subprocess("--coreos-instances=1", f"--coreos-discovery={full}")
        refused(
            again, f"DiscoveryError: discovery service {full}: token already has 1 of 1 members*"
        )
        wrong_size = pytester.runpytest_subprocess(
            "--coreos-instances=3", f"--coreos-discovery={service.new_cluster(1)}"
        )
        refused(
            wrong_size, "DiscoveryError: *token is for 1 members, not 3: use --coreos-instances=1"
        )
        missing = f"{service.url}/{'0' * 32}"
        gone = pytester.runpytest_subprocess(f"--coreos-discovery={missing}")
        refused(gone, f"DiscoveryError: discovery service {missing}: no such token (HTTP 404)")
    assert_nothing_left(pytester.path)
