"""Imports point down only, and nothing imports in a circle.

The packages stand on floors, lowest first: a package may import the packages on lower floors, never
one on its own floor or above. The simulator stands beside them on the bottom floor: it imports only
bottom-floor packages, and only the top floor (the composition of daemon, panel and simulator) imports
it. Inside each package no module imports another in a circle, and neither do the subpackages of one
package. Every import counts: at module level, inside a function (a deferred import only hides a
circle) and under ``if TYPE_CHECKING:`` (a type that names its caller is the same knot, and the
circles this test was written to break ran through such imports).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Lowest first; packages on one floor do not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("smpp", "settingsfile", "translations"),
    ("routing",),
    ("gatewayd",),
    ("panel",),
    ("plugins",),
    ("echat",),
)
#: Built on the bottom floor only; imported by the top floor only.
BESIDE: tuple[str, ...] = ("simulator",)
#: The protocol core and routing stay free of I/O frameworks.
FRAMEWORKS = {"sqlalchemy", "alembic", "aiomqtt", "starlette", "uvicorn", "httpx", "jinja2"}
PURE = ("smpp", "routing")

PACKAGES = tuple(package for floor in FLOORS for package in floor) + BESIDE


@dataclass(frozen=True, slots=True)
class Import:
    target: str  # the imported module, as named
    line: int


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package the module belongs to (itself for an ``__init__``)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@cache
def project_modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            found[name] = Module(name, path, is_package)
    return found


def imports_of(module: Module) -> list[Import]:
    """Every import in the file, wherever it sits, with ``from X import Y`` naming ``X.Y`` when that is
    a module of the project and ``X`` otherwise."""
    modules = project_modules()
    found: list[Import] = []
    for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.package.split(".")[: len(module.package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append(Import(submodule if submodule in modules else base, node.lineno))
    return found


def project_target(name: str) -> str | None:
    """The project module an import reaches (the nearest enclosing one for ``a.b.attribute``)."""
    modules = project_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for name, module in project_modules().items():
        edges: dict[str, int] = {}
        for found in imports_of(module):
            target = project_target(found.target)
            if target is not None and target != name:
                edges.setdefault(target, found.line)
        graph[name] = edges
    return graph


def allowed_below(package: str) -> set[str]:
    if package in BESIDE:
        return set(FLOORS[0])
    floor = next(index for index, packages in enumerate(FLOORS) if package in packages)
    allowed = {below for packages in FLOORS[:floor] for below in packages}
    if floor == len(FLOORS) - 1:
        allowed.update(BESIDE)
    return allowed


def root_of(name: str) -> str:
    return name.split(".")[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one node (iterative: packages can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One circle through the component's first node, found breadth first: ``[a, b, ..., a]``."""
    members = set(component)
    start = component[0]
    paths = {successor: [start, successor] for successor in sorted(graph[start]) if successor in members}
    queue = list(paths)
    while queue:
        node = queue.pop(0)
        if start in graph[node]:
            return [*paths[node], start]
        for successor in sorted(graph[node]):
            if successor in members and successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"no cycle through {start} in {component}")


def describe(cycle: list[str], lines: dict[tuple[str, str], str]) -> str:
    steps = [
        f"{here} -> {there} ({lines[here, there]})" for here, there in zip(cycle, cycle[1:], strict=False)
    ]
    return "\n  ".join(steps)


def module_cycles(package: str) -> list[str]:
    graph = import_graph()
    inside = {name: {t for t in edges if root_of(t) == package} for name, edges in graph.items()}
    inside = {name: targets for name, targets in inside.items() if root_of(name) == package}
    modules = project_modules()
    lines = {
        (name, target): f"{modules[name].path.relative_to(ROOT)}:{line}"
        for name, edges in graph.items()
        for target, line in edges.items()
    }
    return [
        f"{', '.join(component)}, one circle:\n  {describe(a_cycle(inside, component), lines)}"
        for component in strongly_connected(inside)
    ]


def subpackage_cycles(package: str) -> list[str]:
    """Circles between the subpackages of one parent (the store and the migrations of `gatewayd`, say),
    through whichever of their modules."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], str] = {}
    for name, edges in import_graph().items():
        if root_of(name) != package:
            continue
        for target in edges:
            if root_of(target) != package:
                continue
            here, there = modules[name].package.split("."), modules[target].package.split(".")
            common = 0
            while common < min(len(here), len(there)) and here[common] == there[common]:
                common += 1
            if common in (len(here), len(there)):
                continue  # a package and its own subpackage: not siblings
            source, destination = ".".join(here[: common + 1]), ".".join(there[: common + 1])
            graph.setdefault(source, set()).add(destination)
            graph.setdefault(destination, set())
            lines.setdefault((source, destination), f"{name} imports {target}")
    return [
        f"{', '.join(component)}, one circle:\n  {describe(a_cycle(graph, component), lines)}"
        for component in strongly_connected(graph)
    ]


def test_every_package_stands_somewhere() -> None:
    on_disk = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == set(PACKAGES), "add the package to FLOORS (or BESIDE) in this test"
    assert len(PACKAGES) == len(set(PACKAGES))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down_only(package: str) -> None:
    allowed = allowed_below(package) | {package}
    wrong = sorted(
        {
            f"{module.path.relative_to(ROOT)}:{found.line} imports {found.target}"
            for module in project_modules().values()
            if root_of(module.name) == package
            for found in imports_of(module)
            if root_of(found.target) in PACKAGES and root_of(found.target) not in allowed
        }
    )
    assert not wrong, f"{package} may import only {sorted(allowed - {package})}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_import_in_no_circle(package: str) -> None:
    cycles = module_cycles(package)
    assert not cycles, "modules importing each other in a circle:\n" + "\n\n".join(cycles)


@pytest.mark.parametrize("package", PACKAGES)
def test_subpackages_import_in_no_circle(package: str) -> None:
    cycles = subpackage_cycles(package)
    assert not cycles, "subpackages importing each other in a circle:\n" + "\n\n".join(cycles)


def test_the_checker_finds_a_circle_and_names_its_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (component,) = strongly_connected(graph)
    assert component == ["a", "b", "c"]
    lines = {("a", "b"): "a.py:1", ("b", "c"): "b.py:2", ("c", "a"): "c.py:3"}
    assert (
        describe(a_cycle(graph, component), lines) == "a -> b (a.py:1)\n  b -> c (b.py:2)\n  c -> a (c.py:3)"
    )
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize(
    "module",
    [module for module in project_modules().values() if root_of(module.name) in PURE],
    ids=lambda module: module.name,
)
def test_core_imports_no_io_framework(module: Module) -> None:
    assert not {root_of(found.target) for found in imports_of(module)} & FRAMEWORKS


@pytest.mark.parametrize(
    "module",
    [
        module
        for module in project_modules().values()
        if root_of(module.name) in PURE and not module.name.startswith("smpp.aio")
    ],
    ids=lambda module: module.name,
)
def test_sans_io_modules_import_no_asyncio(module: Module) -> None:
    assert "asyncio" not in {root_of(found.target) for found in imports_of(module)}
