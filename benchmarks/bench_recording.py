"""Recordings: bytes per hour, the recorder's cost per frame, the time of one write, and the
time to open, index and seek an hour-long file.

    python benchmarks/bench_recording.py [--seconds 120] [--hour-seconds 3600]

Sizes: ``--seconds`` of recording (an injected clock, so no waiting) of 1,000 busy connections
at 25 Hz and at 5 Hz (rows change as bench_wire's echo connections do), and of 10,000 idle ones
at 25 Hz (no row changes; the loop's own figures do, as a real idle loop's do), extrapolated to
an hour. Then a file of ``--hour-seconds`` of 1,000 busy connections at 25 Hz is opened with
its index and without it (a scan), and sought to ten moments.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_wire import busy, new_row, snapshot

from loopmon.snapshot import ConnectionRow, LoopFigures, ProducerInfo, Snapshot
from loopmon.wire.recording import Recorder, RecordingReader

INFO = ProducerInfo("serve", "loopmon serve", 1, "epoll", "0123456789abcdef", time.time())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frames(n: int, hz: float, seconds: float, moving: bool, rng: random.Random):  # type: ignore[no-untyped-def]
    rows: list[ConnectionRow] = [new_row(i, rng) for i in range(n)]
    if not moving:  # idle connections: nothing counted yet
        rows = [r._replace(ready_read=0, bytes_in=0, bytes_out=0, messages=0) for r in rows]
    steps = max(1, round(25 / hz))
    t0 = 5000.0 + rng.random()
    for k in range(int(seconds * hz)):
        if moving:
            for _ in range(steps):
                rows = [busy(r, rng) for r in rows]
        span = 1 / hz + rng.gauss(0, 2e-4)
        busy_s = (0.6 if moving else 0.002) * span * rng.uniform(0.9, 1.1)
        at = t0 + k / hz + rng.gauss(0, 1e-4)
        yield dataclasses.replace(
            snapshot(k + 1, rows),
            taken_at=at,
            uptime_s=at - t0,
            interval=LoopFigures(
                span_s=span,
                iterations=rng.randint(2, 6) if not moving else rng.randint(200, 400),
                events=0 if not moving else rng.randint(900, 1100),
                callbacks=rng.randint(0, 3),
                timers=rng.randint(0, 3),
                busy_s=busy_s,
                poll_s=span - busy_s,
            ),
        )


def size_per_hour(
    path: Path, n: int, hz: float, seconds: float, moving: bool
) -> tuple[float, float, Recorder]:
    rng = random.Random(7)
    clock = Clock()
    snaps: list[Snapshot] = list(frames(n, hz, seconds, moving, rng))
    rec = Recorder(path, INFO, clock=clock, force=True)
    cpu = 0.0
    for s in snaps:
        start = time.perf_counter()
        rec.record(s)
        cpu += time.perf_counter() - start
        clock.now += 1 / hz
    rec.close()
    size = path.stat().st_size
    return size / seconds * 3600 / 1e6, cpu / len(snaps), rec


def write_times(path: Path, sizes: tuple[int, ...], repeats: int) -> dict[int, float]:
    """p99 of one write(2) of each size into a file on this filesystem (page cache)."""
    out = {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in sizes:
            data = os.urandom(size)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                os.write(fd, data)
                times.append(time.perf_counter() - start)
            times.sort()
            out[size] = times[int(len(times) * 0.99) - 1]
    finally:
        os.close(fd)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--hour-seconds", type=float, default=3600.0)
    parser.add_argument("--hour-hz", type=float, default=25.0)
    parser.add_argument("--dir", default=None, help="where to write (a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        for label, n, hz, moving in (
            ("1,000 busy at 25 Hz", 1000, 25.0, True),
            ("1,000 busy at  5 Hz", 1000, 5.0, True),
            ("10,000 idle at 25 Hz", 10_000, 25.0, False),
            ("10,000 idle at  5 Hz", 10_000, 5.0, False),
        ):
            mb, per_frame, rec = size_per_hour(d / "size", n, hz, args.seconds, moving)
            per_row = mb * 1e6 / 3600 / hz / n if moving else float("nan")
            print(
                f"{label:22} {mb:8.1f} MB/h  {per_row:5.2f} B a changed row a frame  "
                f"record() {per_frame * 1e3:6.3f} ms a frame ({per_frame * hz * 100:4.1f} % of "
                f"a core)  keyframes {rec.keyframes}/{rec.frames}  slowest write "
                f"{rec.slowest_write_s * 1e3:.2f} ms"
            )
        for size, p99 in write_times(d / "writes", (4 << 10, 64 << 10, 512 << 10), 200).items():
            print(f"write(2) of {size >> 10:4d} KiB   p99 {p99 * 1e3:6.3f} ms")

        # An hour of 1,000 busy connections at --hour-hz: a minute of frames made once and
        # recorded over and over under new seqs and times (making every frame costs ~10x
        # the recording of it), so the file has an hour's blocks, keyframes and bytes.
        hour = d / "hour"
        hz = args.hour_hz
        minute = list(frames(1000, hz, 60.0, True, random.Random(11)))
        clock = Clock()
        rec = Recorder(hour, INFO, clock=clock, force=True)
        seq = 0
        for lap in range(int(args.hour_seconds // 60)):
            for s in minute:
                seq += 1
                lap_s = lap * 60.0
                rec.record(
                    dataclasses.replace(
                        s, seq=seq, taken_at=s.taken_at + lap_s, uptime_s=s.uptime_s + lap_s
                    )
                )
                clock.now += 1 / hz
        rec.close()
        size = hour.stat().st_size
        start = time.perf_counter()
        reader = RecordingReader(hour)
        t_index = time.perf_counter() - start
        cut = d / "unindexed"
        last = reader.blocks[-1]
        with open(hour, "rb") as src, open(cut, "wb") as dst:
            dst.write(src.read(last.offset + last.size))
        calls: list[int] = []
        start = time.perf_counter()
        scanned = RecordingReader(cut, progress=lambda done, total: calls.append(done))
        t_scan = time.perf_counter() - start
        assert scanned.blocks == reader.blocks
        seeks = []
        rng = random.Random(3)
        for _ in range(10):
            at = rng.uniform(0, reader.duration)
            start = time.perf_counter()
            next(iter(reader.snapshots(at)))
            seeks.append(time.perf_counter() - start)
        print(
            f"{args.hour_seconds:.0f} s file, {size / 1e6:.0f} MB, {len(reader.blocks):,} blocks: "
            f"open with index {t_index:.3f} s, by scan {t_scan:.3f} s ({len(calls)} progress "
            f"calls); seek to a moment: median {statistics.median(seeks) * 1e3:.1f} ms, "
            f"max {max(seeks) * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
