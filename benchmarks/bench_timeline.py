"""The window's Timeline under an hour of 1,000 busy connections at 25 Hz, simulated.

Feeds synthetic snapshots (every row changes every frame: new counters, queue and fractions;
a few connections close and are replaced every second) as fast as it can, on a simulated loop
clock, and reports: the Timeline's own count of bytes (what the window shows against
--history-mb), the process's RSS growth, the time per frame (mean and p99, building the
snapshot not included), and the scrub time: from a cursor move to the model's answer
(``state_at``: the rows open then, with their figures then, and the ghosts), at random moments
of the history.

    .venv/bin/python benchmarks/bench_timeline.py              # the hour (a few minutes)
    .venv/bin/python benchmarks/bench_timeline.py --minutes 5  # quicker
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopmon.gui.model.timeline import MiB, Timeline
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagWindow,
    LoopFigures,
    Snapshot,
)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--hz", type=float, default=25.0)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--history-mb", type=int, default=300)
    ap.add_argument("--churn", type=int, default=2, help="connections replaced per second")
    ap.add_argument("--scrubs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    span = 1.0 / args.hz
    frames = round(args.minutes * 60 * args.hz)
    n = args.connections
    ids = list(range(1, n + 1))
    next_id = n + 1
    counters = dict.fromkeys(ids, 0)
    timeline = Timeline(budget_bytes=args.history_mb * MiB)
    rss0 = rss_bytes()
    per_frame: list[float] = []
    churn_every = max(round(args.hz / args.churn), 1) if args.churn else 0
    started = time.perf_counter()
    for seq in range(1, frames + 1):
        t = 1000.0 + seq * span
        closed: tuple[ClosedConnection, ...] = ()
        if churn_every and seq % churn_every == 0:
            k = rng.randrange(len(ids))
            gone = ids[k]
            last = ConnectionRow(
                gone, "127.0.0.1:1", 1, "closed", 0, 0.0, 0.0, id=gone, bytes_in=counters.pop(gone)
            )
            closed = (ClosedConnection(last, t - span / 2, "peer closed"),)
            ids[k] = next_id
            counters[next_id] = 0
            next_id += 1
        rows = []
        for i, cid in enumerate(ids):
            c = counters[cid] = counters[cid] + rng.randrange(1, 2000)
            rows.append(
                ConnectionRow(
                    fd=10 + i,
                    peer=f"127.0.0.1:{20000 + i}",
                    listener_id=1,
                    state="open",
                    mask=1 | (4 if c & 1 else 0),
                    read_fraction=rng.random(),
                    write_fraction=rng.random() * 0.2,
                    ready_read=c // 100,
                    ready_write=c // 300,
                    queue_bytes=c % 4096,
                    queue_chunks=c % 3,
                    bytes_in=c,
                    bytes_out=c,
                    messages=c // 64,
                    created_at=1000.0,
                    id=cid,
                    local="127.0.0.1:10000",
                )
            )
        snap = Snapshot(
            seq=seq,
            taken_at=t,
            backend="epoll",
            strategy="direct",
            session="bench",
            interval=LoopFigures(
                span_s=span, iterations=50, events=2000, busy_s=span * 0.6, poll_s=span * 0.4
            ),
            connections=tuple(rows),
            closed=closed,
            queue_bytes=sum(r[10] for r in rows),
            lag=LagWindow(p50_s=0.001, p99_s=0.004 if seq % 997 else 0.5, max_s=0.01),
        )
        t0 = time.perf_counter()
        timeline.add(snap)
        per_frame.append(time.perf_counter() - t0)
        if seq % round(args.hz * 300) == 0:
            print(
                f"  {seq * span / 60:5.1f} min simulated: {timeline.nbytes / MiB:6.1f} MiB, "
                f"{len(timeline.slices)} slices",
                file=sys.stderr,
                flush=True,
            )
    wall = time.perf_counter() - started
    del rows, snap
    rss1 = rss_bytes()
    scrub: list[float] = []
    lo, hi = timeline.start, timeline.now
    for _ in range(args.scrubs):
        at = rng.uniform(lo, hi)
        t0 = time.perf_counter()
        state = timeline.state_at(at)
        scrub.append(time.perf_counter() - t0)
        assert len(state.rows) >= n - 5, (at, len(state.rows))
    per_frame.sort()
    scrub.sort()
    widths = sorted({round(p.width, 2) for p in timeline.slices})
    print(
        f"simulated: {frames} frames, {args.minutes:g} min at {args.hz:g} Hz, {n} busy "
        f"connections, {args.churn}/s replaced ({wall:.0f} s wall)"
    )
    print(
        f"timeline bytes (its own count): {timeline.nbytes / MiB:.1f} MiB of "
        f"{args.history_mb} MiB; history {timeline.start - 1000:.0f}..{timeline.now - 1000:.0f} s "
        f"in {len(timeline.slices)} slices, widths {widths}, {timeline.dropped_slices} dropped; "
        f"{len(timeline.ghosts)} ghosts"
    )
    print(f"RSS growth: {(rss1 - rss0) / MiB:.1f} MiB")
    print(
        f"time per frame: mean {statistics.fmean(per_frame) * 1e3:.2f} ms, "
        f"p99 {per_frame[int(len(per_frame) * 0.99)] * 1e3:.2f} ms, "
        f"max {per_frame[-1] * 1e3:.1f} ms"
    )
    print(
        f"scrub (cursor move to state_at's answer, {n} connections): "
        f"p50 {statistics.median(scrub) * 1e3:.2f} ms, "
        f"p95 {scrub[int(len(scrub) * 0.95)] * 1e3:.2f} ms, "
        f"max {scrub[-1] * 1e3:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
