"""The fds one loop watches, as rows: identity across pauses and fd reuse, time in each mask,
readiness counts, and each close reported once.

An entry is made when the loop first registers an fd and keyed by the fd's inode, so a
connection that asyncio unregisters while it is paused (``pause_reading`` with nothing to write
unregisters the fd) and registers again keeps its row and its id, while a new socket on a reused
number gets a new one. An unregistered entry is looked at again (one ``fstat``) at each snapshot:
gone or replaced, it is reported closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from loopmon.instrument import fdinfo
from loopmon.loopstats import FdStat
from loopmon.snapshot import ClosedConnection, ConnectionRow

CLOSED_PER_FRAME = 1000

_new_row = tuple.__new__


class FdEntry:
    __slots__ = (
        "created_at",
        "fd",
        "id",
        "inode",
        "kind",
        "listener_id",
        "local",
        "peer",
        "peer_tries",
        "prev_read",
        "prev_write",
        "registered",
        "row",
        "row_counts",
        "stat",
    )

    def __init__(self, fd: int, ident: int, info: fdinfo.FdInfo, mask: int, now: float) -> None:
        self.fd = fd
        self.id = ident
        self.inode = info.inode
        self.kind = info.kind
        self.local = info.local
        self.peer = info.peer
        self.peer_tries = 3 if info.kind == "connection" and not info.peer else 0
        self.listener_id = 0
        self.created_at = now
        self.stat = FdStat(fd, mask, now)
        self.registered = True
        self.prev_read = 0.0  # read and write times as of the previous snapshot
        self.prev_write = 0.0
        self.row: ConnectionRow | None = None
        self.row_counts: tuple[int, int, int, int] | None = None


class FdTable:
    def __init__(
        self,
        loop_id: int,
        ids: Iterator[int],
        excluded: set[int],
        describe: Callable[[int], fdinfo.FdInfo | None] = fdinfo.describe,
        identity: Callable[[int], int | None] = fdinfo.identity,
    ) -> None:
        self.loop_id = loop_id
        self._ids = ids
        self.excluded = excluded  # loopmon's own fds: never rows
        self._describe = describe
        self._identity = identity
        self.entries: dict[int, FdEntry] = {}
        # fd -> the entry's readiness cells (FdStat.ready): what select's hot path increments.
        self.cells: dict[int, list[object]] = {}
        self.listeners: dict[str, int] = {}
        self.closed: list[ClosedConnection] = []
        self.closed_omitted = 0
        self._last_since = 0.0

    # -- what the loop does (its thread) ---------------------------------------------------

    def added(self, fd: int, mask: int, now: float) -> None:
        if fd in self.excluded:
            return
        entry = self.entries.get(fd)
        if entry is not None:
            if not entry.registered and self._identity(fd) == entry.inode:
                entry.registered = True  # the same socket, watched again (resumed)
                entry.stat.set_mask(mask, now)
                self.cells[fd] = entry.stat.ready
                return
            self._close(entry, now, "closed")
        info = self._describe(fd)
        if info is None:
            return
        entry = FdEntry(fd, next(self._ids), info, mask, now)
        if info.kind == "listener" and info.local:
            self.listeners[info.local] = entry.id
        elif info.kind == "connection":
            entry.listener_id = self.listeners.get(info.local, 0)
        self.entries[fd] = entry
        self.cells[fd] = entry.stat.ready

    def changed(self, fd: int, mask: int, now: float) -> None:
        entry = self.entries.get(fd)
        if entry is not None and entry.stat.mask != mask:
            entry.stat.set_mask(mask, now)

    def removed(self, fd: int, now: float) -> None:
        entry = self.entries.get(fd)
        if entry is not None and entry.registered:
            entry.stat.set_mask(0, now)
            entry.registered = False
            self.cells.pop(fd, None)

    def close_all(self, now: float, reason: str) -> None:
        for entry in list(self.entries.values()):
            self._close(entry, now, reason)

    def _close(self, entry: FdEntry, now: float, reason: str) -> None:
        if self.entries.get(entry.fd) is entry:
            del self.entries[entry.fd]
            self.cells.pop(entry.fd, None)
        if entry.kind == "listener" and self.listeners.get(entry.local) == entry.id:
            del self.listeners[entry.local]
        if len(self.closed) >= CLOSED_PER_FRAME:
            self.closed_omitted += 1
            return
        row = self._row(entry, now, now - self._last_since, "closed")
        self.closed.append(ClosedConnection(row, now, reason))

    # -- what a snapshot reads ---------------------------------------------------------------

    def rows(self, now: float, since: float) -> tuple[ConnectionRow, ...]:
        """The rows as of ``now``, fractions over the interval since ``since`` (the previous
        snapshot). A quiet row (same mask since before the previous snapshot, same counts)
        is the previous row object."""
        span = now - since
        self._last_since = since
        out = []
        for entry in list(self.entries.values()):
            if not entry.registered and self._identity(entry.fd) != entry.inode:
                self._close(entry, now, "closed")
                continue
            stat = entry.stat
            ready = stat.ready
            counts = (stat.mask, ready[1], ready[4], ready[5]) if not any(ready[8:]) else None
            row = entry.row
            state = "open" if entry.registered else "paused"
            if (
                row is not None
                and counts is not None
                and counts == entry.row_counts
                and stat.since <= since
                and row.state == state
            ):
                # The same mask across this interval and the one the row covered (row_counts
                # is kept only then), no event: fractions and counts are what the row says.
                entry.prev_read, entry.prev_write = stat.times_at(now)
                out.append(row)
                continue
            row = self._row(entry, now, span, state)
            entry.row = row
            # Reusable next time only if the mask was also constant over this interval.
            entry.row_counts = counts if stat.since <= since else None
            out.append(row)
        return tuple(out)

    def take_closed(self) -> tuple[list[ClosedConnection], int]:
        closed, omitted = self.closed, self.closed_omitted
        self.closed = []
        self.closed_omitted = 0
        return closed, omitted

    def _row(self, entry: FdEntry, now: float, span: float, state: str) -> ConnectionRow:
        stat = entry.stat
        read, write = stat.times_at(now)
        inv = 1.0 / span if span > 0 else 0.0
        rf = (read - entry.prev_read) * inv
        wf = (write - entry.prev_write) * inv
        entry.prev_read, entry.prev_write = read, write
        nread, nwrite, nerror = stat.ready_counts()
        if entry.peer_tries and state != "closed":
            # A connect in progress at registration has its peer by now, perhaps.
            entry.peer_tries -= 1
            entry.peer = fdinfo.peer_of(entry.fd)
            if entry.peer:
                entry.peer_tries = 0
        mask = stat.mask
        return _new_row(
            ConnectionRow,
            (
                entry.fd,
                entry.peer,
                entry.listener_id,
                state,
                mask,
                1.0 if rf > 1.0 else (rf if rf > 0.0 else 0.0),
                1.0 if wf > 1.0 else (wf if wf > 0.0 else 0.0),
                nread,
                nwrite,
                nerror,
                None,  # queue_bytes: a foreign socket's buffers are not ours to see
                None,
                None,  # bytes in and out: the selector sees readiness, not bytes
                None,
                None,
                entry.created_at,
                entry.id,
                entry.kind,
                entry.local,
                self.loop_id,
            ),
        )


def to_loopmon_mask(selector_events: int) -> int:
    """selectors' EVENT_READ (1) / EVENT_WRITE (2) as loopmon's READ (1) / WRITE (4)."""
    return selector_events + (selector_events & 2)
