"""A thread-safe wake-up fd: any thread calls ``wake()``, the thread watching ``fileno()`` (in a
poller, a QSocketNotifier, a select()) sees it readable and calls ``consume()``.

Why eventfd, else a pipe: an eventfd (Linux) is one fd holding a 64-bit counter: a write adds to
it, one read returns and zeroes it, so draining is a single syscall and the kernel object is
tiny. Elsewhere a non-blocking pipe does the same with bytes. On Windows select() watches sockets
only, so there the fallback is a connected socket pair.

Coalescing rules:

- At most one wake-up is pending: ``wake()`` writes only when the pending flag was clear, so a
  thousand wakes before the reader gets round to it cost one write and can never fill the pipe.
- ``consume()`` drains the fd first and clears the flag after, and the reader must call it
  *before* looking at the shared state it was woken for. A wake() that finds the flag still set
  skips its write, but it published its state before checking the flag, and the flag was still
  set, so the reader has not yet started looking: it will see that state. Clearing the flag
  first instead would let a wake() slip its write in between, have the drain swallow it, and
  leave the flag set over an empty fd: every later wake() would be skipped and lost.
- Writes, reads and close() hold one lock, so an fd number is never written after close() has
  released it (by then it may name someone else's file). The lock is re-entrant because a
  Python signal handler may call wake() on a thread that is inside wake() or consume().
- ``wake()`` never blocks and never raises: a full fd is already readable, and after ``close()``
  a wake-up has no one to wake.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import sys
import threading
from collections.abc import Callable

# select() on Windows watches sockets only, so there the fallback is a socket pair; tests set
# this to run that path elsewhere.
_FORCE_SOCKETS = False
_CHUNK = 4096
# An eventfd takes exactly one native-endian 64-bit integer per write, added to its counter; a
# read of 8 bytes or more returns the counter and zeroes it, so the pipe's drain loop serves both.
_EVENTFD_ONE = (1).to_bytes(8, sys.byteorder)


class Waker:
    def __init__(self, use_eventfd: bool | None = None) -> None:
        """``use_eventfd``: None picks eventfd where it exists; False forces the fallback; True
        insists (``OSError`` where there is none)."""
        if use_eventfd is None:
            use_eventfd = hasattr(os, "eventfd")
        self._lock = threading.RLock()
        self._pending = False
        self._closed = False
        self._socks: tuple[socket.socket, socket.socket] | None = None
        self._rfd: int
        self._wfd: int
        self._token = b"\0"
        self.kind: str
        if use_eventfd:
            if sys.platform == "linux":
                fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self._rfd = self._wfd = fd
                self._token = _EVENTFD_ONE
                self.kind = "eventfd"
            else:
                raise OSError(errno.ENOSYS, f"eventfd does not exist on {sys.platform}")
        elif sys.platform == "win32" or _FORCE_SOCKETS:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._socks = (reader, writer)
            self._rfd, self._wfd = reader.fileno(), writer.fileno()
            self.kind = "socketpair"
        else:
            # os.pipe() is already close-on-exec (PEP 446).
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
            self.kind = "pipe"
        # One C call, bound once: wake() is on the path of every cross-thread callback, and the
        # waking thread usually runs it with cold caches, where each Python-level step counts.
        self._write: Callable[[], int] = (
            functools.partial(self._socks[1].send, b"\0")
            if self._socks is not None
            else functools.partial(os.write, self._wfd, self._token)
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("pending" if self._pending else "idle")
        return f"<Waker {self.kind} fd={self._rfd} {state}>"

    def fileno(self) -> int:
        """The fd that turns readable on a wake; -1 once closed."""
        return -1 if self._closed else self._rfd

    def wake(self) -> None:
        """Make ``fileno()`` readable, from any thread; does nothing if already pending."""
        if self._pending:
            return  # the common case under load, decided without the lock
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            try:
                self._write()
            except OSError:
                pass  # full (already readable) or otherwise unwritable: nothing to add

    def consume(self) -> None:
        """Drain the fd and re-arm ``wake()``; call it before reading the shared state."""
        with self._lock:
            if self._closed:
                return
            self._drain()
            self._pending = False

    def close(self) -> None:
        """Release the fds; idempotent, and any ``wake()`` after it does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Also sends a wake() arriving from now on down the fast path, away from the lock.
            self._pending = True
            if self._socks is not None:
                for sock in self._socks:
                    sock.close()
            else:
                os.close(self._rfd)
                if self._wfd != self._rfd:
                    os.close(self._wfd)

    def _drain(self) -> None:
        try:
            if self._socks is not None:
                while len(self._socks[0].recv(_CHUNK)) == _CHUNK:
                    pass
            else:
                while len(os.read(self._rfd, _CHUNK)) == _CHUNK:
                    pass
        except BlockingIOError:
            pass  # empty: a spurious consume(), or the last read took exactly _CHUNK
