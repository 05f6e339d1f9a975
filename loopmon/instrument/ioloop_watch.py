"""loopmon's own IOLoop (the article's demo) under the instrument: it measures itself already
(loopstats), so this only reads it: its figures, its fds' live counters, its stalls."""

from __future__ import annotations

import threading
from collections.abc import Callable

from loopmon.instrument import stacks
from loopmon.instrument.fdtable import FdTable
from loopmon.instrument.watch import Settings
from loopmon.ioloop import IOLoop
from loopmon.loopstats import Stall
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    LoopEvent,
    LoopFigures,
    TaskRow,
)


class IOLoopWatch:
    def __init__(self, loop_id: int, settings: Settings, loop: IOLoop) -> None:
        self.id = loop_id
        self.settings = settings
        self.loop = loop
        self.name = ""
        self.backend = loop.backend
        self.table = FdTable(loop_id, settings.ids, settings.excluded)
        self.alive = True
        self.running = False
        self.stalls = 0
        loop.set_observers(on_stall=self._stalled)
        if settings.stall_watch != "off":
            loop.set_blocking_log_threshold(
                settings.threshold, use_signal=settings.stall_watch == "signal"
            )

    def started(self) -> None:
        self.running = True
        self.name = threading.current_thread().name

    def stopped(self) -> None:
        self.running = False

    def _stalled(self, stall: Stall) -> None:
        what = stall.what
        self.settings.record(
            LoopEvent(
                stall.at,
                "stall",
                f"loop {self.id} blocked {stall.duration_s * 1000:.1f} ms in {what}",
                stall.fd,
                stacks.trim(stall.stack),
                self.id,
            )
        )
        self.settings.say(
            f"loopmon: loop {self.id} blocked {stall.duration_s * 1000:.1f} ms in {what}"
        )

    def totals(self, now: float) -> LoopFigures:
        return self.loop.figures()

    def rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:
        loop, table = self.loop, self.table
        present = set()
        for frozen in loop.stats().fds:
            fd = frozen.fd
            live = loop.fd_stat(fd)
            if live is None:
                continue
            present.add(fd)
            entry = table.entries.get(fd)
            if entry is not None and entry.stat is live:
                continue
            if entry is not None:
                table.removed(fd, now)
            table.added(fd, live.mask, live.registered_at)
            entry = table.entries.get(fd)
            if entry is not None:
                entry.stat = live  # the loop's own counters, read as they are
                entry.created_at = live.registered_at
                entry.set_parts(table.loop_id)
        for fd in list(table.entries):
            if fd not in present:
                table.removed(fd, now)  # closed at the next look (fstat), or reused
        return table.rows(now, since)

    def take_closed(self) -> tuple[list[ClosedConnection], int]:
        return self.table.take_closed()

    def task_rows(self, now: float) -> tuple[TaskRow, ...] | None:
        return None

    def task_count(self) -> int | None:
        return None

    def lag_histogram(self) -> LagHistogram:
        return self.loop.figures().lag

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        timeout = self.loop.call_later(delay, fn)
        return lambda: self.loop.remove_timeout(timeout)

    def is_running(self) -> bool:
        return self.loop.is_running()

    def after_fork(self) -> None:
        pass
