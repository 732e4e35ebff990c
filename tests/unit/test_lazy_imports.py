"""Installing the plugin costs a run that asks for no cluster (almost) nothing: importing
it loads neither paramiko, requests nor yaml, nor the providers; they load when a
fixture, an option value or an attribute first needs them. (How long that takes is
measured in benchmarks/plugin_overhead.py, not asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("paramiko", "requests", "yaml", "vagrant", "tenacity", "urllib3", "cryptography")


def loaded_after(code: str) -> list[str]:
    """The modules loaded in a fresh interpreter after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_plugin_loads_nothing_heavy_and_no_provider() -> None:
    modules = loaded_after("import pytest_coreos.plugin")
    assert "pytest_coreos.plugin" in modules
    assert [m for m in modules if m.partition(".")[0] in HEAVY] == []
    assert [m for m in modules if m.startswith("pytest_coreos.providers.")] == []
    assert [
        m for m in modules if m.startswith(("pytest_coreos.handles", "pytest_coreos.session"))
    ] == []


def test_a_public_name_loads_what_it_needs_on_first_use() -> None:
    modules = loaded_after("import pytest_coreos\nassert pytest_coreos.CoreOSError")
    assert "pytest_coreos.errors" in modules
    assert "paramiko" not in modules
    modules = loaded_after("from pytest_coreos import Cluster, Machine, EtcdClient")
    assert {"pytest_coreos.handles.cluster", "paramiko", "requests"} <= set(modules)


def test_the_public_names_are_all_there() -> None:
    import pytest_coreos

    for name in pytest_coreos.__all__:
        assert getattr(pytest_coreos, name).__name__ == name
    assert set(pytest_coreos.__all__) <= set(dir(pytest_coreos))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        pytest_coreos.Nothing  # noqa: B018


def test_a_run_without_a_cluster_loads_no_ssh_http_or_yaml(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    assert True\n")
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    heavy = sorted(m for m in sys.modules if m.partition('.')[0] in "
        f"{HEAVY!r})\n"
        "    print('HEAVY', heavy)\n"
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["coreos: provider local*"])
    assert "HEAVY []" in result.stdout.str()
