"""Snapshots on the wire: a keyframe (a whole snapshot) or a delta against the previous frame.

Both have one layout; a keyframe is a delta against nothing, with no base sequence number::

    seq                    uvarint   the snapshot's seq
    base                   uvarint   (delta only) the seq of the frame it applies to
    taken_at               f64
    session, backend, strategy  str
    uptime_s               f64
    interval, totals       figures
    lag                    lag window
    queue_bytes, bytes_in, bytes_out  svarint
    alive                  bool
    error                  str
    listeners              upserted (count, records), removed (id list)
    connections            new rows (block), changed rows (change block), removed (id list)
    closed                 rows (block), then closed_at (f64 column), reasons (text column)
    closed_omitted         uvarint
    events                 count, records; events_omitted (uvarint)
    loops                  upserted, removed
    tasks                  bool (present), then upserted, removed
    closed_ready           bool (present), then 3 svarint (read, write, error)

A consumer applies a delta only to the frame whose seq is its base (``WireError`` otherwise)
and must then ask for, or wait for, a keyframe.

Past 400 lines and still one job: the one frame layout, written by the encoder and read by the
decoder side by side, so a change to one is seen beside the other.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, repeat
from operator import is_not, lt, ne
from typing import Any, Final, TypeVar

from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    ListenerRow,
    LoopEvent,
    LoopRow,
    Snapshot,
    TaskRow,
)
from loopmon.wire import records
from loopmon.wire.closes import Span, put_closes
from loopmon.wire.codec import (
    Reader,
    WireError,
    put_bool,
    put_f64,
    put_str,
    put_svarint,
    put_uvarint,
)
from loopmon.wire.columns import get_floats, get_texts
from loopmon.wire.frames import DELTA, HEADER_SIZE, KEYFRAME, Frame, encode_frame
from loopmon.wire.rows import (
    ID_INDEX,
    MAX_ROWS,
    get_changes,
    get_ids,
    get_rows,
    put_change_columns,
    put_ids,
    put_rows,
)

# A table this small is found cheaper row by row (and the rule is tested on small ones).
WHOLE_TABLE_MIN_ROWS: Final = 4
EVENTS_PER_KIND: Final = 1000  # events of one kind in one frame: the newest are kept
MAX_RECORDS: Final = 1 << 16  # listeners, loops, tasks or events in one frame

_row_id: Callable[[ConnectionRow], int] = operator.itemgetter(ID_INDEX)
_R = TypeVar("_R", ListenerRow, LoopRow, TaskRow)
_T = TypeVar("_T")


def _cap_events(events: Sequence[LoopEvent]) -> tuple[Sequence[LoopEvent], int]:
    """Each kind's newest ``EVENTS_PER_KIND``, in their order: a flood of one kind never
    evicts another (shared/DESIGN.md, rare events). Returns them and how many were cut."""
    if len(events) <= EVENTS_PER_KIND:
        return events, 0
    seen: dict[str, int] = {}
    keep = []
    for event in reversed(events):
        n = seen.get(event.kind, 0)
        seen[event.kind] = n + 1
        keep.append(n < EVENTS_PER_KIND)
    keep.reverse()
    kept = list(compress(events, keep))
    return kept, len(events) - len(kept)


def _put_records(
    out: bytearray,
    rows: Iterable[_R],
    held: dict[int, _R],
    put: Callable[[bytearray, _R], None],
) -> dict[int, _R]:
    """Upserts (rows new or unlike the held one of their id) and removals; the new state."""
    rows = tuple(rows)
    now = {row.id: row for row in rows}
    if len(now) != len(rows):
        raise WireError(f"two {type(rows[0]).__name__}s of one snapshot share an id")
    upserts = [row for key, row in now.items() if held.get(key) != row]
    removed = sorted(held.keys() - now.keys())
    if len(now) > MAX_RECORDS:
        raise WireError(f"{len(now)} records of one kind, over the {MAX_RECORDS} allowed")
    put_uvarint(out, len(upserts))
    for row in upserts:
        put(out, row)
    put_ids(out, removed)
    return now


def _get_records(
    r: Reader, held: dict[int, _R], get: Callable[[Reader], _R], what: str
) -> dict[int, _R]:
    now = dict(held)
    for _ in range(r.count(MAX_RECORDS, what)):
        row = get(r)
        now[row.id] = row
    for key in get_ids(r):
        if now.pop(key, None) is None:
            raise WireError(f"the removal of {what} {key}, which the consumer lacks")
    return dict(sorted(now.items()))


class Encoded:
    """One snapshot, encoded: the delta against the previous one (None when there is none to
    apply it to: the first of a session), and the keyframe, built on first use and then kept,
    so it costs one encoding however many consumers need it. ``keyframe_closes()`` says where
    the keyframe's closes section lies (``wire.closes``: a consumer that lost frames gets this
    keyframe with its own closes in that place)."""

    __slots__ = ("_keyframe", "_keyframe_closes", "delta", "seq", "snapshot")

    def __init__(self, snapshot: Snapshot, delta: bytes | None) -> None:
        self.snapshot = snapshot
        self.seq = snapshot.seq
        self.delta = delta
        self._keyframe: bytes | None = None
        self._keyframe_closes: Span = (0, 0)

    def keyframe(self) -> bytes:
        if self._keyframe is None:
            self._keyframe, self._keyframe_closes = encode_keyframe_spanned(self.snapshot)
        return self._keyframe

    def keyframe_closes(self) -> Span:
        self.keyframe()
        return self._keyframe_closes


class _State:
    """What a consumer holds after a frame, on either side of the wire."""

    __slots__ = ("listeners", "loops", "rows", "seq", "session", "tasks")

    def __init__(self) -> None:
        self.seq = 0
        self.session = ""
        self.rows: dict[int, ConnectionRow] = {}
        self.listeners: dict[int, ListenerRow] = {}
        self.loops: dict[int, LoopRow] = {}
        self.tasks: dict[int, TaskRow] | None = None


def _put_header(out: bytearray, snap: Snapshot) -> None:
    put_f64(out, snap.taken_at)
    put_str(out, snap.session)
    put_str(out, snap.backend)
    put_str(out, snap.strategy)
    put_f64(out, snap.uptime_s)
    records.put_figures(out, snap.interval)
    records.put_figures(out, snap.totals)
    records.put_lag(out, snap.lag)
    put_svarint(out, snap.queue_bytes)
    put_svarint(out, snap.bytes_in)
    put_svarint(out, snap.bytes_out)
    put_bool(out, snap.alive)
    put_str(out, snap.error)


def _put_tail(out: bytearray, snap: Snapshot, state: _State) -> int:
    """Everything after the connections; updates ``state``'s listeners, loops and tasks.
    Returns where the closes section (which comes first) ends in ``out``."""
    put_closes(out, snap.closed, snap.closed_omitted)
    closes_end = len(out)
    events, cut = _cap_events(snap.events)
    put_uvarint(out, len(events))
    for event in events:
        records.put_event(out, event)
    put_uvarint(out, cut)
    state.loops = _put_records(out, snap.loops, state.loops, records.put_loop)
    if snap.tasks is None:
        put_bool(out, False)
        state.tasks = None
    else:
        put_bool(out, True)
        state.tasks = _put_records(out, snap.tasks, state.tasks or {}, records.put_task)
    if snap.closed_ready is None:
        put_bool(out, False)
    else:
        put_bool(out, True)
        for count in snap.closed_ready:
            put_svarint(out, count)
    return closes_end


def _encoding(what: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Turn whatever a bad record makes the encoders raise into ``WireError``."""

    def wrap(fn: Callable[..., _T]) -> Callable[..., _T]:
        def encode(*args: Any) -> _T:
            try:
                return fn(*args)
            except WireError:
                raise
            except (TypeError, ValueError, OverflowError, AttributeError) as exc:
                raise WireError(f"cannot encode {what}: {exc}") from None

        return encode

    return wrap


