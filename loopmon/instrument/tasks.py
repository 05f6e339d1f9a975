"""A loop's tasks as rows, and the task factory that dates them.

Tasks are dated as ``loop.create_task`` makes them (``TaskTable.chain``): a factory the
program sets (before or after loopmon came) makes the tasks, and is the program's own to get
and set. Rows are rebuilt at
most 5 times a second, and less often when that would cost more than ``max_share`` of the loop
(walking a task's await chain and building its row costs a few microseconds: 1,000 tasks at
5 Hz would be ~2 % of the loop).
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from loopmon.instrument.internals import drop_own_frame
from loopmon.snapshot import TaskRow

MIN_REFRESH_S = 0.2
CHUNK = 100
WAITING_FRAMES = 3


def waiting_at(task: asyncio.Task[Any], depth: int = WAITING_FRAMES) -> str:
    """Where a task waits: the innermost ``depth`` frames of its await chain, innermost last."""
    frames: list[str] = []
    obj: Any = task.get_coro()
    for _ in range(64):  # a chain deeper than this is cut
        if obj is None:
            break
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            frame = getattr(obj, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            name = code.co_filename.rpartition(os.sep)[2]
            frames.append(f"{code.co_qualname} ({name}:{frame.f_lineno})")
        nxt = getattr(obj, "cr_await", None)
        if nxt is None:
            nxt = getattr(obj, "gi_yieldfrom", None)
        if nxt is None:
            nxt = getattr(obj, "ag_await", None)
        obj = nxt
    return " > ".join(frames[-depth:])


def coro_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return str(getattr(coro, "__qualname__", None) or type(coro).__name__)


class TaskTable:
    def __init__(
        self,
        loop_id: int,
        ids: Iterator[int],
        clock: Callable[[], float] = time.monotonic,
        max_share: float = 0.005,
    ) -> None:
        self.loop_id = loop_id
        self._ids = ids
        self._clock = clock
        self.max_share = max_share
        self._known: weakref.WeakKeyDictionary[Any, tuple[int, float]] = weakref.WeakKeyDictionary()
        self.rows: tuple[TaskRow, ...] = ()
        self._rows: dict[int, TaskRow] = {}  # by task id
        self._pending: list[asyncio.Task[Any]] = []  # this pass's tasks not yet refreshed
        self.count = 0
        self._built_at = -1e9
        self.build_seconds = 0.0
        self.total_seconds = 0.0  # spent building rows, all refreshes
        self.refreshes = 0
        self.chained = False

    # -- the factory -----------------------------------------------------------------------

    def chain(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Date every task ``loop.create_task`` makes (``asyncio.create_task``,
        ``ensure_future``, ``TaskGroup``, streams' handlers: every public path goes through it)
        by an instance attribute over the class's method, which makes the task as it would:
        with the program's task factory, if it set one (3.12's ``eager_task_factory`` too), so
        the factory is chained and ``get_task_factory`` is the program's, untouched. False when
        the loop takes no instance attribute (tasks are then dated when first seen).

        Not a task factory of loopmon's, as it once was: with any factory set, 3.13.0's
        ``create_task`` calls ``task.set_name(name)`` even when no name was given, so under
        loopmon every task of a program without a factory of its own was named "None"."""
        known = self._known
        ids = self._ids
        clock = self._clock
        make = type(loop).create_task

        def create_task(coro: Any, **kwargs: Any) -> Any:
            task = make(loop, coro, **kwargs)
            drop_own_frame(task, __file__)
            try:
                known[task] = (next(ids), clock())
            except TypeError:
                pass  # a factory's future that takes no weak reference
            return task

        try:
            loop.create_task = create_task  # type: ignore[method-assign]
        except (AttributeError, TypeError):
            return False
        self.chained = True
        return True

    # -- the rows --------------------------------------------------------------------------

    def refresh(self, loop: asyncio.AbstractEventLoop, now: float) -> tuple[TaskRow, ...]:
        """The rows, brought up to date by one more chunk of tasks if due (loop thread).

        Incremental: a pass over the tasks takes the list once (``all_tasks``) and rebuilds
        ``CHUNK`` rows a refresh, so 1,000 tasks never stall the loop for the ~10 ms their
        rows cost at once; a row's ``age_s`` is as of its own refresh."""
        since = now - self._built_at
        if since < MIN_REFRESH_S or since < self.build_seconds / self.max_share:
            return self.rows
        started = time.perf_counter()
        known = self._known
        rows = self._rows
        if not self._pending:
            current = list(asyncio.all_tasks(loop))
            live = set()
            for task in current:
                seen = known.get(task)
                if seen is None:
                    seen = known[task] = (next(self._ids), now)
                live.add(seen[0])
            for gone in rows.keys() - live:
                del rows[gone]
            self.count = len(current)
            current.reverse()  # taken from the end: oldest first
            self._pending = current
        chunk = self._pending[-CHUNK:]
        del self._pending[-CHUNK:]
        loop_id = self.loop_id
        for task in chunk:
            seen = known.get(task)
            if seen is None:
                continue
            if task.done():
                rows.pop(seen[0], None)
                continue
            rows[seen[0]] = TaskRow(
                seen[0],
                task.get_name(),
                coro_name(task),
                "cancelling" if task.cancelling() else "pending",
                max(now - seen[1], 0.0),
                waiting_at(task),
                loop_id,
            )
        self.rows = tuple(rows.values())
        self._built_at = now
        self.build_seconds = time.perf_counter() - started
        self.total_seconds += self.build_seconds
        self.refreshes += 1
        return self.rows
