"""How many argon2 workers the panel starts by default: half the cores, so that a flood of sign-ins
leaves the daemon sharing the machine a core of its own."""

from __future__ import annotations

import pytest

from panel.settings import PanelSettings, default_hash_workers


@pytest.mark.parametrize(("cores", "workers"), [(None, 1), (1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_half_the_cores_and_at_least_one(cores: int | None, workers: int) -> None:
    assert default_hash_workers(cores) == workers


def test_an_explicit_count_wins() -> None:
    assert (
        PanelSettings(database_url="sqlite+aiosqlite://", password_hash_workers=3).password_hash_workers == 3
    )
