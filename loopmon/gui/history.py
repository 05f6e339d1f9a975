"""What the plots remember: numpy ring buffers fed once per snapshot, read by the views.

Nothing here loops over connections in Python: a snapshot's connection rows are turned into
columns once (``ConnectionColumns``) and every per-fd update is a numpy scatter.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

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


class ConnectionColumns:
    """A snapshot's connection rows as numpy columns (built once, shared by the views)."""

    __slots__ = ("created", "fd", "messages", "queue", "read", "write")

    def __init__(self, snapshot: Snapshot) -> None:
        rows = snapshot.connections
        n = len(rows)
        # One C-level pass per column (np.fromiter over an itemgetter map): about half the
        # time of transposing every field with zip(*rows). Field numbers of ConnectionRow.
        self.fd = np.fromiter(map(itemgetter(0), rows), np.int64, n)
        self.read = np.fromiter(map(itemgetter(5), rows), np.float32, n)
        self.write = np.fromiter(map(itemgetter(6), rows), np.float32, n)
        self.queue = np.fromiter(map(itemgetter(10), rows), np.float32, n)
        self.messages = np.fromiter(map(itemgetter(14), rows), np.int64, n)
        self.created = np.fromiter(map(itemgetter(15), rows), np.float64, n)


# Per-fd history is indexed by fd number (the OS hands out the lowest free number, so with
# 10,000 connections the numbers stay near 10,000). It costs ~1.5 KiB per fd; fds above this
# are left out of the raster and the queue plot rather than grow it without bound.
MAX_FD = 65535


class _Subset:
    """Some rows of a ConnectionColumns."""

    def __init__(self, cols: ConnectionColumns, keep: np.ndarray) -> None:
        self.fd: np.ndarray = cols.fd[keep]
        self.read: np.ndarray = cols.read[keep]
        self.write: np.ndarray = cols.write[keep]
        self.queue: np.ndarray = cols.queue[keep]
        self.messages: np.ndarray = cols.messages[keep]
        self.created: np.ndarray = cols.created[keep]


