"""The loop's signal pipe: how a signal that arrives while the loop sleeps in poll ends the sleep.

CPython's C-level signal handler writes the signal's number to the fd given to
``signal.set_wakeup_fd``; the loop watches the other end and drains it. A pipe, not an eventfd:
the wakeup fd takes one-byte writes, and an eventfd takes eight. Only the main thread may set a
wakeup fd, and only there do signal handlers run, so a loop on another thread has none and a
signal handler wakes it through its waker (``IOLoop.add_callback_from_signal``).

Like the waker, the pipe is the loop's own fd, not a handler's: a signal (the stall watch's
SIGALRM ticks among them) is not an event of the program's, so it is neither counted nor shown.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("loopmon")


class SignalPipe:
    """A non-blocking pipe installed as the process's signal wakeup fd."""

    def __init__(self, read_fd: int, write_fd: int, previous: int) -> None:
        self.read_fd = read_fd
        self._write_fd = write_fd
        self._previous = previous  # the wakeup fd before ours, restored by uninstall

    @classmethod
    def install(cls, watch: Callable[[int], None]) -> SignalPipe | None:
        """Install a pipe on the main thread, ``watch`` its read end (the poller's register).
        None off the main thread, or when the poller cannot watch it (select() past
        FD_SETSIZE): signals then wake the loop by its waker. ``OSError`` if no pipe can be
        made (EMFILE)."""
        if threading.current_thread() is not threading.main_thread():
            return None
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC) if hasattr(os, "pipe2") else os.pipe()
        for fd in (rfd, wfd):
            os.set_blocking(fd, False)
        try:
            previous = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except ValueError:
            os.close(rfd)
            os.close(wfd)
            return None
        try:
            watch(rfd)
        except (OSError, ValueError):
            log.debug(
                "cannot watch the signal pipe; signals wake the loop by its waker", exc_info=True
            )
            signal.set_wakeup_fd(previous)
            os.close(rfd)
            os.close(wfd)
            return None
        return cls(rfd, wfd, previous)

    def drain(self) -> None:
        """Empty the pipe (the loop's dispatch, when its read end is readable)."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def uninstall(self, unwatch: Callable[[int], None]) -> None:
        """Restore the previous wakeup fd, ``unwatch`` the read end, close both ends."""
        try:
            signal.set_wakeup_fd(self._previous)
        except ValueError:
            pass
        try:
            unwatch(self.read_fd)
        except (OSError, KeyError, ValueError):
            log.debug("error unregistering the signal pipe", exc_info=True)
        os.close(self.read_fd)
        os.close(self._write_fd)
