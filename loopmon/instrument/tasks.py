"""A loop's tasks as rows, and the task factory that dates them.

The factory is chained: a factory the program sets (before or after loopmon came) makes the
tasks, and ``get_task_factory`` returns it, so the program sees its own. Rows are rebuilt at
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

from loopmon.snapshot import TaskRow

MIN_REFRESH_S = 0.2
CHUNK = 100
WAITING_FRAMES = 3

TaskFactory = Callable[..., "asyncio.Future[Any]"]


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
        self.program_factory: TaskFactory | None = None
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
        """Put loopmon's factory on ``loop`` in front of the program's; False when the loop
        will not have it (a loop class without instance attributes: tasks are then dated
        when first seen)."""
        known = self._known
        ids = self._ids
        clock = self._clock
        table = self

        def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
            inner = table.program_factory
            if inner is not None:
                task = inner(loop, coro, **kwargs)
            else:
                task = asyncio.Task(coro, loop=loop, **kwargs)
            try:
                known[task] = (next(ids), clock())
            except TypeError:
                pass  # a factory's future that takes no weak reference
            return task

        def set_task_factory(f: TaskFactory | None) -> None:
            if f is not None and not callable(f):
                raise TypeError("task factory must be a callable or None")
            table.program_factory = f

        def get_task_factory() -> TaskFactory | None:
            return table.program_factory

        try:
            self.program_factory = loop.get_task_factory()
            cls_set = type(loop).set_task_factory
            loop.set_task_factory = set_task_factory  # type: ignore[method-assign, assignment]
            loop.get_task_factory = get_task_factory  # type: ignore[method-assign]
        except (AttributeError, TypeError):
            return False
        cls_set(loop, factory)
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
