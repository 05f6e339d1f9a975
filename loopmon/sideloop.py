"""A loopmon IOLoop on a daemon thread of loopmon's own: where ``loopmon run`` serves
``/metrics``, since the program's loops are the program's (the telemetry stream is served from
the program's loop instead, pumped at the instrument's ticks: ``stream.pump`` says why).

What ``metrics.thread`` needs, and why it is built so (its docstring says why a thread at
all): the loop is never current anywhere nor ``IOLoop.instance()``;
``own_loop`` keeps the instrument from watching it and ``own`` keeps the listening socket out of
the rows (and closed in a forked child); the thread is a daemon that blocks every signal, so the
kernel delivers the process's signals to the program's threads. ``start`` and ``close`` run on
the thread that made the object, while the loop is not running yet, or after it was joined.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from loopmon.ioloop import IOLoop

JOIN_TIMEOUT_S = 5.0


class SideLoop:
    def __init__(
        self,
        sock: socket.socket,
        *,
        own: Callable[[Any], None],
        disown: Callable[[Any], None],
        own_loop: Callable[[IOLoop], None],
        note: Callable[[str], None] | None,
        name: str,
    ) -> None:
        self.loop = IOLoop(make_current=False)
        own_loop(self.loop)
        own(sock)
        self._sock = sock
        self._disown = disown
        self._note = note
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.error: BaseException | None = None

    def start_thread(self) -> None:
        """Start the thread with every signal blocked (a new thread inherits the mask)."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def stopped_text(self, exc: BaseException) -> str:
        """The line that says the thread's loop died of ``exc``."""
        return f"loopmon: {self._thread.name}: its thread stopped: {exc!r}"

    def _serve(self) -> None:
        try:
            self.loop.start()
        except BaseException as exc:
            self.error = exc
            if self._note is not None:
                self._note(self.stopped_text(exc))

    def stop_thread(self, last: Callable[[], None]) -> bool:
        """Run ``last`` on the loop (it must stop the loop, at once or later), wait for the
        thread; False if it is stuck past every deadline: then nothing may be closed under it,
        and the daemon is left to the interpreter's exit."""
        if self._thread.is_alive():
            self.loop.add_callback(last)
            self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            return False
        self._disown(self._sock)
        return True
