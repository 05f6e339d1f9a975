"""The one door out of the loop thread: the latest snapshot and a bounded event log.

The producer (the loop thread) replaces the unread snapshot rather than queueing it, so a slow
or absent reader never causes a backlog. Events go to a log bounded per kind: each kind keeps
its own last ``log_size`` entries, so a churn of connects and closes can never push out the one
listener failure, stall or exception that matters (shared/DESIGN.md, "rare events"); what a kind
drops is counted. It wakes the reader's ``Waker`` after each post; the waker coalesces, so a
reader that has not drained yet is woken once, not once per post. The reader waits on
``fileno()`` (select, or a QSocketNotifier in the window) and calls ``take()``.

A replaced snapshot still hands on what only it carried: its closed connections (each is reported
once, in one snapshot) and its interval's loop figures go into the snapshot that replaces it
(``carry_over``), so a reader that keeps history (the window's Timeline) is exact for closes and
counts even when it falls behind; the rows' per-interval mask fractions are the replacing
snapshot's own. Cumulative figures (totals, row counters) need nothing: the newer ones cover all.
A snapshot of another session (a restarted producer, seen through a remote source that lives
across reconnects) cannot absorb the old one (ids mean other things there): the old session's
last unread snapshot is held and taken first, with the events posted before the switch; the
mailbox stays readable until the newer one is taken too.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import select
import threading
from collections.abc import Iterable
from dataclasses import replace

from loopmon.snapshot import LagHistogram, LoopEvent, LoopFigures, Snapshot
from loopmon.waker import Waker

# (sequence number, event): the number restores the order of posting across the kinds' logs.
_Logged = tuple[int, LoopEvent]

# Closed connections carried into a replacing snapshot at most; the rest are counted (the
# producer's own bound is 1,000 a snapshot: ten skipped snapshots' worth). The telemetry
# publisher keeps as many for a consumer that loses frames (stream.publisher
# MAX_MISSED_CLOSES), so a close is kept, or counted, alike at either end of the stream.
MAX_CARRIED_CLOSES = 10_000
# Sessions' last unread snapshots held at most (producers restarting faster than the reader
# takes); past it the oldest goes, counted in ``replaced``.
MAX_HELD_SESSIONS = 4


def _sum_lag(a: LagHistogram, b: LagHistogram) -> LagHistogram:
    if not a.counts or not b.counts:
        return LagHistogram(a.counts or b.counts, max(a.max_s, b.max_s))
    return LagHistogram(tuple(x + y for x, y in zip(a.counts, b.counts, strict=True)), b.max_s)


def _sum_figures(a: LoopFigures, b: LoopFigures) -> LoopFigures:
    """Two consecutive intervals as one (``a`` first)."""
    return LoopFigures(
        span_s=a.span_s + b.span_s,
        iterations=a.iterations + b.iterations,
        events=a.events + b.events,
        callbacks=a.callbacks + b.callbacks,
        timers=a.timers + b.timers,
        busy_s=a.busy_s + b.busy_s,
        poll_s=a.poll_s + b.poll_s,
        lag=_sum_lag(a.lag, b.lag),
        stalls=a.stalls + b.stalls,
        errors=a.errors + b.errors,
    )


def carry_over(unread: Snapshot, newer: Snapshot) -> Snapshot:
    """``newer`` as it replaces ``unread``: with ``unread``'s closes before its own and one
    interval spanning both. Snapshots of different sessions share nothing (ids differ)."""
    if unread.session != newer.session:
        return newer
    closed = unread.closed + newer.closed
    omitted = unread.closed_omitted + newer.closed_omitted
    if len(closed) > MAX_CARRIED_CLOSES:
        omitted += len(closed) - MAX_CARRIED_CLOSES
        closed = closed[-MAX_CARRIED_CLOSES:]
    return replace(
        newer,
        interval=_sum_figures(unread.interval, newer.interval),
        closed=closed,
        closed_omitted=omitted,
    )


class Mailbox:
    def __init__(self, log_size: int = 10_000) -> None:
        if log_size <= 0:
            raise ValueError("log_size must be positive")
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._logs: dict[str, collections.deque[_Logged]] = {}
        self._seq = itertools.count()
        self._log_size = log_size
        self._dropped: collections.Counter[str] = collections.Counter()
        self._waker = Waker()
        # (an older session's last unread snapshot, the event seq it was replaced at)
        self._held: collections.deque[tuple[Snapshot, int]] = collections.deque()
        self.replaced = 0  # snapshots replaced unread (their closes carried over)

    @property
    def log_size(self) -> int:
        """How many unread events each kind keeps."""
        return self._log_size

    def fileno(self) -> int:
        """Readable while there is something to take."""
        return self._waker.fileno()

    def post(self, snapshot: Snapshot | None, events: Iterable[LoopEvent] = ()) -> None:
        """Publish (producer side): replace the unread snapshot, log the events, wake."""
        with self._lock:
            if snapshot is not None:
                unread = self._snapshot
                if unread is not None and unread.session != snapshot.session:
                    if len(self._held) >= MAX_HELD_SESSIONS:
                        self._held.popleft()
                        self.replaced += 1
                    self._held.append((unread, next(self._seq)))
                elif unread is not None:
                    # Only when the reader is behind: a tuple concatenation on the loop thread.
                    snapshot = carry_over(unread, snapshot)
                    self.replaced += 1
                self._snapshot = snapshot
            logs = self._logs
            seq = self._seq
            for event in events:
                log = logs.get(event.kind)
                if log is None:
                    log = logs[event.kind] = collections.deque()
                if len(log) >= self._log_size:
                    log.popleft()
                    self._dropped[event.kind] += 1
                log.append((next(seq), event))
        self._waker.wake()

    def poke(self) -> None:
        """Wake the reader with nothing new (a command it is waiting on has finished)."""
        self._waker.wake()

    def take(self) -> tuple[Snapshot | None, list[LoopEvent], int]:
        """(latest unread snapshot or None, events since the last take in the order they were
        posted, events dropped since the last take). Clears the wake first, so a post racing
        with this is never missed. ``dropped_by_kind()`` says which kinds lost them."""
        snapshot, events, dropped = self.take_by_kind()
        return snapshot, events, sum(dropped.values())

    def take_by_kind(self) -> tuple[Snapshot | None, list[LoopEvent], dict[str, int]]:
        """``take()``, with what was dropped counted per kind."""
        self._waker.consume()
        with self._lock:
            if self._held:  # an older session's last: it, and the events posted before it
                return self._take_held()
            snapshot, self._snapshot = self._snapshot, None
            logs = [log for log in self._logs.values() if log]
            merged = (
                [event for _, event in heapq.merge(*logs)]
                if len(logs) > 1
                else [event for _, event in logs[0]]
                if logs
                else []
            )
            for log in logs:
                log.clear()
            dropped = dict(self._dropped)
            self._dropped.clear()
        return snapshot, merged, dropped

    def _take_held(self) -> tuple[Snapshot, list[LoopEvent], dict[str, int]]:
        """(lock held) The oldest held snapshot with the events logged before the switch;
        the reader is woken again for what follows."""
        snapshot, until = self._held.popleft()
        parts: list[list[_Logged]] = []
        for log in self._logs.values():
            part = []
            while log and log[0][0] < until:
                part.append(log.popleft())
            if part:
                parts.append(part)
        events = [event for _, event in heapq.merge(*parts)]
        dropped = dict(self._dropped)
        self._dropped.clear()
        self._waker.wake()
        return snapshot, events, dropped

    def wait(self, timeout: float | None = None) -> bool:
        """Block until there is something to take (or ``timeout``); for reader threads."""
        try:
            readable, _, _ = select.select([self.fileno()], [], [], timeout)
        except (OSError, ValueError):
            return False  # closed under us
        return bool(readable)

    def close(self) -> None:
        self._waker.close()
