"""select(2): three fd sets per call, level-triggered, the lowest common denominator.

What the OS really does:

- Level triggering: an fd is reported on every call for as long as it is ready.
- FD_SETSIZE: on POSIX an fd_set is a bitmap of FD_SETSIZE = 1024 bits, so an fd numbered 1024
  or higher cannot be watched at all, however few fds are registered (CPython refuses it with a
  ValueError inside select(), which would fail every later poll). Such an fd is refused here at
  ``register`` time with a ValueError naming the limit. On Windows the limit is instead a count
  (CPython builds with 512 sockets per set) and fd numbers are arbitrary socket handles.
- There is no ERROR condition as such, and a hang-up is never reported unasked. On Linux an
  error or a hang-up makes an fd readable (an error, writable too), so it reaches whoever waits
  to read, who then sees recv() return b"" or raise; an fd watched only for writing may hear
  nothing of a hang-up. The exceptional set means something else per OS: urgent (out-of-band)
  TCP data on Linux, a failed connect() on Windows. Every registered fd is put in it and what
  comes back becomes loopmon's ERROR, as ERROR is implicitly registered everywhere; on Linux
  that ERROR therefore means urgent data, never a socket error.
- One closed fd makes the whole select() fail with EBADF. Rather than failing the loop, poll()
  then finds the closed fds and reports each as ERROR, as poll(2) does with POLLNVAL.
- Windows' select() rejects three empty sets, so with nothing registered this sleeps for the
  timeout instead (and refuses poll(None) there, which nothing could ever end).
- The timeout has microsecond resolution and CPython rounds it up; a negative timeout is an
  error, so the loop's "already late" is clamped to 0.
- The cost is O(highest fd) per call in the kernel, O(registered fds) to build the sets.
"""

from __future__ import annotations

import errno
import os
import select
import time
from typing import TYPE_CHECKING

from loopmon.events import ERROR, READ, WRITE

if TYPE_CHECKING:
    from loopmon.pollers import Poller

FD_SETSIZE = 1024
_WINDOWS = os.name == "nt"
_WINDOWS_FD_SETSIZE = 512  # CPython's own build setting there
# CPython's timeout conversion overflows on huge values (inf included); a caller cannot tell
# waking after ~23 days with nothing to report from a spurious wake-up.
_MAX_TIMEOUT = 2_000_000.0


def _is_open(fd: int) -> bool:
    try:
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return True


class SelectPoller:
    name: str = "select"
    # fd numbers from this one up cannot be watched (on Windows the limit is a count instead,
    # which no fd number predicts).
    fd_limit: int | None = None if _WINDOWS else FD_SETSIZE

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def fileno(self) -> int:
        return -1

    def register(self, fd: int, events: int) -> None:
        if fd in self._fds:
            raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
        if fd < 0:
            raise OSError(errno.EBADF, f"invalid fd {fd}")
        if _WINDOWS:
            if len(self._fds) >= _WINDOWS_FD_SETSIZE:
                raise ValueError(
                    f"select() watches at most {_WINDOWS_FD_SETSIZE} sockets here; "
                    "use another backend for more"
                )
        elif fd >= FD_SETSIZE:
            raise ValueError(
                f"fd {fd} is beyond select()'s FD_SETSIZE ({FD_SETSIZE}): only fds 0-"
                f"{FD_SETSIZE - 1} can be watched; use the epoll, kqueue or poll backend"
            )
        # The same check select() makes, so a closed fd fails here rather than every poll.
        select.select([fd], [], [], 0)
        self._fds[fd] = events
        self._place(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._fds:
            raise KeyError(fd)
        self._fds[fd] = events
        self._place(fd, events)

    def unregister(self, fd: int) -> None:
        del self._fds[fd]  # KeyError for an unknown fd
        self._readers.discard(fd)
        self._writers.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None:
            if timeout < 0:
                timeout = 0
            elif timeout > _MAX_TIMEOUT:
                timeout = _MAX_TIMEOUT
        fds = self._fds
        if not fds:
            if timeout is not None:
                time.sleep(timeout)
                return []
            if _WINDOWS:
                raise ValueError("poll(None) with nothing registered would never return")
        try:
            readable, writable, exceptional = select.select(
                self._readers, self._writers, fds, timeout
            )
        except OSError:
            closed = [(fd, ERROR) for fd in fds if not _is_open(fd)]
            if not closed:
                raise
            return closed
        if not writable and not exceptional:
            return [(fd, READ) for fd in readable]
        ready = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in exceptional:
            ready[fd] = ready.get(fd, 0) | ERROR
        return list(ready.items())

    def close(self) -> None:
        # No kernel object to release: forgetting the fds is all there is.
        self._fds.clear()
        self._readers.clear()
        self._writers.clear()

    def _place(self, fd: int, events: int) -> None:
        if events & READ:
            self._readers.add(fd)
        else:
            self._readers.discard(fd)
        if events & WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)


def create() -> Poller:
    """A ``SelectPoller``: select() exists everywhere."""
    return SelectPoller()
