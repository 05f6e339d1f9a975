"""The window's Timeline: every snapshot the source delivers, kept within a memory budget, on one
time axis shared by every view, readable at any moment (``state_at``). Past 400 lines it is
still one job, what the window keeps of a session: feeding, thinning to the budget and
answering for a moment share one structure (slices and the axis have modules of their own).

Feeding: ``add(snapshot, events, received_at)`` with every snapshot in order, from whatever
source (the in-process runner's mailbox, a remote stream, a recording read from its start or
from a keyframe after ``clear()``). Nothing else goes in, so a recording replays into the same
structure the live window fills.

Identity: a connection is ``(session, id)``, never its fd. Closes come from the snapshots'
ClosedConnection records (the mailbox carries them over when it replaces an unread snapshot);
a row that vanishes without one (over the producer's per-frame limit, or its producer
restarted) becomes a ghost too, with its last figures and a reason that says so.

The axis: the first session's loop clock. A new session (a restarted producer) starts where
the last one ended plus the gap the window saw between them (``received_at``, any one clock;
without it, one interval), and is marked (``sessions``).

Memory: frames are summed into slices of ``slice_s`` (``slices.SliceBuilder``); slices older
than each tier's age are merged to its coarser width; past ``SOFT_BUDGET`` of the budget, the
oldest slices are merged coarser still, and only those already at ``MAX_WIDTH_S`` are dropped.
That work is spread: a frame that finishes no slice does at most one merge (``_tidy``), so no
frame carries a pass over the whole history (thinning every fifth slice in one go made the
frame that did it a p99 of 18 ms at 1,000 busy rows); the budget itself is still kept on every
slice finished (``_keep_budget``), which the spread steps leave little to do.
``nbytes`` is what the Timeline holds by its own count (arrays, records, kept rows).
"""

from __future__ import annotations

import bisect
import collections
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loopmon.gui.model.slices import LoopSample, Slice, SliceBuilder, StaticRow, merge
from loopmon.snapshot import ConnectionRow, LoopEvent, Snapshot

MiB = 1024 * 1024
DEFAULT_BUDGET_MB = 300
SLICE_S = 0.2  # the finest slice: five frames at 25 Hz
# (older than, width): past two minutes, one-second slices; past fifteen, five-second ones.
TIERS: tuple[tuple[float, float], ...] = ((120.0, 1.0), (900.0, 5.0))
MAX_WIDTH_S = 60.0  # over budget, the oldest slices coarsen up to this before being dropped
EVENTS_PER_KIND = 20_000
MAX_GAP_S = 5.0  # a snapshot covers at most this much of a gap before it (its interval)
SOFT_BUDGET = 0.9  # past this share of the budget, the spread steps coarsen the oldest
GHOST_BYTES = 900  # a ghost: its record, its final row and the row's numbers (measured)
EVENT_BYTES = 400
VANISHED = "gone from the snapshots without a close report"
RESTARTED = "its producer restarted"

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Ghost:
    """A closed connection: its final row, when (on the axis) and why it closed."""

    session: str
    at: float
    reason: str
    row: ConnectionRow


@dataclass(frozen=True, slots=True)
class SessionMark:
    at: float  # where the session's first snapshot sits on the axis
    session: str
    offset: float  # axis time = loop clock + offset


@dataclass(frozen=True, slots=True)
class State:
    """What every view shows at one moment of the axis."""

    at: float
    session: str
    rows: tuple[ConnectionRow, ...]  # the connections open then, with their figures then
    ghosts: tuple[Ghost, ...]  # closed by then, still in history, oldest first
    loop: LoopSample | None  # the loop over the slice holding ``at``
    start: float  # that slice
    end: float


@dataclass(frozen=True, slots=True)
class TimedEvent:
    at: float  # axis time
    session: str
    event: LoopEvent


