"""Loop rates as the window shows them: events/s, iterations/s and utilization over the last
second (``RATE_WINDOW_S``), the same figure in the health plot and the status strip. Over one
40 ms snapshot interval a single event reads as 25/s; over a second, as what it is."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from loopmon.snapshot import LoopFigures, Snapshot

RATE_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class Rates:
    """Loop health over the last ``window_s`` (RATE_WINDOW_S, less only while the window has
    not watched that long) as of a snapshot the window received."""

    window_s: float = 0.0
    events_per_s: float = 0.0
    iterations_per_s: float = 0.0
    utilization: float = 0.0  # 0..1
    lag_p50_s: float | None = None  # over the producer's lag window (None: no sample in it)
    lag_p99_s: float | None = None
    lag_window_s: float = 0.0


class RateWindow:
    """Rates from the difference of the cumulative ``totals`` between a snapshot and the newest
    one received at least ``window_s`` before it, so a snapshot the mailbox replaced before the
    window took it loses nothing. After a restart (totals start again) the window starts again,
    from the snapshot's own interval."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        # (taken_at, totals) of the snapshots within the window, and the one just before it
        self._recent: collections.deque[tuple[float, LoopFigures]] = collections.deque()

    def clear(self) -> None:
        self._recent.clear()

    def update(self, snap: Snapshot) -> Rates:
        """The rates as of ``snap`` (the next snapshot received, on the same clock)."""
        recent, now = self._recent, snap.totals
        last = recent[-1][1] if recent else None
        if last is None or not (now.span_s > last.span_s and now.iterations >= last.iterations):
            recent.clear()  # the first snapshot, or a restarted loop's new totals
        while len(recent) > 1 and snap.taken_at - recent[1][0] >= self.window_s:
            recent.popleft()
        interval = now.minus(recent[0][1]) if recent else snap.interval
        recent.append((snap.taken_at, now))
        return Rates(
            window_s=interval.span_s,
            events_per_s=interval.events_per_s,
            iterations_per_s=interval.iterations_per_s,
            utilization=interval.utilization,
            # The producer's figure over its window (a snapshot interval holds one sample of
            # the 10 Hz probe at most), the same the status line of serve prints.
            lag_p50_s=snap.lag.p50_s,
            lag_p99_s=snap.lag.p99_s,
            lag_window_s=snap.lag.window_s,
        )
