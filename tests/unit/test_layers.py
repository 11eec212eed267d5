"""Imports point down only: the protocol core and routing stay free of I/O frameworks and upper layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPPER_AND_FRAMEWORKS = {"gatewayd", "panel", "plugins", "simulator", "sqlalchemy", "aiomqtt", "starlette"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("smpp") + modules("routing"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_upper_layer_or_framework(path: Path) -> None:
    assert not imported_roots(path) & UPPER_AND_FRAMEWORKS


@pytest.mark.parametrize(
    "path",
    [p for p in modules("smpp") if "aio" not in p.relative_to(ROOT).parts] + modules("routing"),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_sans_io_modules_import_no_asyncio(path: Path) -> None:
    assert "asyncio" not in imported_roots(path)
