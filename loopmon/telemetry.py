"""Telemetry: a periodic callback on the loop that turns what the loop and the echo server
measured into a frozen ``Snapshot`` and posts it to the ``Mailbox``.

It runs on the loop thread, so its cost is taken from the loop: it does work only for the
connections that did something. A connection whose fd saw no event and no mask change in this
interval or the one before (so its mask was constant across the whole interval, and its
fractions are exactly 1 or 0, as last time) keeps its previous row object unchanged.

Past 400 lines and still one job: the snapshot's making, whose hot parts (the rows, the lag,
the throttle, the collector's headroom) share one per-frame budget and are measured together.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Protocol

from loopmon import histogram
from loopmon.events import READ, WRITE
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.loopstats import FdStat, HandlerError, Stall
from loopmon.mailbox import Mailbox
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    LagWindow,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    Snapshot,
)

# Lag quantiles are taken over this long: the probe fires ten times a second, so a snapshot
# interval holds one sample at most, and 100 samples make a p99 worth reading.
LAG_WINDOW_S = 10.0
# Closed connections a snapshot lists with their final figures; a churn beyond is counted.
CLOSED_PER_FRAME = 1000
# The most of the loop's time telemetry takes (build, encoding, sends) before it skips ticks.
MAX_SHARE = 0.10
# What these snapshots measure (ProducerInfo.measures): every row figure, and the listeners.
MEASURES: tuple[str, ...] = (
    "connections",
    "ready_read",
    "ready_write",
    "ready_error",
    "queue_bytes",
    "queue_chunks",
    "bytes_in",
    "bytes_out",
    "messages",
    "listeners",
)

# GC HEADROOM. A frame replaces each changed row with a new tuple (a tracked object) and frees
# the old ones only when the previous snapshot goes, a frame later: it leaves nothing behind,
# but its peak of young objects (one per changed row) trips CPython's default gen0 threshold
# (700) about twice a frame at 1,000 busy rows, 0.38 ms a frame of collections that find
# nothing (benchmarks/bench_frame.py --gc). A program that owns its process and builds
# snapshots on its loop (``loopmon serve``) calls ``give_gc_headroom`` once: with a gen0
# threshold above a frame's peak, the collector runs only when objects really accumulate.
# (``loopmon run`` does not: the process and its collector are the program's.)
GC_GEN0_THRESHOLD = 25_000


def give_gc_headroom() -> None:
    """Raise the collector's gen0 threshold to ``GC_GEN0_THRESHOLD`` (never lower it; a
    collector turned off, threshold 0, stays off)."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


_new_row = tuple.__new__
_ROW = itemgetter(1)  # the row in a tracked entry
_READ_FRACTION = ConnectionRow._fields.index("read_fraction")
_WRITE_FRACTION = ConnectionRow._fields.index("write_fraction")
_QUEUE_BYTES = ConnectionRow._fields.index("queue_bytes")
_BYTES_IN = ConnectionRow._fields.index("bytes_in")
_BYTES_OUT = ConnectionRow._fields.index("bytes_out")
_NO_ERROR_COUNTS = [0] * 24  # FdStat.ready[8:] of an fd that never saw an ERROR bit


class ServerSource(Protocol):
    """What telemetry reads of the server (loopmon.echo.EchoServer)."""

    @property
    def strategy(self) -> str: ...

    closed_bytes_in: int  # bytes of connections already closed; the open ones are in the rows
    closed_bytes_out: int

    @property
    def connections(self) -> Mapping[int, Any]: ...

    def listener_rows(self) -> tuple[ListenerRow, ...]: ...


