"""The layout holds: the apps depend one way (deliveries uses integrations, never the reverse), no two modules of
an app import each other in a circle, vendors keep no state of their own (nothing from the models), the sandbox's
fakes never import the server they register with, and inside deliveries the stages depend one way: pages use the
engine and ingest, ingest uses the engine, the engine uses neither; the management API (deliveries.api) may use
all three, and none of them uses it.

Imports are read from the source with `ast`, wherever they stand: at the top, inside a function, under
TYPE_CHECKING. A lazy import inside a function is still a dependency, so it cannot hide a circle.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("integrations", "deliveries")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


MODULES = modules()


def imported(path: Path) -> Iterator[str]:
    """Every module of the project that `path` imports: `from a.b import c` is a.b.c when that is a module."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            relative = "." * node.level + (node.module or "")
            base = importlib.util.resolve_name(relative, package) if node.level else relative
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name in MODULES:
                yield name


GRAPH = {name: set(imported(path)) - {name} for name, path in MODULES.items()}


def cycles() -> list[list[str]]:
    """The import cycles, each once (Tarjan's strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def importers(of: str, within: str) -> list[str]:
    """Modules under `within` that import anything under `of`."""
    return sorted(
        name
        for name, targets in GRAPH.items()
        if (name == within or name.startswith(within + ".")) and any(t == of or t.startswith(of + ".") for t in targets)
    )


def test_the_layout_is_read_from_every_module_of_both_apps() -> None:
    assert len(MODULES) > 60
    assert "integrations.vendors.contract" in GRAPH["integrations.vendors.sfmc.base"], "imports are read"


def test_no_two_modules_import_each_other_in_a_circle() -> None:
    assert cycles() == []


def test_integrations_imports_nothing_from_deliveries() -> None:
    assert importers("deliveries", "integrations") == []


def test_vendor_modules_import_nothing_from_the_models() -> None:
    assert importers("integrations.models", "integrations.vendors") == []


def test_the_sandbox_fakes_do_not_import_the_server_they_register_with() -> None:
    assert [m for m in importers("integrations.sandbox.server", "integrations.sandbox") if m != __name__] in (
        [],
        ["integrations.sandbox"],  # the package may expose the server; a fake may not import it
    )


@pytest.mark.parametrize(
    ("stage", "never"),
    [
        ("deliveries.engine", "deliveries.ingest"),
        ("deliveries.engine", "deliveries.pages"),
        ("deliveries.ingest", "deliveries.pages"),
        ("deliveries.engine", "deliveries.api"),
        ("deliveries.ingest", "deliveries.api"),
        ("deliveries.pages", "deliveries.api"),
    ],
)
def test_the_delivery_stages_depend_one_way(stage: str, never: str) -> None:
    assert stage in MODULES, f"{stage} is a package of its own"
    assert importers(never, stage) == []
