"""The frozen records every producer makes and every consumer reads (``loopmon.snapshot``),
built by hand, with no loop."""

from __future__ import annotations

import dataclasses

import pytest

from loopmon.snapshot import LagHistogram, ListenerRow, LoopFigures, Snapshot


def test_loop_figures_minus_is_the_interval_between_two_totals() -> None:
    earlier = LoopFigures(span_s=1.0, iterations=10, events=20, busy_s=0.25, poll_s=0.75)
    later = LoopFigures(
        span_s=3.0, iterations=30, events=120, callbacks=4, busy_s=1.25, poll_s=1.75, stalls=1
    )
    interval = later.minus(earlier)
    assert (interval.span_s, interval.iterations, interval.events) == (2.0, 20, 100)
    assert (interval.callbacks, interval.stalls) == (4, 1)
    assert interval.events_per_s == 50.0 and interval.iterations_per_s == 10.0
    assert interval.utilization == pytest.approx(0.5)


def test_rates_and_utilization_of_an_empty_span_are_zero() -> None:
    empty = LoopFigures()
    assert (empty.events_per_s, empty.iterations_per_s, empty.utilization) == (0.0, 0.0, 0.0)


def test_lag_histogram_minus() -> None:
    earlier = LagHistogram((1, 2, 0), 0.5)
    later = LagHistogram((1, 5, 3), 0.75)
    assert later.minus(earlier) == LagHistogram((0, 3, 3), 0.75)
    assert later.minus(earlier).total == 6
    assert later.minus(LagHistogram()) is later  # nothing before: all of it
    assert LagHistogram((), 0.75).minus(earlier) == LagHistogram((), 0.75)


def test_a_listener_row_names_its_address_as_loopmon_prints_it() -> None:
    assert ListenerRow(1, "127.0.0.1", 10000, "listening").address == "127.0.0.1:10000"
    assert ListenerRow(2, "::1", 10000, "listening").address == "[::1]:10000"


def test_records_are_frozen() -> None:
    snapshot = Snapshot(seq=1, taken_at=5.0, backend="epoll", strategy="direct")
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.seq = 2  # type: ignore[misc]
    assert snapshot.alive and snapshot.connections == () and snapshot.tasks is None


def test_an_interval_without_a_lag_sample_has_an_empty_histogram() -> None:
    # Most intervals: the probe fires ten times a second, snapshots 25 times.
    before = LagHistogram((0, 3, 1), 0.002)
    same = LagHistogram((0, 3, 1), 0.002)
    assert same.minus(before) == LagHistogram((), 0.002)
    assert LagHistogram((0, 4, 1), 0.003).minus(before) == LagHistogram((0, 1, 0), 0.003)
