"""The producer's instructions per frame, counted by callgrind: deterministic, so versions can
be compared on a machine other processes share.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=sys_call_tracing \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python benchmarks/frame_instructions.py \\
        100 --size 1024 --what tick
    callgrind_annotate /tmp/cg.out | head   # "PROGRAM TOTALS" / frames = instructions a frame

A serve-like process in one: an EchoServer (strategy direct) on a loop holding N loopback
clients, telemetry on it with its observers as ``loopmon serve --telemetry`` has them (the
publisher, one consumer attached, whose socket this script drains between frames). Between two
frames each client (or a seeded ``--busy-share`` of them) makes one round trip of ``--size``
bytes; then the measured part runs inside ``sys.call_tracing`` (a C function callgrind can
toggle on: ``--toggle-collect=sys_call_tracing``), so only it is counted:

- ``tick``: the periodic callback as the loop runs it (the throttle's test, the build, the
  mailbox, the publisher's encoding and send, the next timer);
- ``build``: ``Telemetry.build`` alone;
- ``encode``: the encoder's delta alone (the snapshot built outside the count);
- ``publish``: ``Publisher.publish`` (the encoding, the queue and the send);
- ``post``: the mailbox's post.

Without valgrind it prints the wall time a frame of the same part. ``PYTHONHASHSEED=0`` keeps
set orders the same from run to run. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import time
from typing import Any

from bench_snapshot_idle import (  # beside this script
    hold_connections,
    release,
    round_trip,
    run_briefly,
)

from loopmon import telemetry as telemetry_module
from loopmon.mailbox import Mailbox
from loopmon.snapshot import ProducerInfo
from loopmon.stream.publisher import Publisher
from loopmon.stream.reactor import IOLoopReactor
from loopmon.telemetry import Telemetry
from loopmon.wire import messages as msgs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("connections", type=int)
    parser.add_argument("--busy-share", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument(
        "--what", choices=("tick", "build", "encode", "publish", "post"), default="tick"
    )
    args = parser.parse_args()
    rng = random.Random(17)
    message = b"x" * args.size
    telemetry_module.give_gc_headroom()  # as serve does
    loop, server, clients = hold_connections(args.connections)
    for client in clients:
        client.setblocking(False)
    mailbox = Mailbox()
    token = b"t" * 32
    info = ProducerInfo("serve", "loopmon serve", 0, loop.backend, "s", 0.0)
    publisher = Publisher(IOLoopReactor(loop), info, token)
    publisher.start()
    observers: list[Any] = [] if args.what in ("encode", "publish") else [publisher.publish]
    # A throttle that never skips: under valgrind the thread's CPU time is tens of times
    # the real one, and a skipped tick would count nothing.
    telemetry = Telemetry(loop, server, mailbox, 25.0, max_share=1e9, observers=observers)
    telemetry.session = "s"
    consumer = socket.create_connection(publisher.address)
    consumer.sendall(msgs.encode_message(msgs.ConsumerHello(token, client="frame_instructions")))
    run_briefly(loop, 0.05)
    consumer.setblocking(False)

    def drain() -> None:
        while True:
            try:
                if not consumer.recv(1 << 20):
                    raise SystemExit("the publisher closed the consumer")
            except BlockingIOError:
                return

    def stir() -> None:
        round_trip(loop, clients, rng, args.busy_share, message, 0.002)

    periodic = telemetry._periodic
    periodic._running = True

    def counted(fn: Any, *fn_args: Any) -> None:
        sys.call_tracing(fn, fn_args)

    def frame(run: Any = counted) -> float:
        stir()
        drain()
        if args.what == "tick":
            t0 = time.perf_counter()
            run(periodic._run)
            t1 = time.perf_counter()
            if periodic._timeout is not None:
                loop.remove_timeout(periodic._timeout)
            return t1 - t0
        if args.what == "build":
            t0 = time.perf_counter()
            run(telemetry.build)
            return time.perf_counter() - t0
        if args.what == "post":
            snap = telemetry.build()
            t0 = time.perf_counter()
            run(mailbox.post, snap, ())
            return time.perf_counter() - t0
        snap = telemetry.build()
        if args.what == "encode":
            t0 = time.perf_counter()
            run(publisher.encoder.encode, snap)
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        run(publisher.publish, snap)
        return time.perf_counter() - t0

    for _ in range(5):  # every row built once, the consumer past its keyframe, uncounted
        frame(lambda fn, *fn_args: fn(*fn_args))
    drain()
    times = [frame() for _ in range(args.frames)]
    print(
        f"{args.connections} connections, {args.busy_share:.0%} busy, {args.what}: "
        f"{statistics.median(times) * 1e6:.1f} us a frame (median of {args.frames}); "
        f"published {publisher.published}, lost {publisher.frames_lost}",
        file=sys.stderr,
    )
    consumer.close()
    publisher.close()
    release(loop, clients, mailbox)


if __name__ == "__main__":
    main()
