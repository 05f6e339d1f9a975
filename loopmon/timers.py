"""The loop's timers: a binary heap ordered by (deadline, sequence).

The sequence number makes equal deadlines run first-in first-out and keeps heapq comparing plain
tuples in C rather than calling a Python ``__lt__``. Cancelling only marks a timer dead (O(1));
dead entries are dropped when they reach the top, and the heap is rebuilt once they are the
majority, so a program that arms and cancels timeouts by the thousand keeps a small heap.

``TimerQueue.heap`` is one list for the queue's whole life: it is compacted and cleared in
place, never rebound, because the running loop holds it (``IOLoop._run`` reads its head on
every pass without a call). A rebound list once left the loop reading a stale head, a timer
that had already fired, as due forever: it polled with timeout 0 at 100 % CPU.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
from collections.abc import Callable
from typing import Any

_COMPACT_MIN = 512


class Timeout:
    """A handle for one scheduled call; pass it to ``IOLoop.remove_timeout``."""

    __slots__ = ("args", "callback", "context", "deadline", "fired")

    def __init__(
        self,
        deadline: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
    ) -> None:
        self.deadline = deadline
        # None once cancelled: checked again just before running, so a timer due in the same
        # pass as the one that cancels it still does not run.
        self.callback: Callable[..., Any] | None = callback
        self.args = args
        self.context = context
        self.fired = False

    def __repr__(self) -> str:
        state = "fired" if self.fired else ("cancelled" if self.callback is None else "pending")
        return f"<Timeout {state} at {self.deadline:.6f} {self.callback!r}>"


class TimerQueue:
    def __init__(self) -> None:
        # Never rebound (see the module's docstring): IOLoop._run holds this very list.
        self.heap: list[tuple[float, int, Timeout]] = []
        self._seq = itertools.count()
        self._cancelled = 0  # dead entries still in the heap

    def __len__(self) -> int:
        """Timers that may still run."""
        return len(self.heap) - self._cancelled

    def add(
        self,
        deadline: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
    ) -> Timeout:
        timeout = Timeout(deadline, callback, args, context)
        heapq.heappush(self.heap, (deadline, next(self._seq), timeout))
        return timeout

    def cancel(self, timeout: Timeout) -> None:
        if timeout.callback is None:
            return
        timeout.callback = None
        if timeout.fired:
            return  # already out of the heap
        self._cancelled += 1
        if self._cancelled > _COMPACT_MIN and self._cancelled > len(self.heap) >> 1:
            heap = self.heap
            heap[:] = [entry for entry in heap if entry[2].callback is not None]  # in place
            heapq.heapify(heap)
            self._cancelled = 0

    def pop_due(self, now: float) -> list[Timeout]:
        """Remove and return every live timer with deadline <= now, in run order."""
        heap = self.heap
        due: list[Timeout] = []
        while heap:
            deadline, _, timeout = heap[0]
            if timeout.callback is None:
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            timeout.fired = True
            due.append(timeout)
        return due

    def next_deadline(self) -> float | None:
        heap = self.heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def clear(self) -> None:
        self.heap.clear()
        self._cancelled = 0
