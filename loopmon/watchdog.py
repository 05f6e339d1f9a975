"""A thread that notices when another thread stops making progress.

The watched thread writes a ``Heartbeat`` (what it is running and since when) before each unit
of work and clears ``what`` when it goes idle. SIGALRM cannot do this job: signals are delivered
only to the main thread, and the monitor runs its loop on another one. So a daemon thread wakes a
few times per threshold, and when the same unit has been running too long it takes that
thread's stack from ``sys._current_frames()`` at that moment, logs it once per stall, and leaves
the stack on the heartbeat for whoever records the stall when it ends.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

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
    ) -> None:
        if threshold <= 0:
            raise ValueError("threshold must be positive")
        self.heartbeat = heartbeat
        self.thread_ident = thread_ident
        self.threshold = threshold
        self._clock = clock
        self._on_detect = on_detect
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="loopmon-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _watch(self) -> None:
        hb = self.heartbeat
        interval = max(self.threshold / 4, 0.002)
        reported = -1.0
        while not self._stopped.wait(interval):
            what = hb.what
            started = hb.started
            if what is None or started == reported:
                continue
            elapsed = self._clock() - started
            if elapsed < self.threshold:
                continue
            frame = sys._current_frames().get(self.thread_ident)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            if hb.started != started:
                continue  # it finished while we looked: not a stall worth a stack
            hb.stack, hb.stack_for = stack, started
            reported = started
            log.warning(
                "loop blocked for %.3f s (threshold %.3f s) in %s; stack at that moment:\n%s",
                elapsed,
                self.threshold,
                describe(what),
                stack,
            )
            if self._on_detect is not None:
                self._on_detect(what, elapsed, stack)
