"""The loop's self-measurement: live counters it updates in place, and frozen records of them.

The live side is built for the hot path: one ``FdStat`` per registration with slots, whose
readiness counts are a 32-slot list indexed by the event mask itself (one list increment per
event, no branching), and whose time in each mask is accounted only when the mask changes.
That list is also the loop's whole per-fd entry. The cells no delivered mask can use hold the
time spent in the handler (``HANDLER_TIME``), the object and handler to call (``OBJ``,
``HANDLER``) and the poll count at registration (``REGISTERED``): cell 0, and every mask with bit
0x2, since every mask a poller returns is non-zero and within READ | WRITE | ERROR (the poller
contract tests check it on every poll). So the dispatch reads and writes one list per event,
with no tuple or record beside it: with 1,000 busy connections each further per-fd object is a
cache miss, and a few of them cost several per cent of a 128-byte round trip (interleaved A/B
against a C client: the tuple alone was 2-5 %).
(Flat ``array('d')`` counters, one cache line per fd, were tried and measured: CPython 3.11's
subscript on an array costs about 120 ns against 50 for a list, which outweighed the cache
misses saved, with 100 and with 1,000 busy connections alike.) The frozen side
(``LoopStats``) is built on request and may cost what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loopmon.events import ERROR, READ, WRITE
from loopmon.histogram import NBUCKETS, bucket_of
from loopmon.snapshot import LagHistogram

# Cells of FdStat.ready that hold no readiness count (see the module's docstring).
HANDLER_TIME = 0
OBJ = 2
HANDLER = 3
REGISTERED = 6
_UNDELIVERED = 0x2  # no poller reports this bit, so no mask with it is ever counted

_MASKS = tuple(m for m in range(1, 32) if not m & _UNDELIVERED)
_READ_MASKS = tuple(m for m in _MASKS if m & READ)
_WRITE_MASKS = tuple(m for m in _MASKS if m & WRITE)
_ERROR_MASKS = tuple(m for m in _MASKS if m & ERROR)


class FdStat:
    """Live figures for one registered fd. Only the loop thread touches it."""

    __slots__ = (
        "fd",
        "mask",
        "read_time",
        "ready",
        "registered_at",
        "since",
        "write_time",
    )

    def __init__(self, fd: int, mask: int, now: float) -> None:
        self.fd = fd
        self.mask = mask
        self.since = now  # when ``mask`` was last accounted
        self.registered_at = now
        self.read_time = 0.0  # seconds with READ registered, up to ``since``
        self.write_time = 0.0
        # Readiness counts by delivered mask, and in the cells no mask uses, what the loop's
        # dispatch needs: the handler's time (a float), the object and handler to call and
        # the registration's poll count (set by the loop).
        self.ready: list[Any] = [0.0] + [0] * 31

    @property
    def handler_time(self) -> float:
        return float(self.ready[HANDLER_TIME])

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
        ready = self.ready
        if not any(ready[8:]):
            # The usual case, and what a snapshot of many rows mostly meets: no mask with the
            # ERROR bits (8 and up) has occurred, so only READ (1), WRITE (4) and both (5) can
            # have counts; 3 and 7 have bit 0x2 and hold no count.
            both = ready[5]
            return ready[1] + both, ready[4] + both, 0
        return (
            sum(ready[m] for m in _READ_MASKS),
            sum(ready[m] for m in _WRITE_MASKS),
            sum(ready[m] for m in _ERROR_MASKS),
        )

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
    """Histogram of a probe timer's lateness, in ``loopmon.histogram``'s buckets."""

    __slots__ = ("counts", "max_s")

    def __init__(self) -> None:
        self.counts = [0] * NBUCKETS
        self.max_s = 0.0

    def record(self, lateness: float) -> None:
        lateness = max(lateness, 0.0)
        self.counts[bucket_of(lateness)] += 1
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
