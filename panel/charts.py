"""Bar charts drawn on the server: the geometry is computed here, the SVG written by the
``panel/_chart.html`` macro (no script, nothing inline for the CSP to refuse). The desk's client card
and the reports draw theirs with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CHART_WIDTH = 240
CHART_HEIGHT = 60
LABEL_BAND = 12


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    # (x, text) under some bars: the first, the middle and the last
    ticks: tuple[tuple[float, str], ...]
    total: int


def bar_chart(
    values: Sequence[tuple[str, int]], *, width: int = CHART_WIDTH, height: int = CHART_HEIGHT
) -> Chart:
    count = max(1, len(values))
    slot = width / count
    top = max((value for _, value in values), default=0) or 1
    plot = height - LABEL_BAND
    bars = []
    for index, (label, value) in enumerate(values):
        bar_height = plot * value / top
        bars.append(
            Bar(
                round(index * slot + 1, 2),
                round(plot - bar_height, 2),
                round(max(slot - 2, 1), 2),
                round(bar_height, 2),
                label,
                value,
            )
        )
    marks = sorted({0, len(values) // 2, len(values) - 1}) if values else []
    ticks = tuple((round(index * slot + slot / 2, 2), values[index][0]) for index in marks)
    return Chart(width, height, tuple(bars), ticks, sum(value for _, value in values))
