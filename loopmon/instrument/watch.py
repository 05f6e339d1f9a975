"""One watched loop: an asyncio loop (with a watched selector, or opaque) or loopmon's own
IOLoop. Each gives the instrument the same few things: running totals, rows, closes, tasks,
and the loop's lag.

The stall watch. On asyncio's selector loop the heartbeat is set when ``select`` returns and
cleared when it is called again, so "busy past the threshold" is exact, and a watchdog takes the
loop thread's stack while it lasts. For a loop on the main thread the watchdog is a SIGALRM
interval timer (threshold / 4), armed while the loop runs, when nothing else in the process
holds SIGALRM or ITIMER_REAL:
a second thread, even asleep, puts every syscall of a single-threaded program on glibc's and
CPython's multi-threaded paths, ~5 % of a small round trip (measured for loopmon serve), which
alone would spend the whole 1.05 budget. The price is that the program's signals change: its
``signal.getsignal(SIGALRM)`` sees loopmon's handler, and a syscall is interrupted (and retried,
PEP 475) 40 times a second. If the program takes SIGALRM later, the watch stops its timer,
puts back the handler it found and moves to a thread, with a ``loopmon:`` line, before the
program's call (``alarm`` wraps the calls; past them, the next probe notices). Loops on other
threads (signals reach only the main thread) and ``--stall-watch thread`` use the thread.
On a loop it cannot see into, a stall is a lag probe later than the threshold: counted, with no
stack.
"""

from __future__ import annotations

import asyncio
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from loopmon.instrument import internals, stacks
from loopmon.instrument.epoll_selector import WatchedEpollSelector
from loopmon.instrument.fdtable import FdTable
from loopmon.instrument.selector import WatchedSelector
from loopmon.instrument.tasks import TaskTable
from loopmon.loopstats import LagRecorder, Stall
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    LoopEvent,
    LoopFigures,
    TaskRow,
)
from loopmon.watchdog import Watchdog

LAG_PROBE_S = 0.1
# Whether the epoll copy fits this Python, asked once (it makes and closes an epoll).
_EPOLL_OK = [internals.epoll_selector_ok()]

Say = Callable[[str], None]
Record = Callable[[LoopEvent], None]