def encode_keyframe(snap: Snapshot) -> bytes:
    """A frame holding the whole of ``snap``."""
    return encode_keyframe_spanned(snap)[0]


@_encoding("a keyframe")
def encode_keyframe_spanned(snap: Snapshot) -> tuple[bytes, Span]:
    """``encode_keyframe``, and where in the frame its closes section lies."""
    out = bytearray()
    put_uvarint(out, snap.seq)
    _put_header(out, snap)
    state = _State()
    state.listeners = _put_records(out, snap.listeners, {}, records.put_listener)
    rows = sorted(snap.connections, key=_row_id)
    put_rows(out, rows)
    put_uvarint(out, 0)  # no changes
    put_uvarint(out, 0)  # no removals
    closes_start = len(out)
    closes_end = _put_tail(out, snap, state)
    return encode_frame(KEYFRAME, out), (HEADER_SIZE + closes_start, HEADER_SIZE + closes_end)


class SnapshotEncoder:
    """Turns a producer's snapshots, in order, into frames (``encode`` once per snapshot).

    It keeps what the consumers hold after the last frame (rows by id, listeners, loops,
    tasks), so a delta carries only what changed. Finding the changed rows costs a C-level
    pass over the rows (telemetry reuses the row object of a connection that did nothing, so
    an identity test finds them), and Python-level work only for those that changed."""

    def __init__(self) -> None:
        self._state: _State | None = None
        self._rows: tuple[ConnectionRow, ...] = ()
        # The last frame's rows, when its delta was a whole table: (their ids, their columns,
        # the change block's coding of the ids).
        self._table: tuple[list[int], list[tuple[Any, ...]], bytes | None] | None = None
        self.whole_frames = 0  # deltas whose change block was the whole table
        self.last: Encoded | None = None

    def reset(self) -> None:
        """Forget the past: the next snapshot has no delta (a new session, say)."""
        self._state = None
        self._rows = ()
        self._table = None

    def encode(self, snap: Snapshot) -> Encoded:
        state = self._state
        delta: bytes | None = None
        if state is not None and state.session == snap.session:
            delta = self._delta(snap, state)
        else:
            self._start(snap)
        self.last = encoded = Encoded(snap, delta)
        return encoded

    def _start(self, snap: Snapshot) -> None:
        state = _State()
        state.seq = snap.seq
        state.session = snap.session
        rows = snap.connections
        state.rows = {row.id: row for row in rows}
        if len(state.rows) != len(rows):
            raise WireError("two connections of one snapshot share an id")
        state.listeners = {row.id: row for row in snap.listeners}
        state.loops = {row.id: row for row in snap.loops}
        state.tasks = None if snap.tasks is None else {row.id: row for row in snap.tasks}
        self._state = state
        self._rows = rows
        self._table = None

    def _whole_table(
        self, rows: tuple[ConnectionRow, ...], previous: tuple[ConnectionRow, ...], renewed: int
    ) -> tuple[list[int], list[tuple[Any, ...]], Sequence[Sequence[Any]], bytes | None] | None:
        """(ids, new columns, old columns, the ids' coding or None) when this delta's change
        block should be the whole table, else None.

        WHOLE TABLE. When at least three rows in four changed (an echo server under load:
        at 25 Hz most busy connections make a round trip or two each frame, a varying
        seven in eight of them) and the rows are those of the last frame, in the same
        ascending order, the change block lists every row: an unchanged one travels as
        zero differences. That skips finding which rows changed and looking up their old
        rows, the re-diff that weeds out equal ones and the old rows' transposition: the old
        columns are the last frame's, kept, and so is the coding of the id column. 1,000
        rows, 86 % of them changed a frame: 1.22 ms to encode before, 0.82 ms after
        (benchmarks/bench_frame.py); pinned by tests/wire/test_snapshots.py's whole-table
        tests."""
        n = len(rows)  # that of ``previous`` too; ``renewed`` rows are not the same object
        if n < WHOLE_TABLE_MIN_ROWS or renewed * 4 < n * 3:
            return None
        ids = list(map(_row_id, rows))
        table = self._table
        if table is None:
            before = list(map(_row_id, previous))
            if ids != before or not all(map(lt, ids, ids[1:])):
                return None
            return ids, list(zip(*rows, strict=False)), list(zip(*previous, strict=False)), None
        if ids != table[0]:
            return None
        return ids, list(zip(*rows, strict=False)), table[1], table[2]

    def _delta(self, snap: Snapshot, state: _State) -> bytes:
        try:
            return self._delta_frame(snap, state)
        except WireError:
            self.reset()
            raise
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:
            self.reset()
            raise WireError(f"cannot encode a delta: {exc}") from None

    def _delta_frame(self, snap: Snapshot, state: _State) -> bytes:
        out = bytearray()
        put_uvarint(out, snap.seq)
        put_uvarint(out, state.seq)
        _put_header(out, snap)
        state.listeners = _put_records(out, snap.listeners, state.listeners, records.put_listener)

        held = state.rows
        rows = snap.connections
        previous = self._rows
        table = None
        if rows == previous:  # nothing changed: one C-level pass, mostly identity tests
            candidates: list[ConnectionRow] = []
        elif len(rows) == len(previous):
            flags = list(map(is_not, rows, previous))
            table = self._whole_table(rows, previous, flags.count(True))
            candidates = [] if table is not None else list(compress(rows, flags))
        else:
            candidates = list(compress(rows, map(is_not, rows, map(held.get, map(_row_id, rows)))))
        added: list[ConnectionRow] = []
        if table is not None:
            # WHOLE TABLE (see _whole_table): the change block covers every row, the old
            # columns are the last frame's, kept.
            self.whole_frames += 1
            ids, new_columns, old_columns, id_block = table
            changed = list(rows)
        else:
            olds_or_none = list(map(held.get, map(_row_id, candidates)))
            if None in olds_or_none:
                added = [
                    row for row, old in zip(candidates, olds_or_none, strict=True) if old is None
                ]
                kept = list(map(is_not, olds_or_none, repeat(None)))
                candidates = list(compress(candidates, kept))
                olds_or_none = list(compress(olds_or_none, kept))
            olds: list[ConnectionRow] = olds_or_none  # type: ignore[assignment]
            differ = list(map(ne, candidates, olds))
            changed = list(compress(candidates, differ))
            olds = list(compress(olds, differ))
            ids = list(map(_row_id, changed))
            if not all(map(lt, ids, ids[1:])):
                order = sorted(range(len(changed)), key=ids.__getitem__)
                changed = [changed[i] for i in order]
                olds = [olds[i] for i in order]
                ids = [ids[i] for i in order]
            new_columns = list(zip(*changed, strict=False))
            old_columns = list(zip(*olds, strict=False))
            id_block = None
        if len(held) + len(added) != len(rows):
            removed = sorted(held.keys() - set(map(_row_id, rows)))
        else:
            removed = []
        added.sort(key=_row_id)
        put_rows(out, added)
        if changed:
            id_block = put_change_columns(out, new_columns, old_columns, id_block)
        else:
            put_uvarint(out, 0)
        put_ids(out, removed)
        _put_tail(out, snap, state)
        frame = encode_frame(DELTA, out)
        # Committed only now that the frame is whole.
        for key in removed:
            del held[key]
        held.update(zip(map(_row_id, added), added, strict=True))
        held.update(zip(ids, changed, strict=True))
        if len(held) != len(rows):
            raise WireError("two connections of one snapshot share an id")
        state.seq = snap.seq
        self._rows = rows
        # The columns of the rows as they stand, for the next frame's whole table; only a
        # whole-table frame has them all (another starts the next one from zip(*rows)).
        self._table = (ids, new_columns, id_block) if table is not None else None
        return frame


