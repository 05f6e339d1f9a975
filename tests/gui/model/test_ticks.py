"""Axis labels that fit the pixels a plot has."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from loopmon.gui.model.ticks import LABEL_PX, spaced_rows, value_ticks


def test_value_ticks_are_round_and_as_many_as_fit() -> None:
    ticks = value_ticks(61234.0, 30.0, lambda v: f"{v:g}")
    assert [v for v, _ in ticks] == [0.0, 50000.0]
    ticks = value_ticks(61234.0, 200.0, lambda v: f"{v:g}")
    assert [v for v, _ in ticks] == [0.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0, 60000.0]
    assert value_ticks(0.0, 100.0, str) == [(0.0, "0.0")]


@given(st.floats(1e-6, 1e12), st.floats(1.0, 2000.0))
def test_value_ticks_never_crowd(top: float, height: float) -> None:
    ticks = value_ticks(top, height, str)
    assert ticks[0][0] == 0.0 and 2 <= len(ticks) <= max(height // (2 * LABEL_PX), 1) + 1
    assert all(v <= top * (1 + 1e-9) for v, _ in ticks)


def test_spaced_rows_label_the_wanted_first_and_never_crowd() -> None:
    rows = spaced_rows(80, 300.0, wanted=range(40, 80))  # 80 rows in 300 px, 40 ghosts
    assert 40 in rows
    gap = min(b - a for a, b in itertools.pairwise(rows))
    assert gap * 300.0 / 80 >= LABEL_PX
    assert spaced_rows(10, 400.0) == list(range(10))  # room for every one
    assert spaced_rows(0, 100.0) == []


@given(st.integers(1, 200), st.floats(10.0, 2000.0), st.lists(st.integers(0, 199)))
def test_spaced_rows_never_closer_than_a_label(n: int, height: float, wanted: list[int]) -> None:
    rows = spaced_rows(n, height, wanted)
    assert rows == sorted(set(rows)) and all(0 <= i < n for i in rows) and rows
    per_row = height / n
    assert all((b - a) * per_row >= LABEL_PX - 1e-6 for a, b in itertools.pairwise(rows))
