"""BSD/macOS kqueue(2): the loop's best backend there. Written and type-checked on Linux
(``mypy --platform darwin``); its contract tests run where select.kqueue exists.

What the kernel really does:

- kqueue watches (ident, filter) pairs, not fds: reading and writing are two separate kevents,
  EVFILT_READ and EVFILT_WRITE, each added and deleted on its own. A mask change is a diff of
  filters, and one fd ready both ways comes back as two kevents, merged here into one
  (fd, mask) pair so the loop sees what epoll would give it.
- Without EV_CLEAR or EV_ONESHOT a filter is level-triggered, like the other backends.
- There are no error bits to ask for. A hang-up or a socket error sets EV_EOF on whichever filters
  are registered (``fflags`` holds the socket error, ``data`` what is left to read):
  - on EVFILT_WRITE, EV_EOF means nothing more can be written (peer gone, connect() refused),
    so it becomes ERROR;
  - on EVFILT_READ it stays READ, because EV_EOF can arrive while unread data is still
    buffered: the reader must drain that and then see recv() return b"" (or the error) itself.
  So an fd registered for neither READ nor WRITE hears nothing at all here, where epoll and
  poll would still report a hang-up.
- Closing an fd removes its kevents silently, like epoll; deleting them afterwards fails with
  EBADF or ENOENT, which ``unregister`` ignores. The kqueue itself is not inherited by fork().
- The timeout is a timespec (nanoseconds); a negative one is an error, so the loop's "already
  late" is clamped to 0.
"""

from __future__ import annotations

import errno
import os
import select
import sys
from typing import TYPE_CHECKING

from loopmon.events import ERROR, READ, WRITE

if TYPE_CHECKING:
    from loopmon.pollers import Poller

# A timespec would take more, but the other backends stop near here (INT_MAX milliseconds) and
# a caller cannot tell waking then with nothing to report from a spurious wake-up.
_MAX_TIMEOUT = 2_000_000.0
# CPython allocates the event buffer afresh on every call; past a few thousand ready filters a
# bigger batch saves nothing, and level triggering hands the rest over on the next call.
_MAX_EVENTS = 4096

if sys.platform != "linux" and sys.platform != "win32":
    _FILTER_READ = select.KQ_FILTER_READ
    _FILTER_WRITE = select.KQ_FILTER_WRITE
    _EV_ADD = select.KQ_EV_ADD
    _EV_DELETE = select.KQ_EV_DELETE
    _EV_EOF = select.KQ_EV_EOF
    _EV_ERROR = select.KQ_EV_ERROR

    def _changes(fd: int, events: int, flags: int) -> list[select.kevent]:
        changes = []
        if events & READ:
            changes.append(select.kevent(fd, _FILTER_READ, flags))
        if events & WRITE:
            changes.append(select.kevent(fd, _FILTER_WRITE, flags))
        return changes

    class KqueuePoller:
        name: str = "kqueue"
        fd_limit: int | None = None  # any fd number can be watched

        def __init__(self) -> None:
            self._kq = select.kqueue()
            self._control = self._kq.control
            # fd -> loopmon mask: the filters to diff against on modify and delete on
            # unregister, and the FileExistsError/KeyError contract.
            self._fds: dict[int, int] = {}
            self._maxevents = 1

        def fileno(self) -> int:
            return -1 if self._kq.closed else self._kq.fileno()

        def register(self, fd: int, events: int) -> None:
            if fd in self._fds:
                raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
            if fd < 0:
                raise OSError(errno.EBADF, f"invalid fd {fd}")
            changes = _changes(fd, events, _EV_ADD)
            if changes:
                self._control(changes, 0, 0)
            else:
                os.fstat(fd)  # no filter to add, but a closed fd must still fail here
            self._fds[fd] = events
            self._resize()

        def modify(self, fd: int, events: int) -> None:
            old = self._fds.get(fd)
            if old is None:
                raise KeyError(fd)
            changes = _changes(fd, old & ~events, _EV_DELETE)
            changes += _changes(fd, events & ~old, _EV_ADD)
            if changes:
                self._control(changes, 0, 0)
            self._fds[fd] = events

        def unregister(self, fd: int) -> None:
            old = self._fds.pop(fd)  # KeyError for an unknown fd
            self._resize()
            changes = _changes(fd, old, _EV_DELETE)
            if changes:
                try:
                    self._control(changes, 0, 0)
                except OSError:
                    pass  # closed while registered: its kevents went with it

        def poll(self, timeout: float | None) -> list[tuple[int, int]]:
            if timeout is not None:
                if timeout < 0:
                    timeout = 0
                elif timeout > _MAX_TIMEOUT:
                    timeout = _MAX_TIMEOUT
            kevents = self._control(None, self._maxevents, timeout)
            if not kevents:
                return []
            ready: dict[int, int] = {}
            get = ready.get
            for kev in kevents:
                if kev.filter == _FILTER_READ:
                    bit = READ
                elif kev.flags & _EV_EOF:
                    bit = ERROR
                else:
                    bit = WRITE
                if kev.flags & _EV_ERROR:
                    bit |= ERROR
                fd = kev.ident
                ready[fd] = get(fd, 0) | bit
            return list(ready.items())

        def close(self) -> None:
            self._kq.close()  # idempotent
            self._fds.clear()

        def _resize(self) -> None:
            # Up to two filters per fd; maxevents 0 would make control() return at once.
            self._maxevents = min(max(2 * len(self._fds), 1), _MAX_EVENTS)

    def create() -> Poller:
        """A ``KqueuePoller``; ``AttributeError`` where select.kqueue does not exist."""
        return KqueuePoller()

else:

    def create() -> Poller:
        """kqueue is BSD's and macOS's; there is none on Linux or Windows."""
        raise ImportError(f"kqueue does not exist on {sys.platform}")
