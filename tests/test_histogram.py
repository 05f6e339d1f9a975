"""The one log-spaced histogram: bucket scheme, quantiles against the raw samples, windows."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopmon import histogram
from loopmon.histogram import BOUNDS, NBUCKETS, Histogram, Window, bucket_of, quantile


def true_quantile(samples: list[float], q: float) -> float:
    """numpy's (and R's) default: interpolate between the samples around q * (n - 1)."""
    s = sorted(samples)
    position = q * (len(s) - 1)
    low = math.floor(position)
    high = min(low + 1, len(s) - 1)
    return s[low] + (s[high] - s[low]) * (position - low)


def test_the_bucket_scheme_is_the_issues() -> None:
    assert BOUNDS[0] == pytest.approx(10e-6)
    assert BOUNDS[-1] >= 10.0 > BOUNDS[-2]
    ratios = [b / a for a, b in itertools.pairwise(BOUNDS)]
    assert max(ratios) <= 1.1 + 1e-9
    assert NBUCKETS <= 150


@pytest.mark.parametrize("value", [0.0, 1e-6, 10e-6, 10.01e-6, 0.001, 0.5, 10.0, 11.0, 1e6])
def test_a_value_lands_in_the_bucket_that_bounds_it(value: float) -> None:
    i = bucket_of(value)
    assert 0 <= i < NBUCKETS
    if i < len(BOUNDS):
        assert value <= BOUNDS[i]
    if i > 0:
        assert value > BOUNDS[i - 1]


durations = st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(durations | st.floats(min_value=1e-6, max_value=0.05), min_size=1, max_size=300),
    st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 1.0]),
)
def test_quantiles_are_within_ten_percent_or_ten_microseconds(
    samples: list[float], q: float
) -> None:
    hist = Histogram()
    for s in samples:
        hist.record(s)
    got = hist.quantile(q)
    want = true_quantile(samples, q)
    assert got is not None
    assert abs(got - want) <= max(0.10 * want, 10e-6), (got, want)


def test_an_empty_histogram_has_no_quantile() -> None:
    assert Histogram().quantile(0.5) is None
    assert quantile((), 0.99) is None
    assert quantile([0] * NBUCKETS, 0.5) is None
    assert histogram.highest([0] * NBUCKETS) is None


def test_quantiles_are_not_bucket_bounds() -> None:
    # An idle loop's lag once read "p50 1.0 ms" for minutes: the bound of a coarse bucket.
    hist = Histogram()
    for i in range(100):
        hist.record(0.000150 + i * 0.000001)  # 150-249 us
    p50 = hist.quantile(0.5)
    assert p50 is not None and p50 == pytest.approx(0.0001995, rel=0.05)
    assert p50 not in BOUNDS


def test_a_window_covers_only_its_last_seconds() -> None:
    window = Window(window_s=10.0, step_s=0.5)
    hist = Histogram()
    t = 0.0
    # 20 s of 1 ms samples, then 10 s of 5 ms samples, ten a second, fed 25 times a second.
    for step in range(30 * 25):
        t = step * 0.04
        if step % 25 in (0, 2, 5, 7, 10, 12, 15, 17, 20, 22):
            hist.record(0.001 if t < 20.0 else 0.005)
        counts, covered = window.update(t, hist.counts)
    assert 9.5 <= covered <= 10.0
    assert quantile(counts, 0.5) == pytest.approx(0.005, rel=0.05)
    assert quantile(counts, 0.0) == pytest.approx(0.005, rel=0.05)  # the 1 ms ones are out
    assert 90 <= sum(counts) <= 100


def test_a_window_starts_again_on_another_clock() -> None:
    window = Window(10.0)
    window.update(100.0, [1] * NBUCKETS)
    counts, covered = window.update(5.0, [2] * NBUCKETS)
    assert covered == 0.0 and sum(counts) == 0
