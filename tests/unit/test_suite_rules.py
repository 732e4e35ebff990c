"""The suite's own rules, checked on its source (Python's ``ast``), so that a test that
cannot fail does not come back unnoticed:

- no ``pytest.raises(Exception)`` or ``pytest.raises(BaseException)`` (alone or in a
  tuple): any error at all, a typo's NameError included, would pass such a check;
- every test function checks something. It does when its body (nested functions and
  lambdas included) has an ``assert``, or calls ``pytest.raises``, ``pytest.fail``,
  ``pytest.warns``, a pytester result check (``assert_outcomes``, ``fnmatch_lines``,
  ``re_match_lines``, ``no_fnmatch_line``, ``no_re_match_line``, ``assertoutcome``), any
  callable whose name starts with ``assert`` (such as the ``assert_nothing_left``
  fixture), or a function of the same module that checks something by this same rule.

Test functions are the ``test_*`` functions, at module level or in ``Test*`` classes, of
every Python file under ``tests/`` and ``examples/``, inner-session modules included.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
SCANNED = ("tests", "examples")
CHECK_CALLS = {
    "raises",
    "fail",
    "warns",
    "deprecated_call",
    "assert_outcomes",
    "fnmatch_lines",
    "re_match_lines",
    "no_fnmatch_line",
    "no_re_match_line",
    "assertoutcome",
}
TOO_BROAD = {"Exception", "BaseException"}


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_pytest_raises(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return (
            func.attr == "raises"
            and isinstance(func.value, ast.Name)
            and (func.value.id == "pytest")
        )
    return isinstance(func, ast.Name) and func.id == "raises"


def _exception_names(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Tuple):
        for element in node.elts:
            yield from _exception_names(element)
    elif isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "builtins":
        yield node.attr  # not pytest.fail.Exception, a class of its own


def find_too_broad_raises(source: str, filename: str = "<source>") -> list[str]:
    """``file:line`` of each ``pytest.raises`` of Exception or BaseException."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and _is_pytest_raises(node):
            expected = node.args[0] if node.args else None
            for keyword in node.keywords:
                if keyword.arg == "expected_exception":
                    expected = keyword.value
            if expected is not None and TOO_BROAD & set(_exception_names(expected)):
                found.append((node.lineno, f"pytest.raises({ast.unparse(expected)})"))
    return [f"{filename}:{line}: {text}" for line, text in sorted(found)]


def _module_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _test_functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("test"):
                yield node
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    member.name.startswith("test")
                ):
                    yield member


def _checks(
    function: ast.AST,
    helpers: dict[str, ast.FunctionDef | ast.AsyncFunctionDef],
    visiting: set[str],
) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Assert):
            return True
        if not isinstance(node, ast.Call):
            continue
        name = _called_name(node)
        if name is None:
            continue
        if name in CHECK_CALLS or name.startswith("assert"):
            return True
        helper = helpers.get(name) if isinstance(node.func, ast.Name) else None
        if helper is None or name in visiting:
            continue
        if _checks(helper, helpers, {*visiting, name}):
            return True
    return False


def find_tests_without_a_check(source: str, filename: str = "<source>") -> list[str]:
    """``file:line name`` of each test function that checks nothing (see above)."""
    tree = ast.parse(source, filename)
    helpers = _module_functions(tree)
    return [
        f"{filename}:{test.lineno} {test.name}"
        for test in _test_functions(tree)
        if not _checks(test, helpers, {test.name})
    ]


def _sources() -> Iterator[tuple[str, str]]:
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            yield str(path.relative_to(REPO)), path.read_text()


def test_the_rules_scan_this_suite() -> None:
    names = {Path(name).name for name, _ in _sources()}
    assert {"test_suite_rules.py", "test_etcd_cluster.py", "vagrant_machines.py"} <= names


def test_no_test_expects_any_exception_at_all() -> None:
    found = [line for name, source in _sources() for line in find_too_broad_raises(source, name)]
    assert not found, "name the exception expected instead:\n" + "\n".join(found)


def test_every_test_checks_something() -> None:
    found = [
        line for name, source in _sources() for line in find_tests_without_a_check(source, name)
    ]
    assert not found, "tests without an assertion or outcome check:\n" + "\n".join(found)


# -- the rules themselves, on small sources ----------------------------------------------------
BROAD = """
import pytest
from pytest import raises

def test_a():
    with pytest.raises(Exception, match="x"):
        pass

def test_b():
    with raises((ValueError, BaseException)):
        pass

def test_c():
    pytest.raises(expected_exception=builtins.Exception)

def test_d():
    with pytest.raises(ValueError):
        pass
    with pytest.raises(ExceptionGroup):
        pass
"""


def test_too_broad_raises_are_found_alone_in_tuples_and_by_keyword() -> None:
    assert find_too_broad_raises(BROAD) == [
        "<source>:6: pytest.raises(Exception)",
        "<source>:10: pytest.raises((ValueError, BaseException))",
        "<source>:14: pytest.raises(builtins.Exception)",
    ]


CHECKS = """
import pytest

def check_reply(reply):
    assert reply == "ok"

def indirectly(reply):
    check_reply(reply)

def loops(reply):
    return loops(reply)

def test_asserts():
    assert 1

def test_raises():
    with pytest.raises(ValueError):
        int("x")

def test_fails_when_told():
    if False:
        pytest.fail("never")

def test_outcomes(pytester):
    pytester.runpytest().assert_outcomes(passed=1)

def test_lines(pytester):
    pytester.runpytest().stdout.fnmatch_lines(["*"])

def test_fixture_that_asserts(assert_nothing_left, tmp_path):
    assert_nothing_left(tmp_path)

def test_helper_two_calls_away():
    indirectly("ok")

def test_nested_function():
    def inner():
        assert True
    inner()

def test_nothing():
    print("no check")

def test_only_a_recursive_helper():
    loops("x")

def test_skips_only():
    pytest.skip("nothing checked")

class TestGroup:
    def test_method_without_check(self):
        int("1")

    def helper(self):
        pass
"""


def test_tests_without_a_check_are_found_and_helpers_count() -> None:
    assert find_tests_without_a_check(textwrap.dedent(CHECKS)) == [
        "<source>:41 test_nothing",
        "<source>:44 test_only_a_recursive_helper",
        "<source>:47 test_skips_only",
        "<source>:51 test_method_without_check",
    ]
