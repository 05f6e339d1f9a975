"""Lag quantiles cover the last second, not one snapshot interval (which holds at most one
sample of a 10 Hz probe)."""

from __future__ import annotations

from loopmon.gui.history import HealthHistory
from loopmon.snapshot import LAG_BUCKETS, LagHistogram, LoopFigures, Snapshot


def snap(seq: int, samples: int) -> Snapshot:
    t = seq * 0.04
    counts = [0] * (len(LAG_BUCKETS) + 1)
    counts[LAG_BUCKETS.index(0.005)] = samples  # every sample 2.5-5 ms late
    totals = LoopFigures(span_s=t, iterations=seq * 10, lag=LagHistogram(tuple(counts), 0.004))
    return Snapshot(seq=seq, taken_at=t, backend="epoll", strategy="direct", totals=totals)


def test_lag_shows_in_every_snapshot_though_samples_are_sparse() -> None:
    history = HealthHistory()
    shown = []
    for seq in range(1, 100):
        rates = history.record(snap(seq, samples=seq // 3))  # a sample every 3rd snapshot
        shown.append(rates.lag_p99_s)
    assert all(v == 0.005 for v in shown[30:]), shown[30:]


def test_no_samples_shows_zero() -> None:
    history = HealthHistory()
    rates = [history.record(snap(seq, samples=0)) for seq in range(1, 40)]
    assert rates[-1].lag_p50_s == 0.0
