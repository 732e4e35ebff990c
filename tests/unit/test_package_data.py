"""Every file the package ships that is not a Python module is named in pyproject.toml's
package-data: a file left out is missing from the wheel, and a machine built from the
installed package then lacks it (build-box installs the agent's files from there)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

# The checkout's source, not the installed package: package-data decides what a wheel
# built from this checkout holds (the suite runs against an installed wheel too).
REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "pytest_coreos"
PYPROJECT = REPO / "pyproject.toml"


def data_files() -> list[str]:
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    )


def test_every_data_file_of_the_package_is_in_its_package_data() -> None:
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"][
        "pytest_coreos"
    ]
    files = data_files()
    assert "image/build-box" in files
    missing = [name for name in files if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert missing == [], f"add these to [tool.setuptools.package-data] in {PYPROJECT}"
