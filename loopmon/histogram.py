"""One log-spaced histogram for every duration loopmon measures: the loop's lag and the load
generator's round-trip latency.

Buckets are 10 % apart from 10 us to past 10 s (147 counts: one for 10 us and less, 145 between,
one past the top), so memory is fixed and a quantile is the geometric middle of its bucket:
within 5 % of every sample in it, or within 10 us below the first bound. Quantiles interpolate
between the two samples around the rank, as numpy's and R's default ("type 7") does, so they
match what one computes from the raw samples rather than jumping from bucket bound to bucket
bound.

Counts are plain lists and tuples indexed by ``bucket_of(seconds)``: the live recorder mutates
a list on the hot path, frozen records (``snapshot.LagHistogram``) hold tuples, and the
functions here read either.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import operator
from collections.abc import Sequence
from typing import Final

BASE_S: Final = 1e-5
TOP_S: Final = 10.0
RATIO: Final = 1.1
# BOUNDS[i] is bucket i's upper bound: bucket 0 holds samples <= BASE_S, bucket i samples in
# (BOUNDS[i - 1], BOUNDS[i]], and the last bucket (index len(BOUNDS)) those above the top.
BOUNDS: Final[tuple[float, ...]] = tuple(
    BASE_S * RATIO**i for i in range(math.ceil(math.log(TOP_S / BASE_S) / math.log(RATIO)) + 1)
)
NBUCKETS: Final = len(BOUNDS) + 1

_bisect = bisect.bisect_left


def bucket_of(seconds: float) -> int:
    """The index of the bucket that counts ``seconds`` (negative counts as 0)."""
    return _bisect(BOUNDS, seconds)


def middle(index: int, max_s: float = math.inf) -> float:
    """The value a bucket stands for: its geometric middle, half the first bound for the
    first, and ``max_s`` (the largest sample seen) for the open-ended last."""
    if index <= 0:
        value = BASE_S / 2
    elif index >= len(BOUNDS):
        return max_s if math.isfinite(max_s) else BOUNDS[-1]
    else:
        value = math.sqrt(BOUNDS[index - 1] * BOUNDS[index])
    return min(value, max_s)


def quantile(counts: Sequence[int], q: float, max_s: float = math.inf) -> float | None:
    """Quantile ``q`` (0..1) of the samples counted, or None when there are none.

    Interpolated between the samples at ranks floor and ceil of ``q * (n - 1)``, each taken
    as its bucket's middle; never above ``max_s``."""
    cumulative = list(itertools.accumulate(counts))
    n = cumulative[-1] if cumulative else 0
    if n <= 0:
        return None
    position = min(max(q, 0.0), 1.0) * (n - 1)
    low = math.floor(position)
    frac = position - low
    value_low = middle(bisect.bisect_right(cumulative, low), max_s)
    if frac == 0.0:
        return value_low
    value_high = middle(bisect.bisect_right(cumulative, low + 1), max_s)
    return value_low + (value_high - value_low) * frac


def highest(counts: Sequence[int], max_s: float = math.inf) -> float | None:
    """The upper bound of the highest bucket holding a sample (``max_s`` for the last, and
    never above it), or None when there are none."""
    for index in range(len(counts) - 1, -1, -1):
        if counts[index]:
            return min(BOUNDS[index], max_s) if index < len(BOUNDS) else max_s
    return None


class Histogram:
    """A live histogram: ``record`` one duration at a time (not thread-safe).

    The load generator's hot path inlines ``record`` as
    ``counts[bisect_left(BOUNDS, s)] += 1`` beside its own max and total; a test pins that
    the two agree."""

    __slots__ = ("counts", "max_s", "total")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.max_s = 0.0
        self.total = 0

    def record(self, seconds: float) -> None:
        self.counts[_bisect(BOUNDS, seconds)] += 1
        self.max_s = max(self.max_s, seconds)
        self.total += 1

    def quantile(self, q: float) -> float | None:
        return quantile(self.counts, q, self.max_s)


class Window:
    """Quantiles over the last ``window_s`` seconds of a cumulative histogram.

    Fed the running counts now and then (``update``), it keeps a mark every ``step_s`` and
    subtracts the oldest mark inside the window, so the figures cover between
    ``window_s - step_s`` and ``window_s`` seconds (``covered_s`` says which) and memory stays
    at ``window_s / step_s`` marks however often it is fed."""

    def __init__(self, window_s: float = 10.0, step_s: float = 0.5) -> None:
        if window_s <= 0 or step_s <= 0:
            raise ValueError("window_s and step_s must be positive")
        self.window_s = window_s
        self.step_s = step_s
        self._marks: collections.deque[tuple[float, tuple[int, ...]]] = collections.deque()

    def update(self, now: float, counts: Sequence[int]) -> tuple[tuple[int, ...], float]:
        """(counts over the window, seconds it covers) as of ``now``. The cover is less than
        ``window_s`` early on, and more only after a gap in feeding longer than the window."""
        marks = self._marks
        if marks and now < marks[-1][0]:
            marks.clear()  # another clock: a restarted producer
        if not marks or now - marks[-1][0] >= self.step_s:
            marks.append((now, tuple(counts)))
        while len(marks) > 1 and now - marks[0][0] > self.window_s:
            marks.popleft()
        then, base = marks[0]
        if len(base) != len(counts):
            return tuple(counts), now - then
        # One C-level map, not a generator: this runs at every snapshot over 147 buckets
        # (a generator took ~8 % of an idle 100-connection tick, by callgrind).
        return tuple(map(operator.sub, counts, base)), now - then
