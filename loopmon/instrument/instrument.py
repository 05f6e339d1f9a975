"""The instrument: finds every loop the program makes, watches each, and builds ``Snapshot``s
of them all on demand.

How loops are found: the event loop policy (public) makes watched selector loops for
``asyncio.run``, ``asyncio.Runner``, ``new_event_loop`` and Tornado 6; the running-loop hook
(``internals``) catches every other loop when it starts running, on any thread; loopmon's own
``IOLoop.start`` is wrapped. Each loop gets an id in the order it is found.

What it never does to the program: create a task on its loops (the lag probe and the snapshot
tick are timer handles), show its own fds (``own``), leave its sockets to a forked child.

Past 400 lines and still one job: the registry of watched loops and the snapshot built over all
of them share one state (the watches, each loop's last totals and lag window, the policy, start
and fork hooks that keep the registry true); the watching itself (selectors, the IOLoop watch,
tasks, fds) lives in the modules beside it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import secrets
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from loopmon import __version__, histogram
from loopmon.instrument import alarm, forks, internals
from loopmon.instrument.ioloop_watch import IOLoopWatch
from loopmon.instrument.watch import AsyncioWatch, Settings
from loopmon.ioloop import IOLoop
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    LagWindow,
    LoopEvent,
    LoopFigures,
    LoopRow,
    ProducerInfo,
    Snapshot,
    TaskRow,
)

LAG_WINDOW_S = 10.0
KEEP_EVENTS = 1000
# Figures a row or a loop of ``run`` carries; the row figures not named (bytes, queues,
# messages, accepts) are None: a selector sees readiness, never bytes.
MEASURES: tuple[str, ...] = (
    "connections",  # rows of kind "connection": the selector sees each one's fd
    "mask",
    "read_fraction",
    "write_fraction",
    "ready_read",
    "ready_write",
    "ready_error",
    "kind",
    "local",
    "peer",
    "iterations",
    "events",
    "callbacks",
    "timers",
    "busy_s",
    "poll_s",
    "lag",
    "stalls",
    "tasks",
)


class Watch(Protocol):
    id: int
    name: str
    backend: str
    alive: bool

    def started(self) -> None: ...
    def stopped(self) -> None: ...
    def totals(self, now: float) -> LoopFigures: ...
    def rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]: ...
    def take_closed(self) -> tuple[list[ClosedConnection], int]: ...
    def task_rows(self, now: float) -> tuple[TaskRow, ...] | None: ...
    def task_count(self) -> int | None: ...
    def lag_histogram(self) -> LagHistogram: ...
    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]: ...
    def is_running(self) -> bool: ...
    def after_fork(self) -> None: ...


def _stderr(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class WatchingPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, but its new loops have a watched selector."""

    def __init__(self, instrument: Instrument) -> None:
        super().__init__()
        self._instrument = instrument

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._instrument.new_event_loop()


