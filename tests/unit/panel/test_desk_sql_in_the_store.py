"""The desk, assignment and presence build no SQL of their own: they call the store's named functions
(``gatewayd.store.repo_desk``, ``repo_assignment``), where every statement the panel runs on the
daemon's tables lives beside the daemon's own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted(
    [
        *(ROOT / "plugins" / "desk").glob("*.py"),
        ROOT / "gatewayd" / "assignment.py",
        ROOT / "panel" / "presence.py",
    ]
)
#: What a module may take from SQLAlchemy without writing SQL: the session types it passes along.
SESSION_TYPES = {"AsyncSession", "async_sessionmaker"}
#: Session methods that run a statement or a look-up.
RUNS_SQL = {"execute", "scalar", "scalars", "get", "stream"}


def _sql_in(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"imports {alias.name}" for alias in node.names if alias.name not in SESSION_TYPES]
        elif isinstance(node, ast.Import):
            found += [f"imports {alias.name}" for alias in node.names if alias.name.startswith("sqlalchemy")]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RUNS_SQL
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "session"
        ):
            found.append(f"line {node.lineno}: session.{node.func.attr}(...)")
    return [f"{path.relative_to(ROOT)}: {what}" for what in found]


def test_the_desk_assignment_and_presence_call_the_store_for_their_sql() -> None:
    assert len(MODULES) > 3
    assert [finding for path in MODULES for finding in _sql_in(path)] == []
