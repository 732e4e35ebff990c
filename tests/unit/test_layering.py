"""The package's imports run one way: plugin -> session -> providers -> handles ->
config/host -> errors, with no circle. Read from the source with ``ast``: module-level
and function-level imports count, and so do the package's own modules loaded through
importlib (named in a string, as the provider registry and the lazy public API do);
imports under ``if TYPE_CHECKING:`` do not."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import pytest_coreos

PACKAGE = Path(pytest_coreos.__file__).parent
LAYERS = ("plugin", "session", "providers", "handles", "config/host", "errors")
# Each module's layer, by the first match of its dotted name's prefix.
RANKS = {
    "pytest_coreos.plugin": 0,
    "pytest_coreos.hooks": 0,
    "pytest_coreos.session": 1,
    "pytest_coreos.options": 1,
    "pytest_coreos.providers": 2,
    "pytest_coreos.handles": 3,
    "pytest_coreos.config": 4,
    "pytest_coreos.host": 4,
    "pytest_coreos.image": 4,
    "pytest_coreos.waiting": 4,
    "pytest_coreos.errors": 5,
}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def rank(module: str) -> int:
    if module == "pytest_coreos":
        return 0  # the public API, resolved lazily from every layer
    for prefix, layer in sorted(RANKS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to RANKS")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, but not the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield other
                yield from _nodes(other)
            continue
        yield node
        yield from _nodes(node)


def imports_of(source: str, module: str, modules: set[str], is_package: bool) -> set[str]:
    """The package's own modules ``module`` imports (``modules``: every module name)."""
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    base = module if is_package else module.rpartition(".")[0]
    for node in _nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                origin = f"{parent}.{node.module}" if node.module else parent
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                add(submodule if submodule in modules else origin)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A module named for importlib ("pytest_coreos.x.y" or "pytest_coreos.x:Class").
            name = node.value.partition(":")[0]
            if name in modules:
                add(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {module_name(path, package): path for path in package.rglob("*.py")}
    modules = set(paths)
    return {
        module: imports_of(path.read_text(), module, modules, path.name == "__init__.py")
        for module, path in paths.items()
    }


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def against_the_order(graph: Mapping[str, set[str]]) -> list[str]:
    return [
        f"{module} ({LAYERS[rank(module)]}) imports {target} ({LAYERS[rank(target)]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if rank(target) < rank(module)
    ]


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 40  # the whole package was read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_every_import_runs_down_the_layers() -> None:
    assert against_the_order(import_graph()) == []


def _imported_names(path: Path) -> set[str]:
    """Every module name an import statement of the file names, wherever it stands."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def test_config_modules_are_pure() -> None:
    """No I/O libraries, no pytest, nothing of the package but config and errors."""
    config = PACKAGE / "config"
    paths = sorted(config.rglob("*.py"))
    assert len(paths) >= 8
    io = {"pytest", "subprocess", "socket", "requests", "paramiko", "vagrant", "shutil"}
    for path in paths:
        names = _imported_names(path)
        own = {name for name in names if name.startswith("pytest_coreos")}
        assert all(
            name.startswith(("pytest_coreos.config", "pytest_coreos.errors")) for name in own
        ), path
        assert not {name.partition(".")[0] for name in names} & io, path


def test_the_agent_imports_only_the_standard_library_and_the_pure_config() -> None:
    path = PACKAGE / "image" / "agent" / "coreos_agent.py"
    names = _imported_names(path)
    assert "pytest_coreos.config" in names  # it shares the host's config modules
    outside = {
        name
        for name in names
        if name.partition(".")[0] not in (*sys.stdlib_module_names, "__future__")
        and not name.startswith(("pytest_coreos.config", "pytest_coreos.errors"))
    }
    assert outside == set()


# -- the checker itself, on made-up packages --------------------------------------------


def _package(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "pytest_coreos"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_circle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "handles/__init__.py": "",
            "handles/a.py": "from pytest_coreos.handles import b\n",
            "handles/b.py": "def later():\n    from pytest_coreos.handles.a import x\n",
        },
    )
    cycle = find_cycle(import_graph(root))
    assert cycle is not None
    assert set(cycle) == {"pytest_coreos.handles.a", "pytest_coreos.handles.b"}


def test_an_importlib_load_counts_and_type_checking_does_not(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "providers/__init__.py": 'TABLE = {"x": "pytest_coreos.session.boot:Boot"}\n',
            "session/__init__.py": "",
            "session/boot.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pytest_coreos.plugin import x\n"
            ),
            "plugin.py": "",
        },
    )
    graph = import_graph(root)
    assert graph["pytest_coreos.providers"] == {"pytest_coreos.session.boot"}
    assert graph["pytest_coreos.session.boot"] == set()
    assert against_the_order(graph) == [
        "pytest_coreos.providers (providers) imports pytest_coreos.session.boot (session)"
    ]


@pytest.mark.parametrize("module", ["pytest_coreos.plugin", "pytest_coreos.session.boot"])
def test_every_module_has_a_layer(module: str) -> None:
    assert LAYERS[rank(module)] in ("plugin", "session")
