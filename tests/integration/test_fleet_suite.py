"""The user-style fleet suite (``examples/fleet/check_fleet.py``) passes in an inner
session against real fleet v1.0.0 on three nspawn containers booted from the seed's
user-data (plus fleet metadata and a short agent TTL), and leaves nothing running (root
only, as CI runs; the release comes from ``$PYTEST_COREOS_FLEET``)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet"


@pytest.mark.needs_root
def test_the_fleet_suite_passes_against_real_fleet_in_containers(
    inner: pytest.Pytester, assert_nothing_left, fleet_release: str
) -> None:
    suite = inner.path / "check_fleet.py"
    suite.write_text((EXAMPLE / "check_fleet.py").read_text())
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn",
        "--coreos-instances=3",
        f"--coreos-fleet={fleet_release}",
        f"--coreos-user-data={EXAMPLE / 'user-data'}",
        "-p",
        "no:cacheprovider",
        "-s",
        str(suite),
    )
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["*.service moved from core-0* to * after *s"])
    assert_nothing_left(inner.path)


def test_the_fleet_suite_is_not_collected_with_the_other_examples() -> None:
    """``pytest examples/`` runs on the default local provider, which has no fleet."""
    assert not list(EXAMPLE.glob("test_*.py"))
    assert "agent-ttl" in (EXAMPLE / "user-data").read_text()


def test_without_a_fleet_release_fleet_tests_skip_saying_how_to_give_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_COREOS_FLEET", raising=False)
    pytester.makeconftest((EXAMPLE.parents[1] / "conftest.py").read_text())
    pytester.makepyfile("def test_needs_fleet(fleet_release):\n    assert fleet_release\n")
    result = pytester.runpytest("-rs", "-vv")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * no fleet to test against: set PYTEST_COREOS_FLEET to fleet's v1.0.0 "
            "release tarball (fleet-v1.0.0-linux-amd64.tar.gz, from "
            "github.com/coreos/fleet/releases), its URL, or a folder holding fleetd and fleetctl"
        ]
    )