class SnapshotDecoder:
    """Turns frames back into snapshots: a keyframe at any time, then the deltas that follow
    it. A frame it cannot read or apply raises ``WireError`` and leaves it as it was."""

    def __init__(self) -> None:
        self._state: _State | None = None
        self.last: Snapshot | None = None
        self.events_omitted = 0  # events the last frame's producer cut, per kind

    @property
    def seq(self) -> int | None:
        """The seq of the last frame applied, or None before a keyframe."""
        return None if self._state is None else self._state.seq

    def reset(self) -> None:
        self._state = None
        self.last = None

    def decode(self, frame: Frame) -> Snapshot:
        if frame.type not in (KEYFRAME, DELTA):
            raise WireError(f"a frame of type 0x{frame.type:02x} is not a snapshot")
        try:
            return self._decode(frame)
        except WireError:
            raise
        except (ValueError, TypeError, OverflowError, IndexError, KeyError, MemoryError) as exc:
            raise WireError(f"a malformed snapshot frame: {type(exc).__name__}: {exc}") from None

    def _decode(self, frame: Frame) -> Snapshot:
        r = Reader(frame.body)
        seq = r.uvarint()
        if frame.type == DELTA:
            base = r.uvarint()
            held = self._state
            if held is None:
                raise WireError("a delta before any keyframe")
            if base != held.seq:
                raise WireError(f"a delta against frame {base}, but the last frame was {held.seq}")
        else:
            held = _State()
        taken_at = r.f64()
        session = r.text()
        if frame.type == DELTA and session != held.session:
            raise WireError("a delta from another session")
        backend = r.text()
        strategy = r.text()
        uptime_s = r.f64()
        interval = records.get_figures(r)
        totals = records.get_figures(r)
        lag = records.get_lag(r)
        queue_bytes = r.svarint()
        bytes_in = r.svarint()
        bytes_out = r.svarint()
        alive = r.bool()
        error = r.text()
        listeners = _get_records(r, held.listeners, records.get_listener, "listener")

        rows = held.rows
        added = get_rows(r)
        changed, _ = get_changes(r, rows)
        removed = get_ids(r)
        for key in removed:
            if key not in rows:
                raise WireError(f"the removal of connection {key}, which the consumer lacks")
        for row in added:
            if row.id in rows:
                raise WireError(f"connection {row.id} added twice")

        closed_rows = get_rows(r)
        if closed_rows:
            closed_at = get_floats(r, len(closed_rows))
            reasons = get_texts(r, len(closed_rows))
            closed = tuple(map(ClosedConnection, closed_rows, closed_at, reasons))
        else:
            closed = ()
        closed_omitted = r.uvarint()
        events = tuple(records.get_event(r) for _ in range(r.count(MAX_RECORDS, "events")))
        events_omitted = r.uvarint()
        loops = _get_records(r, held.loops, records.get_loop, "loop")
        tasks = _get_records(r, held.tasks or {}, records.get_task, "task") if r.bool() else None
        closed_ready = (r.svarint(), r.svarint(), r.svarint()) if r.bool() else None
        r.done()

        if len(rows) + len(added) - len(removed) > MAX_ROWS:
            raise WireError(f"more than {MAX_ROWS} connections")

        # Apply: nothing below can fail on a frame read whole. The held dict is updated in
        # place (the snapshots already made hold tuples of their own), in ascending id order.
        if frame.type == KEYFRAME:
            new_rows = {row.id: row for row in sorted(added, key=_row_id)}
            if len(new_rows) != len(added):
                raise WireError("a keyframe lists a connection twice")
        else:
            new_rows = rows
            for key in removed:
                del new_rows[key]
            for row in changed:
                new_rows[row.id] = row
            if added:
                in_order = not new_rows or min(map(_row_id, added)) > max(new_rows)
                new_rows.update((row.id, row) for row in added)
                if not in_order:
                    new_rows = dict(sorted(new_rows.items()))
        state = _State()
        state.seq = seq
        state.session = session
        state.rows = new_rows
        state.listeners = listeners
        state.loops = loops
        state.tasks = tasks
        snap = Snapshot(
            seq=seq,
            taken_at=taken_at,
            backend=backend,
            strategy=strategy,
            uptime_s=uptime_s,
            interval=interval,
            totals=totals,
            listeners=tuple(listeners.values()),
            connections=tuple(new_rows.values()),
            events=events,
            queue_bytes=queue_bytes,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            lag=lag,
            alive=alive,
            error=error,
            session=session,
            closed=closed,
            closed_omitted=closed_omitted,
            loops=tuple(loops.values()),
            tasks=None if tasks is None else tuple(tasks.values()),
            closed_ready=closed_ready,
        )
        self._state = state
        self.last = snap
        self.events_omitted = events_omitted
        return snap
