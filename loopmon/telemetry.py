"""Telemetry: a periodic callback on the loop that turns what the loop and the echo server
measured into a frozen ``Snapshot`` and posts it to the ``Mailbox``.

It runs on the loop thread, so its cost is taken from the loop: it does work only for the
connections that did something. A connection whose fd saw no event and no mask change in this
interval or the one before (so its mask was constant across the whole interval, and its
fractions are exactly 1 or 0, as last time) keeps its previous row object unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from operator import itemgetter
from typing import Any, Protocol

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.loopstats import FdStat, HandlerError, Stall
from loopmon.mailbox import Mailbox
from loopmon.snapshot import (
    ConnectionRow,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    Snapshot,
)

_read_slots = itemgetter(*(m for m in range(32) if m & READ))
_write_slots = itemgetter(*(m for m in range(32) if m & WRITE))
_error_slots = itemgetter(*(m for m in range(32) if m & ERROR))


class ConnectionSource(Protocol):
    """What telemetry reads of one connection (the echo server's Connection)."""

    fd: int
    peer: str
    listener_id: int
    state: str
    queue_bytes: int
    queue_chunks: int
    bytes_in: int
    bytes_out: int
    messages: int
    created: float


class ServerSource(Protocol):
    """What telemetry reads of the server (loopmon.echo.EchoServer)."""

    strategy: str
    bytes_in: int
    bytes_out: int

    @property
    def connections(self) -> Mapping[int, Any]: ...

    def listener_rows(self) -> tuple[ListenerRow, ...]: ...


class _Tracked:
    """Telemetry's memory of one connection between snapshots."""

    __slots__ = ("at", "conn", "mask", "quiet", "read", "row", "write")

    def __init__(
        self, conn: object, row: ConnectionRow, at: float, read: float, write: float, mask: int
    ) -> None:
        self.conn = conn
        self.row = row
        self.at = at  # when read/write were taken
        self.read = read
        self.write = write
        self.mask = mask  # mask held from ``at`` on, while untouched
        self.quiet = 0  # consecutive intervals untouched


class Telemetry:
    def __init__(
        self,
        loop: IOLoop,
        server: ServerSource | None,
        mailbox: Mailbox,
        hz: float = 25.0,
        *,
        backend_name: Callable[[], str] | None = None,
    ) -> None:
        if hz <= 0:
            raise ValueError("telemetry rate must be positive")
        self.loop = loop
        self.server = server
        self.mailbox = mailbox
        self.hz = hz
        self._seq = itertools.count(1)
        self._started = loop.time()
        self._prev_at = self._started
        self._prev_totals = loop.figures()
        self._tracked: dict[int, _Tracked] = {}
        self._pending: list[LoopEvent] = []
        self._periodic = PeriodicCallback(self.tick, 1000.0 / hz, io_loop=loop)
        self.last: Snapshot | None = None
        self.build_seconds = 0.0  # how long the last snapshot took to build
        loop.set_observers(on_stall=self._on_stall, on_error=self._on_error)

    # -- events ---------------------------------------------------------------------------

    def record(self, kind: str, text: str, fd: int = -1, detail: str = "") -> None:
        """Log an event for the next snapshot (loop thread)."""
        self._pending.append(LoopEvent(self.loop.time(), kind, text, fd, detail))

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
        snapshot = self.build()
        events, self._pending = self._pending, []
        self.mailbox.post(snapshot, events)

    def build(self) -> Snapshot:
        """Build the snapshot of the interval since the previous one (loop thread)."""
        import time

        t0 = time.perf_counter()
        loop = self.loop
        now = loop.time()
        totals = loop.figures()
        prev = self._prev_totals
        interval = LoopFigures(
            span_s=now - self._prev_at,
            iterations=totals.iterations - prev.iterations,
            events=totals.events - prev.events,
            callbacks=totals.callbacks - prev.callbacks,
            timers=totals.timers - prev.timers,
            busy_s=totals.busy_s - prev.busy_s,
            poll_s=totals.poll_s - prev.poll_s,
            lag=totals.lag.minus(prev.lag),
        )
        server = self.server
        rows = self._connection_rows(now, self._prev_at) if server is not None else ()
        snapshot = Snapshot(
            seq=next(self._seq),
            taken_at=now,
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
            ),
            listeners=server.listener_rows() if server is not None else (),
            connections=rows,
            events=tuple(self._pending),
            queue_bytes=sum(row.queue_bytes for row in rows),
            bytes_in=server.bytes_in if server is not None else 0,
            bytes_out=server.bytes_out if server is not None else 0,
        )
        self._prev_totals = totals
        self._prev_at = now
        self.last = snapshot
        self.build_seconds = time.perf_counter() - t0
        return snapshot

    def _connection_rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:
        assert self.server is not None
        connections = self.server.connections
        tracked = self._tracked
        touched = self.loop.take_touched()
        span = now - since
        fd_stat = self.loop.fd_stat
        # Forget connections that are gone (or whose fd now belongs to another).
        for fd in [fd for fd, t in tracked.items() if connections.get(fd) is not t.conn]:
            del tracked[fd]
        for fd, conn in self._needing_rows(connections, touched):
            stat = fd_stat(fd)
            if stat is None:
                continue  # closed but not yet forgotten by the server
            read, write = stat.times_at(now)
            entry = tracked.get(fd)
            if entry is None or entry.conn is not conn:
                # New this interval: its fractions cover the part of the interval it existed.
                base_read = base_write = 0.0
            else:
                # The mask was constant from entry.at to ``since`` (untouched in between).
                gap = since - entry.at
                base_read = entry.read + (gap if entry.mask & READ else 0.0)
                base_write = entry.write + (gap if entry.mask & WRITE else 0.0)
            row = self._row(conn, stat, read - base_read, write - base_write, span)
            if entry is None or entry.conn is not conn:
                tracked[fd] = _Tracked(conn, row, now, read, write, stat.mask)
            else:
                entry.row, entry.at, entry.read, entry.write, entry.mask = (
                    row,
                    now,
                    read,
                    write,
                    stat.mask,
                )
                entry.quiet = 0 if fd in touched else entry.quiet + 1
        return tuple(t.row for t in tracked.values())

    def _needing_rows(
        self, connections: Mapping[int, Any], touched: set[int]
    ) -> Iterator[tuple[int, Any]]:
        tracked = self._tracked
        for fd, conn in connections.items():
            entry = tracked.get(fd)
            if entry is None or entry.conn is not conn or fd in touched or entry.quiet < 1:
                yield fd, conn

    @staticmethod
    def _row(conn: Any, stat: FdStat, read: float, write: float, span: float) -> ConnectionRow:
        ready = stat.ready
        return ConnectionRow(
            conn.fd,
            conn.peer,
            conn.listener_id,
            conn.state,
            stat.mask,
            min(max(read / span, 0.0), 1.0) if span > 0 else 0.0,
            min(max(write / span, 0.0), 1.0) if span > 0 else 0.0,
            sum(_read_slots(ready)),
            sum(_write_slots(ready)),
            sum(_error_slots(ready)),
            conn.queue_bytes,
            conn.queue_chunks,
            conn.bytes_in,
            conn.bytes_out,
            conn.messages,
            conn.created,
        )
