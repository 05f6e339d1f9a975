"""Frozen records that cross from the loop thread to whoever watches it.

Everything here is immutable and built from plain values, so a snapshot can be handed to another
thread without a lock, and GUI tests can build one by hand with no loop at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# netaddr sits below this module (layer 0's vocabulary of words and numbers; the records here
# are built of them), so the one address format serves the records too.
from loopmon.netaddr import format_address


@dataclass(frozen=True, slots=True)
class LagHistogram:
    """Counts of probe-timer lateness, cumulative, in ``loopmon.histogram``'s buckets
    (``counts[histogram.bucket_of(s)]``; empty when nothing was recorded), and the largest
    lateness seen. Quantiles come from ``histogram.quantile(counts, q, max_s)``."""

    counts: tuple[int, ...] = ()
    max_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts)

    def minus(self, earlier: LagHistogram) -> LagHistogram:
        """The samples taken since ``earlier`` (max is the running max, not the interval's)."""
        if not earlier.counts:
            return self
        if not self.counts or self.counts == earlier.counts:
            # No sample since ``earlier`` (most intervals: the probe fires ten times a second):
            # an empty histogram, without a subtraction of every bucket.
            return LagHistogram((), self.max_s)
        return LagHistogram(
            tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True)), self.max_s
        )


@dataclass(frozen=True, slots=True)
class LagWindow:
    """The loop's lag over the last ``window_s`` seconds, the figure every view shows (the
    probe fires ten times a second, so one snapshot interval holds one sample at most).
    Quantiles are None while no sample falls in the window."""

    p50_s: float | None = None
    p99_s: float | None = None
    max_s: float | None = None  # the top of the highest bucket holding a sample, capped
    window_s: float = 0.0  # what the figures really cover (up to the window asked for)
    samples: int = 0


@dataclass(frozen=True, slots=True)
class LoopFigures:
    """What the loop did over a span of time (an interval between snapshots, or since start)."""

    span_s: float = 0.0  # wall time covered
    iterations: int = 0
    events: int = 0  # (fd, mask) pairs dispatched to handlers
    callbacks: int = 0
    timers: int = 0
    busy_s: float = 0.0  # time not blocked in poll
    poll_s: float = 0.0  # time blocked in poll
    lag: LagHistogram = field(default_factory=LagHistogram)
    stalls: int = 0  # callbacks or handlers that ran past the stall threshold
    errors: int = 0  # callbacks or handlers that raised

    def _rate(self, n: float) -> float:
        return n / self.span_s if self.span_s > 0 else 0.0

    @property
    def iterations_per_s(self) -> float:
        return self._rate(self.iterations)

    @property
    def events_per_s(self) -> float:
        return self._rate(self.events)

    def minus(self, earlier: LoopFigures) -> LoopFigures:
        """What happened between two sets of running totals (``earlier`` first)."""
        return LoopFigures(
            span_s=self.span_s - earlier.span_s,
            iterations=self.iterations - earlier.iterations,
            events=self.events - earlier.events,
            callbacks=self.callbacks - earlier.callbacks,
            timers=self.timers - earlier.timers,
            busy_s=self.busy_s - earlier.busy_s,
            poll_s=self.poll_s - earlier.poll_s,
            lag=self.lag.minus(earlier.lag),
            stalls=self.stalls - earlier.stalls,
            errors=self.errors - earlier.errors,
        )

    @property
    def utilization(self) -> float:
        """Fraction of measured time the loop was busy rather than waiting in poll (0..1)."""
        measured = self.busy_s + self.poll_s
        return self.busy_s / measured if measured > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ListenerRow:
    id: int
    host: str
    port: int
    state: str  # "listening" | "stopped" | "failed" | "full: select's FD_SETSIZE"
    accepted: int = 0
    refused: int = 0  # closed at once: over max_connections
    errors: int = 0  # accept() failures (EMFILE, ...)
    connections: int = 0  # open now
    error: str = ""  # last error text

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True, slots=True)
class ProducerInfo:
    """Who makes the snapshots: what a producer's hello says, and what the window names."""

    kind: str  # "window" (in-process) | "serve" | "run"
    program: str  # what runs: "loopmon serve", "app.py", ...
    pid: int
    backend: str
    session: str
    started_at: float  # wall clock (Unix time) when the session began
    commands: tuple[str, ...] = ()  # what it takes: start_listener, stop_listener, ...
    measures: tuple[str, ...] = ()  # figures it measures; a row figure not named is None
    version: str = ""  # loopmon's


