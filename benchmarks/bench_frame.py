"""The producer's work per frame at N busy connections: telemetry's build and the encoder's
delta, with real connections into a real EchoServer on one loop in this process.

    .venv/bin/python benchmarks/bench_frame.py 1000 [--busy-share 0.86] [--frames 60] [--gc]

Between two frames every client (or a seeded random ``--busy-share`` of them, as under
``loopmon load``'s rr, where a connection makes about two round trips a frame at 25 Hz and
one in seven makes none) sends 128 bytes and the loop echoes them; then one frame is built and
encoded, as ``serve --telemetry`` does 25 times a second. It prints the medians of the build
and of the encoding, how many deltas took the encoder.s whole-table path, and, with
``--gc``, the collector's time a frame at CPython's default threshold and with
``telemetry.give_gc_headroom()``. Both ends of every connection live here, so the numbers
are of a warm process, not of a loaded server: use them to compare versions, and
benchmarks/bench_stream.py for what serve really pays. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from bench_snapshot_idle import hold_connections, release, round_trip  # beside this script

from loopmon import telemetry as telemetry_module
from loopmon.mailbox import Mailbox
from loopmon.telemetry import Telemetry
from loopmon.wire.snapshots import SnapshotEncoder

MESSAGE = b"x" * 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("connections", type=int)
    parser.add_argument("--busy-share", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--gc", action="store_true", help="also time the collector")
    args = parser.parse_args()
    rng = random.Random(17)
    loop, server, clients = hold_connections(args.connections)  # strategy "direct"
    for client in clients:
        client.setblocking(False)
    mailbox = Mailbox()
    telemetry = Telemetry(loop, server, mailbox, 25.0)
    encoder = SnapshotEncoder()

    def stir() -> None:
        round_trip(loop, clients, rng, args.busy_share, MESSAGE, 0.005)

    gc_time = [0.0, 0.0]

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    def frames(n: int) -> tuple[list[float], list[float], float]:
        builds, encodes = [], []
        gc_time[0] = 0.0
        for _ in range(n):
            stir()
            t0 = time.perf_counter()
            snap = telemetry.build()
            t1 = time.perf_counter()
            encoder.encode(snap)
            t2 = time.perf_counter()
            builds.append(t1 - t0)
            encodes.append(t2 - t1)
        return builds, encodes, gc_time[0] / n

    frames(5)  # every row built once
    if args.gc:
        gc.callbacks.append(on_gc)
    whole0 = getattr(encoder, "whole_frames", 0)  # 0 in versions without the path
    builds, encodes, gc_default = frames(args.frames)
    whole = getattr(encoder, "whole_frames", 0) - whole0
    print(
        f"{args.connections} connections, {args.busy_share:.0%} busy a frame: "
        f"build {statistics.median(builds) * 1e3:.3f} ms, "
        f"encode {statistics.median(encodes) * 1e3:.3f} ms "
        f"(whole table {whole} of {args.frames})"
    )
    if args.gc:
        getattr(telemetry_module, "give_gc_headroom", lambda: None)()
        _, _, gc_headroom = frames(args.frames)
        print(
            f"collector a frame: {gc_default * 1e3:.3f} ms at the default threshold, "
            f"{gc_headroom * 1e3:.3f} ms with give_gc_headroom()"
        )
    release(loop, clients, mailbox)


if __name__ == "__main__":
    main()