class Timeline:
    def __init__(
        self,
        budget_bytes: int = DEFAULT_BUDGET_MB * MiB,
        slice_s: float = SLICE_S,
        tiers: Sequence[tuple[float, float]] = TIERS,
        max_width_s: float = MAX_WIDTH_S,
        events_per_kind: int = EVENTS_PER_KIND,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.slice_s = slice_s
        self.tiers = tuple(tiers)
        self.max_width_s = max_width_s
        self.events_per_kind = events_per_kind
        self.clear()

    def clear(self) -> None:
        self.slices: list[Slice] = []
        self._open: SliceBuilder | None = None
        self.sessions: list[SessionMark] = []
        self._offset = 0.0
        self._static: dict[Key, StaticRow] = {}
        self._seen_until: dict[Key, float] = {}
        self.ghosts: list[Ghost] = []
        self._ghost_of: dict[Key, Ghost] = {}
        self._events: dict[str, collections.deque[TimedEvent]] = {}
        self.events_dropped: collections.Counter[str] = collections.Counter()
        self._previous: dict[int, ConnectionRow] = {}
        self._last_received: float | None = None
        self.latest: Snapshot | None = None
        self.now = 0.0  # axis time of the latest snapshot
        self.frames = 0
        self.dropped_slices = 0
        self._slice_bytes = 0
        self._static_bytes = 0
        # Per tier, the axis time up to which its slices are thinned (the spread steps go on
        # from there, so none walks the history from its start).
        self._thinned = [float("-inf")] * len(self.tiers)
        self._open_packed: tuple[SliceBuilder, int, Slice] | None = None

    # -- the axis ------------------------------------------------------------------------------
    @property
    def session(self) -> str:
        return self.sessions[-1].session if self.sessions else ""

    @property
    def start(self) -> float:
        """The oldest moment history holds."""
        if self.slices:
            return self.slices[0].start
        return self._open.start if self._open is not None else self.now

    def axis_time(self, loop_time: float) -> float:
        """A loop-clock time of the current session on the axis."""
        return loop_time + self._offset

    def _enter_session(self, snap: Snapshot, received_at: float | None) -> None:
        if not self.sessions:
            offset = 0.0
        else:
            gap = snap.interval.span_s or self.slice_s
            if received_at is not None and self._last_received is not None:
                gap = max(received_at - self._last_received, gap)
            offset = self.now + gap - snap.taken_at
            self._end_session(self.now)
        self._offset = offset
        self.sessions.append(SessionMark(snap.taken_at + offset, snap.session, offset))

    def _end_session(self, at: float) -> None:
        """Connections of the old session still open: ghosts (no close will be reported)."""
        session = self.session
        for row in self._previous.values():
            self._add_ghost(Ghost(session, at, RESTARTED, row))
        self._previous = {}
        self._finish_open()

    # -- feeding -------------------------------------------------------------------------------
    def add(
        self,
        snap: Snapshot,
        events: Iterable[LoopEvent] = (),
        received_at: float | None = None,
    ) -> None:
        """Take the next snapshot (in order) and the events posted with it."""
        if not self.sessions or snap.session != self.session:
            self._enter_session(snap, received_at)
        elif self.latest is not None and snap.taken_at < self.latest.taken_at:
            return  # older than what we have: a replayed frame twice; the axis only advances
        self._last_received = received_at
        self.latest = snap
        t = snap.taken_at + self._offset
        self.now = t
        self.frames += 1
        session = snap.session
        builder = self._open
        finishing = builder is None or t >= builder.end
        if builder is None or finishing:
            self._finish_open()
            builder = self._open = self._new_slice(snap, t)
        rows = snap.connections
        previous = self._previous
        current = {row.id: row for row in rows}
        closed_rows = [c.row for c in snap.closed]
        builder.add(snap, rows, closed_rows)
        for c in snap.closed:
            self._add_ghost(Ghost(session, c.closed_at + self._offset, c.reason, c.row))
            self._remember(session, c.row)
        if len(previous) != len(current) or closed_rows or previous.keys() != current.keys():
            for conn_id, row in previous.items():
                if conn_id not in current and (session, conn_id) not in self._ghost_of:
                    self._add_ghost(Ghost(session, t, VANISHED, row))
            for row in rows:
                if row.id not in previous:
                    self._remember(session, row)
        self._previous = current
        for event in events:
            self._add_event(TimedEvent(event.at + self._offset, session, event))
        if not finishing:
            self._tidy()

    def _new_slice(self, snap: Snapshot, t: float) -> SliceBuilder:
        """The slice a snapshot at axis time ``t`` opens. Aligned, so thinning buckets hold
        whole slices. A snapshot after a gap (the mailbox replaced some: its interval spans
        them) covers the gap too."""
        session = snap.session
        end = _floor(t, self.slice_s) + self.slice_s
        start = end - self.slice_s
        if self.slices and self.slices[-1].session == session:
            back = _floor(t - min(snap.interval.span_s, MAX_GAP_S), self.slice_s)
            start = max(min(start, back), self.slices[-1].end)
        elif self.slices:
            start = max(start, self.slices[-1].end)
        return SliceBuilder(session, start, max(end, start + self.slice_s))

    def add_events(self, events: Iterable[LoopEvent]) -> None:
        """Events that came without a snapshot (the mailbox posts some alone)."""
        session = self.session
        for event in events:
            self._add_event(TimedEvent(event.at + self._offset, session, event))

    def session_at(self, t: float) -> SessionMark | None:
        """The session whose stretch of the axis holds ``t``."""
        i = bisect.bisect_right(self.sessions, t, key=_at) - 1
        return self.sessions[max(i, 0)] if self.sessions else None

    def _remember(self, session: str, row: ConnectionRow) -> None:
        key = (session, row.id)
        if key not in self._static:
            static = self._static[key] = StaticRow.of(row)
            self._static_bytes += static.nbytes()

    def _add_ghost(self, ghost: Ghost) -> None:
        key = (ghost.session, ghost.row.id)
        if key in self._ghost_of:
            return  # reported once; a repeat (a replayed frame) changes nothing
        self._ghost_of[key] = ghost
        ghosts = self.ghosts
        if not ghosts or ghosts[-1].at <= ghost.at:
            ghosts.append(ghost)
        else:
            bisect.insort(ghosts, ghost, key=_at)

    def _add_event(self, item: TimedEvent) -> None:
        log = self._events.get(item.event.kind)
        if log is None:
            log = self._events[item.event.kind] = collections.deque()
        if len(log) >= self.events_per_kind:  # each kind its own last N (rare ones stay)
            log.popleft()
            self.events_dropped[item.event.kind] += 1
        log.append(item)

    def _finish_open(self) -> None:
        builder, self._open = self._open, None
        if builder is None or not builder.loop.frames:
            return
        part = builder.finish()
        for conn_id in part.ids:
            self._seen_until[(part.session, conn_id)] = part.end
        self.slices.append(part)
        self._slice_bytes += part.nbytes()
        self._keep_budget()

    # -- memory --------------------------------------------------------------------------------
    @property
    def open_nbytes(self) -> int:
        """The slice being filled (the budget is kept as each slice is finished)."""
        return self._open.nbytes() if self._open is not None else 0

    @property
    def nbytes(self) -> int:
        """What the Timeline holds, by its own count."""
        open_bytes = self.open_nbytes
        events = sum(len(log) for log in self._events.values()) * EVENT_BYTES
        return (
            self._slice_bytes
            + open_bytes
            + self._static_bytes
            + len(self.ghosts) * GHOST_BYTES
            + events
            + sys.getsizeof(self.slices)
            + 600 * len(self._previous)  # the last snapshot's rows, by id
        )

    def thin(self) -> None:
        """Merge slices past each tier's age into that tier's width."""
        for age, width in self.tiers:
            self._coarsen(self.now - age, width)

    def _tidy(self) -> bool:
        """One bounded step of upkeep: the oldest bucket a tier is due to merge, else (past
        ``SOFT_BUDGET``) one run of the oldest slices coarser. True if it merged."""
        for k, (age, width) in enumerate(self.tiers):
            if self._thin_step(k, self.now - age, width):
                return True
        if self.nbytes > self.budget_bytes * SOFT_BUDGET:
            return self._coarsen_oldest()
        return False

    def _thin_step(self, k: int, before: float, width: float) -> bool:
        """Merge the next ``width``-aligned bucket after tier ``k``'s mark, lying wholly before
        ``before``, if it holds more than one slice; single slices are stepped over (each
        once: the mark moves past them). True if it merged."""
        slices = self.slices
        i = bisect.bisect_left(slices, self._thinned[k], key=_start)
        n = len(slices)
        while i < n:
            part = slices[i]
            bucket = _bucket(part.start, width)
            bucket_end = (bucket + 1) * width
            if bucket_end > before:
                return False  # not old enough yet
            j = _bucket_run(slices, i, width) if part.width < width - 1e-9 else i + 1
            self._thinned[k] = max(bucket_end, part.end) - 1e-9
            if j - i > 1:
                out: list[Slice] = []
                self._join(slices[i:j], out)
                slices[i:j] = out
                return True
            i += 1
        return False

    def _coarsen_oldest(self) -> bool:
        """The first slice below ``max_width_s`` and the run of its session after it, merged
        to four times its width (at most ``max_width_s``). True if it merged."""
        slices = self.slices
        i = next((k for k, p in enumerate(slices) if p.width < self.max_width_s - 1e-9), None)
        if i is None:
            return False
        part = slices[i]
        width = min(part.width * 4, self.max_width_s)
        j = i + 1
        while (
            j < len(slices)
            and slices[j].session == part.session
            and slices[j].end - part.start <= width + 1e-9
        ):
            j += 1
        if j - i < 2:
            return False
        out: list[Slice] = []
        self._join(slices[i:j], out)
        slices[i:j] = out
        return True

    def _coarsen(self, before: float, width: float) -> None:
        """Merge runs of slices of one session that fall in one ``width``-aligned bucket lying
        wholly before ``before``."""
        slices = self.slices
        out: list[Slice] = []
        merged = False
        i, n = 0, len(slices)
        while i < n:
            part = slices[i]
            bucket = _bucket(part.start, width)
            bucket_end = (bucket + 1) * width
            if bucket_end > before:
                break  # this bucket and all after it are not old enough yet
            k = _bucket_run(slices, i, width) if part.width < width else i + 1
            merged |= self._join(slices[i:k], out)
            i = k
        if merged:
            self.slices = out + slices[i:]

    def _squeeze(self, count: int, width: float) -> bool:
        """Merge the oldest ``count`` slices into runs of one session at most ``width`` long.
        True if any merged."""
        slices = self.slices
        n = min(count, len(slices))
        out: list[Slice] = []
        merged = False
        i = 0
        while i < n:
            part = slices[i]
            k = i + 1
            while (
                k < n
                and slices[k].session == part.session
                and slices[k].end - part.start <= width + 1e-9
            ):
                k += 1
            merged |= self._join(slices[i:k], out)
            i = k
        if merged:
            self.slices = out + slices[n:]
        return merged

    def _join(self, group: list[Slice], out: list[Slice]) -> bool:
        if len(group) == 1:
            out.append(group[0])
            return False
        joined = merge(group)
        self._slice_bytes += joined.nbytes() - sum(p.nbytes() for p in group)
        out.append(joined)
        return True

    def _keep_budget(self) -> None:
        while self.nbytes > self.budget_bytes and self.slices:
            oldest = self.slices[0]
            width = min(oldest.width * 4, self.max_width_s)
            quarter = max(len(self.slices) // 4, 2)
            if width > oldest.width + 1e-9 and self._squeeze(quarter, width):
                continue
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        gone = self.slices.pop(0)
        self._slice_bytes -= gone.nbytes()
        self.dropped_slices += 1
        start = self.start
        for conn_id in gone.ids:
            key = (gone.session, conn_id)
            if self._seen_until.get(key, start + 1) <= start:
                del self._seen_until[key]
                static = self._static.pop(key, None)
                if static is not None:
                    self._static_bytes -= static.nbytes()
        cut = bisect.bisect_left(self.ghosts, start, key=_at)
        if cut:
            for ghost in self.ghosts[:cut]:
                self._ghost_of.pop((ghost.session, ghost.row.id), None)
            del self.ghosts[:cut]

    # -- reading -------------------------------------------------------------------------------
    def slice_index(self, t: float) -> int:
        """The index in ``slices`` of the slice holding ``t`` (or the last before it), -1 if
        ``t`` is before history."""
        return bisect.bisect_right(self.slices, t, key=_start) - 1

    def slices_between(self, t0: float, t1: float) -> list[Slice]:
        """The closed slices overlapping ``[t0, t1]``, oldest first."""
        lo = max(self.slice_index(t0), 0)
        hi = bisect.bisect_right(self.slices, t1, key=_start)
        return self.slices[lo:hi]

    def view_slices(self, t0: float, t1: float) -> list[Slice]:
        """The slices overlapping ``[t0, t1]`` with the one being filled, packed (and kept
        until it changes), last: what a view draws."""
        out = self.slices_between(t0, t1)
        builder = self._open
        if builder is not None and builder.start <= t1:
            cached = self._open_packed
            if cached is None or cached[0] is not builder or cached[1] != builder.loop.frames:
                cached = self._open_packed = (builder, builder.loop.frames, builder.finish())
            out = [*out, cached[2]]
        return out

    def ghosts_until(self, t: float) -> list[Ghost]:
        return self.ghosts[: bisect.bisect_right(self.ghosts, t, key=_at)]

    def closed_by(self, key: Key, t: float) -> bool:
        ghost = self._ghost_of.get(key)
        return ghost is not None and ghost.at <= t

    def static(self, key: Key) -> StaticRow | None:
        return self._static.get(key)

    def events_until(self, t: float, t0: float = float("-inf")) -> list[TimedEvent]:
        """The events kept with ``t0 <= at <= t``, in time order."""
        out = [e for log in self._events.values() for e in log if t0 <= e.at <= t]
        out.sort(key=_at)
        return out

    def state_at(self, t: float | None = None) -> State:
        """Every view's state at axis time ``t`` (None: now, live)."""
        if t is None or t >= self.now:
            t = self.now
        builder = self._open
        if builder is not None and t >= builder.start:
            session = builder.session
            if t >= self.now and self.latest is not None:
                rows = self.latest.connections  # live: exactly the latest snapshot's
            else:
                rows = tuple(
                    row for row in builder.rows() if not self.closed_by((session, row.id), t)
                )
            ghosts = tuple(self.ghosts_until(t))
            return State(t, session, rows, ghosts, builder.loop, builder.start, builder.end)
        i = self.slice_index(t)
        if i < 0:
            return State(t, "", (), (), None, t, t)
        part = self.slices[i]
        session = part.session
        static = self._static
        out: list[ConnectionRow] = []
        for j, conn_id in enumerate(part.ids):
            key = (session, conn_id)
            if self.closed_by(key, t):
                continue
            info = static.get(key)
            if info is not None:
                out.append(part.row(j, info))
        return State(t, session, tuple(out), tuple(self.ghosts_until(t)), part.loop,
                     part.start, part.end)  # fmt: skip


def _bucket_run(slices: list[Slice], i: int, width: float) -> int:
    """The end of the run from ``slices[i]`` of one session inside its ``width``-aligned
    bucket: the slices that merge with it."""
    part = slices[i]
    bucket = _bucket(part.start, width)
    bucket_end = (bucket + 1) * width
    j, n = i + 1, len(slices)
    while (
        j < n
        and slices[j].session == part.session
        and _bucket(slices[j].start, width) == bucket
        and slices[j].end <= bucket_end + 1e-9
    ):
        j += 1
    return j


def _bucket(t: float, width: float) -> int:
    """The ``width``-aligned bucket holding ``t``; slice starts are multiples of the finest
    width computed in floating point, so 1000.9999999 is taken as 1001."""
    return math.floor(t / width + 1e-6)


def _floor(t: float, width: float) -> float:
    return _bucket(t, width) * width


def _at(item: Ghost | TimedEvent | SessionMark) -> float:
    return item.at


def _start(part: Slice) -> float:
    return part.start
