"""The layout holds: packages depend one way, modules stay small, the engine alone spells keys.

cli -> api | supervisor -> worker -> engine -> Redis, with config (and the leaf modules:
errors, durations, backoff, redact, pdeathsig) feeding all of them. A module that breaks one of
these rules fails here with its name, so the layout cannot drift back quietly.
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
}
LEAVES = {
    "errors", "durations", "backoff", "redact", "pdeathsig", "ticks", "termsafe",
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


def test_no_reference_to_documents_outside_the_repository() -> None:
    roots = [PACKAGE, REPO / "docs", REPO / "tests", REPO / "bench", REPO / "examples"]
    files = [REPO / "README.md"] + [
        p
        for root in roots
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md", ".lua", ".yaml", ".toml"}
        and "node_modules" not in p.parts
    ]
    pattern = re.compile(r"DESIGN\s*§|\.\./shared|shared/notes")
    me = Path(__file__).resolve()
    cited = [
        str(p.relative_to(REPO))
        for p in files
        if p.resolve() != me and pattern.search(p.read_text(errors="replace"))
    ]
    assert not cited, f"these cite documents a clone does not have: {cited}"
