"""The watched selector on Linux: ``selectors.EpollSelector`` with its ``select`` written out
once more, the measurement inside the one loop over epoll's results.

Why a copy and not the wrapper (``selector.WatchedSelector``): the wrapper costs a Python call
per pass and a second loop over the events.  Here an event costs one dict get and one list
increment more than CPython's own loop (~280 instructions; counting kept lists in C afterwards,
with ``Counter.update``, was tried and cost more). epoll's bits are loopmon's own (EPOLLIN 1 =
READ, EPOLLOUT 4 = WRITE, ERR|HUP 0x18 = ERROR: ``events`` says so), so a count's cell is
``bits & 31``.
The counters live in the closure of the ``select`` that ``configure`` makes (and puts on the
instance), not in attributes: an attribute's read-modify-write costs ~400 instructions, a
closure cell's a fraction of that (callgrind, one event a pass: ~4,800 instructions over
CPython's own select before, ~3,900 after; two ``time.monotonic()`` calls are ~1,000 of them).
The body is CPython's from 3.11 to 3.13 (unchanged between them), and it reads two private
attributes of ``selectors``' classes, ``_selector`` (the epoll object) and ``_fd_to_key``:
``internals.epoll_selector_ok`` says whether this Python has them, and where it does not the
wrapper is used instead. A test pins that both select the same events.
"""

from __future__ import annotations

import math
import select
import selectors
import time
from collections.abc import Callable
from typing import Any

from loopmon.instrument.fdtable import FdTable, to_loopmon_mask
from loopmon.watchdog import Heartbeat

_NOT_IN = ~select.EPOLLIN if hasattr(select, "EPOLLIN") else 0
_NOT_OUT = ~select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 0
_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE


class WatchedEpollSelector(selectors.EpollSelector):  # type: ignore[misc, name-defined, unused-ignore]
    def __init__(self, table: FdTable, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.table = table
        self.clock = clock
        self.heartbeat = Heartbeat()
        self.tag: object = "loop"
        self.threshold = math.inf
        self.ready_queue: Any = None
        self.timer_heap: Callable[[], list[Any]] | None = None  # unused: timers not counted
        self.on_stall: Callable[[float, float], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.closed = False
        self.name = "epoll"
        self._counters: Callable[[], tuple[float, float, int, int, int, float]] = lambda: (
            0.0, 0.0, 0, 0, 0, 0.0
        )  # fmt: skip
        self._pause: Callable[[float], None] = lambda now: None
        self.configure()

    # The hot path: ``select`` is one closure over locals, as IOLoop._run is one function,
    # so its statements are counted together (PLR0915).
    def configure(self) -> None:  # noqa: PLR0915
        """(Re)make ``select`` with the settings as they are now (threshold, stall callback,
        heartbeat tag, ready queue), carrying the counters over."""
        busy_s, poll_s, iterations, events, queued, exit_t = self._counters()
        clock = self.clock
        hb = self.heartbeat
        tag = self.tag
        threshold = self.threshold
        on_stall = self.on_stall
        queue = self.ready_queue
        fd_to_key: dict[int, selectors.SelectorKey] = self._fd_to_key  # type: ignore[attr-defined]
        epoll = self._selector  # type: ignore[attr-defined]
        cells_of = self.table.cells.get

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            nonlocal busy_s, poll_s, iterations, events, queued, exit_t
            t0 = clock()
            hb.what = None
            if exit_t:
                busy = t0 - exit_t
                busy_s += busy
                if busy > threshold and on_stall is not None:
                    on_stall(exit_t, t0)
            # From here to the end of the loop: CPython's EpollSelector.select, and one count.
            if timeout is None:
                timeout = -1
            elif timeout <= 0:
                timeout = 0
            else:
                timeout = math.ceil(timeout * 1e3) * 1e-3
            max_ev = max(len(fd_to_key), 1)
            ready: list[tuple[selectors.SelectorKey, int]] = []
            try:
                fd_event_list = epoll.poll(timeout, max_ev)
            except InterruptedError:
                fd_event_list = []
            t1 = clock()
            poll_s += t1 - t0
            iterations += 1
            key_of = fd_to_key.get
            for fd, event in fd_event_list:
                ev = 0
                if event & _NOT_IN:
                    ev |= _EVENT_WRITE
                if event & _NOT_OUT:
                    ev |= _EVENT_READ
                key = key_of(fd)
                if key:
                    ready.append((key, ev & key.events))
                    cells = cells_of(fd)
                    if cells is not None:
                        cells[event & 31] += 1
            events += len(ready)
            if queue is not None:
                # What the pass runs: what is queued, and one handle per event (timers due
                # are not counted: finding them costs a heap walk a pass).
                queued += len(queue)
            exit_t = t1
            hb.started = t1
            hb.what = tag
            return ready

        def counters() -> tuple[float, float, int, int, int, float]:
            return busy_s, poll_s, iterations, events, queued, exit_t

        def pause(now: float) -> None:
            nonlocal busy_s, exit_t
            if exit_t:
                busy_s += now - exit_t
            exit_t = 0.0

        self.select = select  # type: ignore[method-assign]
        self._counters = counters
        self._pause = pause

    # The figures the watch reads (any thread: a tuple read at once).
    @property
    def busy_s(self) -> float:
        return self._counters()[0]

    @property
    def poll_s(self) -> float:
        return self._counters()[1]

    @property
    def iterations(self) -> int:
        return self._counters()[2]

    @property
    def events(self) -> int:
        return self._counters()[3]

    @property
    def callbacks(self) -> int:
        c = self._counters()
        return c[3] + c[4]

    @property
    def timers(self) -> int:
        return 0

    @property
    def exit_t(self) -> float:
        return self._counters()[5]

    def pause(self) -> None:
        self._pause(self.clock())
        self.heartbeat.what = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().register(fileobj, events, data)
        self.table.added(key.fd, to_loopmon_mask(events), self.clock())
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self.table.removed(key.fd, self.clock())
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = super().modify(fileobj, events, data)
        self.table.changed(key.fd, to_loopmon_mask(events), self.clock())
        return key

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pause()
            self.table.close_all(self.clock(), "loop closed")
            if self.on_close is not None:
                self.on_close()
        super().close()