class Settings:
    """What every watch shares with the instrument."""

    def __init__(
        self,
        *,
        threshold: float,
        stall_watch: str,
        ids: Iterator[int],
        excluded: set[int],
        say: Say,
        record: Record,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.stall_watch = stall_watch  # "signal" (falls back to a thread) | "thread" | "off"
        self.ids = ids
        self.excluded = excluded
        self.say = say
        self.record = record
        self.clock = clock


class AsyncioWatch:
    def __init__(self, loop_id: int, settings: Settings) -> None:
        self.id = loop_id
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self.name = ""
        self.backend = "asyncio"
        self.table = FdTable(loop_id, settings.ids, settings.excluded)
        self.tasks = TaskTable(loop_id, settings.ids, settings.clock)
        self.selector: Any = None  # WatchedEpollSelector | WatchedSelector
        self.lag = LagRecorder()
        self.stalls = 0
        self.alive = True
        self.running = False
        self.created = settings.clock()
        self._watchdog: Watchdog | None = None
        self._probe: asyncio.TimerHandle | None = None
        self._thread_ident: int | None = None

    # -- binding ---------------------------------------------------------------------------

    def make_selector(self, existing: selectors.BaseSelector | None) -> Any:
        """A watched selector: on Linux the epoll copy (``epoll_selector``), taking over the
        registrations of ``existing``, else a wrapper around ``existing`` (or a new
        default selector)."""
        clock = self.settings.clock
        selector: Any
        if _EPOLL_OK[0] and (existing is None or type(existing) is selectors.EpollSelector):  # type: ignore[attr-defined, unused-ignore]
            selector = WatchedEpollSelector(self.table, clock)
            if existing is not None:
                for key in list(existing.get_map().values()):
                    selector.register(key.fileobj, key.events, key.data)
                existing.close()
        else:
            selector = WatchedSelector(existing or selectors.DefaultSelector(), self.table, clock)
        selector.tag = f"loop {self.id}"
        selector.threshold = self.settings.threshold
        selector.on_stall = self._stalled
        selector.on_close = self._closed
        self.selector = selector
        return selector

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take ``loop`` (its selector already watched, or about to be swapped in)."""
        self.loop = loop
        selector = internals.selector_of(loop)
        if self.selector is None and selector is not None and not internals.why_unavailable():
            internals.replace_selector(loop, self.make_selector(selector))
        if self.selector is not None:
            self.backend = f"asyncio selector ({self.selector.name})"
            self.selector.ready_queue = internals.ready_queue(loop)
            self.selector.timer_heap = internals.timer_heap_of(loop)
            self.selector.configure()
        else:
            self.backend = type(loop).__module__.partition(".")[0] + " " + type(loop).__name__
            why = (
                internals.why_unavailable()
                if selector is not None
                else "it has no selector loopmon can wrap"
            )
            self.settings.say(
                f"loopmon: loop {self.id} ({type(loop).__qualname__}): {why}; "
                "loop-level figures only (lag, tasks, stalls)"
            )
        self.tasks.chain(loop)

    # -- running (the loop's thread) -------------------------------------------------------

    def started(self) -> None:
        loop = self.loop
        if loop is None or self.running:
            return
        self.running = True
        self._thread_ident = threading.get_ident()
        self.name = threading.current_thread().name
        self._arm_probe()
        if self._watchdog is None and self.selector is not None:
            self._start_watchdog()

    def stopped(self) -> None:
        self.running = False
        if self.selector is not None:
            self.selector.pause()
        watchdog = self._watchdog
        if watchdog is not None and watchdog.mode == "signal":
            # The program's signals are its own again while no loop of it runs: a timer left
            # armed killed a program that exits without closing its loop (Python resets the
            # handler at exit; the next SIGALRM ends the process, status 142). ``started``
            # arms it again. A watch thread stays: it changes no signal, and making one per
            # run_until_complete would cost more than it sleeping.
            self._stop_watchdog()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _closed(self) -> None:
        self.stopped()
        self.alive = False
        self._stop_watchdog()
        self.settings.record(
            LoopEvent(self.settings.clock(), "loop", f"loop {self.id} closed", id=self.id)
        )

    def _start_watchdog(self) -> None:
        mode = self.settings.stall_watch
        selector = self.selector
        if mode == "off" or selector is None or self._thread_ident is None:
            return
        watchdog = Watchdog(
            selector.heartbeat,
            self._thread_ident,
            self.settings.threshold,
            clock=self.settings.clock,
            use_signal=mode == "signal",
        )
        watchdog.start()
        self._watchdog = watchdog
        if (
            mode == "signal"
            and watchdog.mode == "thread"
            and self._thread_ident == threading.main_thread().ident
        ):
            self.settings.say(
                f"loopmon: SIGALRM is the program's: loop {self.id}'s stall watch is a thread"
            )

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    def _check_alarm(self) -> None:
        """The program took SIGALRM since the watch began (past ``alarm``'s wrappers)."""
        watchdog = self._watchdog
        if watchdog is None or watchdog.mode != "signal":
            return
        if signal.getsignal(signal.SIGALRM) == watchdog._on_alarm:
            return
        self.give_back_alarm(restore=False)

    def give_back_alarm(self, restore: bool) -> Any:
        """Stop the SIGALRM watch (its timer; with ``restore``, its handler too) and watch by
        thread; the handler found before it, or None when this watch held no SIGALRM."""
        watchdog = self._watchdog
        if watchdog is None or watchdog.mode != "signal" or watchdog._stopped.is_set():
            return None  # none held, or loopmon's own stop calling through the wrappers
        watchdog.mode = "stopped"
        watchdog._stopped.set()
        self._watchdog = None
        interval = signal.getitimer(signal.ITIMER_REAL)[1]
        if abs(interval - watchdog.interval) < 1e-6:
            signal.setitimer(signal.ITIMER_REAL, 0.0, 0.0)  # ours, not theirs: stop it
        previous = (
            signal.SIG_DFL if watchdog._previous_handler is None else watchdog._previous_handler
        )
        if restore:
            signal.signal(signal.SIGALRM, previous)
        self.settings.stall_watch = "thread"
        self.settings.say(
            f"loopmon: the program took SIGALRM: loop {self.id}'s stall watch is a thread now"
        )
        self._start_watchdog()
        return previous

    def _arm_probe(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        deadline = loop.time() + LAG_PROBE_S
        self._probe = loop.call_at(deadline, self._on_probe, deadline)

    def _on_probe(self, deadline: float) -> None:
        loop = self.loop
        assert loop is not None
        lateness = loop.time() - deadline
        self.lag.record(lateness)
        if self.selector is None and lateness > self.settings.threshold:
            self.stalls += 1
            self.settings.record(
                LoopEvent(
                    self.settings.clock() - lateness,
                    "stall",
                    f"loop {self.id} blocked {lateness * 1000:.1f} ms (lag probe)",
                    id=self.id,
                )
            )
        self._check_alarm()
        self._arm_probe()

    def _stalled(self, started: float, ended: float) -> None:
        selector = self.selector
        assert selector is not None
        stack = stacks.trim(selector.heartbeat.stack_of(started))
        what = stacks.culprit(stack) or "the loop"
        self.stalls += 1
        stall = Stall(started, ended - started, what, -1, stack)
        self.settings.record(
            LoopEvent(
                started,
                "stall",
                f"loop {self.id} blocked {stall.duration_s * 1000:.1f} ms in {what}",
                -1,
                stack,
                self.id,
            )
        )
        self.settings.say(
            f"loopmon: loop {self.id} blocked {stall.duration_s * 1000:.1f} ms in {what}"
        )

    # -- what a snapshot reads -------------------------------------------------------------

    def totals(self, now: float) -> LoopFigures:
        s = self.selector
        lag = self.lag.freeze()
        if s is None:
            return LoopFigures(span_s=now - self.created, lag=lag, stalls=self.stalls)
        busy = s.busy_s + (now - s.exit_t if s.exit_t else 0.0)
        return LoopFigures(
            span_s=now - self.created,
            iterations=s.iterations,
            events=s.events,
            callbacks=s.callbacks,
            timers=s.timers,
            busy_s=busy,
            poll_s=s.poll_s,
            lag=lag,
            stalls=self.stalls,
        )

    def rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:
        return self.table.rows(now, since)

    def take_closed(self) -> tuple[list[ClosedConnection], int]:
        return self.table.take_closed()

    def task_rows(self, now: float) -> tuple[TaskRow, ...]:
        loop = self.loop
        if loop is None or loop.is_closed() or not self.alive:
            return ()
        return self.tasks.refresh(loop, now)

    def task_count(self) -> int:
        return self.tasks.count

    def lag_histogram(self) -> LagHistogram:
        return self.lag.freeze()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        assert self.loop is not None
        handle = self.loop.call_later(delay, fn)
        return handle.cancel

    def is_running(self) -> bool:
        return self.running and self.loop is not None and not self.loop.is_closed()

    def after_fork(self) -> None:
        """In a forked child: the parent's watch threads and timers are not ours."""
        watchdog, self._watchdog = self._watchdog, None  # first: signal.signal is wrapped
        if watchdog is not None and watchdog.mode == "signal":
            previous = watchdog._previous_handler
            signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
