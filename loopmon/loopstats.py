"""The loop's self-measurement: live counters it updates in place, and frozen records of them.

The live side is built for the hot path. The per-event figures of every fd live in one flat C
array of doubles (``FdCounters``), 32 per fd, indexed by the event mask itself: the readiness
counts. Masks no poller delivers hold the rest: slot 0 (no bits) the time spent in the handler,
and the masks with bit 2 (EPOLLPRI, which loopmon never registers) a "touched" flag and two
cells for the handler's owner (the echo server keeps a connection's byte and read counts
there). An event then updates a few machine words in place, usually in one cache line (slots
0-7 hold the handler time, READ=1, WRITE=4, both=5, the flag and the owner's cells): no
branching, no Python object per counter to find in memory. With a thousand busy connections
each such object is a cache miss, and those cost more than the arithmetic. Doubles count
exactly up to 2**53. The rest of an fd's figures (``FdStat``: its mask and the
time in each) change only when the mask does. The frozen side (``LoopStats``) is built on
request and may cost what it costs.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress

from loopmon.events import ERROR, READ, WRITE
from loopmon.snapshot import LAG_BUCKETS, LagHistogram

_PRI = 2  # EPOLLPRI/POLLPRI: never registered, so never delivered; its masks hold other figures
_MASKS = tuple(m for m in range(32) if not m & _PRI)
_READ_MASKS = tuple(m for m in _MASKS if m & READ)
_WRITE_MASKS = tuple(m for m in _MASKS if m & WRITE)
_ERROR_MASKS = tuple(m for m in _MASKS if m & ERROR)


SLOTS = 32  # readiness counts per fd: one per delivered mask (events & 31)


def _sum_counts(ready: Sequence[float]) -> tuple[int, int, int]:
    return (
        int(sum(ready[m] for m in _READ_MASKS)),
        int(sum(ready[m] for m in _WRITE_MASKS)),
        int(sum(ready[m] for m in _ERROR_MASKS)),
    )


HANDLER_SLOT = 0  # events & 31 is never 0: a poller reports an fd only with some bit set
TOUCHED_SLOT = 2  # 1.0 once an event was dispatched since the last take_touched()
OWNER_SLOTS = (6, 7)  # the handler owner's two cells (IOLoop.owner_cells)
_NOT_READINESS = (HANDLER_SLOT, TOUCHED_SLOT, 3, *OWNER_SLOTS)
_ZEROS = bytes(8 * SLOTS)


class FdCounters:
    """The per-event counters of every fd, in one flat array indexed by fd number.

    ``cells[(fd << 5) | (events & 31)]`` counts deliveries of each mask and
    ``cells[fd << 5]`` sums seconds spent in the fd's handler. Grown (never shrunk) to the
    highest fd registered: 256 bytes per fd number, 2.5 MB at 10,000.
    """

    __slots__ = ("cells",)

    def __init__(self) -> None:
        self.cells = array("d")

    def claim(self, fd: int) -> None:
        """Make room for ``fd`` and zero its counters (a new registration starts from 0)."""
        have = len(self.cells) // SLOTS
        if fd >= have:
            grow = max(fd + 1, have * 2, 64) - have
            self.cells.extend(array("d", bytes(8 * SLOTS * grow)))
            return
        base = fd * SLOTS
        self.cells[base : base + SLOTS] = array("d", _ZEROS)

    def ready(self, fd: int) -> list[int]:
        base = fd * SLOTS
        counts = [int(c) for c in self.cells[base : base + SLOTS]]
        for slot in _NOT_READINESS:
            counts[slot] = 0
        return counts

    def take_touched(self) -> list[int]:
        """The fds whose flag was set since the last call, clearing the flags (C-level work:
        a strided slice, not a loop over every fd)."""
        n = len(self.cells) // SLOTS
        flags = self.cells[TOUCHED_SLOT::SLOTS]
        if not any(flags):
            return []
        self.cells[TOUCHED_SLOT::SLOTS] = array("d", bytes(8 * n))
        return list(compress(range(n), flags))

    def handler_time(self, fd: int) -> float:
        return self.cells[fd * SLOTS + HANDLER_SLOT]

    def ready_counts(self, fd: int) -> tuple[int, int, int]:
        """(read, write, error) readiness counts of ``fd``; telemetry asks this of every busy
        connection 25 times a second, so the usual case is a few C-level operations."""
        base = fd * SLOTS
        row = self.cells[base : base + SLOTS]
        error = sum(row[8:])  # every mask from 8 up carries an ERROR bit (none has bit 2)
        if error:
            return _sum_counts(row)
        # The usual case: only READ, WRITE or both occurred.
        return int(row[1] + row[5]), int(row[4] + row[5]), 0


class FdStat:
    """Live figures for one registered fd. Only the loop thread touches it.

    Its readiness counts and handler time are read from the loop's ``FdCounters`` while it is
    registered; ``detach()`` (on unregistering) copies them out, so a stale reference cannot
    see the counters of a later registration of the same number.
    """

    __slots__ = (
        "_counters",
        "_handler_time",
        "_ready",
        "fd",
        "mask",
        "read_time",
        "registered_at",
        "since",
        "write_time",
    )

    def __init__(self, fd: int, mask: int, now: float, counters: FdCounters | None = None) -> None:
        if counters is None:
            counters = FdCounters()
            counters.claim(fd)
        self.fd = fd
        self.mask = mask
        self.since = now  # when ``mask`` was last accounted
        self.registered_at = now
        self.read_time = 0.0  # seconds with READ registered, up to ``since``
        self.write_time = 0.0
        self._counters: FdCounters | None = counters
        self._ready: list[int] = []
        self._handler_time = 0.0

    @property
    def ready(self) -> list[int]:
        """Readiness counts by delivered mask (32 of them), as of now."""
        counters = self._counters
        if counters is None:
            return self._ready
        return counters.ready(self.fd)

    @property
    def handler_time(self) -> float:
        """Seconds spent in this fd's handler so far."""
        counters = self._counters
        return self._handler_time if counters is None else counters.handler_time(self.fd)

    def detach(self) -> None:
        """Keep the counters as they are now, independent of the shared arrays."""
        if self._counters is not None:
            self._ready = self.ready
            self._handler_time = self.handler_time
            self._counters = None

    def account(self, now: float) -> None:
        """Credit the time since the last change to the mask held during it."""
        elapsed = now - self.since
        mask = self.mask
        if mask & READ:
            self.read_time += elapsed
        if mask & WRITE:
            self.write_time += elapsed
        self.since = now

    def set_mask(self, mask: int, now: float) -> None:
        self.account(now)
        self.mask = mask

    def times_at(self, now: float) -> tuple[float, float]:
        """(read_time, write_time) as of ``now``, without changing anything."""
        elapsed = now - self.since
        mask = self.mask
        return (
            self.read_time + (elapsed if mask & READ else 0.0),
            self.write_time + (elapsed if mask & WRITE else 0.0),
        )

    def ready_counts(self) -> tuple[int, int, int]:
        """(read, write, error) readiness counts; an event with both bits counts in both."""
        counters = self._counters
        if counters is not None:
            return counters.ready_counts(self.fd)
        return _sum_counts(self._ready)

    def freeze(self, now: float) -> FdStats:
        read_time, write_time = self.times_at(now)
        r, w, e = self.ready_counts()
        return FdStats(
            self.fd,
            self.mask,
            read_time,
            write_time,
            r,
            w,
            e,
            self.handler_time,
            now - self.registered_at,
        )