class ConnectionRow(NamedTuple):
    """One connection (or, from a foreign program, any fd its loop watches) as of a snapshot.

    A NamedTuple rather than a frozen dataclass, against the house style, because telemetry
    builds up to 10,000 of these 25 times a second: a frozen dataclass costs ~4 us to construct
    (one object.__setattr__ per field), a NamedTuple ~0.8 us. It is just as immutable, and is
    built with the same keywords. Nothing in it changes with the mere passing of time (it holds
    ``created_at``, not an age), so telemetry reuses the row of a connection that did nothing.

    ``id`` is the row's identity, unique within the producer's session; ``fd`` is an attribute
    (the kernel reuses numbers at once). A figure the producer cannot measure (a foreign
    socket's bytes) is None, never 0. Fields after ``created_at`` were added later and stay
    last, so positional readers of the older ones keep working.
    """

    fd: int
    peer: str  # "host:port", IPv6 in brackets; "" when it has none
    listener_id: int  # the listener that accepted it; 0 for none
    state: str  # "open" | "paused" (backpressure) | "draining" (peer sent EOF) | "closed"
    mask: int  # events registered now (loopmon.events bits)
    read_fraction: float  # share of the last interval with READ registered (0..1)
    write_fraction: float  # share of the last interval with WRITE registered (0..1)
    ready_read: int = 0  # readiness counts, cumulative
    ready_write: int = 0
    ready_error: int = 0
    queue_bytes: int | None = 0
    queue_chunks: int | None = 0
    bytes_in: int | None = 0
    bytes_out: int | None = 0
    messages: int | None = 0  # successful reads
    created_at: float = 0.0  # loop clock; age = Snapshot.taken_at - created_at
    id: int = 0
    kind: str = "connection"  # "listener" | "connection" | "pipe" | "other"
    local: str = ""  # the local address, "host:port"
    loop: int = 1  # the id of the loop that watches it


@dataclass(frozen=True, slots=True)
class ClosedConnection:
    """A connection that closed since the previous snapshot, reported once: its last row
    (final figures, fractions over the part of the interval it was open), when and why."""

    row: ConnectionRow
    closed_at: float  # loop clock
    reason: str


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of a foreign program's loop (``loopmon run``)."""

    id: int  # unique within the session
    name: str
    coro: str  # the coroutine's qualified name
    state: str  # "pending" | "cancelling" | "done"
    age_s: float
    waiting_at: str  # the top frames of where it waits, innermost last
    loop: int = 1


@dataclass(frozen=True, slots=True)
class LoopRow:
    """One of a producer's loops, when it has several (a program's loops under ``run``);
    the snapshot's own figures are then their sum."""

    id: int
    name: str  # e.g. the thread it runs on
    backend: str  # "epoll", "asyncio selector (epoll)", "uvloop" ...
    interval: LoopFigures = field(default_factory=LoopFigures)
    totals: LoopFigures = field(default_factory=LoopFigures)
    lag: LagWindow = field(default_factory=LagWindow)
    tasks: int | None = None
    alive: bool = True


@dataclass(frozen=True, slots=True)
class LoopEvent:
    """Something that happened on the loop thread, for the event log."""

    at: float  # loop clock (monotonic seconds)
    kind: str  # see KINDS
    text: str
    fd: int = -1
    detail: str = ""  # e.g. a stall's stack or an exception's traceback
    id: int | None = None  # the connection, listener or loop it is about, if any


KINDS: tuple[str, ...] = (
    "connect",
    "close",
    "listener_started",
    "listener_stopped",
    "listener_failed",
    "listener_full",  # paused at the poller's fd limit (select's FD_SETSIZE)
    "refusal",  # connections closed at once: over max_connections, or an fd it cannot watch
    "stall",
    "exception",
    "loop",  # loop started, stopped, died, restarted on another backend
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    taken_at: float  # loop clock (monotonic seconds)
    backend: str
    strategy: str  # "seed" | "direct"
    uptime_s: float = 0.0
    interval: LoopFigures = field(default_factory=LoopFigures)
    totals: LoopFigures = field(default_factory=LoopFigures)
    listeners: tuple[ListenerRow, ...] = ()
    connections: tuple[ConnectionRow, ...] = ()
    events: tuple[LoopEvent, ...] = ()  # since the previous snapshot
    queue_bytes: int = 0  # sum over connections
    bytes_in: int = 0  # totals over the server's life
    bytes_out: int = 0
    lag: LagWindow = field(default_factory=LagWindow)
    alive: bool = True  # False once the loop thread has died
    error: str = ""  # why it died
    # The producer's session: ids (listeners, connections) are unique within it, across loop
    # restarts; a consumer keys what it keeps on (session, id).
    session: str = ""
    closed: tuple[ClosedConnection, ...] = ()  # since the previous snapshot, oldest first
    closed_omitted: int = 0  # closed since the previous snapshot beyond those listed
    loops: tuple[LoopRow, ...] = ()  # a producer with several loops; empty for one
    tasks: tuple[TaskRow, ...] | None = None  # None: the producer has no tasks to show
    # Readiness counts (read, write, error) of every connection closed so far, as bytes_in is
    # for bytes: with the open rows' counts they make exact totals however many closes a
    # snapshot had to leave unlisted. None: the producer does not keep them.
    closed_ready: tuple[int, int, int] | None = None

    def age_of(self, row: ConnectionRow) -> float:
        """How old a connection was when this snapshot was taken."""
        return max(self.taken_at - row.created_at, 0.0)
