"""A readiness-based event loop in the classic Tornado style, measuring itself as it runs.

One pass of ``start()``, in this order (Tornado 4.5's, for the same reasons):
1. take the number of callbacks queued now: only those run this pass, so a callback that
   schedules another cannot starve I/O;
2. collect the timers due now, before running anything, so a callback cannot make more due;
3. run those callbacks, then those timers (a timer cancelled by an earlier one does not run);
4. poll: not at all if callbacks are waiting, else until the next timer (or a wake);
5. dispatch each (fd, events) to its handler. A handler may remove or replace another fd in the
   same pass: an fd registered after the poll never receives that poll's events.

The loop thread is the only one that touches anything here, except ``add_callback`` (a deque
append, then a coalesced wake of the poll through a ``Waker``) and ``stop``.

Why this module is past 400 lines and still one job: it is Tornado's IOLoop surface (the
classic API, about 40 methods a seed reader expects in one class) and ``_run``, which stays one
function because a call per event would cost what the measurement saves. Each mechanism it
uses lives in a layer-1 module of its own: ``pollers``, ``waker``, ``timers``, ``watchdog``,
``loopstats``, ``signalpipe`` and ``coro``.
"""

from __future__ import annotations

import builtins
import collections
import contextvars
import datetime
import errno
import functools
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar

from loopmon import events as _ev
from loopmon import pollers
from loopmon.coro import drive
from loopmon.loopstats import (
    HANDLER,
    HANDLER_TIME,
    OBJ,
    REGISTERED,
    FdStat,
    HandlerError,
    LagRecorder,
    LoopStats,
    PassStats,
    Stall,
)
from loopmon.signalpipe import SignalPipe
from loopmon.snapshot import LoopFigures
from loopmon.timers import Timeout, TimerQueue
from loopmon.waker import Waker
from loopmon.watchdog import Heartbeat, Watchdog, describe

__all__ = ["IOLoop", "PeriodicCallback", "Timeout", "TimeoutError"]

# Tornado 4.5 names its own ``tornado.ioloop.TimeoutError``, which ``run_sync`` raises; code
# written for it imports that name. Here it is the built-in, so either name catches it.
TimeoutError = builtins.TimeoutError

log = logging.getLogger("loopmon")

_T = TypeVar("_T")
Handler = Callable[[Any, int], object]

# How long a poll may sleep with nothing scheduled; a wake ends it sooner.
_MAX_WAIT = 3600.0
# The lag probe: a timer whose lateness is the loop's lag.
_LAG_PROBE_S = 0.1
_KEEP_STALLS = 100
_KEEP_ERRORS = 100


# A registration's entry is its FdStat's ``ready`` list: the readiness counts, and in the cells
# no mask uses, the handler's time, the object and handler to call and the poll count when
# registered (see loopstats).
_Cells = list[Any]

# Bound once: add_callback is on the path of every cross-thread wake.
_copy_context = contextvars.copy_context
_get_ident = threading.get_ident


def _chosen_backend(backend: str | None) -> str:
    """The backend asked for, else $LOOPMON_BACKEND, else the best that works here."""
    if backend is None:
        # The environment may choose, so a program that only calls IOLoop.instance() (the
        # seed's demo) can still be run on any backend.
        backend = os.environ.get("LOOPMON_BACKEND") or None
    if backend is None:
        names = pollers.available()
        if not names:
            raise RuntimeError("no poller works on this machine")
        backend = names[0]
    return backend


