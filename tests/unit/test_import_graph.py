"""The project's own modules import each other without cycles, and the layers hold.

The graph is built from the source with :mod:`ast`, counting every import, also those
inside functions (a lazy import still ties two modules together): ``tuner`` never
imports the web layers, and ``import adamtune`` (the user-facing package: the CLI, the
SDK) stays light enough for any script to import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tuner", "api", "workers", "adamtune")
WEB = ("api", "workers", "adamtune", "fastapi", "starlette", "uvicorn", "a2wsgi",
       "optuna_dashboard")
HEAVY = ("torch", "fastapi", "starlette", "uvicorn", "sqlalchemy", "optuna")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement in ``tree`` asks for (relative ones resolved)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the most specific module each name is)."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        wanted = _imported_names(tree, name, path.name == "__init__.py")
        targets = {n for n in wanted if n in modules and n != name}
        # ``from a.b import c`` where ``a.b.c`` is a module: the edge is to ``a.b.c`` alone.
        graph[name] = {t for t in targets if not any(o.startswith(f"{t}.") for o in targets)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None if it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "adamtune.cli.local_service" in graph["adamtune.cli.demo"]
    assert "tuner.spec" in graph["adamtune.cli.demo"]  # imported inside run_demo
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_the_projects_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_tuner_imports_no_web_code() -> None:
    modules = project_modules()
    offenders = []
    for name, path in modules.items():
        if not name.startswith("tuner"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported in _imported_names(tree, name, path.name == "__init__.py"):
            if imported.split(".")[0] in WEB:
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_import_adamtune_is_light() -> None:
    """``import adamtune`` (and the CLI's entry point) load no torch, no web framework."""
    code = (
        "import sys\nimport adamtune\nimport adamtune.cli\n"
        f"heavy = {HEAVY!r}\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "", f"imported at `import adamtune`: {done.stdout.strip()}"
