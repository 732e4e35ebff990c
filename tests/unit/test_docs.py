"""The README keeps step with the code: every option, its ini twin and its default are in
its table as the option definitions give them (its samples run in
tests/integration/test_readme_samples.py)."""

import re
from pathlib import Path

import pytest

from pytest_coreos.options import OPTIONS

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _table() -> dict[str, list[str]]:
    """The options table: each flag's cells (flag, ini, default, meaning)."""
    rows = [line for line in README.splitlines() if line.startswith("| `--coreos-")]
    return {row.split("`")[1].split("=")[0]: row.strip("| ").split(" | ") for row in rows}


def test_every_option_is_in_the_readme_table() -> None:
    table = _table()
    assert set(table) == {option.flag for option in OPTIONS}
    for option in OPTIONS:
        ini = table[option.flag][1]
        assert ini == (f"`{option.ini}`" if option.has_ini else "none: an action, not a setting")


def test_the_readme_table_gives_each_default_as_the_option_defines_it() -> None:
    table = _table()
    for option in OPTIONS:
        assert table[option.flag][2] == option.default_text, option.flag


def test_help_says_each_default_once_in_words(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    lines = result.stdout.lines
    assert "default: None" not in re.sub(r"\s+", " ", result.stdout.str())
    for option in OPTIONS:
        start = next(
            i for i, line in enumerate(lines) if re.match(rf"  {option.flag}(=\S+)?(\s|$)", line)
        )
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("    "))
        entry = re.sub(r"\s+", " ", " ".join(lines[start:end]))
        assert entry.count("(default:") == 1, entry
        assert f"(default: {option.default_text.replace('`', '')};" in entry, entry


def test_the_readme_gives_the_two_fresh_machine_commands() -> None:
    assert "scripts/run pytest --coreos-instances=3 examples/\n" in README
    assert "\nscripts/run pytest\n" in README
    assert "scripts/run pytest\n" in (ROOT / ".ci" / "run").read_text()