class IOLoop:
    NONE: ClassVar[int] = _ev.NONE
    READ: ClassVar[int] = _ev.READ
    WRITE: ClassVar[int] = _ev.WRITE
    ERROR: ClassVar[int] = _ev.ERROR

    _instance: ClassVar[IOLoop | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()
    _current: ClassVar[threading.local] = threading.local()

    # -- the process-wide and the thread's current loop -------------------------------------

    @staticmethod
    def instance() -> IOLoop:
        """The process-wide loop (the seed's demo uses it), created on first use."""
        if IOLoop._instance is None:
            with IOLoop._instance_lock:
                if IOLoop._instance is None:
                    # As Tornado 4.5: it becomes this thread's current loop if there is none.
                    IOLoop._instance = IOLoop()
        return IOLoop._instance

    @staticmethod
    def initialized() -> bool:
        return IOLoop._instance is not None

    def install(self) -> None:
        """Make this loop the process-wide one; ``RuntimeError`` if there already is one."""
        with IOLoop._instance_lock:
            if IOLoop._instance is not None:
                raise RuntimeError("the process-wide IOLoop already exists")
            IOLoop._instance = self

    @staticmethod
    def clear_instance() -> None:
        with IOLoop._instance_lock:
            IOLoop._instance = None

    @staticmethod
    def current(instance: bool = True) -> IOLoop | None:
        """The loop running (or made current) on this thread; else the process-wide one,
        or None when ``instance`` is false."""
        loop: IOLoop | None = getattr(IOLoop._current, "instance", None)
        if loop is None and instance:
            return IOLoop.instance()
        return loop

    def make_current(self) -> None:
        IOLoop._current.instance = self

    @staticmethod
    def clear_current() -> None:
        IOLoop._current.instance = None

    # -- construction ---------------------------------------------------------------------

    def __init__(
        self,
        backend: str | None = None,
        *,
        make_current: bool | None = None,
        time_func: Callable[[], float] | None = None,
    ) -> None:
        self._poller = pollers.create(_chosen_backend(backend))
        self.backend: str = self._poller.name
        # The lowest fd number this loop cannot watch (select's FD_SETSIZE), or None.
        self.fd_limit: int | None = self._poller.fd_limit
        self.time: Callable[[], float] = time_func or time.monotonic
        self._created = self.time()
        self._handlers: dict[int, _Cells] = {}
        self._stats: dict[int, FdStat] = {}
        self.fd_stats: Mapping[int, FdStat] = types.MappingProxyType(self._stats)
        self._callbacks: collections.deque[
            tuple[contextvars.Context, Callable[..., Any], tuple[Any, ...]]
        ] = collections.deque()
        self._timers = TimerQueue()
        self._running = False
        self._stopped = False
        self._closing = False
        self._closed = False
        self._thread_ident: int | None = None
        self._signal_pipe: SignalPipe | None = None
        self._init_instrumentation()
        self._init_waker()
        if make_current is None:
            if IOLoop.current(instance=False) is None:
                self.make_current()
        elif make_current:
            if IOLoop.current(instance=False) is not None:
                raise RuntimeError("current IOLoop already exists")
            self.make_current()

    def _init_instrumentation(self) -> None:
        """Instrumentation, always on: the pass totals, the lag probe, stalls and errors."""
        self._polls = 0  # poll() calls so far; an fd registered after poll n is skipped in n
        self._iterations = 0
        self._events_total = 0
        self._callbacks_total = 0
        self._timers_total = 0
        self._busy = 0.0
        self._poll_time = 0.0
        self._last_pass: tuple[float, float, int, int, int] = (0.0, 0.0, 0, 0, 0)
        self._lag = LagRecorder()
        self._lag_timeout: Timeout | None = None
        self._touched: set[int] = set()
        self._stalls: collections.deque[Stall] = collections.deque(maxlen=_KEEP_STALLS)
        self._errors: collections.deque[HandlerError] = collections.deque(maxlen=_KEEP_ERRORS)
        self._stall_count = 0
        self._error_count = 0
        self._heartbeat = Heartbeat()
        self._stall_threshold = math.inf
        self._watchdog: Watchdog | None = None
        self._watch_by_signal = False
        self._on_stall: Callable[[Stall], None] | None = None
        self._stall_action: Callable[[int, Any], Any] | None = None
        self._on_error: Callable[[HandlerError], None] | None = None

    def _init_waker(self) -> None:
        # The waker is registered with the poller but has no handler entry: dispatch finds it
        # on the rare path (a missing entry), so a wake runs no handler and costs the hot path
        # nothing. The pass drains it after the callbacks it announced have run: a woken thread
        # runs with cold caches (a few hundred ns a bytecode here), and a handler call plus a
        # drain (lock, read) put about 6 us between the wake and the callback. Draining late is
        # safe because the pass drains before deciding whether to block, and never blocks
        # while a callback waits (see Waker's rules).
        self._waker = Waker()
        self._waker_fd = self._waker.fileno()
        self._wake_due = False
        self._poller.register(self._waker_fd, self.READ | self.ERROR)

    def __repr__(self) -> str:
        return f"<IOLoop backend={self.backend} handlers={len(self._handlers)}>"

    # -- file descriptors -----------------------------------------------------------------

    @staticmethod
    def split_fd(fd: Any) -> tuple[int, Any]:
        """(fd number, the object to hand back to the handler) for an int or a file object."""
        try:
            return fd.fileno(), fd
        except AttributeError:
            return fd, fd

    def add_handler(self, fd: Any, handler: Handler, events: int) -> None:
        """Call ``handler(fd, events)`` whenever ``fd`` is ready for ``events`` (ERROR is
        always watched). Registering an fd twice raises ``FileExistsError``."""
        fdno, obj = self.split_fd(fd)
        if fdno in self._handlers:
            raise FileExistsError(f"fd {fdno} is already registered with this IOLoop")
        mask = events | self.ERROR
        self._poller.register(fdno, mask)
        stat = FdStat(fdno, mask, self.time())
        cells = stat.ready
        cells[OBJ] = obj
        cells[HANDLER] = handler
        cells[REGISTERED] = self._polls
        self._handlers[fdno] = cells
        self._stats[fdno] = stat
        self._touched.add(fdno)

    def update_handler(self, fd: Any, events: int) -> None:
        fdno, _ = self.split_fd(fd)
        mask = events | self.ERROR
        stat = self._stats[fdno]
        if stat.mask == mask:
            return
        self._poller.modify(fdno, mask)
        stat.set_mask(mask, self.time())
        self._touched.add(fdno)

    def remove_handler(self, fd: Any) -> None:
        """Stop watching ``fd``; its events not yet dispatched this pass are dropped. An
        unknown fd is ignored."""
        fdno, _ = self.split_fd(fd)
        cells = self._handlers.pop(fdno, None)
        if cells is None:
            return
        # The cells keep their object and handler: a handler that removed itself and then
        # raised is still reported with them.
        self._stats.pop(fdno).set_mask(self.NONE, self.time())
        self._touched.add(fdno)
        try:
            self._poller.unregister(fdno)
        except (OSError, KeyError, ValueError):
            # The fd may already be closed: the kernel forgot it before we did.
            log.debug("error unregistering fd %d", fdno, exc_info=True)

    def close_fd(self, fd: Any) -> None:
        try:
            try:
                fd.close()
            except AttributeError:
                os.close(fd)
        except OSError:
            pass

    # -- callbacks ------------------------------------------------------------------------

    def add_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``callback(*args, **kwargs)`` on the next pass, in the caller's context.
        The only method safe to call from another thread; after close it does nothing."""
        self._enqueue(_copy_context(), callback, args, kwargs, self._thread_ident != _get_ident())

    def add_callback_from_signal(
        self, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """``add_callback`` for a signal handler: when the loop runs on the main thread the
        C-level handler has already written to the loop's wakeup fd, so only append."""
        # A fresh context, as Tornado's NullContext: the callback must not pick up the
        # context of whatever code the signal interrupted.
        self._enqueue(contextvars.Context(), callback, args, kwargs, self._signal_pipe is None)

    def spawn_callback(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``add_callback`` without the caller's context: the callback starts in a fresh one."""
        self._enqueue(
            contextvars.Context(), callback, args, kwargs, self._thread_ident != _get_ident()
        )

    def _enqueue(
        self,
        context: contextvars.Context,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        wake: bool,
    ) -> None:
        """The one body of every way to queue a callback: ``wake`` when the poll may be
        sleeping (the caller is not the loop's thread, and no signal pipe has woken it)."""
        if self._closing:
            return
        if kwargs:
            callback = functools.partial(callback, **kwargs)
        self._callbacks.append((context, callback, args))
        if wake:
            self._waker.wake()

    def add_future(self, future: Future[_T], callback: Callable[[Future[_T]], Any]) -> None:
        """Call ``callback(future)`` on this loop once ``future`` is done, in the context
        captured now (as ``add_callback`` and ``add_timeout`` do), not in that of the thread
        that completes the future."""
        if not callable(getattr(future, "add_done_callback", None)):
            raise TypeError(f"not a future: {future!r}")
        context = _copy_context()
        future.add_done_callback(
            lambda f: self._enqueue(context, callback, (f,), {}, self._thread_ident != _get_ident())
        )

    # -- timers ---------------------------------------------------------------------------

    def add_timeout(
        self,
        deadline: float | datetime.timedelta,
        callback: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Timeout:
        """Run ``callback`` at ``deadline`` (on ``self.time()``'s clock) or after a timedelta."""
        if isinstance(deadline, datetime.timedelta):
            when = self.time() + deadline.total_seconds()
        elif isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
            when = float(deadline)
        else:
            raise TypeError(f"Unsupported deadline {deadline!r}")
        if kwargs:
            callback = functools.partial(callback, **kwargs)
        return self._timers.add(when, callback, args, contextvars.copy_context())

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Timeout:
        return self.add_timeout(self.time() + delay, callback, *args, **kwargs)

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Timeout:
        return self.add_timeout(when, callback, *args, **kwargs)

    def remove_timeout(self, timeout: Timeout) -> None:
        self._timers.cancel(timeout)

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("IOLoop is closed")
        if self._running:
            raise RuntimeError("IOLoop is already running")
        if self._stopped:
            self._stopped = False
            return
        old_current = getattr(IOLoop._current, "instance", None)
        IOLoop._current.instance = self
        self._thread_ident = threading.get_ident()
        self._running = True
        try:
            # Inside the try: a setup that fails (EMFILE on the signal pipe, a thread that
            # will not start) must leave the loop stopped and closable, not "running".
            self._signal_pipe = SignalPipe.install(lambda fd: self._poller.register(fd, self.READ))
            self._arm_lag_probe()
            if self._watchdog is None and self._stall_threshold < math.inf:
                self._start_watchdog()
            self._run()
        finally:
            self._running = False
            self._stopped = False
            self._thread_ident = None
            if self._lag_timeout is not None:
                self._timers.cancel(self._lag_timeout)
                self._lag_timeout = None
            try:
                self._stop_watchdog()
            finally:
                pipe, self._signal_pipe = self._signal_pipe, None
                if pipe is not None:
                    pipe.uninstall(self._poller.unregister)
                IOLoop._current.instance = old_current

    def _run(self) -> None:  # noqa: PLR0912, PLR0915 - the hot path, one function (see above)
        # Locals for the hot path: every attribute lookup here runs per event.
        clock = self.time
        handlers = self._handlers
        callbacks = self._callbacks
        popleft = callbacks.popleft
        timers = self._timers
        poll = self._poller.poll
        touched_add = self._touched.add
        hb = self._heartbeat
        heap = timers.heap  # the same list for the queue's life (see timers)
        waker_fd = self._waker_fd
        signal_pipe = self._signal_pipe
        signal_fd = signal_pipe.read_fd if signal_pipe is not None else -1
        # The cells of an fd's entry, by their loopstats names: as locals they cost what
        # literals do (LOAD_FAST against LOAD_CONST), and cannot drift from the layout.
        registered_cell = REGISTERED
        handler_cell = HANDLER
        obj_cell = OBJ
        time_cell = HANDLER_TIME
        # The running totals live in locals while the loop runs. They are published to the
        # attributes stats() and figures() read at the start of every pass that runs a
        # callback or a timer (where such readers run: telemetry is a timer) and when the
        # loop leaves, so what those readers see is exact. Seven attribute updates a pass
        # cost ~0.3 us, which is 2-3 % of a round trip when a pass carries one or two events.
        polls = self._polls
        events_total = self._events_total
        callbacks_total = self._callbacks_total
        timers_total = self._timers_total
        busy_total = self._busy
        poll_total = self._poll_time
        last_pass = self._last_pass
        t = clock()
        try:
            while True:
                pass_start = t
                ncallbacks = len(callbacks)
                due = timers.pop_due(t) if heap and heap[0][0] <= t else ()
                if ncallbacks or due:
                    self._publish(
                        polls,
                        events_total,
                        callbacks_total,
                        timers_total,
                        busy_total,
                        poll_total,
                        last_pass,
                    )
                    for _ in range(ncallbacks):
                        ctx, callback, args = popleft()
                        hb.started = t
                        hb.what = callback
                        try:
                            ret = ctx.run(callback, *args)
                            if ret is not None:
                                self._watch_result(ret)
                        except Exception:
                            self._callback_failed(callback, args, t)
                        t2 = clock()
                        if t2 - t > self._stall_threshold:
                            self._stalled(callback, -1, t, t2)
                        t = t2
                    for timeout in due:
                        timer_cb = timeout.callback
                        if timer_cb is None:
                            continue  # cancelled by an earlier one this pass
                        hb.started = t
                        hb.what = timer_cb
                        try:
                            ret = timeout.context.run(timer_cb, *timeout.args)
                            if ret is not None:
                                self._watch_result(ret)
                        except Exception:
                            self._callback_failed(timer_cb, timeout.args, t)
                        t2 = clock()
                        if t2 - t > self._stall_threshold:
                            self._stalled(timer_cb, -1, t, t2)
                        t = t2
                ntimers = len(due)
                if self._wake_due:
                    self._wake_due = False
                    self._waker.consume()

                if callbacks:
                    timeout_s: float | None = 0.0
                elif heap and heap[0][2].callback is not None:
                    # The next deadline, read off a live head without a call.
                    wait = heap[0][0] - t
                    timeout_s = 0.0 if wait < 0.0 else (wait if wait < _MAX_WAIT else _MAX_WAIT)
                else:
                    deadline = timers.next_deadline()  # drops cancelled heads first
                    timeout_s = (
                        _MAX_WAIT if deadline is None else min(max(deadline - t, 0.0), _MAX_WAIT)
                    )
                if not self._running:
                    busy_total += t - pass_start
                    break
                hb.what = None
                t_poll = t
                event_pairs = poll(timeout_s)
                t = clock()
                polls += 1
                self._polls = polls  # add_handler stamps registrations with it
                poll_s = t - t_poll
                t_dispatch = t
                threshold = self._stall_threshold
                skipped = 0  # events no handler received: the loop's own fds, stale ones
                for fd, events in event_pairs:
                    cells = handlers.get(fd)
                    if cells is None:
                        # Not a raised KeyError: a wake-up is on this path, and raising costs
                        # microseconds on a thread that just woke with cold caches.
                        skipped += 1
                        if fd == waker_fd:
                            self._wake_due = True
                        elif fd == signal_fd:
                            signal_pipe.drain()  # type: ignore[union-attr]  # fd -1 without one
                        continue  # or removed earlier in this pass
                    if cells[registered_cell] == polls:
                        skipped += 1
                        continue  # a new registration made after this poll: not its event
                    cells[events & 31] += 1
                    touched_add(fd)
                    hb.started = t
                    hb.what = fd
                    try:
                        cells[handler_cell](cells[obj_cell], events)
                    except Exception:
                        self._handler_failed(fd, cells, t)
                    t2 = clock()
                    spent = t2 - t
                    cells[time_cell] += spent
                    if spent > threshold:
                        self._stalled(fd, fd, t, t2)
                    t = t2
                busy = (t_poll - pass_start) + (t - t_dispatch)
                busy_total += busy
                poll_total += poll_s
                nevents = len(event_pairs) - skipped
                events_total += nevents
                callbacks_total += ncallbacks
                timers_total += ntimers
                # A plain tuple: a frozen record per pass would cost more than its bookkeeping.
                last_pass = (poll_s, busy, nevents, ncallbacks, ntimers)
        finally:
            self._publish(
                polls,
                events_total,
                callbacks_total,
                timers_total,
                busy_total,
                poll_total,
                last_pass,
            )

    def _publish(
        self,
        iterations: int,
        events: int,
        callbacks: int,
        timers: int,
        busy_s: float,
        poll_s: float,
        last_pass: tuple[float, float, int, int, int],
    ) -> None:
        """Where ``stats()`` and ``figures()`` read the running totals ``_run`` keeps."""
        self._iterations = iterations
        self._events_total = events
        self._callbacks_total = callbacks
        self._timers_total = timers
        self._busy = busy_s
        self._poll_time = poll_s
        self._last_pass = last_pass

    def stop(self) -> None:
        """Make ``start()`` return after the current pass; before ``start()``, the next
        ``start()`` returns at once. Safe from another thread."""
        self._running = False
        self._stopped = True
        self._waker.wake()

    def is_running(self) -> bool:
        return self._running

    def run_sync(self, func: Callable[[], Any], timeout: float | None = None) -> Any:
        """Start the loop, run ``func`` on it, stop when its result (a value, a
        ``concurrent.futures.Future`` or a coroutine) is ready, and return or raise it.
        ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        cell: list[Future[Any]] = []

        def run() -> None:
            future: Future[Any]
            try:
                result = func()
                if isinstance(result, Coroutine):
                    future = self._drive(result)
                elif isinstance(result, Future):
                    future = result
                else:
                    future = Future()
                    future.set_result(result)
            except BaseException as exc:
                future = Future()
                future.set_exception(exc)
            cell.append(future)
            self.add_future(future, lambda _: self.stop())

        self.add_callback(run)
        handle = self.call_later(timeout, self.stop) if timeout is not None else None
        self.start()
        if handle is not None:
            self.remove_timeout(handle)
        if not cell or not cell[0].done():
            raise TimeoutError(f"Operation timed out after {timeout} seconds")
        return cell[0].result()

    def _watch_result(self, ret: object) -> None:
        """A callback returned a future or a coroutine: run the coroutine, and send a failure
        of either to ``handle_callback_exception`` instead of losing it."""
        if isinstance(ret, Coroutine):
            ret = self._drive(ret)
        if isinstance(ret, Future):
            self.add_future(ret, _surface_result)

    def _drive(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return drive(coro, self.add_callback, self.add_future)

    def close(self, all_fds: bool = False) -> None:
        """Release the poller and the waker; with ``all_fds`` close every registered fd too
        (a file object registered as such is closed through its ``close()``; one registered
        by number is ``os.close``d, so do not pass ``all_fds`` while some object still owns
        that number: it would close it a second time). Further ``add_callback`` calls do
        nothing."""
        if self._closed:
            return
        if self._running:
            raise RuntimeError("cannot close a running IOLoop; stop it first")
        self._closing = True
        try:
            self._poller.unregister(self._waker_fd)
        except (OSError, KeyError, ValueError):
            pass
        if all_fds:
            for cells in list(self._handlers.values()):
                self.close_fd(cells[OBJ])
        self._handlers.clear()
        self._stats.clear()
        self._stop_watchdog()
        self._waker.close()
        self._poller.close()
        self._callbacks.clear()
        self._timers.clear()
        self._closed = True
        if IOLoop.current(instance=False) is self:
            IOLoop.clear_current()
        if IOLoop._instance is self:
            IOLoop.clear_instance()

    # -- failures and stalls --------------------------------------------------------------

    def handle_callback_exception(self, callback: Any) -> None:
        """Called with the exception live in ``sys.exc_info()``; the default logs it."""
        if isinstance(callback, tuple) and len(callback) == 2:
            fdno, _ = self.split_fd(callback[0])
            # Tornado 4.5's words for a handler, (fd object, handler), so a log filter written
            # for Tornado matches; the fd number is added.
            log.error("Exception in callback %r (fd %s)", callback, fdno, exc_info=True)
        else:
            log.error("Exception in callback %r", callback, exc_info=True)

    def _callback_failed(
        self, callback: Callable[..., Any], args: tuple[Any, ...], at: float
    ) -> None:
        self._record_error(describe(callback), -1, at)
        self.handle_callback_exception(functools.partial(callback, *args) if args else callback)

    def _handler_failed(self, fd: int, cells: _Cells, at: float) -> None:
        # As Tornado 4.5: EPIPE from a handler means the client went away, not a failure.
        if _is_epipe(sys.exc_info()[1]):
            return
        self._record_error(f"handler for fd {fd}", fd, at)
        self.handle_callback_exception((cells[OBJ], cells[HANDLER]))

    def _record_error(self, what: str, fd: int, at: float) -> None:
        record = HandlerError(at, what, fd, traceback.format_exc())
        self._errors.append(record)
        self._error_count += 1
        if self._on_error is not None:
            self._on_error(record)

    def _stalled(self, what: object, fd: int, started: float, ended: float) -> None:
        stall = Stall(
            started, ended - started, describe(what), fd, self._heartbeat.stack_of(started)
        )
        self._stalls.append(stall)
        self._stall_count += 1
        if self._on_stall is not None:
            self._on_stall(stall)
        action = self._stall_action
        if action is not None:
            try:
                action(signal.SIGALRM, None)
            except Exception:
                log.exception("the blocking-signal action %r failed", action)

    def set_blocking_log_threshold(
        self, seconds: float | None, *, use_signal: bool = False
    ) -> None:
        """Log (with the loop thread's stack) and record any callback or handler that runs
        longer than ``seconds``; None or 0 turns it off.

        A watchdog thread looks for stalls. With ``use_signal``, a loop running on the main
        thread is watched by a SIGALRM interval timer instead, when no one else in the process
        has SIGALRM or ITIMER_REAL (otherwise, and on any other thread, it falls back to the
        thread): a single-threaded server saves the cost a second thread puts on every
        syscall. ``watchdog_mode`` says which one is watching."""
        self._stop_watchdog()
        self._watch_by_signal = use_signal
        if not seconds or seconds <= 0:
            self._stall_threshold = math.inf
            return
        self._stall_threshold = float(seconds)
        if self._running:
            self._start_watchdog()

    @property
    def watchdog_mode(self) -> str:
        """``"thread"`` or ``"signal"`` while a watchdog runs, else ``"off"``."""
        return self._watchdog.mode if self._watchdog is not None else "off"

    def set_blocking_signal_threshold(
        self, seconds: float | None, action: Callable[..., Any] | None = None
    ) -> None:
        """Tornado's signature. Tornado made ``action`` the SIGALRM handler, run inside the
        stall (and with no action, SIGALRM's default killed the process). Here a stall is
        logged and recorded as by ``set_blocking_log_threshold``, and ``action(SIGALRM,
        None)`` is called on the loop thread once the slow callback or handler has returned:
        the loop may run on a thread signals never reach, and a stall should not kill a
        monitor. The README's compatibility notes say so."""
        self._stall_action = action
        self.set_blocking_log_threshold(seconds)

    def set_observers(
        self,
        on_stall: Callable[[Stall], None] | None = None,
        on_error: Callable[[HandlerError], None] | None = None,
    ) -> None:
        """Be told (on the loop thread) of each stall and each failing handler or callback."""
        self._on_stall = on_stall
        self._on_error = on_error

    def _start_watchdog(self) -> None:
        assert self._thread_ident is not None
        watchdog = Watchdog(
            self._heartbeat,
            self._thread_ident,
            self._stall_threshold,
            clock=self.time,
            use_signal=self._watch_by_signal,
        )
        watchdog.start()  # kept only once it runs: one that failed to start has nothing to stop
        self._watchdog = watchdog

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None

    # -- self-measurement -----------------------------------------------------------------

    def _arm_lag_probe(self) -> None:
        deadline = self.time() + _LAG_PROBE_S
        self._lag_timeout = self._timers.add(
            deadline, self._lag_probe, (deadline,), contextvars.Context()
        )

    def _lag_probe(self, deadline: float) -> None:
        self._lag.record(self.time() - deadline)
        self._arm_lag_probe()

    def stats(self) -> LoopStats:
        """A frozen record of everything the loop has measured, as of now."""
        now = self.time()
        return LoopStats(
            backend=self.backend,
            running=self._running,
            taken_at=now,
            iterations=self._iterations,
            events=self._events_total,
            callbacks=self._callbacks_total,
            timers=self._timers_total,
            busy_s=self._busy,
            poll_s=self._poll_time,
            last_pass=PassStats(*self._last_pass),
            lag=self._lag.freeze(),
            fds=tuple(stat.freeze(now) for stat in self._stats.values()),
            stalls=tuple(self._stalls),
            errors=tuple(self._errors),
            stall_count=self._stall_count,
            error_count=self._error_count,
        )

    def figures(self) -> LoopFigures:
        """The running totals since construction, cheaply (no per-fd work)."""
        return LoopFigures(
            span_s=self.time() - self._created,
            iterations=self._iterations,
            events=self._events_total,
            callbacks=self._callbacks_total,
            timers=self._timers_total,
            busy_s=self._busy,
            poll_s=self._poll_time,
            lag=self._lag.freeze(),
            stalls=self._stall_count,
            errors=self._error_count,
        )

    def fd_stat(self, fd: int) -> FdStat | None:
        """The live counters of a registered fd (loop thread only: they change under you).
        ``fd_stats`` is the same as a read-only mapping, for readers of many fds at once."""
        return self._stats.get(fd)

    def take_touched(self) -> set[int]:
        """The fds that saw an event or a mask change since the last call (loop thread)."""
        # Copied and cleared, never replaced: the running pass holds this set's add method.
        touched = self._touched.copy()
        self._touched.clear()
        return touched

    @property
    def internal_fds(self) -> frozenset[int]:
        """fds the loop registered for itself (its waker, its signal pipe)."""
        fds = {self._waker.fileno()}
        if self._signal_pipe is not None:
            fds.add(self._signal_pipe.read_fd)
        return frozenset(fds)


def _is_epipe(exc: BaseException | None) -> bool:
    if isinstance(exc, BrokenPipeError):
        return True
    if not isinstance(exc, OSError):
        return False
    # OSError(EPIPE) made with one argument has no errno: Tornado's errno_from_exception
    # would miss it, but it says the same thing.
    code = exc.errno if exc.errno is not None else (exc.args[0] if exc.args else None)
    return code == errno.EPIPE


def _surface_result(future: Future[Any]) -> None:
    # Runs as a callback so a failed future returned by a callback reaches
    # handle_callback_exception instead of vanishing.
    future.result()


class PeriodicCallback:
    """Call ``callback`` every ``callback_time`` milliseconds while started.

    Calls stay on the grid laid from ``start()``: if the loop is late, the missed ticks are
    skipped rather than run in a burst.
    """

    def __init__(
        self,
        callback: Callable[[], Any],
        callback_time: float,
        io_loop: IOLoop | None = None,
    ) -> None:
        if callback_time <= 0:
            raise ValueError("Periodic callback must have a positive callback_time")
        self.callback = callback
        self.callback_time = callback_time
        self.io_loop = io_loop
        self._running = False
        self._timeout: Timeout | None = None
        self._next_timeout = 0.0

    def _loop(self) -> IOLoop:
        if self.io_loop is None:
            loop = IOLoop.current()
            assert loop is not None
            self.io_loop = loop
        return self.io_loop

    def start(self) -> None:
        self._running = True
        self._next_timeout = self._loop().time()
        self._schedule_next()

    def stop(self) -> None:
        self._running = False
        if self._timeout is not None:
            self._loop().remove_timeout(self._timeout)
            self._timeout = None

    def is_running(self) -> bool:
        return self._running

    def _run(self) -> Any:
        if not self._running:
            return None
        try:
            # Returned so that a coroutine or future it gives back is run and watched, as for
            # any timer (Tornado 4.5's PeriodicCallback does the same).
            return self.callback()
        except Exception:
            self._loop().handle_callback_exception(self.callback)
        finally:
            self._schedule_next()
        return None

    def _schedule_next(self) -> None:
        if not self._running:
            return
        loop = self._loop()
        now = loop.time()
        if self._next_timeout <= now:
            period = self.callback_time / 1000.0
            self._next_timeout += (math.floor((now - self._next_timeout) / period) + 1) * period
        self._timeout = loop.add_timeout(self._next_timeout, self._run)
