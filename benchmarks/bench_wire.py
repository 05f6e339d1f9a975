"""The wire codec's sizes and speeds: bytes per changed row, new row and keyframe row, and the
time to encode and decode deltas and keyframes (median of repeats, on this machine).

    python benchmarks/bench_wire.py [--rows 1000] [--held 10000] [--repeats 31]

Rows change as an echo server's busy connections do between two snapshots at 25 Hz: bytes in
and out grow by a few KiB, reads and messages by a few, and now and then the mask, the write
fraction or the queue moves. The random generator is seeded: sizes repeat from run to run.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from collections.abc import Callable

from loopmon.snapshot import ConnectionRow, ListenerRow, Snapshot
from loopmon.wire import SnapshotDecoder, SnapshotEncoder
from loopmon.wire.frames import TO_CONSUMER_MAX, FrameReader


def new_row(i: int, rng: random.Random) -> ConnectionRow:
    return ConnectionRow(
        fd=i + 12,
        peer=f"127.0.0.1:{32768 + (i * 7919) % 28000}",
        listener_id=1,
        state="open",
        mask=0x19,
        read_fraction=1.0,
        write_fraction=0.0,
        ready_read=rng.randrange(1000),
        ready_write=0,
        ready_error=0,
        queue_bytes=0,
        queue_chunks=0,
        bytes_in=rng.randrange(1 << 24),
        bytes_out=rng.randrange(1 << 24),
        messages=rng.randrange(1000),
        created_at=1000.0 + i * 0.000731,
        id=i + 1,
        kind="connection",
        local="127.0.0.1:10000",
        loop=1,
    )


def busy(row: ConnectionRow, rng: random.Random) -> ConnectionRow:
    """What 40 ms of echoing does to a row."""
    reads = rng.randint(1, 12)
    nbytes = reads * rng.randint(16, 700)
    changes: dict[str, object] = {
        "ready_read": row.ready_read + reads,
        "messages": (row.messages or 0) + reads,
        "bytes_in": (row.bytes_in or 0) + nbytes,
        "bytes_out": (row.bytes_out or 0) + nbytes,
    }
    if rng.random() < 0.05:
        changes["mask"] = 0x1D if row.mask == 0x19 else 0x19
        changes["ready_write"] = row.ready_write + 1
        changes["write_fraction"] = rng.random()
        changes["queue_bytes"] = rng.randrange(4096)
        changes["queue_chunks"] = 1
    return row._replace(**changes)  # type: ignore[arg-type]


def snapshot(seq: int, rows: list[ConnectionRow]) -> Snapshot:
    return Snapshot(
        seq=seq,
        taken_at=seq / 25,
        backend="epoll",
        strategy="direct",
        session="0123456789abcdef",
        listeners=(ListenerRow(1, "127.0.0.1", 10000, "listening", len(rows), 0, 0, len(rows)),),
        connections=tuple(rows),
    )


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows changed (and added)")
    parser.add_argument("--held", type=int, default=10_000, help="connections held")
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    rng = random.Random(17)
    n, held = args.rows, args.held
    base = [new_row(i, rng) for i in range(held)]
    s0 = snapshot(1, base)

    # Sizes: one delta with nothing changed, one with n rows changed, one with n rows new.
    def delta_of(rows: list[ConnectionRow]) -> int:
        enc = SnapshotEncoder()
        enc.encode(s0)
        delta = enc.encode(dataclasses.replace(snapshot(2, rows))).delta
        assert delta is not None
        return len(delta)

    step = held // n
    changed_rows = list(base)
    for i in range(0, held, step)[:n]:
        changed_rows[i] = busy(base[i], rng)
    empty = delta_of(base)
    per_changed = (delta_of(changed_rows) - empty) / n
    added = base + [new_row(held + i, rng) for i in range(n)]
    per_new = (delta_of(added) - empty) / n
    keyframe = SnapshotEncoder().encode(s0).keyframe()

    # Times: encoding the delta of n changed rows (the encoder primed with s0 each time).
    s1 = snapshot(2, changed_rows)

    def encode_delta() -> None:
        enc.encode(s1)

    def prime() -> SnapshotEncoder:
        e = SnapshotEncoder()
        e.encode(s0)
        return e

    times = []
    for _ in range(args.repeats):
        enc = prime()
        start = time.perf_counter()
        encode_delta()
        times.append(time.perf_counter() - start)
    t_delta = statistics.median(times)
    enc = prime()
    delta = enc.encode(s1).delta
    assert delta is not None
    [kf_frame] = FrameReader(TO_CONSUMER_MAX).feed(keyframe)
    [delta_frame] = FrameReader(TO_CONSUMER_MAX).feed(delta)
    dtimes = []
    for _ in range(args.repeats):
        dec = SnapshotDecoder()
        dec.decode(kf_frame)
        start = time.perf_counter()
        dec.decode(delta_frame)
        dtimes.append(time.perf_counter() - start)
    t_decode = statistics.median(dtimes)
    t_keyframe = median_s(
        lambda: SnapshotEncoder().encode(s0).keyframe(), max(5, args.repeats // 4)
    )
    t_keyframe_decode = median_s(
        lambda: SnapshotDecoder().decode(kf_frame), max(5, args.repeats // 4)
    )

    # Idle: a frame where nothing changed, at `held` connections and at 100.
    def idle_cost(count: int) -> float:
        rows = base[:count]
        e = SnapshotEncoder()
        e.encode(snapshot(1, rows))
        quiet = snapshot(2, rows)
        return median_s(lambda: e.encode(quiet), args.repeats)

    t_idle_small = idle_cost(100)
    t_idle_held = idle_cost(held)

    print(f"held {held:,} connections, {n:,} changed / new")
    print(f"changed row       {per_changed:7.1f} B  (target <= 24)")
    print(f"new row           {per_new:7.1f} B")
    print(f"keyframe          {len(keyframe) / held:7.1f} B a row, {len(keyframe):,} B in all")
    print(f"empty delta       {empty:7d} B")
    print(f"encode delta      {t_delta * 1e3:7.3f} ms  ({n:,} changed of {held:,})")
    print(f"decode delta      {t_decode * 1e3:7.3f} ms")
    print(f"encode keyframe   {t_keyframe * 1e3:7.3f} ms  ({held:,} rows)")
    print(f"decode keyframe   {t_keyframe_decode * 1e3:7.3f} ms")
    print(
        f"idle frame        {t_idle_small * 1e6:7.1f} us at 100, {t_idle_held * 1e6:.1f} us at "
        f"{held:,} (ratio {t_idle_held / t_idle_small:.2f})"
    )


if __name__ == "__main__":
    main()
