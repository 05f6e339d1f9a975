"""Axis labels that never crowd: how many fit is decided by the pixels a plot has, not by a
fixed count (pyqtgraph's own y ticks stacked "60000" over "20000" on a 30 px health plot, and
the mask raster labelled every ghost row, so 80 rows in 300 px overprinted each other).

``value_ticks``: round values from 0 to the top of a y range, as many as fit.
``spaced_rows``: which rows of a raster to label, the ones asked for first, none closer than a
label's height to another.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable

LABEL_PX = 14  # a tick label's height with room around it (8-9 pt text)


def value_ticks(
    top: float,
    height_px: float,
    fmt: Callable[[float], str],
    label_px: float = LABEL_PX * 2,
) -> list[tuple[float, str]]:
    """(value, text) for 0 and round steps up to ``top``: at most one per ``label_px`` of
    the ``height_px`` the axis has, and at least 0 and one step above it."""
    if not top > 0 or not math.isfinite(top):
        return [(0.0, fmt(0.0))]
    room = max(int(height_px // label_px), 1)  # steps above 0 that fit
    raw = top / room
    magnitude = 10.0 ** math.floor(math.log10(raw))
    while magnitude > raw:  # log10 in floating point can land a decade off
        magnitude /= 10
    while magnitude * 10 <= raw:
        magnitude *= 10
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if step > top:  # room for one step only, and no round one up to ``top``: one below it
        step = max(m * magnitude for m in (1, 2, 2.5, 5) if m * magnitude <= top or m == 1)
    count = min(int(top / step + 1e-9), room)
    return [(float(i * step), fmt(float(i * step))) for i in range(count + 1)]


def spaced_rows(
    n: int, height_px: float, wanted: Iterable[int] = (), label_px: float = LABEL_PX
) -> list[int]:
    """Indices of the rows (of ``n`` over ``height_px``) to label, ascending: ``wanted`` ones
    first (selected rows, ghosts), then evenly spaced ones, no two closer than ``label_px``."""
    if n <= 0:
        return []
    gap = max(math.ceil(label_px / max(height_px / n, 1e-9)), 1)  # rows between two labels
    taken: list[int] = []

    def take(i: int) -> None:
        k = bisect.bisect_left(taken, i)
        if k < len(taken) and taken[k] - i < gap:
            return
        if k > 0 and i - taken[k - 1] < gap:
            return
        taken.insert(k, i)

    for i in wanted:
        if 0 <= i < n:
            take(i)
    for i in range(0, n, gap):
        take(i)
    return taken
