"""The Timeline's slices as numpy columns for the plots, over the shared axis's range.

Loop figures come one point per slice (slices differ in width once thinned, and a line plot
takes any x). Per-connection figures (mask fractions, queue depth) go on a uniform grid of
columns for the raster's image: each column shows the slice holding its middle, found once per
column, and each connection's column in it by a C-level bisect over the slice's id array.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from loopmon.gui.model.slices import Slice
from loopmon.gui.model.timeline import Timeline

MAX_COLUMNS = 400
RATE_WINDOW_S = 1.0  # rates over the last second, as the status strip's, where slices allow


class LoopColumns:
    """One entry per slice in range: x (seconds relative to the range's end, at the slice's
    end), and the loop's figures."""

    def __init__(self, slices: Sequence[Slice], end: float) -> None:
        n = len(slices)
        loops = [p.loop for p in slices]
        self.x = np.fromiter((min(p.end, end) - end for p in slices), np.float64, n)
        t = self.x
        spans = np.fromiter((lp.span_s for lp in loops), np.float64, n)
        events = np.fromiter((lp.events for lp in loops), np.float64, n)
        iterations = np.fromiter((lp.iterations for lp in loops), np.float64, n)
        busy = np.fromiter((lp.busy_s for lp in loops), np.float64, n)
        poll = np.fromiter((lp.poll_s for lp in loops), np.float64, n)
        # Over the last second (or the slice, where it is longer): a lone event in a 0.2 s
        # slice is 1/s, not 5/s, as the status strip says it.
        cum = [
            np.concatenate([[0.0], np.cumsum(a)]) for a in (spans, events, iterations, busy, poll)
        ]
        first = np.searchsorted(t, t - RATE_WINDOW_S + 1e-9, side="left")
        first = np.minimum(first, np.arange(n))
        last = np.arange(1, n + 1)
        span_w, events_w, iter_w, busy_w, poll_w = (c[last] - c[first] for c in cum)
        safe = np.where(span_w > 0, span_w, 1.0)
        self.events = np.where(span_w > 0, events_w / safe, 0.0)
        self.iterations = np.where(span_w > 0, iter_w / safe, 0.0)
        measured = busy_w + poll_w
        self.utilization = np.where(measured > 0, busy_w / np.where(measured > 0, measured, 1), 0)
        self.utilization = self.utilization * 100.0
        self.lag_p50 = np.fromiter((lp.lag_p50_max * 1e3 for lp in loops), np.float64, n)
        self.lag_p99 = np.fromiter((lp.lag_p99_max * 1e3 for lp in loops), np.float64, n)
        self.queue = np.fromiter((lp.queue_max for lp in loops), np.float64, n)
        self.stalls = np.fromiter((lp.stalls for lp in loops), np.float64, n)


def loop_columns(timeline: Timeline, t0: float, t1: float) -> LoopColumns:
    return LoopColumns(timeline.view_slices(t0, t1), t1)


class GridCache:
    """What a grid found in each slice for one list of connections, kept for the next grid
    over the same connections: a scrub moves the range a little, and only the slices that
    come into view are looked up. Finished slices never change (thinning makes new ones; the
    one being filled is packed anew per frame), so a slice object is its own key."""

    def __init__(self) -> None:
        self.keys: tuple[tuple[str, int], ...] = ()
        self.found: dict[int, tuple[Slice, np.ndarray]] = {}

    def columns(self, part: Slice, keys: tuple[tuple[str, int], ...]) -> np.ndarray:
        """(4, len(keys)): READ share, WRITE share, watched (1/0), deepest queue."""
        if keys != self.keys:
            self.keys = keys
            self.found = {}
        hit = self.found.get(id(part))
        if hit is not None and hit[0] is part:
            return hit[1]
        out = np.zeros((4, len(keys)), np.float32)
        ids = part.ids
        for i, (session, conn_id) in enumerate(keys):
            j = bisect.bisect_left(ids, conn_id)
            if session == part.session and j < len(ids) and ids[j] == conn_id:
                out[0, i], out[1, i] = part.fractions(j)
                out[2, i] = 1.0
                out[3, i] = part.qmax[j]
        self.found[id(part)] = (part, out)
        return out

    def keep_only(self, parts: Sequence[Slice]) -> None:
        live = {id(p) for p in parts}
        self.found = {k: v for k, v in self.found.items() if k in live}


class ConnectionGrid:
    """Per connection (one per id asked), per column of a uniform grid over ``[t0, t1]``:
    READ and WRITE shares, whether it was watched then (``known``) and its deepest queue;
    arrays shaped (columns, connections)."""

    def __init__(
        self,
        timeline: Timeline,
        session_ids: Sequence[tuple[str, int]],
        t0: float,
        t1: float,
        cache: GridCache | None = None,
    ) -> None:
        slices = timeline.view_slices(t0, t1)
        finest = min((p.width for p in slices), default=timeline.slice_s)
        ncols = max(1, min(MAX_COLUMNS, math.ceil((t1 - t0) / max(finest, 1e-3))))
        self.ncols = ncols
        self.dt = (t1 - t0) / ncols
        self.x0 = -(t1 - t0)  # relative to the range's end
        keys = tuple(session_ids)
        k = len(keys)
        cells = np.zeros((ncols, 4, k), np.float32)
        if slices and k:
            cache = cache if cache is not None else GridCache()
            starts = [p.start for p in slices]
            for c in range(ncols):
                mid = t0 + (c + 0.5) * self.dt
                i = bisect.bisect_right(starts, mid) - 1
                if i < 0 or slices[i].end < mid - self.dt:  # before history, or a gap
                    continue
                cells[c] = cache.columns(slices[i], keys)
            cache.keep_only(slices)
        self.read = cells[:, 0, :]
        self.write = cells[:, 1, :]
        self.known = cells[:, 2, :] > 0
        self.queue = cells[:, 3, :]

    @property
    def x(self) -> np.ndarray:
        """Each column's middle, relative to the range's end."""
        return self.x0 + (np.arange(self.ncols) + 0.5) * self.dt


def busiest(timeline: Timeline, keys: Sequence[tuple[str, int]], t0: float, t1: float,
            count: int) -> list[tuple[str, int]]:  # fmt: skip
    """Up to ``count`` of ``keys`` with the most readiness over ``[t0, t1]`` (the counts at the
    end of the range less those at its start), then the deepest queue at its end."""
    slices = timeline.view_slices(t0, t1)
    if not slices or len(keys) <= count:
        return list(keys)[:count]
    first, last = slices[0], slices[-1]

    def ready(part: Slice, key: tuple[str, int]) -> tuple[int, float]:
        if key[0] != part.session:
            return 0, 0.0
        j = part.column(key[1])
        if j is None:
            return 0, 0.0
        f = part.figs
        return f[j * 8 + 5] + f[j * 8 + 6], part.qmax[j]

    scored = []
    for key in keys:
        end, queue = ready(last, key)
        begin, _ = ready(first, key)
        scored.append((end - begin, queue, key))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    return [key for _, _, key in scored[:count]]
