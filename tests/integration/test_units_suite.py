"""The user-style suite of systemd units (``examples/systemd/check_units.py``) passes in
an inner session against three real nspawn containers booted from its own user-data, and
leaves nothing running (root only, as CI runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "systemd"


@pytest.mark.needs_root
def test_the_units_suite_passes_against_containers(
    inner: pytest.Pytester, assert_nothing_left
) -> None:
    suite = inner.path / "check_units.py"
    suite.write_text((EXAMPLE / "check_units.py").read_text())
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn",
        "--coreos-instances=3",
        f"--coreos-user-data={EXAMPLE / 'user-data'}",
        "-p",
        "no:cacheprovider",
        str(suite),
    )
    result.assert_outcomes(passed=4)
    assert_nothing_left(inner.path)


def test_the_units_suite_is_not_collected_with_the_other_examples() -> None:
    """``pytest examples/`` runs on the default local provider, which has no systemd."""
    assert not list(EXAMPLE.glob("test_*.py"))
    assert "hello.service" in (EXAMPLE / "user-data").read_text()
