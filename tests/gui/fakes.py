"""A stand-in for a window's Source (``loopmon.sources``) over a fake loop, and snapshot builders.

The fake runs commands on its own "loop" thread (one worker), completes their futures there,
then posts a snapshot and wakes the mailbox, as the real runner does: the window must collect
results in the GUI thread. Tests also post hand-built snapshots with ``publish``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from loopmon.events import ERROR, READ, WRITE
from loopmon.mailbox import Mailbox
from loopmon.snapshot import (
    ConnectionRow,
    LagHistogram,
    LagWindow,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    ProducerInfo,
    Snapshot,
)
from loopmon.wire.messages import COMMANDS


class FakeListenerError(OSError):
    """Like loopmon.echo.ListenerError: str() is a one-line human reason."""


class FakeMailbox(Mailbox):
    """The real mailbox (each kind its own last ``log_size``), counting the reader's takes."""

    def __init__(self, log_size: int = 10_000) -> None:
        super().__init__(log_size)
        self.takes = 0

    def take_by_kind(self) -> tuple[Snapshot | None, list[LoopEvent], dict[str, int]]:
        self.takes += 1
        return super().take_by_kind()


class FakeRunner:
    def __init__(
        self,
        backend: str | None = None,
        strategy: str = "direct",
        telemetry_hz: float = 25.0,
        event_log_size: int = 10_000,
        available: tuple[str, ...] = ("epoll", "poll", "select"),
    ) -> None:
        self._available = list(available)
        self._backend = backend or self._available[0]
        self._strategy = strategy
        self.mailbox = FakeMailbox(event_log_size)
        self._executor: ThreadPoolExecutor | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.listeners: dict[int, ListenerRow] = {}
        self.connections: list[ConnectionRow] = []
        self.fail_starts: dict[tuple[str, int], str] = {}  # (host, port) -> reason
        self.fail_closes: dict[int, str] = {}
        self.gate: threading.Event | None = None  # when set, commands wait for it
        self._next_id = 1
        self._sessions = 1
        self.session = "fake-session-1"
        self._next_port = 41000
        self._seq = 0
        self._t0 = time.monotonic()
        self.started = False
        self.stopped = False

    # -- the Source surface ----------------------------------------------------------------
    producer: ProducerInfo | None = None
    link = "in-process"
    where = ""
    link_error = ""
    commands = frozenset(COMMANDS)
    can_switch_backend = True

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def strategy(self) -> str:
        return self._strategy

    @property
    def available_backends(self) -> list[str]:
        return list(self._available)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="fake-loop")
        self.started = True
        self.calls.append(("start",))

    def stop(self, timeout: float = 2.0) -> bool:
        self.calls.append(("stop",))
        self.stopped = True
        if self._executor is not None:
            if self.gate is not None:
                self.gate.set()
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        return True

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if self._executor is None:
            raise RuntimeError("the loop is not running")

        def run() -> Any:
            if self.gate is not None:
                self.gate.wait(5)
            return fn(*args)

        future = self._executor.submit(run)
        # After completion, like the runner: publish the new state and wake the reader.
        future.add_done_callback(lambda _f: self.publish())
        return future

    def start_listener(self, host: str, port: int) -> Future[ListenerRow]:
        self.calls.append(("start_listener", host, port))
        return self.submit(self._start_listener, host, port)

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[None]:
        self.calls.append(("stop_listener", listener_id, close_connections))
        return self.submit(self._stop_listener, listener_id, close_connections)

    def close_connection(self, connection_id: int) -> Future[None]:
        self.calls.append(("close_connection", connection_id))
        return self.submit(self._close_connection, connection_id)

    def set_strategy(self, name: str) -> Future[None]:
        self.calls.append(("set_strategy", name))
        return self.submit(self._set_strategy, name)

    def restart(self, backend: str) -> Future[None]:
        self.calls.append(("restart", backend))
        return self.submit(self._restart, backend)

    # -- what the commands do, on the fake loop thread --------------------------------------
    def _start_listener(self, host: str, port: int) -> ListenerRow:
        reason = self.fail_starts.get((host, port))
        if reason is not None:
            raise FakeListenerError(f"{host}:{port}: {reason}")
        if port == 0:
            port = self._next_port
            self._next_port += 1
        row = ListenerRow(id=self._next_id, host=host, port=port, state="listening")
        self._next_id += 1
        self.listeners[row.id] = row
        return row

    def _stop_listener(self, listener_id: int, close_connections: bool) -> None:
        if listener_id not in self.listeners:
            raise KeyError(f"no listener {listener_id}")
        del self.listeners[listener_id]
        if close_connections:
            self.connections = [c for c in self.connections if c.listener_id != listener_id]

    def _close_connection(self, connection_id: int) -> None:
        reason = self.fail_closes.get(connection_id)  # by id (the fixtures' ids are their fds)
        if reason is not None:
            raise OSError(reason)
        before = len(self.connections)
        self.connections = [c for c in self.connections if c.id != connection_id]
        if len(self.connections) == before:
            raise KeyError(f"no open connection with id {connection_id}")

    def _set_strategy(self, name: str) -> None:
        if name not in ("seed", "direct"):
            raise ValueError(f"unknown strategy {name!r}")
        self._strategy = name

    def _restart(self, backend: str) -> None:
        if backend not in self._available:
            raise ValueError(f"backend {backend!r} is not available here")
        self._backend = backend

    # -- for tests -----------------------------------------------------------------------
    def replace_producer(self) -> None:
        """As if the producer restarted (a new process): a new session, ids from 1 again."""
        self._sessions += 1
        self.session = f"fake-session-{self._sessions}"
        self._next_id = 1
        self.listeners = {}
        self.connections = []

    def snapshot(self, **overrides: Any) -> Snapshot:
        self._seq += 1
        now = time.monotonic()
        values: dict[str, Any] = dict(
            seq=self._seq,
            taken_at=now,
            backend=self._backend,
            strategy=self._strategy,
            uptime_s=now - self._t0,
            interval=figures(),
            totals=figures(span_s=now - self._t0),
            listeners=tuple(self.listeners.values()),
            connections=tuple(self.connections),
            queue_bytes=sum(c.queue_bytes for c in self.connections),
            lag=LAG,
            session=self.session,
        )
        values.update(overrides)
        return Snapshot(**values)

    def publish(self, snapshot: Snapshot | None = None, events: Iterable[LoopEvent] = ()) -> None:
        self.mailbox.post(snapshot if snapshot is not None else self.snapshot(), events)


