"""POSIX poll(2): level-triggered, no kernel object, the whole fd list passed on every call.

What the kernel really does:

- Level triggering: an fd is reported on every call for as long as it is ready.
- POLLERR, POLLHUP and POLLNVAL are reported whether they were asked for or not (the kernel
  ignores them in ``events``), and they wake an fd whatever it was registered for. All three
  become loopmon's ERROR.
- POLLNVAL means "this fd is not open": an fd closed while registered is reported with it on
  every call until it is unregistered, unlike epoll, which forgets a closed fd silently. poll()
  itself does not validate fds, so registration checks the fd with fstat() to give the same
  OSError as the other backends.
- READ registers POLLIN only, as epoll's READ is EPOLLIN only: asking for POLLPRI as well would
  report urgent (out-of-band) TCP data as readable forever, since recv() never consumes it.
  POLLPRI still translates to READ should a platform report it.
- The timeout is in whole milliseconds and rounded up here, so a 0.5 ms timer sleeps 1 ms
  instead of spinning; a negative timeout means "forever" to poll(), so it is clamped to 0.
- Python's select.poll re-registers an fd silently (it is a dict inside); the
  FileExistsError/KeyError contract is kept by tracking fds here.
- The cost is O(registered fds) per call, in the kernel and in CPython's array rebuild after
  each change; fine for hundreds, epoll/kqueue for tens of thousands.
- macOS's poll() does not support devices (a tty reports POLLNVAL): there, kqueue comes first.
"""

from __future__ import annotations

import errno
import math
import os
import select
import sys
from typing import TYPE_CHECKING

from loopmon.events import ERROR, READ, WRITE

if TYPE_CHECKING:
    from loopmon.pollers import Poller

# poll() takes an int of milliseconds: clamp below INT_MAX (~24 days); a caller cannot tell
# waking then from a spurious wake-up.
_MAX_MS = 2**31 - 1
_MAX_TIMEOUT = _MAX_MS / 1000

if sys.platform != "win32":
    _ERROR_BITS = select.POLLERR | select.POLLHUP | select.POLLNVAL

    def _translate(revents: int) -> int:
        mask = 0
        if revents & (select.POLLIN | select.POLLPRI):
            mask |= READ
        if revents & select.POLLOUT:
            mask |= WRITE
        if revents & _ERROR_BITS:
            mask |= ERROR
        return mask

    class _Translation(dict[int, int]):
        """revents -> loopmon mask, one dict lookup per event: each of the few combinations a
        kernel reports is translated once, on first sight."""

        def __missing__(self, revents: int) -> int:
            mask = self[revents] = _translate(revents)
            return mask

    _FROM_POLL = _Translation()

    def _to_poll(events: int) -> int:
        flags = 0
        if events & READ:
            flags |= select.POLLIN
        if events & WRITE:
            flags |= select.POLLOUT
        return flags

    class PollPoller:
        name: str = "poll"
        fd_limit: int | None = None  # any fd number can be watched

        def __init__(self) -> None:
            self._pollobj = select.poll()
            self._poll = self._pollobj.poll
            self._fds: dict[int, int] = {}

        def fileno(self) -> int:
            return -1

        def register(self, fd: int, events: int) -> None:
            if fd in self._fds:
                raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
            if fd < 0:
                raise OSError(errno.EBADF, f"invalid fd {fd}")
            os.fstat(fd)  # OSError (EBADF) now rather than POLLNVAL on every call later
            self._pollobj.register(fd, _to_poll(events))
            self._fds[fd] = events

        def modify(self, fd: int, events: int) -> None:
            if fd not in self._fds:
                raise KeyError(fd)
            self._pollobj.modify(fd, _to_poll(events))
            self._fds[fd] = events

        def unregister(self, fd: int) -> None:
            del self._fds[fd]  # KeyError for an unknown fd
            self._pollobj.unregister(fd)

        def poll(self, timeout: float | None) -> list[tuple[int, int]]:
            if timeout is None:
                ms = -1
            elif timeout <= 0:
                ms = 0
            elif timeout < _MAX_TIMEOUT:
                ms = math.ceil(timeout * 1000)
            else:
                ms = _MAX_MS  # also keeps math.ceil away from inf
            table = _FROM_POLL
            return [(fd, table[revents]) for fd, revents in self._poll(ms)]

        def close(self) -> None:
            # No kernel object to release: forgetting the fds is all there is.
            for fd in self._fds:
                self._pollobj.unregister(fd)
            self._fds.clear()

    def create() -> Poller:
        """A ``PollPoller``."""
        return PollPoller()

else:

    def create() -> Poller:
        """Windows has WSAPoll, but no select.poll in Python."""
        raise ImportError("select.poll does not exist on Windows")
