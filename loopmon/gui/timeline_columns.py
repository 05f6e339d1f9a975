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


class ConnectionGrid:
    """Per connection (one per id asked), per column of a uniform grid over ``[t0, t1]``:
    READ and WRITE shares, whether it was watched then (``known``) and its deepest queue;
    arrays shaped (columns, connections)."""

    def __init__(
        self, timeline: Timeline, session_ids: Sequence[tuple[str, int]], t0: float, t1: float
    ) -> None:
        slices = timeline.view_slices(t0, t1)
        finest = min((p.width for p in slices), default=timeline.slice_s)
        ncols = max(1, min(MAX_COLUMNS, math.ceil((t1 - t0) / max(finest, 1e-3))))
        self.ncols = ncols
        self.dt = (t1 - t0) / ncols
        self.x0 = -(t1 - t0)  # relative to the range's end
        k = len(session_ids)
        self.read = np.zeros((ncols, k), np.float32)
        self.write = np.zeros((ncols, k), np.float32)
        self.known = np.zeros((ncols, k), bool)
        self.queue = np.zeros((ncols, k), np.float32)
        if not slices or not k:
            return
        starts = [p.start for p in slices]
        previous: Slice | None = None
        row_r: list[float] = []
        row_w: list[float] = []
        row_k: list[bool] = []
        row_q: list[float] = []
        for c in range(ncols):
            mid = t0 + (c + 0.5) * self.dt
            i = bisect.bisect_right(starts, mid) - 1
            if i < 0 or slices[i].end < mid - self.dt:  # before history, or a gap
                continue
            part = slices[i]
            if part is not previous:
                previous = part
                row_r, row_w, row_k, row_q = [], [], [], []
                ids = part.ids
                for session, conn_id in session_ids:
                    j = bisect.bisect_left(ids, conn_id)
                    if session == part.session and j < len(ids) and ids[j] == conn_id:
                        r, w = part.fractions(j)
                        row_r.append(r)
                        row_w.append(w)
                        row_k.append(True)
                        row_q.append(part.qmax[j])
                    else:
                        row_r.append(0.0)
                        row_w.append(0.0)
                        row_k.append(False)
                        row_q.append(0.0)
            self.read[c] = row_r
            self.write[c] = row_w
            self.known[c] = row_k
            self.queue[c] = row_q

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
