"""settingsfile: where keys are in a TOML text, where a value came from, and pydantic's errors in the
project's words."""

from __future__ import annotations

import ast
from pathlib import Path
from textwrap import dedent
from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from settingsfile import Int64, Origins, ProblemAt, Seconds, locate_keys, located, problems_at

ROOT = Path(__file__).resolve().parents[3]
PROJECT = {"smpp", "routing", "gatewayd", "panel", "plugins", "simulator"}


def test_locate_keys_handles_arrays_of_tables_and_multiline_strings() -> None:
    source = dedent('''\
        title = """
        fake = 1
        """
        [[a]]
        x = 1
        [a.inner]
        "quoted key" = 2
        [[a]]
        x = 3
        [[a.b]]
        y = 4
        [[a.b]]
        y = 5
        inline = { z = 6 }
        ''')
    positions = locate_keys(source)
    assert positions[("title",)] == 1 and ("fake",) not in positions
    assert positions[("a", 0, "x")] == 5
    assert positions[("a", 0, "inner", "quoted key")] == 7
    assert positions[("a", 1, "x")] == 9
    assert positions[("a", 1, "b", 0, "y")] == 11
    assert positions[("a", 1, "b", 1, "y")] == 13
    assert positions[("a", 1, "b", 1, "inline")] == 14


def test_a_value_is_located_at_its_line_its_table_or_its_override() -> None:
    origins = Origins("gw.toml", {("log",): 3, ("log", "level"): 4}, {("log", "json"): "$GATEWAYD_LOG_JSON"})
    assert origins.locate(("log", "level")) == ("gw.toml", 4)
    assert origins.locate(("log", "colour")) == ("gw.toml", 3)  # a key the file lacks: its table
    assert origins.locate(("log", "json")) == ("$GATEWAYD_LOG_JSON", None)
    assert Origins("<built-in>").locate(("log",)) == ("<built-in>", None)


class Bind(BaseModel):
    model_config = ConfigDict(extra="forbid")

    port: int = Field(ge=1, le=65535)
    password: Annotated[SecretStr, Field(max_length=8)]
    lease: Seconds = 1.0
    seed: Int64 = 0


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid")

    binds: list[Bind]


def problems(data: object) -> dict[str, str]:
    origins = Origins("gw.toml", {("binds", 0): 1, ("binds", 0, "port"): 2})
    try:
        Table.model_validate(data)
    except ValidationError as error:
        return {
            problem.key: f"{problem.line}: {problem.message}" for problem in located(error.errors(), origins)
        }
    raise AssertionError("valid")


def test_every_error_is_one_located_problem_in_plain_words() -> None:
    found = problems(
        {
            "binds": [
                {"port": 99999, "password": "much too long", "lease": float("nan"), "seed": 10**30, "x": 1}
            ]
        }
    )
    assert found == {
        "binds[0].port": "2: must be at most 65535, not 99999",
        "binds[0].password": "1: must be at most 8 characters",  # never the secret itself
        "binds[0].lease": "1: must be a finite number, not nan",
        "binds[0].seed": "1: must be at most 9223372036854775807, not an integer of 31 digits",
        "binds[0].x": "1: unknown key",
    }
    assert problems({"binds": [{"port": "twenty"}]}) == {
        "binds[0].port": "2: must be an integer, not 'twenty'",
        "binds[0].password": "1: is required",
    }


class Checked(BaseModel):
    a: int = 0

    @classmethod
    def check(cls, data: object) -> None:
        cls.model_validate(data)


def test_validators_name_the_keys_they_find_wrong() -> None:
    class Pair(BaseModel):
        low: int
        high: int

        def model_post_init(self, context: object) -> None:
            if self.high < self.low:
                raise ProblemAt("high", "must not be below low")

    class Many(BaseModel):
        items: list[int]

        def model_post_init(self, context: object) -> None:
            raise problems_at(((0,), "first {braces} stay"), (("items", 1), "second"))

    with pytest.raises(ValidationError) as caught:
        Pair(low=2, high=1)
    [problem] = located(caught.value.errors(), Origins("x"))
    assert (problem.key, problem.message) == ("high", "must not be below low")
    with pytest.raises(ValidationError) as caught:
        Many(items=[1])
    assert [(p.key, p.message) for p in located(caught.value.errors(), Origins("x"))] == [
        ("[0]", "first {braces} stay"),
        ("items[1]", "second"),
    ]


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted((ROOT / "settingsfile").rglob("*.py")), ids=lambda p: p.name)
def test_settingsfile_imports_no_other_package_of_the_project(path: Path) -> None:
    assert not imported_roots(path) & PROJECT


def test_the_daemons_configuration_does_not_import_the_simulator() -> None:
    assert "simulator" not in imported_roots(ROOT / "gatewayd" / "config.py")
