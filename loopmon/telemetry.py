"""Telemetry: a periodic callback on the loop that turns what the loop and the echo server
measured into a frozen ``Snapshot`` and posts it to the ``Mailbox``.

It runs on the loop thread, so its cost is taken from the loop: it does work only for the
connections that did something. A connection whose fd saw no event and no mask change in this
interval or the one before (so its mask was constant across the whole interval, and its
fractions are exactly 1 or 0, as last time) keeps its previous row object unchanged.
"""

from __future__ import annotations

import itertools
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

_new_row = tuple.__new__
_ROW = itemgetter(1)  # the row in a tracked entry


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
        max_share: float = 0.02,
        session: str = "",
        lag_window_s: float = LAG_WINDOW_S,
        observers: list[Callable[[Snapshot], None]] | None = None,
    ) -> None:
        if hz <= 0:
            raise ValueError("telemetry rate must be positive")
        self.loop = loop
        self.server = server
        self.mailbox = mailbox
        self.hz = hz
        self.session = session
        self._lag_window = histogram.Window(lag_window_s)
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
        # Keep telemetry's share of the loop bounded (2 % by default): a snapshot of 1,000 busy
        # connections costs ~2.6 ms and of 10,000 tens of ms, and 25 of those a second would
        # starve the echo. Skip ticks until the last build's cost is at most ``max_share`` of
        # the time since it; the fractions stay exact over the longer interval.
        if self.loop.time() - self._prev_at < self.build_seconds / self.max_share:
            self.skipped += 1
            return
        snapshot = self.build()
        events, self._pending = self._pending, []
        self.mailbox.post(snapshot, events)
        for observer in self.observers:
            observer(snapshot)

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
        return LagWindow(
            p50_s=histogram.quantile(counts, 0.5, lag.max_s),
            p99_s=histogram.quantile(counts, 0.99, lag.max_s),
            max_s=histogram.highest(counts, lag.max_s),
            window_s=covered,
            samples=sum(counts),
        )

    def _connection_rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:  # noqa: PLR0915
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
        assert self.server is not None
        connections = self.server.connections
        tracked = self._tracked
        touched = self.loop.take_touched()
        rebuild = touched | self._busy_rows if self._busy_rows else touched
        busy: set[int] = set()
        span = now - since
        inv = 1.0 / span if span > 0 else 0.0
        fd_stat = self.loop.fd_stat
        if len(tracked) != len(connections):
            rebuild = rebuild | (connections.keys() - tracked.keys())  # not yet tracked
        elif not rebuild and self._rows is not None:
            self._busy_rows = set()
            return self._rows
        sums = self._sums
        for fd in rebuild:
            conn = connections.get(fd)
            stat = None if conn is None else fd_stat(fd)
            if conn is None or stat is None:
                # Closed (or closed but not yet forgotten by the server): no row.
                self._untrack(fd)
                continue
            entry = tracked.get(fd)
            fresh = entry is None or entry[0] is not conn
            quiet = fd not in touched
            mask = stat.mask
            elapsed = now - stat.since
            read = stat.read_time + (elapsed if mask & READ else 0.0)
            write = stat.write_time + (elapsed if mask & WRITE else 0.0)
            if fresh:
                # New this interval: its fractions cover the part of the interval it existed.
                rf = read * inv
                wf = write * inv
            else:
                # The mask was constant from the last build to ``since`` (untouched between).
                gap = since - entry[2]  # type: ignore[index]
                held = entry[5]  # type: ignore[index]
                rf = (read - entry[3] - (gap if held & READ else 0.0)) * inv  # type: ignore[index]
                wf = (write - entry[4] - (gap if held & WRITE else 0.0)) * inv  # type: ignore[index]
            nread, nwrite, error = stat.ready_counts()
            # tuple.__new__ skips NamedTuple's Python-level __new__: half the cost of a row.
            row = _new_row(
                ConnectionRow,
                (
                    fd,
                    conn.peer,
                    conn.listener_id,
                    conn.state,
                    mask,
                    1.0 if rf > 1.0 else (rf if rf > 0.0 else 0.0),
                    1.0 if wf > 1.0 else (wf if wf > 0.0 else 0.0),
                    nread,
                    nwrite,
                    error,
                    conn.queue_bytes,
                    conn.queue_chunks,
                    conn.bytes_in,
                    conn.bytes_out,
                    conn.messages,
                    conn.created,
                    conn.id,
                    "connection",
                    conn.local,
                    1,
                ),
            )
            if entry is not None:
                self._unsum(entry[1])
            sums[0] += conn.queue_bytes
            sums[1] += conn.bytes_in
            sums[2] += conn.bytes_out
            # [connection, row, built at, read, write, mask since then]
            tracked[fd] = [conn, row, now, read, write, mask]
            if not quiet:
                busy.add(fd)  # its next row must be built even if nothing touches it
        self._busy_rows = busy
        if len(tracked) != len(connections):
            # Rows of fds the server no longer lists, or connections without a stat yet.
            for fd in tracked.keys() - connections.keys():
                self._untrack(fd)
            rows = tuple(tracked[fd][1] for fd in connections if fd in tracked)
        else:
            rows = tuple(map(_ROW, map(tracked.__getitem__, connections)))
        self._rows = rows
        return rows
