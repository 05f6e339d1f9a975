"""Notices when a thread stops making progress, and takes its stack at that moment.

The watched thread writes a ``Heartbeat`` (what it is running and since when) before each unit
of work and clears ``what`` when it goes idle. Something else has to look at it a few times per
threshold, and there are two ways to do that:

- A daemon thread (the default). It works for a loop on any thread, which is what the monitor
  needs: its loop runs off the main thread, where no signal can reach it. When the same unit has
  been running too long, the thread takes the loop's stack from ``sys._current_frames()``.
- An interval timer (``setitimer(ITIMER_REAL)``) whose SIGALRM handler Python runs on the main
  thread, between two bytecodes of the stalled code itself, with that code's frame in hand. Only
  for a loop on the main thread, and only when nothing else in the process uses SIGALRM. It
  exists because a second thread is not free even while it sleeps: with two threads, glibc and
  CPython take their multi-threaded paths around every blocking call, and a single-threaded
  echo server measured about 5 % slower per round trip with one idle thread beside it. A
  syscall the alarm interrupts is retried by Python itself (PEP 475).

Either way a stall is logged once, and its stack is left on the heartbeat for whoever records
the stall when it ends.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("loopmon")


class Heartbeat:
    __slots__ = ("stack", "stack_for", "started", "what")

    def __init__(self) -> None:
        self.started = 0.0
        self.what: object = None  # None while idle (blocked in poll)
        self.stack = ""  # captured during the stall that began at ``stack_for``
        self.stack_for = -1.0

    def stack_of(self, started: float) -> str:
        """The stack the watchdog captured for the unit that began at ``started``, if any."""
        return self.stack if self.stack_for == started else ""


def describe(what: object) -> str:
    if isinstance(what, int):
        return f"handler for fd {what}"
    name = getattr(what, "__qualname__", None) or getattr(what, "__name__", None)
    return f"callback {name}" if name else f"callback {what!r}"


class Watchdog:
    def __init__(
        self,
        heartbeat: Heartbeat,
        thread_ident: int,
        threshold: float,
        clock: Callable[[], float] = time.monotonic,
        on_detect: Callable[[object, float, str], None] | None = None,
        *,
        use_signal: bool = False,
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.heartbeat = heartbeat
        self.thread_ident = thread_ident
        self.threshold = threshold
        self.interval = max(threshold / 4, 0.002)
        self.use_signal = use_signal
        self.mode = "stopped"  # then "thread" or "signal"
        self._clock = clock
        self._on_detect = on_detect
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler: Any = None
        self._reported = -1.0
        self._in_alarm = False

    def start(self) -> None:
        """Watch by SIGALRM if asked to and the process allows it, else by a thread."""
        if self.use_signal and self._alarm_is_free():
            self._previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)
            self.mode = "signal"
            return
        self._thread = threading.Thread(target=self._watch, name="loopmon-watchdog", daemon=True)
        self._thread.start()
        self.mode = "thread"

    def _alarm_is_free(self) -> bool:
        """True when the watched thread is the main thread, this is it (signal handlers can be
        set from there only), and neither SIGALRM nor ITIMER_REAL belongs to anyone else."""
        main = threading.main_thread().ident
        if (
            not hasattr(signal, "setitimer")
            or not self.thread_ident == main == threading.get_ident()
        ):
            return False
        if signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            return False
        return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

    def stop(self) -> None:
        self._stopped.set()
        if self.mode == "signal":
            signal.setitimer(signal.ITIMER_REAL, 0.0, 0.0)
            if threading.current_thread() is threading.main_thread():
                previous = self._previous_handler
                signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
            # else: the handler stays, and does nothing now that _stopped is set
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(1.0)
        self.mode = "stopped"

    def _watch(self) -> None:
        ident = self.thread_ident
        while not self._stopped.wait(self.interval):
            self._check(lambda: sys._current_frames().get(ident))

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the watched (main) thread itself: ``frame`` is where the stalled code is.
        # Python runs a signal's handler between any two bytecodes, its own handler's too: an
        # alarm due while a slow check formats a stack (a loaded machine, valgrind) would
        # start another check inside it, and so on until the C stack ran out.
        if self._in_alarm or self._stopped.is_set():
            return
        self._in_alarm = True
        try:
            self._check(lambda: frame)
        finally:
            self._in_alarm = False

    def _check(self, frame_of: Callable[[], FrameType | None]) -> None:
        hb = self.heartbeat
        what = hb.what
        started = hb.started
        if what is None or started == self._reported:
            return
        elapsed = self._clock() - started
        if elapsed < self.threshold:
            return
        frame = frame_of()
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        if hb.started != started:
            return  # it finished while we looked: not a stall worth a stack
        hb.stack, hb.stack_for = stack, started
        self._reported = started
        log.warning(
            "loop blocked for %.3f s (threshold %.3f s) in %s; stack at that moment:\n%s",
            elapsed,
            self.threshold,
            describe(what),
            stack,
        )
        if self._on_detect is not None:
            self._on_detect(what, elapsed, stack)
