"""The simulator's modules import each other in one direction: the SMSC engine below, the load
generator and the control API above it, ``core`` (and the command line) on top; no circle, not even
through an import made only for type checking or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "simulator"
ABOVE_THE_ENGINE = {
    "simulator.api",
    "simulator.loadgen",
    "simulator.core",
    "simulator.cli",
    "simulator.openapi",
}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"simulator.{path.stem}": path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {name: imports(path) & set(modules) - {name} for name, path in modules.items()}


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        for module in edges[pending.pop()] - seen:
            seen.add(module)
            pending.append(module)
    return seen


def test_no_module_of_the_simulator_imports_itself_through_others() -> None:
    edges = graph()
    circles = sorted(module for module in edges if module in reachable(edges, module))
    assert circles == []


@pytest.mark.parametrize("module", ["simulator.engine", "simulator.carrier"])
def test_the_engine_knows_nothing_of_what_sits_above_it(module: str) -> None:
    assert not reachable(graph(), module) & ABOVE_THE_ENGINE


def test_the_simulator_stands_on_smpp_and_settingsfile_only() -> None:
    project = {"smpp", "routing", "gatewayd", "panel", "plugins", "settingsfile"}
    used = {name.split(".")[0] for path in PACKAGE.glob("*.py") for name in imports(path)} & project
    assert used == {"smpp", "settingsfile"}