class FdHistory:
    """Per connection, the last ``window_s`` seconds in fixed time slices.

    Rows are indexed by fd (fd-major, so wiping one connection's history is one contiguous
    block). A row is wiped when its fd turns up with another ``created_at`` (the OS reused the
    number for a new connection). Per slice it keeps the time-weighted share of READ and of
    WRITE registration, so a flip shorter than a frame is still there, and the deepest queue.
    """

    def __init__(self, window_s: float = WINDOW_S, slice_s: float = 0.5) -> None:
        self.window_s = window_s
        self.slice_s = slice_s
        self.nslices = round(window_s / slice_s)
        self._reset()

    def _reset(self) -> None:
        self._capacity = 0
        shape = (0, self.nslices)
        self._read = np.zeros(shape, dtype=np.float32)
        self._write = np.zeros(shape, dtype=np.float32)
        self._queue = np.zeros(shape, dtype=np.float32)
        self._weight = np.zeros(self.nslices, dtype=np.float64)
        self._created = np.zeros(0, dtype=np.float64)
        self._messages = np.zeros(0, dtype=np.int64)
        self.activity = np.zeros(0, dtype=np.float64)  # decayed recent messages per fd
        self.peak_queue = np.zeros(0, dtype=np.float32)  # decayed deepest queue per fd
        self._newest: int | None = None  # absolute slice number of the newest slice
        self.live = np.zeros(0, dtype=np.int64)  # fds in the latest snapshot
        self.now = 0.0

    def clear(self) -> None:
        self._reset()

    def _grow(self, max_fd: int) -> None:
        new = min(max(max_fd + 1, self._capacity * 3 // 2, 64), MAX_FD + 1)
        extra = new - self._capacity

        def taller(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a, np.zeros((extra, *a.shape[1:]), dtype=a.dtype)])

        self._read = taller(self._read)
        self._write = taller(self._write)
        self._queue = taller(self._queue)
        self._messages = taller(self._messages)
        self.activity = taller(self.activity)
        self.peak_queue = taller(self.peak_queue)
        self._created = np.concatenate([self._created, np.full(extra, np.nan)])
        self._capacity = new

    def _advance(self, slice_no: int) -> None:
        newest = self._newest
        if newest is None or slice_no < newest or slice_no - newest >= self.nslices:
            if newest is not None and slice_no < newest:
                self._created[:] = np.nan  # another clock: forget everything
                self.activity[:] = 0
                self.peak_queue[:] = 0
            cleared: slice | list[int] = slice(None)
        else:
            cleared = [k % self.nslices for k in range(newest + 1, slice_no + 1)]
        self._read[:, cleared] = 0
        self._write[:, cleared] = 0
        self._queue[:, cleared] = 0
        self._weight[cleared] = 0
        self._newest = slice_no

    def record(self, snapshot: Snapshot, cols: ConnectionColumns | _Subset) -> None:
        self.now = snapshot.taken_at
        slice_no = int(snapshot.taken_at // self.slice_s)
        if slice_no != self._newest:
            self._advance(slice_no)
        b = slice_no % self.nslices
        span = snapshot.interval.span_s
        weight = span if span > 0 else 1e-3
        self._weight[b] += weight
        fds = cols.fd
        if len(fds) and int(fds.max()) > MAX_FD:  # beyond what is kept: leave those out
            keep = fds <= MAX_FD
            fds = fds[keep]
            cols = _Subset(cols, keep) if isinstance(cols, ConnectionColumns) else cols
        self.live = fds
        if not len(fds):
            return
        top = int(fds.max())
        if top >= self._capacity:
            self._grow(top)
        reused = self._created[fds] != cols.created  # NaN (never seen) compares unequal too
        if reused.any():
            fresh = fds[reused]
            self._read[fresh] = 0
            self._write[fresh] = 0
            self._queue[fresh] = 0
            self._created[fresh] = cols.created[reused]
            self._messages[fresh] = cols.messages[reused]
            self.activity[fresh] = 0
            self.peak_queue[fresh] = 0
        self._read[fds, b] += cols.read * weight
        self._write[fds, b] += cols.write * weight
        self._queue[fds, b] = np.maximum(self._queue[fds, b], cols.queue)
        delta = cols.messages - self._messages[fds]
        self._messages[fds] = cols.messages
        self.activity[fds] = self.activity[fds] * 0.9 + np.maximum(delta, 0)
        self.peak_queue[fds] = np.maximum(self.peak_queue[fds] * 0.98, cols.queue)

    def slice_times(self) -> np.ndarray:
        """Start time of each slice, oldest first (loop clock)."""
        newest = self._newest if self._newest is not None else 0
        first = newest - self.nslices + 1
        return (first + np.arange(self.nslices)) * self.slice_s

    def _order(self) -> np.ndarray:
        newest = self._newest if self._newest is not None else 0
        return (newest + 1 + np.arange(self.nslices)) % self.nslices

    def fractions(self, fds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(read, write, known) for ``fds``, each shaped (slices oldest first, len(fds)).

        ``known`` is False for slices with no sample or from before the connection existed.
        """
        if not len(fds):
            empty = np.zeros((self.nslices, 0), dtype=np.float32)
            return empty, empty, empty.astype(bool)
        order = self._order()
        weight = self._weight[order][:, None]
        safe = np.where(weight > 0, weight, 1.0)
        read = self._read[fds][:, order].T / safe
        write = self._write[fds][:, order].T / safe
        ends = self.slice_times() + self.slice_s
        known = (weight > 0) & (ends[:, None] > self._created[fds][None, :])
        return np.clip(read, 0, 1), np.clip(write, 0, 1), known

    def queue_series(self, fds: np.ndarray) -> np.ndarray:
        """Deepest queue per slice for ``fds``: shape (slices oldest first, len(fds))."""
        if not len(fds):
            return np.zeros((self.nslices, 0), dtype=np.float32)
        return self._queue[fds][:, self._order()].T

    def busiest(self, count: int, exclude: Sequence[int] = ()) -> list[int]:
        """Up to ``count`` live fds with the most recent echo activity (then deepest queue)."""
        fds = self.live
        if not len(fds) or count <= 0:
            return []
        if exclude:
            fds = fds[~np.isin(fds, np.asarray(exclude, dtype=np.int64))]
        if len(fds) <= count:
            return sorted(int(f) for f in fds)
        score = self.activity[fds] + self.peak_queue[fds] * 1e-6
        top = np.argpartition(-score, count - 1)[:count]
        return sorted(int(f) for f in fds[top])

    def deepest(self, count: int) -> list[int]:
        """Up to ``count`` live fds with the deepest recent queues (empty queues excluded)."""
        fds = self.live
        if not len(fds) or count <= 0:
            return []
        peaks = self.peak_queue[fds]
        nonzero = peaks > 0
        fds, peaks = fds[nonzero], peaks[nonzero]
        if len(fds) > count:
            top = np.argpartition(-peaks, count - 1)[:count]
            fds, peaks = fds[top], peaks[top]
        order = np.argsort(-peaks, kind="stable")
        return [int(f) for f in fds[order]]
