"""The README's samples run as written."""

from pathlib import Path

import pytest

README = (Path(__file__).parents[2] / "README.md").read_text()


def _python_block_after(heading: str) -> str:
    section = README[README.index(heading) :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.needs_root
def test_the_readme_systemd_sample_runs_as_written(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_sample=_python_block_after("## systemd units"))
    result = inner.runpytest_subprocess(
        "--coreos-provider=nspawn", "--coreos-instances=2", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)


def test_the_readme_fresh_cluster_sample_runs_as_written(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_sample=_python_block_after("## A pristine cluster for every test"))
    result = inner.runpytest_subprocess("--coreos-instances=3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
