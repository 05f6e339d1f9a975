"""The window shows the producer's lag figure (over its window, named), not a bucket bound of
one snapshot interval (which holds at most one sample of a 10 Hz probe)."""

from __future__ import annotations

import math

import numpy as np

from loopmon.gui.history import HealthHistory
from loopmon.snapshot import LagWindow, LoopFigures, Snapshot


def snap(seq: int, lag: LagWindow) -> Snapshot:
    t = seq * 0.04
    totals = LoopFigures(span_s=t, iterations=seq * 10)
    return Snapshot(seq=seq, taken_at=t, backend="epoll", strategy="direct", totals=totals, lag=lag)


def test_lag_is_the_snapshots_own_figure_over_its_window() -> None:
    history = HealthHistory()
    lag = LagWindow(p50_s=0.000137, p99_s=0.00321, max_s=0.004, window_s=9.7, samples=97)
    rates = history.record(snap(1, lag))
    assert (rates.lag_p50_s, rates.lag_p99_s, rates.lag_window_s) == (0.000137, 0.00321, 9.7)
    assert history.ring.last("lag_p99") == 3.21


def test_no_sample_in_the_window_is_a_gap_not_zero() -> None:
    history = HealthHistory()
    rates = history.record(snap(1, LagWindow()))
    assert rates.lag_p50_s is None and rates.lag_p99_s is None
    assert math.isnan(history.ring.last("lag_p50"))
    assert np.isnan(history.ring.column("lag_p99")).all()
