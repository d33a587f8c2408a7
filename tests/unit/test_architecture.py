"""The layout holds: packages depend one way, no import circle between modules, modules stay
small, the engine alone spells keys.

cli -> api | supervisor -> worker -> engine -> Redis, with config (and the leaf modules:
errors, durations, backoff, redact, pdeathsig) feeding all of them. A module that breaks one of
these rules fails here with its name, so the layout cannot drift back quietly. That no doc,
comment or docstring cites a document outside the repository is checked by
tests/docs/test_no_outside_refs.py.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cortexflow"
REPO = PACKAGE.parent
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Long by nature: the JSON Schema literal.
LONG_MODULES_ALLOWED = {"config/schema.py"}

# Which packages a package may import from (besides itself and the leaf modules).
ALLOWED = {
    "config": set(),
    "engine": {"config"},
    "embedded": {"config"},
    "worker": {"config", "engine"},
    "queues": {"config", "engine", "worker"},
    "supervisor": {"config", "engine", "embedded", "worker"},
    "api": {"config", "engine", "embedded", "worker"},
    "dashboard": {"config", "engine", "embedded", "api"},
    "cli": {"config", "engine", "embedded", "worker", "supervisor", "api", "queues", "dashboard"},
    "taskiq": {"config", "engine", "embedded", "worker", "api"},
}
LEAVES = {
    "errors", "durations", "backoff", "redact", "pdeathsig", "ticks", "termsafe", "logs", "telemetry",
    "__init__", "__main__",
}  # fmt: skip


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _unit(path: Path) -> str:
    """The package (or leaf module) a file belongs to: 'engine', 'cli', 'errors', ..."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _is_unit(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every cortexflow unit this file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "cortexflow":  # from cortexflow import errors / __version__
                names = [f"cortexflow.{a.name}" for a in node.names if _is_unit(a.name)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cortexflow" and len(parts) > 1:
                found.add(parts[1])
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _modules():
        unit = _unit(path)
        graph[unit] |= {u for u in _imports(path) if u != unit}
    return graph


def test_no_import_circle_between_packages() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(unit: str, trail: list[str]) -> None:
        if state.get(unit) == 1:
            cycle = [*trail[trail.index(unit) :], unit]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if state.get(unit) == 2:
            return
        state[unit] = 1
        for dep in sorted(graph.get(unit, ())):
            if dep not in LEAVES:
                visit(dep, [*trail, unit])
        state[unit] = 2

    for unit in sorted(graph):
        visit(unit, [])


def _module_name(path: Path, root: Path) -> str:
    """``cortexflow.engine.cluster`` for root/engine/cluster.py, ``cortexflow.engine`` for its
    __init__.py (root is the package folder, named as the package)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports that can run: at module level and inside functions and classes, but not in
    the body of an ``if TYPE_CHECKING:`` (its ``else`` does run)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                walk(stmt)
            return
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return found


def module_import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside a function (not
    under TYPE_CHECKING). ``from pkg.a import b`` counts as importing ``pkg.a.b`` when that is a
    module, else ``pkg.a`` (its __init__); the parent packages Python imports on the way are not
    edges (a package's __init__ importing its own modules would otherwise always be a circle)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in paths}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in paths:
                    deps.add(f"{base}.{alias.name}")
                elif base in paths:
                    deps.add(base)
        graph[name] = deps - {name}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import each other in a circle (Tarjan's strongly connected
    components of more than one module), as one circle through the group: [a, b, ..., a]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_circle_through(sorted(g), graph) for g in groups]


def _circle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle from the group's first module back to itself (breadth first)."""
    start = group[0]
    trails = [[start]]
    seen = {start}
    while trails:
        trail = trails.pop(0)
        for w in sorted(graph[trail[-1]] & set(group)):
            if w == start:
                return [*trail, start]
            if w not in seen:
                seen.add(w)
                trails.append([*trail, w])
    raise AssertionError(f"no circle through {group}")  # pragma: no cover - Tarjan found one


def test_no_import_circle_between_modules() -> None:
    """A circle of module-level imports works only in the order Python happens to meet it, and a
    new import elsewhere turns it into an ImportError. Moving one import of the circle into a
    function hides the circle without removing it (the two modules still need each other to
    work), so imports inside functions count too. Only an import under ``if TYPE_CHECKING:``,
    which never runs, does not count."""
    circles = import_circles(module_import_graph(PACKAGE))
    assert not circles, "import circles between modules:\n" + "\n".join(
        " -> ".join(c) for c in circles
    )


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    """engine/cluster.py imported engine/connection.py at module level, and connection.py
    imported cluster.py inside a function (and under TYPE_CHECKING for its annotations): this
    check finds that circle in the package as it was then, and in the same shape here."""
    pkg = tmp_path / "pkg"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("from pkg.engine.cluster import Cluster\n")
    (pkg / "engine" / "cluster.py").write_text("from pkg.engine.connection import connect\n")
    connection = pkg / "engine" / "connection.py"
    expected = [["pkg.engine.cluster", "pkg.engine.connection", "pkg.engine.cluster"]]
    connection.write_text("from . import cluster\n")
    assert import_circles(module_import_graph(pkg)) == expected
    connection.write_text("def connect():\n    from pkg.engine.cluster import connect_cluster\n")
    assert import_circles(module_import_graph(pkg)) == expected
    connection.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.engine import cluster\n"
    )
    assert import_circles(module_import_graph(pkg)) == []