class Telemetry:
    def __init__(
        self,
        loop: IOLoop,
        server: ServerSource | None,
        mailbox: Mailbox,
        hz: float = 25.0,
        *,
        max_share: float = MAX_SHARE,
        session: str = "",
        lag_window_s: float = LAG_WINDOW_S,
        observers: list[Callable[[Snapshot], None]] | None = None,
        cost_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        if hz <= 0:
            raise ValueError("telemetry rate must be positive")
        self.loop = loop
        self.server = server
        self.mailbox = mailbox
        self.hz = hz
        self.session = session
        self._lag_window = histogram.Window(lag_window_s)
        self._lag_key: tuple[tuple[int, ...], float] | None = None
        self._lag_figures: tuple[float | None, float | None, float | None, int] = (
            None,
            None,
            None,
            0,
        )
        self._seq = itertools.count(1)
        self._started = loop.time()
        self._prev_at = self._started
        self._prev_totals = loop.figures()
        self._tracked: dict[int, list[Any]] = {}
        self._busy_rows: set[int] = set()  # fds whose last row covered an interval with events
        # Idle connections cost a snapshot nothing (see _connection_rows): the sums over the
        # tracked rows are kept as rows change, and the rows' tuple is reused while no row
        # changed. Every change to _tracked goes through _untrack or the rebuild loop, which
        # keep both true.
        self._sums = [0, 0, 0]  # queue_bytes, bytes_in, bytes_out over the tracked rows
        self._rows: tuple[ConnectionRow, ...] | None = None
        self._pending: list[LoopEvent] = []
        self._closed: list[ClosedConnection] = []
        self._closed_omitted = 0
        self._closed_ready = [0, 0, 0]  # readiness counts of every connection closed so far
        self._periodic = PeriodicCallback(self.tick, 1000.0 / hz, io_loop=loop)
        self.last: Snapshot | None = None
        self.build_seconds = 0.0  # how long the last snapshot took to build
        self._cost_clock = cost_clock
        self.tick_seconds = 0.0  # the last tick's CPU time: the build and the observers
        self._tick_before = 0.0  # and the one before
        self.max_share = max_share
        self.skipped = 0  # ticks skipped to stay within max_share
        # Called on the loop thread with every snapshot posted: consumers on the loop itself
        # (the /metrics collector) that must see each one, not only the mailbox's latest.
        self.observers: list[Callable[[Snapshot], None]] = (
            observers if observers is not None else []
        )
        loop.set_observers(on_stall=self._on_stall, on_error=self._on_error)

    # -- events ---------------------------------------------------------------------------

    def record(
        self, kind: str, text: str, fd: int = -1, detail: str = "", subject: int | None = None
    ) -> None:
        """Log an event for the next snapshot (loop thread); ``subject`` is the id of the
        listener or connection it is about."""
        self._pending.append(LoopEvent(self.loop.time(), kind, text, fd, detail, subject))

    def connection_closed(self, conn: Any, stat: FdStat | None) -> None:
        """A connection closed (loop thread): report it once in the next snapshot with its
        final figures, even if it opened within the same interval. Past ``CLOSED_PER_FRAME``
        in one interval, the rest are only counted."""
        entry = self._untrack(conn.fd)
        nread, nwrite, error = (0, 0, 0) if stat is None else stat.ready_counts()
        ready = self._closed_ready
        ready[0] += nread
        ready[1] += nwrite
        ready[2] += error
        if len(self._closed) >= CLOSED_PER_FRAME:
            self._closed_omitted += 1
            return
        now = self.loop.time()
        since = self._prev_at
        if stat is None:
            read = write = 0.0
            mask = 0
        else:
            read, write = stat.times_at(now)
            mask = stat.mask
        if entry is not None and entry[0] is conn:
            gap = since - entry[2]
            held = entry[5]
            read -= entry[3] + (gap if held & READ else 0.0)
            write -= entry[4] + (gap if held & WRITE else 0.0)
        span = now - since
        inv = 1.0 / span if span > 0 else 0.0
        row = ConnectionRow(
            fd=conn.fd,
            peer=conn.peer,
            listener_id=conn.listener_id,
            state="closed",
            mask=mask,
            read_fraction=min(max(read * inv, 0.0), 1.0),
            write_fraction=min(max(write * inv, 0.0), 1.0),
            ready_read=nread,
            ready_write=nwrite,
            ready_error=error,
            queue_bytes=conn.queue_bytes,
            queue_chunks=conn.queue_chunks,
            bytes_in=conn.bytes_in,
            bytes_out=conn.bytes_out,
            messages=conn.messages,
            created_at=conn.created,
            id=conn.id,
            kind="connection",
            local=conn.local,
        )
        self._closed.append(ClosedConnection(row, now, conn.close_reason))

    def _on_stall(self, stall: Stall) -> None:
        self.record(
            "stall",
            f"loop blocked {stall.duration_s * 1000:.1f} ms in {stall.what}",
            stall.fd,
            stall.stack,
        )

    def _on_error(self, error: HandlerError) -> None:
        last_line = error.traceback.strip().splitlines()[-1] if error.traceback else ""
        self.record("exception", f"{error.what}: {last_line}", error.fd, error.traceback)

    # -- the periodic work ----------------------------------------------------------------

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()

    def tick(self) -> None:
        # A safety net on telemetry's share of the loop: skip ticks until the last tick's
        # whole cost (the build, and the observers: the publisher's encoding and sends, the
        # recorder, /metrics) is at most ``max_share`` of the time since it. It is not what
        # sets the rate at the loads the issue names (a 1,000-busy-row frame costs ~2 ms in
        # all, so 25 Hz holds under 10 %); it stops a 10,000-busy-row server (tens of ms a
        # frame) from spending the loop on its own telemetry. The cost is the thread's CPU time
        # (``cost_clock``), not the wall clock's: on a shared machine a tick preempted by
        # another process looks several times its cost (1,000 busy rows: median 2.7 ms, one
        # tick in ten over 11 ms by the wall clock), and the throttle skipped one tick in six
        # for nothing. And it is the lesser of the last two ticks': one made slow by a
        # garbage collection skips nothing, a lasting cost does. The fractions stay exact
        # over the longer interval.
        loop = self.loop
        cost = min(self.tick_seconds, self._tick_before)
        if loop.time() - self._prev_at < cost / self.max_share:
            self.skipped += 1
            return
        started = self._cost_clock()
        snapshot = self.build()
        events, self._pending = self._pending, []
        self.mailbox.post(snapshot, events)
        for observer in self.observers:
            observer(snapshot)
        self._tick_before = self.tick_seconds
        self.tick_seconds = self._cost_clock() - started

    def build(self) -> Snapshot:
        """Build the snapshot of the interval since the previous one (loop thread)."""
        loop = self.loop
        now = loop.time()
        totals = loop.figures()
        interval = totals.minus(self._prev_totals)
        server = self.server
        rows = self._connection_rows(now, self._prev_at) if server is not None else ()
        snapshot = Snapshot(
            seq=next(self._seq),
            taken_at=now,
            session=self.session,
            backend=loop.backend,
            strategy=server.strategy if server is not None else "",
            uptime_s=now - self._started,
            interval=interval,
            totals=LoopFigures(
                span_s=now - self._started,
                iterations=totals.iterations,
                events=totals.events,
                callbacks=totals.callbacks,
                timers=totals.timers,
                busy_s=totals.busy_s,
                poll_s=totals.poll_s,
                lag=totals.lag,
                stalls=totals.stalls,
                errors=totals.errors,
            ),
            lag=self._lag(now, totals.lag),
            listeners=server.listener_rows() if server is not None else (),
            connections=rows,
            events=tuple(self._pending),
            closed=tuple(self._closed),
            closed_omitted=self._closed_omitted,
            closed_ready=(self._closed_ready[0], self._closed_ready[1], self._closed_ready[2]),
            # The rows are exact as of now, and their sums are kept as they change, so the open
            # connections' bytes cost nothing per idle connection.
            queue_bytes=self._sums[0] if server else 0,
            bytes_in=(server.closed_bytes_in + self._sums[1]) if server else 0,
            bytes_out=(server.closed_bytes_out + self._sums[2]) if server else 0,
        )
        self._closed = []
        self._closed_omitted = 0
        self._prev_totals = totals
        self._prev_at = now
        self.last = snapshot
        # On the loop's clock, like everything telemetry compares it with.
        self.build_seconds = loop.time() - now
        return snapshot

    def _untrack(self, fd: int) -> list[Any] | None:
        """Forget fd's row: out of the sums, and the rows' tuple is stale."""
        entry = self._tracked.pop(fd, None)
        if entry is not None:
            self._unsum(entry[1])
        return entry

    def _unsum(self, row: ConnectionRow) -> None:
        sums = self._sums
        sums[0] -= row.queue_bytes or 0
        sums[1] -= row.bytes_in or 0
        sums[2] -= row.bytes_out or 0
        self._rows = None

    def _lag(self, now: float, lag: LagHistogram) -> LagWindow:
        counts, covered = self._lag_window.update(now, lag.counts)
        key = (counts, lag.max_s)
        if key != self._lag_key:
            # The probe fires ten times a second, so most snapshots see the window's counts
            # unchanged: the quantiles (15 us of a 34 us idle snapshot) are kept till they move.
            self._lag_key = key
            self._lag_figures = (
                histogram.quantile(counts, 0.5, lag.max_s),
                histogram.quantile(counts, 0.99, lag.max_s),
                histogram.highest(counts, lag.max_s),
                sum(counts),
            )
        p50, p99, highest, samples = self._lag_figures
        return LagWindow(p50_s=p50, p99_s=p99, max_s=highest, window_s=covered, samples=samples)

    def _connection_rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:  # noqa: PLR0912, PLR0915
        # Runs 25 times a second over up to 10,000 connections on the loop thread, and each
        # microsecond per row is 1 % of the loop at 10,000 rows. So only the rows that can have
        # changed are built: those of fds touched since the last build (an event, a mask
        # change, a registration: every new or closed connection is one) and those built over
        # an interval that had events (their fractions move on). Every other row is exact as
        # it stands (quiet: fractions 1/0 and counters unchanged) and is reused, picked up in
        # the server's order by one C-level map; when no row changed at all, the last tuple
        # is reused whole, so 10,000 idle connections cost what 100 do (a snapshot took 858 us
        # at 9,000 idle and 41 us at 100 before, 29 us at both after, by
        # benchmarks/bench_snapshot_idle.py).
        #
        # ROW FAST PATH. A busy echo connection keeps its mask (READ) for whole intervals, so
        # most rows built are of an fd whose mask has not changed since its entry's times
        # were taken: its fractions are exactly 1 or 0 by the mask (no time arithmetic), and
        # its entry keeps its old times (still a true base: the mask held since then) and only
        # takes the new row. Readiness counts are read inline (no ready_counts() call while no
        # ERROR-bit event was seen), the byte sums move by the row's differences, and each
        # property is read once; a row built again only because its last interval was busy,
        # with nothing moved since, stands as it was. 1,000 connections, 86 % of them busy a
        # frame: a build took 2.56 ms before, 1.58 ms after (benchmarks/bench_frame.py, the
        # two versions run in turn; pinned by tests/test_telemetry.py's fast-path test).
        assert self.server is not None
        connections = self.server.connections
        tracked = self._tracked
        touched = self.loop.take_touched()
        rebuild = touched | self._busy_rows if self._busy_rows else touched
        span = now - since
        inv = 1.0 / span if span > 0 else 0.0
        if len(tracked) != len(connections):
            rebuild = rebuild | (connections.keys() - tracked.keys())  # not yet tracked
        elif not rebuild and self._rows is not None:
            self._busy_rows = set()
            return self._rows
        busy: list[int] = []
        stat_of = self.loop.fd_stats.get
        conn_of = connections.get
        entry_of = tracked.get
        dq = dbi = dbo = 0  # how the sums move
        for fd in rebuild:
            conn: Any = conn_of(fd)
            stat = None if conn is None else stat_of(fd)
            if stat is None:
                # Closed (or closed but not yet forgotten by the server): no row.
                self._untrack(fd)
                continue
            entry = entry_of(fd)
            mask = stat.mask
            if entry is not None and entry[0] is conn:
                old = entry[1]
                if stat.since <= entry[2] and mask == entry[5]:
                    # The fast path: the mask held over the whole interval.
                    rf = 1.0 if mask & READ else 0.0
                    wf = 1.0 if mask & WRITE else 0.0
                    if (
                        fd not in touched
                        and old[_READ_FRACTION] == rf
                        and old[_WRITE_FRACTION] == wf
                    ):
                        # Built again only because its last interval was busy, and nothing
                        # moved since: the row stands as it is (no new object for the
                        # encoder to compare).
                        continue
                    read = -1.0  # the entry keeps its times
                else:
                    elapsed = now - stat.since
                    read = stat.read_time + (elapsed if mask & READ else 0.0)
                    write = stat.write_time + (elapsed if mask & WRITE else 0.0)
                    # The mask was constant from the entry's times to ``since``.
                    gap = since - entry[2]
                    held = entry[5]
                    rf = (read - entry[3] - (gap if held & READ else 0.0)) * inv
                    wf = (write - entry[4] - (gap if held & WRITE else 0.0)) * inv
                    rf = 1.0 if rf > 1.0 else (rf if rf > 0.0 else 0.0)
                    wf = 1.0 if wf > 1.0 else (wf if wf > 0.0 else 0.0)
            else:
                # New this interval: its fractions cover the part of the interval it existed.
                old = None
                if entry is not None:
                    self._untrack(fd)  # another connection's entry on a reused fd
                elapsed = now - stat.since
                read = stat.read_time + (elapsed if mask & READ else 0.0)
                write = stat.write_time + (elapsed if mask & WRITE else 0.0)
                rf = read * inv
                wf = write * inv
                rf = 1.0 if rf > 1.0 else (rf if rf > 0.0 else 0.0)
                wf = 1.0 if wf > 1.0 else (wf if wf > 0.0 else 0.0)
            ready = stat.ready
            if ready[8:] != _NO_ERROR_COUNTS:  # half the time of any(ready[8:])
                nread, nwrite, error = stat.ready_counts()
            else:
                # No ERROR-bit mask has occurred: only READ (1), WRITE (4) and both (5) count.
                both = ready[5]
                nread = ready[1] + both
                nwrite = ready[4] + both
                error = 0
            queue_bytes = conn.queue_bytes
            bytes_in = conn.bytes_in
            bytes_out = conn.bytes_out
            # tuple.__new__ skips NamedTuple's Python-level __new__: half the cost of a row.
            row = _new_row(
                ConnectionRow,
                (
                    fd,
                    conn.peer,
                    conn.listener_id,
                    conn.state,
                    mask,
                    rf,
                    wf,
                    nread,
                    nwrite,
                    error,
                    queue_bytes,
                    conn.queue_chunks,
                    bytes_in,
                    bytes_out,
                    conn.messages,
                    conn.created,
                    conn.id,
                    "connection",
                    conn.local,
                    1,
                ),
            )
            if old is None:
                dq += queue_bytes
                dbi += bytes_in
                dbo += bytes_out
                # [connection, row, times taken at, read, write, mask since then]
                tracked[fd] = [conn, row, now, read, write, mask]
            else:
                dq += queue_bytes - old[_QUEUE_BYTES]
                dbi += bytes_in - old[_BYTES_IN]
                dbo += bytes_out - old[_BYTES_OUT]
                entry[1] = row  # type: ignore[index]
                if read >= 0.0:
                    entry[2:] = (now, read, write, mask)  # type: ignore[index]
            if fd in touched:
                busy.append(fd)  # its next row must be built even if nothing touches it
        sums = self._sums
        sums[0] += dq
        sums[1] += dbi
        sums[2] += dbo
        self._busy_rows = set(busy)
        if len(tracked) != len(connections):
            # Rows of fds the server no longer lists, or connections without a stat yet.
            for fd in tracked.keys() - connections.keys():
                self._untrack(fd)
            rows = tuple(tracked[fd][1] for fd in connections if fd in tracked)
        else:
            rows = tuple(map(_ROW, map(tracked.__getitem__, connections)))
        self._rows = rows
        return rows
