"""The README keeps step with the code: every option and its ini twin is in its table."""

from pathlib import Path

from pytest_coreos.options import OPTIONS

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_option_is_in_the_readme_table() -> None:
    rows = [line for line in README.splitlines() if line.startswith("| `--coreos-")]
    documented = {row.split("`")[1].split("=")[0]: row for row in rows}
    assert set(documented) == {option.flag for option in OPTIONS}
    for option in OPTIONS:
        assert f"`{option.ini}`" in documented[option.flag]


def test_the_readme_gives_the_two_fresh_machine_commands() -> None:
    assert "scripts/run pytest --coreos-instances=3 examples/\n" in README
    assert "\nscripts/run pytest\n" in README
    assert "scripts/run pytest\n" in (Path(__file__).parents[2] / ".ci" / "run").read_text()
