"""The reports' charts, drawn on the server as SVG: MOs and MTs per day (:mod:`panel.charts` bars) and
the hour-of-day x day-of-week heat map, whose cells are shaded by class (five levels, the legend's), so
the page needs neither script nor inline style."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from panel.charts import Chart, bar_chart

DAY_CHART_WIDTH = 720
DAY_CHART_HEIGHT = 120
CELL = 22
LEFT = 40  # room for the day names
TOP = 16  # room for the hours
LEVELS = 5


@dataclass(frozen=True, slots=True)
class Cell:
    x: int
    y: int
    weekday: int  # Monday 0
    hour: int
    value: int
    level: int  # 0 (nothing) .. LEVELS - 1 (the busiest)


@dataclass(frozen=True, slots=True)
class HeatMap:
    width: int
    height: int
    cell: int
    left: int
    top: int
    cells: tuple[Cell, ...]
    top_value: int
    #: (level, the least value shown at that level) for the legend
    legend: tuple[tuple[int, int], ...]


def per_day_chart(days: Sequence[tuple[date, int]]) -> Chart:
    return bar_chart(
        [(day.strftime("%d/%m"), value) for day, value in days],
        width=DAY_CHART_WIDTH,
        height=DAY_CHART_HEIGHT,
    )


def level(value: int, top: int) -> int:
    """0 for nothing, else 1 .. LEVELS - 1 by the share of the busiest cell."""
    if value <= 0 or top <= 0:
        return 0
    return min(LEVELS - 1, 1 + (value * (LEVELS - 1) - 1) // top)


def heat_map(grid: Sequence[Sequence[int]]) -> HeatMap:
    """``grid[weekday][hour]`` as cells."""
    top = max((value for row in grid for value in row), default=0)
    cells = tuple(
        Cell(LEFT + hour * CELL, TOP + weekday * CELL, weekday, hour, value, level(value, top))
        for weekday, row in enumerate(grid)
        for hour, value in enumerate(row)
    )
    # the least value of each level: the smallest v with level(v, top) == n
    legend = tuple((n, 0 if n == 0 else ((n - 1) * top + LEVELS - 1) // (LEVELS - 1)) for n in range(LEVELS))
    return HeatMap(LEFT + 24 * CELL, TOP + 7 * CELL, CELL, LEFT, TOP, cells, top, legend)
