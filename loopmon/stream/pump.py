"""The publisher for ``loopmon run``, pumped from the program's own loop thread: no thread.

Why not a thread of loopmon's own (what ``run --metrics`` uses): once a process has made a
second thread, glibc and CPython take their multi-threaded paths around every blocking call
and every large allocation for the rest of its life, even while that thread sleeps, and each
snapshot handed over wakes it and moves the GIL twice on the program's core. Measured with
``benchmarks/bench_run.py`` (100 x 1 KiB, the servers on one core): the stream on a thread
with no consumer (woken at each snapshot, nothing encoded) cost ~2 % of a round trip more
than the same snapshots built for no one, and the tick that woke it took 0.8 ms of the loop
against 0.24, so the 2 % throttle held the stream at ~15 Hz. DESIGN.md's rule for a
single-threaded producer ("publishes from its own loop: no extra thread") applies to ``run``
too; but ``run``'s loops are the program's (they come and go, and loopmon's fds must stay out
of their selectors), so the publisher runs on a ``PumpReactor``: a selector of loopmon's own,
polled without blocking at each of the instrument's ticks (25 Hz) on whichever program loop
carries the tick, and at exit until the last frames are sent.

The price: the stream advances only while a program loop runs. A consumer that connects before
the program's first loop starts (or between two, or during a stall) is answered at the next
tick; the housekeeping timers (hello and read timeouts) fire at ticks, late by up to one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.stream.publisher import MAX_CONSUMERS, Publisher

log = logging.getLogger("loopmon.stream")

Callback = Callable[[], None]
DRAIN_S = 0.5
DRAIN_STEP_S = 0.01


class PumpTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class PumpReactor:
    """A ``Reactor`` (``stream.reactor``) that runs only when ``pump`` is called: its own
    selector, polled for at most ``timeout``, its callbacks and due timers run on the caller's
    thread. Callbacks that raise are logged, never passed to the caller (the program's loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[tuple[float, int, PumpTimer]] = []
        self._seq = itertools.count()

    def fileno(self) -> int:
        """The selector's fd (loopmon's own: ``Instrument.own`` closes it in a forked child)."""
        return self._selector.fileno()

    def time(self) -> float:
        return self._clock()

    def _update(self, fd: int) -> None:
        mask = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        registered = fd in self._selector.get_map()
        if not mask:
            if registered:
                self._selector.unregister(fd)
        elif registered:
            self._selector.modify(fd, mask)
        else:
            self._selector.register(fd, mask)

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def call_later(self, delay: float, callback: Callback) -> PumpTimer:
        timer = PumpTimer(self._clock() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def pump(self, timeout: float = 0.0) -> None:
        """One pass: what is ready now (or within ``timeout``), then the timers due."""
        for key, events in self._selector.select(timeout):
            fd = key.fd
            # A readable fd that also failed goes to the reader first, as IOLoopReactor does;
            # a callback may remove another's: look each up as it is due.
            if events & selectors.EVENT_READ:
                self._run(self._readers.get(fd))
            if events & selectors.EVENT_WRITE:
                self._run(self._writers.get(fd))
        timers = self._timers
        now = self._clock()
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if not timer.cancelled:
                self._run(timer.callback)

    @staticmethod
    def _run(callback: Callback | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            log.exception("telemetry: a stream callback failed")

    def close(self) -> None:
        self._readers.clear()
        self._writers.clear()
        self._timers.clear()
        self._selector.close()


class PublisherPump:
    """A ``Publisher`` on a ``PumpReactor``: ``publish`` and ``pump`` run on the program's loop
    thread that carries the instrument's tick; ``start`` and ``close`` on the thread that runs
    the program (before its first loop, after it returned)."""

    def __init__(
        self,
        sock: socket.socket,
        info: ProducerInfo,
        token: bytes,
        *,
        max_consumers: int = MAX_CONSUMERS,
        own: Callable[[Any], None],
        disown: Callable[[Any], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reactor = PumpReactor(clock)
        self._sock = sock
        self._own = own
        self._disown = disown
        own(sock)
        own(self.reactor)
        self.publisher = Publisher(
            self.reactor,
            info,
            token,
            sock=sock,
            max_consumers=max_consumers,
            opened=own,
            closing=disown,
        )

    @property
    def address_text(self) -> str:
        return self.publisher.address_text

    def start(self) -> None:
        self.publisher.start()

    def publish(self, snapshot: Snapshot) -> None:
        """A pump, then ``snapshot`` encoded and sent (queued where a socket is full), then
        another. The first one sends what the previous tick left queued, if the consumer's
        socket has room now: without it, a frame that did not go out whole at once made the
        consumer lose the next one (the publisher's rule for a consumer still full)."""
        self.reactor.pump()
        self.publisher.publish(snapshot)
        self.reactor.pump()

    def pump(self) -> None:
        """Accept, read hellos, send what waits, run due timers: without blocking."""
        self.reactor.pump()

    def close(self, reason: str = "the program exited") -> None:
        """Send what was published (for a moment: a consumer that does not read is not
        waited for), say goodbye, close the port and its connections."""
        deadline = self.reactor.time() + DRAIN_S
        while self.publisher.sending and self.reactor.time() < deadline:
            self.reactor.pump(DRAIN_STEP_S)
        self._disown(self._sock)  # before the close: the kernel reuses the number at once
        self._disown(self.reactor)
        self.publisher.close(reason)
        self.reactor.close()
