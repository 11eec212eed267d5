"""Installs are reproducible: every dependency in pyproject.toml is pinned, with hashes, in the lock
files that `make` installs with ``--require-hashes``, at a version its range allows."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# "name==version \" or, with an environment marker, "name==version ; sys_platform != 'win32' \"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)(?: ;[^\\]*)? \\$")


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]  # type: ignore[no-any-return]


def _pins(lock: str) -> dict[str, tuple[Version, list[str]]]:
    """Each pinned package of a pip-compile lock file: its version and the hashes under it."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / "requirements" / lock).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (Version(match.group(2)), [])
        elif current is not None and line.strip().startswith("--hash=sha256:"):
            pins[current][1].append(line.strip())
        elif not line.startswith(" "):
            current = None
    return pins


def _requirements(group: str) -> list[Requirement]:
    project = _project()
    if group == "runtime":
        listed = project["dependencies"]
    else:
        listed = project["optional-dependencies"][group]  # type: ignore[index]
    return [Requirement(text) for text in listed]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("lock", "groups"), [("runtime.lock", ["runtime"]), ("dev.lock", ["runtime", "dev"])]
)
def test_every_dependency_is_pinned_with_hashes_in_its_range(lock: str, groups: list[str]) -> None:
    pins = _pins(lock)
    for group in groups:
        for requirement in _requirements(group):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement.name} ({group}) is not pinned in requirements/{lock}"
            version, hashes = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {name}=={version}, outside {requirement}"
            )
            assert hashes, f"requirements/{lock} pins {name} without a hash"


def test_every_pin_in_a_lock_file_carries_a_hash() -> None:
    for lock in ("runtime.lock", "dev.lock"):
        unhashed = [name for name, (_, hashes) in _pins(lock).items() if not hashes]
        assert unhashed == [], f"requirements/{lock}: pinned without a hash: {unhashed}"


def test_make_installs_the_lock_with_required_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --quiet --require-hashes -r requirements/dev.lock" in makefile
