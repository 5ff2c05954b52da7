"""The package's layout shows its layers, and stays so: measured from the source with ``ast``.

* no import cycle among the package's modules (every import counts, a function's too);
* at most :data:`MAX_TOP_LEVEL` modules directly in ``airflow_provider_lotimage/``;
* every class shorter than :data:`MAX_CLASS_LINES` lines, every function shorter than
  :data:`MAX_FUNCTION_LINES` (decorators and docstrings included);
* the layers (the package's subpackages and top-level modules) import one way, and ``client/``,
  the lowest, nothing of the package but :mod:`exceptions`;
* ``client/`` imports nothing of Airflow: not in its source, and not when a fresh interpreter
  imports every one of its modules;
* ``ratelimit/`` imports one way: ``base`` ← ``local`` ← ``redis_link``/``redis_budget``/
  ``redis_durations`` ← ``registry``;
* the gallery never imports ``links``, nor ``links`` the gallery.

``python -m tests.test_layout`` prints the figures these limits are held against.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_provider_lotimage"
ROOT = REPO / PACKAGE

MAX_TOP_LEVEL = 8
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60
#: The order ratelimit's modules may import each other in: each only from those before it.
RATELIMIT_ORDER = ("base", "local", "redis_link", "redis_budget", "redis_durations", "registry")


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, file and syntax tree."""

    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package the module's relative imports start from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def modules() -> dict[str, Module]:
    """Every module of the package, by dotted name."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def imported(module: Module) -> Iterator[str]:
    """Every module name ``module`` imports, anywhere in it (a function's imports too)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name imported from a package counts for it)."""
    known = modules()
    return {
        name: {target for target in imported(module) if target in known and target != name}
        for name, module in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def lengths(kind: type[ast.AST] | tuple[type[ast.AST], ...]) -> list[tuple[int, str]]:
    """``(lines, "module:Name")`` of every class or function of the package, longest first."""
    found = []
    for module in modules().values():
        for node in ast.walk(module.tree):
            if isinstance(node, kind):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])  # type: ignore[attr-defined]
                found.append((node.end_lineno - start + 1, f"{module.name}:{node.name}"))  # type: ignore[attr-defined]
    return sorted(found, reverse=True)


def top_level_modules() -> list[str]:
    """The ``.py`` files directly in the package's folder."""
    return sorted(path.name for path in ROOT.glob("*.py"))


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_one() -> None:
    """The check itself: a cycle drawn by hand is found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def layer_graph() -> dict[str, set[str]]:
    """Layer -> the layers it imports, a layer being a subpackage or a top-level module."""
    graph: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        source = layer_of(name)
        graph.setdefault(source, set()).update(layer_of(target) for target in targets)
        graph[source].discard(source)
    return graph


def layer_of(name: str) -> str:
    """``client`` for ``airflow_provider_lotimage.client.retry``; the package itself is ``""``."""
    return name.removeprefix(PACKAGE).lstrip(".").split(".")[0]


def test_the_layers_import_one_way() -> None:
    graph = layer_graph()
    assert cycles(graph) == []
    assert graph["client"] == {"exceptions"}


def test_few_modules_at_the_top_level() -> None:
    top = top_level_modules()
    assert len(top) <= MAX_TOP_LEVEL, top


def test_no_class_and_no_function_too_long() -> None:
    classes = [(size, name) for size, name in lengths(ast.ClassDef) if size >= MAX_CLASS_LINES]
    functions = [
        (size, name)
        for size, name in lengths((ast.FunctionDef, ast.AsyncFunctionDef))
        if size >= MAX_FUNCTION_LINES
    ]
    assert classes == [] and functions == []


def test_client_source_imports_nothing_of_airflow() -> None:
    found = {
        name: sorted(target for target in imported(module) if target.split(".")[0] == "airflow")
        for name, module in modules().items()
        if name.startswith(f"{PACKAGE}.client")
    }
    assert found and {name: targets for name, targets in found.items() if targets} == {}


def test_client_imports_without_airflow_in_a_fresh_interpreter() -> None:
    names = sorted(name for name in modules() if name.startswith(f"{PACKAGE}.client"))
    assert len(names) > 1, names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_ratelimit_imports_run_one_way() -> None:
    graph = import_graph()
    prefix = f"{PACKAGE}.ratelimit."
    backwards = [
        (name, target)
        for name, targets in graph.items()
        if name.startswith(prefix)
        for target in targets
        if target.startswith(prefix)
        and RATELIMIT_ORDER.index(target.removeprefix(prefix))
        >= RATELIMIT_ORDER.index(name.removeprefix(prefix))
    ]
    assert sorted(RATELIMIT_ORDER) == sorted(
        name.removeprefix(prefix) for name in graph if name.startswith(prefix)
    )
    assert backwards == []


@pytest.mark.parametrize(("source", "target"), [("gallery", "links"), ("links", "gallery")])
def test_the_gallery_and_the_extra_link_do_not_import_each_other(source: str, target: str) -> None:
    graph = import_graph()
    wrong = [
        (name, imported_name)
        for name, targets in graph.items()
        if name.startswith(f"{PACKAGE}.{source}")
        for imported_name in targets
        if imported_name.startswith(f"{PACKAGE}.{target}")
    ]
    assert wrong == []


if __name__ == "__main__":
    print(f"top-level modules: {len(top_level_modules())} ({', '.join(top_level_modules())})")
    print("largest classes:", lengths(ast.ClassDef)[:3])
    print("largest functions:", lengths((ast.FunctionDef, ast.AsyncFunctionDef))[:3])
    print("import cycles:", cycles(import_graph()), "between layers:", cycles(layer_graph()))
