"""The house's layers (docs/architecture.md): imports go one way, and the parts that must run
without torch do.

* no import circle among the project's modules (imports inside functions count too);
* ``qwenrl/``, ``arena/`` and ``app/`` never import ``training/``; ``arena/`` never imports ``app/``;
* ``arena/``, the studio server's modules (``app/``) and ``training/configs.py`` import without torch;
* no function in ``training/`` or ``app/`` is longer than 80 lines (a trainer reads as an outline).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("qwenrl", "arena", "app", "training")


def project_modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, anywhere in its file."""
    found = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) if node.level \
                else node.module or ""
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    graph = import_graph()
    assert len(graph) > 60 and "app.workspace" in graph["app.gallery"]  # the graph is read
    assert circles(graph) == []


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_go_one_way():
    graph = import_graph()
    wrong = sorted((m, t) for m, targets in graph.items() for t in targets
                   if (m.split(".")[0] in ("qwenrl", "arena", "app") and t.startswith("training"))
                   or (m.startswith("arena") and t.startswith("app"))
                   or (m.startswith("qwenrl") and t.split(".")[0] in ("arena", "app")))
    assert wrong == []
    # workers import the workspace, never the reverse
    assert "app.workspace" in graph["app.gallery"] and "app.gallery" not in graph["app.workspace"]
    assert not any(t.startswith("app.tabs") for m, targets in graph.items() if not m.startswith(("app.tabs", "app.studio"))
                   for t in targets)


CHILD = textwrap.dedent("""
    import importlib, pkgutil, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import arena, app
    names = ["training.configs", "qwenrl.metrics", "qwenrl.objectives"]
    names += [f"arena.{m.name}" for m in pkgutil.iter_modules(arena.__path__)]
    names += [f"app.{m.name}" for m in pkgutil.iter_modules(app.__path__) if m.name != "tabs"]
    names += [f"app.tabs.{m.name}" for m in pkgutil.iter_modules(importlib.import_module("app.tabs").__path__)]
    for name in names:
        importlib.import_module(name)
    print("imported", len(names))
    print("torch:", sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] == "torch"))
""")


def test_the_arena_the_studio_server_and_the_configs_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch: []" in out.stdout
    assert int(out.stdout.split("imported ")[1].split()[0]) > 40


def test_functions_read_in_one_screen():
    long = []
    for package in ("training", "app"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