class Instrument:
    def __init__(
        self,
        *,
        stall_threshold: float = 0.1,
        stall_watch: str = "signal",
        say: Callable[[str], None] = _stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stall_threshold <= 0:
            raise ValueError("the stall threshold must be positive")
        self.session = secrets.token_hex(8)
        self.started_at = time.time()
        self.clock = clock
        self.say = say
        self._events: collections.deque[LoopEvent] = collections.deque(maxlen=KEEP_EVENTS)
        self.excluded: set[int] = set()
        self.settings = Settings(
            threshold=stall_threshold,
            stall_watch=stall_watch,
            ids=itertools.count(1),
            excluded=self.excluded,
            say=say,
            record=self._events.append,
            clock=clock,
        )
        self._loop_ids = itertools.count(1)
        self._watches: list[Watch] = []
        self._by_loop: weakref.WeakKeyDictionary[Any, Watch] = weakref.WeakKeyDictionary()
        self._current = threading.local()
        self._lock = threading.RLock()
        self._own: list[Any] = []
        self._own_loops: weakref.WeakSet[IOLoop] = weakref.WeakSet()
        self._undo: list[Callable[[], None]] = []
        self.enabled = True
        # Snapshots
        self._seq = itertools.count(1)
        self._t0 = clock()
        self._prev_at = self._t0
        self._prev_totals: dict[int, LoopFigures] = {}
        self._lag_windows: dict[int, histogram.Window] = {}
        self._lag_all = histogram.Window(LAG_WINDOW_S)
        self._lag_cache: dict[int, tuple[tuple[int, ...], float, LagWindow]] = {}
        # The periodic tick
        self._sinks: list[Callable[[Snapshot], None]] = []
        self._pumps: list[Callable[[], None]] = []
        self.hz = 25.0
        self.max_share = 0.02
        # What a tick's cost is read on: the loop thread's CPU time, not the wall clock, so
        # that time the thread spent preempted (a busy machine: the build itself went from
        # 0.24 to 0.8 ms median of wall time under load) does not throttle the stream below
        # its rate (bench_run delivered 14-19 Hz of 25); it is the program's CPU the 2 %
        # budget protects. Injectable for tests.
        self.cpu_clock: Callable[[], float] = time.thread_time
        self.build_seconds = 0.0  # the last tick's build and sinks
        self.build_total_s = 0.0  # every tick's (what the ticks took from the loop)
        self.built = 0
        self.skipped = 0
        self._tick_watch: Watch | None = None
        self._tick_due = 0.0  # when the armed tick is due (0: none armed on this loop run)
        self._tick_cancel: Callable[[], None] | None = None

    # -- installing ------------------------------------------------------------------------

    def install(self) -> None:
        """Hook loop creation and loop starts (see the module's docstring). Idempotent."""
        if self._undo:
            return
        why = internals.why_unavailable()
        if why:
            self.say(f"loopmon: {why}: only loops made through the event loop policy are watched")
        else:
            self._undo.append(internals.hook_running_loop(self._running_changed))
        if type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy:
            previous = asyncio.get_event_loop_policy()
            asyncio.set_event_loop_policy(WatchingPolicy(self))

            def undo_policy() -> None:
                if isinstance(asyncio.get_event_loop_policy(), WatchingPolicy):
                    asyncio.set_event_loop_policy(previous)

            self._undo.append(undo_policy)
        self._wrap_ioloop()
        self._undo.append(forks.install())
        self._undo.append(alarm.install(self._give_back_alarm))
        # The watchdog logs each stall with its stack on loopmon's logger; the instrument
        # reports stalls itself (one ``loopmon:`` line, the stack in the event), and the
        # program's stderr must not change. loopmon's other records (an IOLoop handler's
        # exception in the seed demo) stay what they are without loopmon run.
        logging.getLogger("loopmon").addFilter(_not_the_watchdog)
        self._undo.append(lambda: logging.getLogger("loopmon").removeFilter(_not_the_watchdog))
        _at_fork_child.add(self)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        _at_fork_child.discard(self)

    def _wrap_ioloop(self) -> None:
        original = IOLoop.start
        instrument = self

        def start(loop: IOLoop) -> None:
            watch = instrument.adopt_ioloop(loop)
            if watch is None:
                return original(loop)
            watch.started()
            instrument._arm_tick(watch)
            try:
                return original(loop)
            finally:
                watch.stopped()
                instrument._watch_stopped(watch)

        start.__wrapped__ = original  # type: ignore[attr-defined]
        IOLoop.start = start  # type: ignore[method-assign, assignment]

        def undo() -> None:
            IOLoop.start = original  # type: ignore[method-assign]

        self._undo.append(undo)

    def _give_back_alarm(self, restore: bool) -> Any:
        """The program asks for SIGALRM (``alarm``): the watch that holds it lets go."""
        if not self.enabled:
            return None  # a forked child: the parent's watches start nothing here
        for watch in list(self._watches):
            give_back = getattr(watch, "give_back_alarm", None)
            earlier = give_back(restore) if give_back is not None else None
            if earlier is not None:
                return earlier
        return None

    def own(self, sock: Any) -> None:
        """A socket (or fd) of loopmon's: never a row, and closed in a forked child."""
        fd = sock if isinstance(sock, int) else sock.fileno()
        self.excluded.add(fd)
        self._own.append(sock)

    def disown(self, sock: Any) -> None:
        """Undo ``own`` for a socket loopmon is about to close (call it before the close: the
        kernel gives the number to the program's next fd at once)."""
        fd = sock if isinstance(sock, int) else sock.fileno()
        self.excluded.discard(fd)
        try:
            self._own.remove(sock)
        except ValueError:
            pass

    def own_loop(self, loop: IOLoop) -> None:
        """A loopmon IOLoop of loopmon's own (``run``'s metrics thread): never watched, so
        never a loop of the program's in a snapshot."""
        self._own_loops.add(loop)

    # -- loops -----------------------------------------------------------------------------

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A selector event loop with a watched selector (what the policy makes)."""
        with self._lock:
            watch = AsyncioWatch(next(self._loop_ids), self.settings)
            selector = watch.make_selector(None)
            loop = asyncio.SelectorEventLoop(selector)
            watch.bind(loop)
            self._add(loop, watch)
        return loop

    def adopt(self, loop: asyncio.AbstractEventLoop) -> Watch | None:
        """Watch a loop made elsewhere (idempotent); None once disabled (a forked child)."""
        if not self.enabled:
            return None
        with self._lock:
            watch = self._by_loop.get(loop)
            if watch is None:
                asyncio_watch = AsyncioWatch(next(self._loop_ids), self.settings)
                asyncio_watch.bind(loop)
                watch = asyncio_watch
                self._add(loop, watch)
            return watch

    def adopt_ioloop(self, loop: IOLoop) -> Watch | None:
        if not self.enabled or loop in self._own_loops:
            return None
        with self._lock:
            watch = self._by_loop.get(loop)
            if watch is None:
                watch = IOLoopWatch(next(self._loop_ids), self.settings, loop)
                self._add(loop, watch)
            return watch

    def _add(self, loop: Any, watch: Watch) -> None:
        self._by_loop[loop] = watch
        self._watches.append(watch)
        self._events.append(
            LoopEvent(self.clock(), "loop", f"loop {watch.id} found ({watch.backend})", id=watch.id)
        )

    def _running_changed(self, loop: Any) -> None:
        if loop is not None:
            watch = self.adopt(loop)
            self._current.watch = watch
            if watch is not None:
                watch.started()
                self._arm_tick(watch)
        else:
            watch = getattr(self._current, "watch", None)
            self._current.watch = None
            if watch is not None:
                watch.stopped()
                self._watch_stopped(watch)

    @property
    def watches(self) -> tuple[Watch, ...]:
        return tuple(self._watches)

    # -- snapshots -------------------------------------------------------------------------

    def producer_info(self, program: str) -> ProducerInfo:
        watches = self._watches
        return ProducerInfo(
            kind="run",
            program=program,
            pid=os.getpid(),
            backend=watches[0].backend if len(watches) == 1 else "asyncio",
            session=self.session,
            started_at=self.started_at,
            commands=(),
            measures=MEASURES,
            version=__version__,
        )

    def snapshot(self) -> Snapshot:
        """Everything measured since the previous snapshot. Callable from any thread: each
        loop's live state is copied by C-level calls; figures of a loop running on another
        thread may be a few microseconds apart from each other."""
        with self._lock:
            return self._build()

    def _build(self) -> Snapshot:
        now = self.clock()
        since = self._prev_at
        loops: list[LoopRow] = []
        rows: list[ConnectionRow] = []
        closed: list[ClosedConnection] = []
        omitted = 0
        tasks: list[TaskRow] = []
        has_tasks = False
        totals_all: list[LoopFigures] = []
        intervals: list[LoopFigures] = []
        for watch in list(self._watches):
            totals = watch.totals(now)
            interval = totals.minus(self._prev_totals.get(watch.id, LoopFigures()))
            self._prev_totals[watch.id] = totals
            totals_all.append(totals)
            intervals.append(interval)
            if watch.alive:
                rows.extend(watch.rows(now, since))
            got, more = watch.take_closed()
            closed.extend(got)
            omitted += more
            task_rows = watch.task_rows(now)
            if task_rows is not None:
                has_tasks = True
                tasks.extend(task_rows)
            window = self._lag_windows.setdefault(watch.id, histogram.Window(LAG_WINDOW_S))
            loops.append(
                LoopRow(
                    id=watch.id,
                    name=watch.name,
                    backend=watch.backend,
                    interval=interval,
                    totals=totals,
                    lag=self._lag(watch.id, window, now, totals.lag),
                    tasks=watch.task_count(),
                    alive=watch.alive,
                )
            )
            if not watch.alive:
                self._watches.remove(watch)  # reported closed once; its rows went with it
                self._prev_totals.pop(watch.id, None)
                self._lag_windows.pop(watch.id, None)
                self._lag_cache.pop(watch.id, None)
        events = []
        while self._events:
            events.append(self._events.popleft())
        total = _sum(totals_all, now - self._t0)
        snapshot = Snapshot(
            seq=next(self._seq),
            taken_at=now,
            backend=loops[0].backend if len(loops) == 1 else f"{len(loops)} loops",
            strategy="",
            uptime_s=now - self._t0,
            interval=_sum(intervals, now - since),
            totals=total,
            connections=tuple(rows),
            events=tuple(events),
            lag=loops[0].lag if len(loops) == 1 else self._lag(0, self._lag_all, now, total.lag),
            session=self.session,
            closed=tuple(closed),
            closed_omitted=omitted,
            loops=tuple(loops),
            tasks=tuple(tasks) if has_tasks else None,
        )
        self._prev_at = now
        return snapshot

    def _lag(self, key: int, window: histogram.Window, now: float, lag: LagHistogram) -> LagWindow:
        """A loop's lag over the window, remade only when a sample came in or the window
        moved on a step (the quantiles of 147 buckets cost ~30 us; most snapshots between
        two probes would remake the same figures)."""
        cached = self._lag_cache.get(key)
        if cached is not None and cached[0] == lag.counts and now - cached[1] < window.step_s:
            return cached[2]
        figures = _window(window, now, lag)
        self._lag_cache[key] = (lag.counts, now, figures)
        return figures

    # -- the periodic tick -----------------------------------------------------------------

    def start_periodic(self, sink: Callable[[Snapshot], None], hz: float = 25.0) -> None:
        """Build a snapshot ``hz`` times a second on a running loop of the program (a timer
        handle, never a task) and hand it to ``sink`` on that loop's thread. The build's
        share of the loop is kept under ``max_share`` by skipping ticks (counted)."""
        if hz <= 0:
            raise ValueError("the snapshot rate must be positive")
        self.hz = hz
        self._sinks.append(sink)

    def add_pump(self, pump: Callable[[], None]) -> None:
        """Call ``pump`` at every tick that builds no snapshot (skipped by the throttle), on
        the tick's loop thread: ``stream.pump``'s sockets, served from the program's loop (its
        sink pumps when it is given a snapshot)."""
        self._pumps.append(pump)

    def _arm_tick(self, watch: Watch) -> None:
        if not (self._sinks or self._pumps) or self._tick_watch is not None or not self.enabled:
            return
        self._tick_watch = watch
        period = 1.0 / self.hz
        now = self.clock()
        # Due a period after the previous tick was due, not after it ended: re-armed from
        # its end, 25 Hz ran at ~23 (the tick's own time and the timer's lateness added up).
        # A tick later than a whole period is not made up for by a burst.
        due = self._tick_due + period if self._tick_due else now + period
        self._tick_due = max(due, now)
        self._tick_cancel = watch.call_later(self._tick_due - now, self._tick)

    def _watch_stopped(self, watch: Watch) -> None:
        if self._tick_watch is watch:
            if self._tick_cancel is not None:
                self._tick_cancel()
            self._tick_watch = None
            self._tick_cancel = None  # the next loop to start running takes the tick
            self._tick_due = 0.0

    def _tick(self) -> None:
        watch = self._tick_watch
        self._tick_watch = None
        self._tick_cancel = None
        if not self.enabled or watch is None:
            return
        # Under the lock: two loops on two threads may each carry a tick for a moment (one
        # arms as the other's runs), and the sinks and pumps are one consumer's state.
        with self._lock:
            now = self.clock()
            if self._sinks and now - self._prev_at >= self.build_seconds / self.max_share:
                cpu = self.cpu_clock
                started = cpu()
                snapshot = self.snapshot()
                for sink in self._sinks:
                    try:
                        sink(snapshot)
                    except Exception as exc:
                        self.say(f"loopmon: a snapshot consumer failed: {exc!r}")
                self.build_seconds = cpu() - started
                self.build_total_s += self.build_seconds
                self.built += 1
            else:
                self.skipped += 1 if self._sinks else 0
                for pump in self._pumps:
                    try:
                        pump()
                    except Exception as exc:
                        self.say(f"loopmon: the stream failed: {exc!r}")
        if watch.is_running():
            self._arm_tick(watch)

    # -- fork ------------------------------------------------------------------------------

    def _after_fork_child(self) -> None:
        self.enabled = False
        self._sinks.clear()
        self._pumps.clear()
        for sock in self._own:
            try:
                if isinstance(sock, int):
                    os.close(sock)
                else:
                    sock.close()
            except OSError:
                pass
        self._own.clear()
        for watch in self._watches:
            watch.after_fork()


def _not_the_watchdog(record: logging.LogRecord) -> bool:
    return record.module != "watchdog"


def _window(window: histogram.Window, now: float, lag: LagHistogram) -> LagWindow:
    counts, covered = window.update(now, lag.counts)
    return LagWindow(
        p50_s=histogram.quantile(counts, 0.5, lag.max_s),
        p99_s=histogram.quantile(counts, 0.99, lag.max_s),
        max_s=histogram.highest(counts, lag.max_s),
        window_s=covered,
        samples=sum(counts),
    )


def _sum(figures: list[LoopFigures], span: float) -> LoopFigures:
    """Several loops' figures as one (the snapshot's own): counts and times add up."""
    if len(figures) == 1:
        return figures[0]
    counts: list[int] = []
    max_s = 0.0
    for f in figures:
        if f.lag.counts:
            counts = (
                list(f.lag.counts)
                if not counts
                else [a + b for a, b in zip(counts, f.lag.counts, strict=True)]
            )
        max_s = max(max_s, f.lag.max_s)
    return LoopFigures(
        span_s=span,
        iterations=sum(f.iterations for f in figures),
        events=sum(f.events for f in figures),
        callbacks=sum(f.callbacks for f in figures),
        timers=sum(f.timers for f in figures),
        busy_s=sum(f.busy_s for f in figures),
        poll_s=sum(f.poll_s for f in figures),
        lag=LagHistogram(tuple(counts), max_s),
        stalls=sum(f.stalls for f in figures),
        errors=sum(f.errors for f in figures),
    )


# Fork handlers cannot be unregistered: one, for every instrument installed in the process.
_at_fork_child: weakref.WeakSet[Instrument] = weakref.WeakSet()


def _after_fork() -> None:
    for instrument in list(_at_fork_child):
        instrument._after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
