"""The loop's recent rates for the status strip (``HealthHistory``: a numpy ring fed once per
snapshot). What the plots show comes from the Timeline (``loopmon.gui.model.timeline``), which
keeps every connection by (session, id) over the whole session; the per-fd ring that was here
(the last 60 s only, lost at each close) went with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loopmon.gui.model.rates import RATE_WINDOW_S, Rates, RateWindow
from loopmon.snapshot import Snapshot

WINDOW_S = 60.0


class SeriesRing:
    """A fixed number of float samples per field, oldest dropped first.

    Every sample is written twice (at ``i`` and ``i + capacity``) so the stored samples are
    always one contiguous slice, and reading them copies nothing.
    """

    def __init__(self, capacity: int, fields: Sequence[str]) -> None:
        self.capacity = capacity
        self.fields = tuple(fields)
        self._index = {name: i for i, name in enumerate(self.fields)}
        self._buf = np.zeros((len(self.fields), 2 * capacity), dtype=np.float64)
        self._head = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._head = 0
        self._count = 0

    def append(self, values: Sequence[float]) -> None:
        i = self._head
        self._buf[:, i] = values
        self._buf[:, i + self.capacity] = values
        self._head = (i + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def column(self, name: str) -> np.ndarray:
        """The samples of one field, oldest first (a view: do not keep it past the next append)."""
        end = self._head + self.capacity
        return self._buf[self._index[name], end - self._count : end]

    def last(self, name: str, default: float = 0.0) -> float:
        if not self._count:
            return default
        return float(self._buf[self._index[name], self._head + self.capacity - 1])


HEALTH_FIELDS = ("t", "events", "iterations", "utilization", "lag_p50", "lag_p99", "queue")


class HealthHistory:
    """Loop figures over time, one sample per received snapshot.

    Rates are over the last ``rate_window_s`` (``loopmon.gui.model.rates.RateWindow``), the
    same figures the status strip shows.
    """

    def __init__(self, capacity: int = 8192, rate_window_s: float = RATE_WINDOW_S) -> None:
        self.ring = SeriesRing(capacity, HEALTH_FIELDS)
        self.rate_window = RateWindow(rate_window_s)
        self._previous: Snapshot | None = None
        self.latest = Rates()

    @property
    def rate_window_s(self) -> float:
        return self.rate_window.window_s

    def clear(self) -> None:
        self.ring.clear()
        self._previous = None
        self.rate_window.clear()
        self.latest = Rates()

    def record(self, snapshot: Snapshot) -> Rates:
        prev = self._previous
        if prev is not None and snapshot.taken_at < prev.taken_at:
            self.ring.clear()  # a different clock: the old samples cannot share the axis
            prev = None
        if prev is None:
            self.rate_window.clear()
        rates = self.rate_window.update(snapshot)
        self._previous = snapshot
        self.latest = rates
        self.ring.append(
            (
                snapshot.taken_at,
                rates.events_per_s,
                rates.iterations_per_s,
                rates.utilization * 100.0,
                _ms(rates.lag_p50_s),
                _ms(rates.lag_p99_s),
                float(snapshot.queue_bytes),
            )
        )
        return rates


def _ms(seconds: float | None) -> float:
    return float("nan") if seconds is None else seconds * 1e3  # NaN: a gap in the plot
