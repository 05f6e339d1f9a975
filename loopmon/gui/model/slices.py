"""Time slices: what the Timeline keeps of a stretch of time, packed in standard-library arrays.

A ``Slice`` is one stretch of one session on the window's time axis: the loop's figures over it
(``LoopSample``: counts summed, busy and poll time summed so utilization is weighted by span,
lag and queue depth as maxima) and, per connection seen in it, columns of fixed-size numbers:
the time it was watched, READ and WRITE time (fraction x span, so a merge weights by span), its
deepest queue, and its figures at the slice's end. ``merge`` joins consecutive slices into one
coarser slice with the same rules, so a thinned stall or a thinned queue spike still shows.

Pure Python with ``array`` rather than numpy (gui/model is numpy-free, DESIGN.md): a busy
connection costs 91 bytes per slice here against ~400 for a kept ConnectionRow, and the cost of
packing is paid once per slice, not per frame (figures: benchmarks/bench_timeline.py).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from loopmon.snapshot import ConnectionRow, Snapshot

STATES: tuple[str, ...] = ("open", "paused", "draining", "closed")
_STATE_CODE = {name: i for i, name in enumerate(STATES)}
NONE = -1  # a figure the producer does not measure (None in a row)
# The figures kept at a slice's end, in this order, 'q' each: ConnectionRow's fields by number.
FIGURES: tuple[int, ...] = (10, 11, 12, 13, 14, 7, 8, 9)  # queue_bytes .. ready_error
NFIG = len(FIGURES)
SLICE_OVERHEAD = 1200  # the Slice object, its LoopSample and its arrays' headers (measured)


@dataclass(slots=True)
class LoopSample:
    """The loop over a slice. Sums add up, ``*_max`` take the maximum, ``*_end`` the last."""

    frames: int = 0
    span_s: float = 0.0
    iterations: int = 0
    events: int = 0
    callbacks: int = 0
    timers: int = 0
    busy_s: float = 0.0
    poll_s: float = 0.0
    stalls: int = 0
    errors: int = 0
    closes: int = 0
    closes_omitted: int = 0
    lag_p50_max: float = float("nan")  # NaN: no lag sample in the slice
    lag_p99_max: float = float("nan")
    lag_max: float = float("nan")
    queue_max: int = 0
    queue_end: int = 0
    connections_max: int = 0
    connections_end: int = 0
    bytes_in_end: int = 0
    bytes_out_end: int = 0
    alive_end: bool = True

    @property
    def utilization(self) -> float:
        measured = self.busy_s + self.poll_s
        return self.busy_s / measured if measured > 0 else 0.0

    def _rate(self, n: float) -> float:
        return n / self.span_s if self.span_s > 0 else 0.0

    @property
    def events_per_s(self) -> float:
        return self._rate(self.events)

    @property
    def iterations_per_s(self) -> float:
        return self._rate(self.iterations)

    def add(self, snap: Snapshot) -> None:
        iv = snap.interval
        self.frames += 1
        self.span_s += iv.span_s
        self.iterations += iv.iterations
        self.events += iv.events
        self.callbacks += iv.callbacks
        self.timers += iv.timers
        self.busy_s += iv.busy_s
        self.poll_s += iv.poll_s
        self.stalls += iv.stalls
        self.errors += iv.errors
        self.closes += len(snap.closed)
        self.closes_omitted += snap.closed_omitted
        lag = snap.lag
        self.lag_p50_max = _nanmax(self.lag_p50_max, lag.p50_s)
        self.lag_p99_max = _nanmax(self.lag_p99_max, lag.p99_s)
        self.lag_max = _nanmax(self.lag_max, lag.max_s)
        self.queue_max = max(self.queue_max, snap.queue_bytes)
        self.queue_end = snap.queue_bytes
        n = len(snap.connections)
        self.connections_max = max(self.connections_max, n)
        self.connections_end = n
        self.bytes_in_end = snap.bytes_in
        self.bytes_out_end = snap.bytes_out
        self.alive_end = snap.alive

    def absorb(self, later: LoopSample) -> None:
        """``later`` (the next slice's figures) folded into this one."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(later, name))
        for name in _MAXED:
            setattr(self, name, _nanmax(getattr(self, name), getattr(later, name)))
        for name in _LAST:
            setattr(self, name, getattr(later, name))


_SUMMED = (
    "frames", "span_s", "iterations", "events", "callbacks", "timers", "busy_s", "poll_s",
    "stalls", "errors", "closes", "closes_omitted",
)  # fmt: skip
_MAXED = ("lag_p50_max", "lag_p99_max", "lag_max", "queue_max", "connections_max")
_LAST = ("queue_end", "connections_end", "bytes_in_end", "bytes_out_end", "alive_end")
assert {f.name for f in fields(LoopSample)} == {*_SUMMED, *_MAXED, *_LAST}


def _nanmax(a: float, b: float | None) -> float:
    if b is None or math.isnan(b):  # nothing to compare
        return a
    if math.isnan(a):
        return float(b)
    return a if a >= b else float(b)


class Slice:
    """One stretch ``[start, end)`` of one session on the axis. Per connection (column ``j``,
    ids ascending): ``watched[j]`` seconds seen, ``read[j]``/``write[j]`` seconds with READ or
    WRITE registered, ``qmax[j]`` its deepest queue, and at the end its mask, state and
    ``figs[j * NFIG : (j + 1) * NFIG]`` (FIGURES' fields; NONE for None)."""

    __slots__ = (
        "end", "figs", "ids", "loop", "mask", "qmax", "read", "session", "start", "state",
        "watched", "write",
    )  # fmt: skip

    def __init__(self, session: str, start: float, end: float) -> None:
        self.session = session
        self.start = start
        self.end = end
        self.loop = LoopSample()
        self.ids = array("q")
        self.watched = array("f")
        self.read = array("f")
        self.write = array("f")
        self.qmax = array("f")
        self.mask = array("H")
        self.state = array("B")
        self.figs = array("q")

    @property
    def width(self) -> float:
        return self.end - self.start

    def nbytes(self) -> int:
        return SLICE_OVERHEAD + sum(
            a.itemsize * a.buffer_info()[1]
            for a in (
                self.ids, self.watched, self.read, self.write, self.qmax, self.mask,
                self.state, self.figs,
            )
        )  # fmt: skip

    def column(self, conn_id: int) -> int | None:
        """The column of a connection, or None if it was not seen in this slice."""
        ids = self.ids
        j = bisect.bisect_left(ids, conn_id)  # C bisect over the array: ids are ascending
        return j if j < len(ids) and ids[j] == conn_id else None

    def fractions(self, j: int) -> tuple[float, float]:
        """(READ, WRITE) share of the time column ``j`` was watched in this slice."""
        w = self.watched[j]
        if w <= 0:
            return 0.0, 0.0
        return min(self.read[j] / w, 1.0), min(self.write[j] / w, 1.0)

    def row(self, j: int, static: StaticRow) -> ConnectionRow:
        """Column ``j`` as a ConnectionRow with its figures at the slice's end."""
        f = self.figs[j * NFIG : (j + 1) * NFIG]
        read, write = self.fractions(j)
        return ConnectionRow(
            fd=static.fd,
            peer=static.peer,
            listener_id=static.listener_id,
            state=STATES[self.state[j]] if self.state[j] < len(STATES) else "open",
            mask=self.mask[j],
            read_fraction=read,
            write_fraction=write,
            ready_read=f[5],
            ready_write=f[6],
            ready_error=f[7],
            queue_bytes=_none(f[0]),
            queue_chunks=_none(f[1]),
            bytes_in=_none(f[2]),
            bytes_out=_none(f[3]),
            messages=_none(f[4]),
            created_at=static.created_at,
            id=static.id,
            kind=static.kind,
            local=static.local,
            loop=static.loop,
        )


def _none(v: int) -> int | None:
    return None if v == NONE else v


@dataclass(frozen=True, slots=True)
class StaticRow:
    """What never changes in a connection's rows: kept once per connection, not per slice."""

    id: int
    fd: int
    peer: str
    listener_id: int
    created_at: float
    kind: str
    local: str
    loop: int

    @staticmethod
    def of(row: ConnectionRow) -> StaticRow:
        return StaticRow(
            row.id, row.fd, row.peer, row.listener_id, row.created_at, row.kind, row.local,
            row.loop,
        )  # fmt: skip

    def nbytes(self) -> int:
        # the record and its strings (shared peers and locals are counted each time: an
        # overestimate, which the budget can afford)
        return 120 + sys.getsizeof(self.peer) + sys.getsizeof(self.local)


class SliceBuilder:
    """The slice being filled: per connection [watched, read, write, qmax, last row]. Per frame
    it does four additions per row; packing into arrays happens once, in ``finish``."""

    __slots__ = ("acc", "end", "loop", "session", "start")

    def __init__(self, session: str, start: float, end: float) -> None:
        self.session = session
        self.start = start
        self.end = end
        self.loop = LoopSample()
        self.acc: dict[int, list[object]] = {}

    def add(
        self, snap: Snapshot, rows: Iterable[ConnectionRow], closed: Iterable[ConnectionRow] = ()
    ) -> None:
        """A frame: its loop figures, its rows, and the final rows of what closed in it."""
        self.loop.add(snap)
        span = snap.interval.span_s
        weight = span if span > 0 else 1e-3
        acc = self.acc
        for row in itertools.chain(rows, closed):
            entry = acc.get(row.id)
            q = row.queue_bytes or 0
            if entry is None:
                read, write = row.read_fraction * weight, row.write_fraction * weight
                acc[row.id] = [weight, read, write, q, row]
            else:
                entry[0] += weight  # type: ignore[operator]
                entry[1] += row.read_fraction * weight  # type: ignore[operator]
                entry[2] += row.write_fraction * weight  # type: ignore[operator]
                entry[3] = max(entry[3], q)  # type: ignore[call-overload]
                entry[4] = row

    def nbytes(self) -> int:
        # the dict entry, the list, three floats and the row it keeps alive
        return 2000 + 600 * len(self.acc)

    def rows(self) -> list[ConnectionRow]:
        return [entry[4] for entry in self.acc.values()]  # type: ignore[misc]

    def finish(self) -> Slice:
        """Packed column by column (each array built from one list in C): appending row by
        row cost ~3 µs a row, the frame that finished a slice of 1,000 rows ~3 ms."""
        out = Slice(self.session, self.start, self.end)
        out.loop = self.loop
        acc = self.acc
        ids = sorted(acc)
        entries = [acc[i] for i in ids]
        out.ids = array("q", ids)
        out.watched = array("f", [e[0] for e in entries])  # type: ignore[misc]
        out.read = array("f", [e[1] for e in entries])  # type: ignore[misc]
        out.write = array("f", [e[2] for e in entries])  # type: ignore[misc]
        out.qmax = array("f", [e[3] for e in entries])  # type: ignore[misc]
        rows: list[ConnectionRow] = [e[4] for e in entries]  # type: ignore[misc]
        out.mask = array("H", [r.mask & 0xFFFF for r in rows])
        out.state = array("B", [_STATE_CODE.get(r.state, 0) for r in rows])
        figs = [v for r in rows for v in _figures(r)]
        if None in figs:  # a figure the producer does not measure
            figs = [NONE if v is None else v for v in figs]
        out.figs = array("q", figs)
        return out


_figures = operator.itemgetter(*FIGURES)  # the row's FIGURES, ints or None


def merge(parts: Sequence[Slice]) -> Slice:
    """Consecutive slices of one session as one: time and READ/WRITE time summed (fractions
    weighted by span), the deepest queue kept, the end figures the latest's."""
    first = parts[0]
    if len(parts) == 1:
        return first
    out = Slice(first.session, first.start, parts[-1].end)
    loop = LoopSample()
    for part in parts:
        loop.absorb(part.loop)
    out.loop = loop
    if all(part.ids == first.ids for part in parts):
        return _merge_same_ids(parts, out)
    return _merge_by_id(parts, out)


def _merge_by_id(parts: Sequence[Slice], out: Slice) -> Slice:
    """``merge`` of slices holding different connections: per id, in order."""
    # Per id, in order: [watched, read, write, qmax, slice, column] (the end from the latest).
    acc: dict[int, list[object]] = {}
    for part in parts:
        ids, watched, read, write, qmax = part.ids, part.watched, part.read, part.write, part.qmax
        for j in range(len(ids)):
            entry = acc.get(ids[j])
            if entry is None:
                acc[ids[j]] = [watched[j], read[j], write[j], qmax[j], part, j]
            else:
                entry[0] += watched[j]  # type: ignore[operator]
                entry[1] += read[j]  # type: ignore[operator]
                entry[2] += write[j]  # type: ignore[operator]
                entry[3] = max(entry[3], qmax[j])  # type: ignore[call-overload]
                entry[4] = part
                entry[5] = j
    for conn_id in sorted(acc):
        w, r, wr, q, last, col = acc[conn_id]
        assert isinstance(last, Slice) and isinstance(col, int)
        part, j = last, col
        out.ids.append(conn_id)
        out.watched.append(w)  # type: ignore[arg-type]
        out.read.append(r)  # type: ignore[arg-type]
        out.write.append(wr)  # type: ignore[arg-type]
        out.qmax.append(q)  # type: ignore[arg-type]
        out.mask.append(part.mask[j])
        out.state.append(part.state[j])
        out.figs.extend(part.figs[j * NFIG : (j + 1) * NFIG])
    return out


def _merge_same_ids(parts: Sequence[Slice], out: Slice) -> Slice:
    """``merge`` when every part holds the same connections (the usual case: busy rows seen in
    every frame): column by column, summed and maxed in C (``map`` over ``zip``), with the
    end figures copied from the last part. The per-id path took ~5 ms to merge five slices of
    1,000 rows, the frame that did it a p99 spike (benchmarks/bench_timeline.py)."""
    last = parts[-1]
    out.ids = array("q", last.ids)
    out.watched = array("f", map(sum, zip(*(p.watched for p in parts), strict=True)))
    out.read = array("f", map(sum, zip(*(p.read for p in parts), strict=True)))
    out.write = array("f", map(sum, zip(*(p.write for p in parts), strict=True)))
    out.qmax = array("f", map(max, zip(*(p.qmax for p in parts), strict=True)))
    out.mask = array("H", last.mask)
    out.state = array("B", last.state)
    out.figs = array("q", last.figs)
    return out