LAG = LagWindow(p50_s=0.00012, p99_s=0.00085, max_s=0.0009, window_s=10.0, samples=100)


def figures(span_s: float = 0.04, **overrides: Any) -> LoopFigures:
    values: dict[str, Any] = dict(
        span_s=span_s,
        iterations=int(span_s * 2000),
        events=int(span_s * 5000),
        callbacks=int(span_s * 100),
        busy_s=span_s * 0.3,
        poll_s=span_s * 0.7,
        lag=LagHistogram(counts=(0, 2, 5, 1), max_s=0.0008),
    )
    values.update(overrides)
    return LoopFigures(**values)


def connection(fd: int, **overrides: Any) -> ConnectionRow:
    values: dict[str, Any] = dict(
        fd=fd,
        peer=f"127.0.0.1:{50000 + fd}",
        listener_id=1,
        state="open",
        mask=READ | ERROR,
        read_fraction=1.0,
        write_fraction=0.0,
        queue_bytes=0,
        bytes_in=fd * 100,
        bytes_out=fd * 100,
        messages=fd,
        created_at=0.0,
        id=fd,  # unique as a real producer's (a test that reuses an fd gives another id)
    )
    values.update(overrides)
    return ConnectionRow(**values)


def busy_connections(count: int, step: int = 0, first_fd: int = 10) -> tuple[ConnectionRow, ...]:
    """``count`` connections whose numbers move with ``step`` (one frame of a busy server).
    A connection is known by its fd: raising ``first_fd`` closes the lowest ones and opens as
    many new ones above."""
    rows = []
    for i in range(count):
        fd = first_fd + i
        writing = (i + step) % 7 == 0
        rows.append(
            ConnectionRow(
                fd=fd,
                id=fd,
                peer=f"127.0.0.1:{20000 + fd % 40000}",
                listener_id=1 + i % 2,
                state="paused" if i % 97 == 0 else "open",
                mask=(READ | ERROR) | (WRITE if writing else 0),
                read_fraction=0.9 if writing else 1.0,
                write_fraction=0.1 if writing else 0.0,
                ready_read=step * 3 + i,
                ready_write=step + i,
                queue_bytes=((i * 7919 + step * 131) % 65536) if writing else 0,
                queue_chunks=2 if writing else 0,
                bytes_in=(step + 1) * 1024 + i,
                bytes_out=(step + 1) * 1024 + i,
                messages=step * 4 + i % 13,
                created_at=100.0 + fd * 0.001,
            )
        )
    return tuple(rows)


def listeners(*ports: int) -> tuple[ListenerRow, ...]:
    return tuple(
        ListenerRow(id=i + 1, host="127.0.0.1", port=port, state="listening", accepted=i)
        for i, port in enumerate(ports)
    )


def snapshot(seq: int = 1, taken_at: float = 1000.0, **overrides: Any) -> Snapshot:
    """A hand-built snapshot, no loop involved."""
    values: dict[str, Any] = dict(
        seq=seq,
        taken_at=taken_at,
        backend="epoll",
        strategy="direct",
        uptime_s=taken_at - 900.0,
        interval=figures(),
        totals=figures(span_s=taken_at - 900.0),
        listeners=listeners(10000),
        connections=(),
        lag=LAG,
    )
    values.update(overrides)
    snap = Snapshot(**values)
    if "queue_bytes" not in overrides:
        snap = Snapshot(**{**values, "queue_bytes": sum(c.queue_bytes for c in snap.connections)})
    return snap


def event(
    kind: str, text: str = "", at: float = 1000.0, fd: int = -1, detail: str = ""
) -> LoopEvent:
    return LoopEvent(at=at, kind=kind, text=text or kind, fd=fd, detail=detail)