def test_packages_depend_one_way() -> None:
    graph = _graph()
    wrong = []
    for unit, deps in sorted(graph.items()):
        if unit in LEAVES:
            bad = deps - LEAVES
            if bad - ({"config"} if unit == "__init__" else set()) - {"api", "cli"}:
                wrong.append(f"leaf module {unit} imports {sorted(bad)}")
            continue
        allowed = ALLOWED.get(unit)
        if allowed is None:
            continue  # a package added later: the circle test still covers it
        bad = deps - allowed - LEAVES
        if bad:
            wrong.append(f"{unit} imports {sorted(bad)} (allowed: {sorted(allowed)})")
    assert not wrong, "\n".join(wrong)


def test_no_module_over_the_limit() -> None:
    long = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and rel not in LONG_MODULES_ALLOWED:
            long.append(f"{rel}: {lines} lines")
    assert not long, "\n".join(long)


def test_no_function_over_the_limit() -> None:
    long = []
    for path in _modules():
        if path.relative_to(PACKAGE).as_posix() in LONG_MODULES_ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    rel = path.relative_to(PACKAGE).as_posix()
                    long.append(f"{rel}:{node.lineno} {node.name}: {size} lines")
    assert not long, "\n".join(long)


def test_no_flat_module_families() -> None:
    """`supervisor_child.py` beside `supervisor_plan.py` wants to be supervisor/child.py."""
    prefixes: dict[tuple[Path, str], list[str]] = defaultdict(list)
    for path in _modules():
        if "_" in path.stem.strip("_"):
            prefixes[(path.parent, path.stem.split("_")[0])].append(path.name)
    families = {
        f"{d.relative_to(PACKAGE)}/{p}_*: {names}"
        for (d, p), names in prefixes.items()
        if len(names) >= 3
    }
    assert not families


KEY_SPELLING = re.compile(
    r""":j:|:logs\b|["']:?(waiting|delayed|active|completed|failed)["']\s*\)"""
)


@pytest.mark.parametrize("pattern", [":j:", ":logs"])
def test_only_the_engine_spells_key_names(pattern: str) -> None:
    outside = [
        path.relative_to(PACKAGE).as_posix()
        for path in _modules()
        if _unit(path) != "engine" and pattern in path.read_text()
    ]
    assert not outside, f"{pattern!r} spelled outside engine/: {outside}"
