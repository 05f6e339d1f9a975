"""Telemetry's cost per snapshot at N idle connections: real ones, into a real EchoServer.

    .venv/bin/python benchmarks/bench_snapshot_idle.py 100
    .venv/bin/python benchmarks/bench_snapshot_idle.py 9000
    .venv/bin/python benchmarks/bench_snapshot_idle.py 9000 --profile

Both ends of every connection live in this process, so the hard descriptor limit (20,000 on this
VM) bounds N. Run each N in a process of its own. It prints the median time of 200 snapshot
builds; issue 17's target is the ratio of the figures at 10,000 and at 100 (at most 2). A
benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import socket
import statistics
import time

from loopmon.echo.server import EchoServer
from loopmon.fdlimit import raise_fd_limit
from loopmon.ioloop import IOLoop
from loopmon.mailbox import Mailbox
from loopmon.telemetry import Telemetry


def run_briefly(loop: IOLoop, seconds: float = 0.002) -> None:
    loop.call_later(seconds, loop.stop)
    loop.start()


def hold_connections(count: int) -> tuple[IOLoop, EchoServer, list[socket.socket]]:
    """An echo server on a loop of its own holding ``count`` loopback clients, all accepted
    (the benchmarks beside this one import it)."""
    raise_fd_limit()
    loop = IOLoop(make_current=False)
    server = EchoServer(loop, max_connections=count + 10)
    listener = server.start_listener("127.0.0.1", 0)
    clients = []
    for _ in range(count):
        clients.append(socket.create_connection(("127.0.0.1", listener.port)))
        if len(clients) % 50 == 0:
            run_briefly(loop)  # accept them before the backlog fills
    deadline = time.monotonic() + 60
    while len(server.connections) < count and time.monotonic() < deadline:
        run_briefly(loop)
    return loop, server, clients


def round_trip(
    loop: IOLoop,
    clients: list[socket.socket],
    rng: random.Random,
    share: float,
    message: bytes,
    settle: float,
) -> None:
    """One round trip on a seeded ``share`` of the (non-blocking) clients: send, let the loop
    echo for ``settle`` seconds, read what came back."""
    busy = [c for c in clients if rng.random() < share]
    for client in busy:
        client.send(message)
    run_briefly(loop, settle)
    for client in busy:
        try:
            client.recv(65536)
        except BlockingIOError:
            pass


def release(loop: IOLoop, clients: list[socket.socket], mailbox: Mailbox) -> None:
    """Close what ``hold_connections`` opened, and the mailbox."""
    for client in clients:
        client.close()
    loop.close(all_fds=True)
    mailbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("connections", type=int)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    loop, server, clients = hold_connections(args.connections)
    mailbox = Mailbox()
    telemetry = Telemetry(loop, server, mailbox, 25.0)
    for _ in range(5):
        telemetry.build()  # every row built once, then quiet
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(100):
            telemetry.build()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(8)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        telemetry.build()
        times.append(time.perf_counter() - t0)
    held = len(server.connections)
    for client in clients:
        client.close()
    loop.close(all_fds=True)
    mailbox.close()
    print(f"{held} idle connections: {statistics.median(times) * 1e6:.1f} us per snapshot")


if __name__ == "__main__":
    main()
