"""Linux epoll(7), level-triggered: the loop's best backend where it exists.

What the kernel really does:

- Level triggering (no EPOLLET): every epoll_wait() reports an fd for as long as it is ready, so a
  handler that leaves data unread is called again on the next pass; nothing is lost by reading
  only part of a buffer.
- EPOLLERR and EPOLLHUP are reported whether they were asked for or not, and they wake an fd
  whatever it was registered for: a peer that hangs up wakes a reader and a writer alike. That is
  why loopmon's ERROR is those two bits and why every registration implicitly includes it.
- epoll watches open file *descriptions*, not fd numbers. Closing the last fd of a description
  removes it from the set silently (no event is ever reported for it); closing one of several
  dup()ed fds leaves the registration alive, reporting events under a number that no longer
  exists, and it cannot be removed any more (EPOLL_CTL_DEL needs the fd). Unregister before close.
- Regular files and directories are refused with EPERM: they are "always ready", which epoll
  will not pretend to watch (poll and select report them as ready at once).
- The timeout has millisecond resolution; CPython rounds a float timeout up, so a 0.5 ms timer
  sleeps 1 ms rather than spinning. A negative timeout means "forever" to epoll_wait(), so the
  loop's "already late" (negative) is clamped to 0 here.

The bits are loopmon's bits (events.READ = EPOLLIN, WRITE = EPOLLOUT, ERROR = EPOLLERR|EPOLLHUP), so
``poll()`` returns epoll's own list untranslated: no per-event Python work on the hot path.
"""

from __future__ import annotations

import errno
import select
import sys
from typing import TYPE_CHECKING

from loopmon.events import ALL

if TYPE_CHECKING:
    from loopmon.pollers import Poller

# epoll_wait() rejects timeouts past INT_MAX milliseconds; waking after ~24 days and reporting
# nothing is indistinguishable from a spurious wake-up, which every caller already handles.
_MAX_TIMEOUT = 2_000_000.0
# CPython allocates the event buffer afresh on every call; past a few thousand ready fds a bigger
# batch saves nothing, and level triggering hands the rest over on the next call.
_MAX_EVENTS = 4096


if sys.platform == "linux":

    class EpollPoller:
        name: str = "epoll"
        fd_limit: int | None = None  # any fd number can be watched

        def __init__(self) -> None:
            self._epoll = select.epoll()  # EPOLL_CLOEXEC: a child process does not inherit it
            self._poll = self._epoll.poll
            # Tracked here because the kernel forgets a closed fd without telling us: the contract
            # (FileExistsError, KeyError) must not depend on whether the caller closed first.
            self._fds: set[int] = set()
            self._maxevents = 1

        def fileno(self) -> int:
            return -1 if self._epoll.closed else self._epoll.fileno()

        def register(self, fd: int, events: int) -> None:
            if fd in self._fds:
                raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
            if fd < 0:
                raise OSError(errno.EBADF, f"invalid fd {fd}")
            # Masked so that a stray EPOLLET or EPOLLONESHOT cannot change the triggering contract.
            self._epoll.register(fd, events & ALL)
            self._fds.add(fd)
            self._resize()

        def modify(self, fd: int, events: int) -> None:
            if fd not in self._fds:
                raise KeyError(fd)
            self._epoll.modify(fd, events & ALL)

        def unregister(self, fd: int) -> None:
            self._fds.remove(fd)  # KeyError for an unknown fd
            self._resize()
            try:
                self._epoll.unregister(fd)
            except OSError:
                # EBADF or ENOENT: the fd was closed while registered, so the kernel already
                # dropped it (or its number now names an unrelated file we must not touch).
                pass

        def poll(self, timeout: float | None) -> list[tuple[int, int]]:
            if timeout is None:
                timeout = -1
            elif timeout < 0:
                timeout = 0
            elif timeout > _MAX_TIMEOUT:
                timeout = _MAX_TIMEOUT
            return self._poll(timeout, self._maxevents)

        def close(self) -> None:
            self._epoll.close()  # idempotent
            self._fds.clear()

        def _resize(self) -> None:
            # maxevents must be >= 1; sized to the registrations so one call can return them all.
            self._maxevents = min(max(len(self._fds), 1), _MAX_EVENTS)

    def create() -> Poller:
        """An ``EpollPoller``."""
        return EpollPoller()

else:

    def create() -> Poller:
        """epoll is Linux's; there is none here."""
        raise ImportError(f"epoll does not exist on {sys.platform}")