class LagRecorder:
    """Histogram of a probe timer's lateness, in the buckets of ``snapshot.LAG_BUCKETS``."""

    __slots__ = ("counts", "max_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        self.max_s = 0.0

    def record(self, lateness: float) -> None:
        lateness = max(lateness, 0.0)
        self.counts[bisect_left(LAG_BUCKETS, lateness)] += 1
        self.max_s = max(self.max_s, lateness)

    def freeze(self) -> LagHistogram:
        return LagHistogram(tuple(self.counts), self.max_s)


@dataclass(frozen=True, slots=True)
class FdStats:
    fd: int
    mask: int
    read_time_s: float  # cumulative time with READ registered
    write_time_s: float
    ready_read: int
    ready_write: int
    ready_error: int
    handler_time_s: float
    registered_s: float  # how long it has been registered


@dataclass(frozen=True, slots=True)
class Stall:
    at: float  # loop clock when the slow unit began
    duration_s: float
    what: str  # "handler for fd 7" / "callback name"
    fd: int  # -1 for a callback or timer
    stack: str  # the loop thread's stack during the stall, if the watchdog caught it


@dataclass(frozen=True, slots=True)
class HandlerError:
    at: float
    what: str
    fd: int
    traceback: str


@dataclass(frozen=True, slots=True)
class PassStats:
    """The most recent pass of the loop."""

    poll_s: float = 0.0
    busy_s: float = 0.0
    events: int = 0
    callbacks: int = 0
    timers: int = 0


@dataclass(frozen=True, slots=True)
class LoopStats:
    backend: str
    running: bool
    taken_at: float
    iterations: int
    events: int
    callbacks: int
    timers: int
    busy_s: float
    poll_s: float
    last_pass: PassStats
    lag: LagHistogram
    fds: tuple[FdStats, ...]
    stalls: tuple[Stall, ...]
    errors: tuple[HandlerError, ...]
    stall_count: int
    error_count: int

    @property
    def utilization(self) -> float:
        total = self.busy_s + self.poll_s
        return self.busy_s / total if total > 0 else 0.0
