"""A selector that measures the loop around it: asyncio's selector loop calls ``select`` once
per pass, so the time inside it is the loop blocked and the time between two calls is the loop
busy; register, modify and unregister are every mask change of every fd.

It wraps the loop's real selector (delegation, not a subclass: the real one's internal calls
never come back through here) and is handed to ``SelectorEventLoop(selector)``, or put in place
of a running loop's (see ``internals``). Its cost is taken from the program's loop on every
pass, so ``select`` binds what it needs once, touches one list cell per event and allocates
nothing per event.
"""

from __future__ import annotations

import math
import selectors
import time
from collections.abc import Callable, Mapping
from typing import Any

from loopmon.instrument.fdtable import FdTable, to_loopmon_mask
from loopmon.watchdog import Heartbeat


def count_due(heap: list[Any], now: float) -> int:
    """Timers in an asyncio timer heap due at ``now``: a walk that stops under every
    timer not yet due, so it costs the due ones only."""
    n = 0
    size = len(heap)
    stack = [0]
    while stack:
        i = stack.pop()
        if i < size and heap[i].when() <= now:
            n += 1
            stack.append(2 * i + 1)
            stack.append(2 * i + 2)
    return n


class WatchedSelector(selectors.BaseSelector):
    def __init__(
        self,
        inner: selectors.BaseSelector,
        table: FdTable,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.table = table
        self.clock = clock
        self.heartbeat = Heartbeat()
        self.tag: object = "loop"  # what the heartbeat says runs between two selects
        self.threshold = math.inf
        self.iterations = 0
        self.events = 0
        self.callbacks = 0  # handles the passes ran, estimated (see select)
        self.timers = 0
        self.busy_s = 0.0
        self.poll_s = 0.0
        self.exit_t = 0.0  # when the last select returned; 0 while the loop is not running
        self.ready_queue: Any = None  # the loop's ready deque, when visible
        self.timer_heap: Callable[[], list[Any]] | None = None
        self.on_stall: Callable[[float, float], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.closed = False
        now = clock()
        for key in inner.get_map().values():  # what the loop registered before we came
            table.added(key.fd, to_loopmon_mask(key.events), now)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        clock = self.clock
        t0 = clock()
        hb = self.heartbeat
        hb.what = None
        exit_t = self.exit_t
        if exit_t:
            busy = t0 - exit_t
            self.busy_s += busy
            if busy > self.threshold and self.on_stall is not None:
                self.on_stall(exit_t, t0)
        ready = self.inner.select(timeout)
        t1 = clock()
        self.poll_s += t1 - t0
        self.iterations += 1
        n = len(ready)
        if n:
            get = self.table.cells.get
            for key, events in ready:
                cells = get(key.fd)
                if cells is not None:
                    # EVENT_READ 1 and EVENT_WRITE 2 as loopmon's READ 1 and WRITE 4.
                    cells[events + (events & 2)] += 1  # type: ignore[operator]
            self.events += n
        # The pass that follows runs what is queued, one handle per event, and the timers
        # due: an estimate (an event may carry a reader and a writer; a due timer may be a
        # cancelled one), exact in the usual case.
        queue = self.ready_queue
        if queue is not None:
            self.callbacks += len(queue) + n
            heap_of = self.timer_heap
            if heap_of is not None:
                heap = heap_of()
                if heap and heap[0].when() <= t1:
                    due = count_due(heap, t1)
                    self.timers += due
                    self.callbacks += due
        self.exit_t = t1
        hb.started = t1
        hb.what = self.tag
        return ready

    def configure(self) -> None:
        """Settings are read as attributes on every pass here: nothing to remake."""

    def pause(self) -> None:
        """The loop stopped running (its thread does something else now): not busy."""
        if self.exit_t:
            self.busy_s += self.clock() - self.exit_t
        self.exit_t = 0.0
        self.heartbeat.what = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self.inner.register(fileobj, events, data)
        self.table.added(key.fd, to_loopmon_mask(events), self.clock())
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self.inner.unregister(fileobj)
        self.table.removed(key.fd, self.clock())
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self.inner.modify(fileobj, events, data)
        self.table.changed(key.fd, to_loopmon_mask(events), self.clock())
        return key

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self.inner.get_map()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pause()
            self.table.close_all(self.clock(), "loop closed")
            if self.on_close is not None:
                self.on_close()
        self.inner.close()

    @property
    def name(self) -> str:
        """The real selector's kind: "epoll", "poll", "kqueue", "select"."""
        return type(self.inner).__name__.removesuffix("Selector").lower()
