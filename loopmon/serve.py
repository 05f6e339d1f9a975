"""``loopmon serve``: the echo server headless, its loop on the main thread.

Once every listener is up it prints ``listening on HOST:PORT (backend NAME)`` for each, then a
status line a second (unless ``--quiet``). SIGINT or SIGTERM closes listeners and connections
and exits 0. A listener that cannot start (port in use, permission denied, unknown host) is one
line on stderr naming the address and the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, TextIO

from loopmon import cli
from loopmon.echo import EchoServer, ListenerError
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.loadgen import raise_fd_limit
from loopmon.snapshot import LoopFigures

__all__ = ["add_arguments", "format_bytes", "interval_between", "run", "status_line"]

STATUS_S = 1.0


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {value}")
    return value


def byte_size(text: str) -> int:
    """A byte count, with an optional K/M/G suffix (powers of 1024)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(raw[-1:], 1)
    if scale != 1:
        raw = raw[:-1]
    try:
        value = int(float(raw) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_server_arguments(parser)
    parser.add_argument(
        "--max-connections",
        type=count,
        default=10_000,
        help="beyond this, new connections are accepted and closed at once (%(default)s)",
    )
    parser.add_argument(
        "--high-water",
        type=byte_size,
        default=1 << 20,
        help="stop reading a connection with this much output queued (default 1M)",
    )
    parser.add_argument(
        "--low-water",
        type=byte_size,
        default=256 << 10,
        help="resume reading once its queue is down to this (default 256K)",
    )
    parser.add_argument("--quiet", action="store_true", help="no status line")


# -- the status line (kept apart so it can be fed from a telemetry Snapshot) ------------------


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def status_line(
    interval: LoopFigures,
    connections: int,
    queue_bytes: int,
    bytes_in: int,
    bytes_out: int,
) -> str:
    """One compact line for the last interval: ``bytes_in``/``bytes_out`` were moved during
    ``interval.span_s``; ``connections`` and ``queue_bytes`` are as of now."""
    span = interval.span_s
    rate_in = bytes_in / span if span > 0 else 0.0
    rate_out = bytes_out / span if span > 0 else 0.0
    lag_ms = interval.lag.quantile(0.99) * 1000
    return (
        f"{connections} conns | {interval.events_per_s:,.0f} events/s | "
        f"in {format_bytes(rate_in)}/s out {format_bytes(rate_out)}/s | "
        f"queued {format_bytes(queue_bytes)} | busy {interval.utilization:.0%} | "
        f"lag p99 {lag_ms:.1f} ms"
    )


def interval_between(earlier: LoopFigures, later: LoopFigures) -> LoopFigures:
    """What the loop did between two of its ``figures()``."""
    return LoopFigures(
        span_s=later.span_s - earlier.span_s,
        iterations=later.iterations - earlier.iterations,
        events=later.events - earlier.events,
        callbacks=later.callbacks - earlier.callbacks,
        timers=later.timers - earlier.timers,
        busy_s=later.busy_s - earlier.busy_s,
        poll_s=later.poll_s - earlier.poll_s,
        lag=later.lag.minus(earlier.lag),
    )


class _Status:
    """Prints ``status_line`` for each interval."""

    def __init__(self, loop: IOLoop, server: EchoServer, out: TextIO) -> None:
        self.loop = loop
        self.server = server
        self.out = out
        self.figures = loop.figures()
        self.bytes = (server.bytes_in, server.bytes_out)

    def __call__(self) -> None:
        figures = self.loop.figures()
        server = self.server
        bytes_in, bytes_out = server.bytes_in, server.bytes_out
        line = status_line(
            interval_between(self.figures, figures),
            len(server.connections),
            server.queue_bytes,
            bytes_in - self.bytes[0],
            bytes_out - self.bytes[1],
        )
        self.figures = figures
        self.bytes = (bytes_in, bytes_out)
        print(line, file=self.out, flush=True)


# -- the command ------------------------------------------------------------------------------


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="loopmon serve: %(message)s")
    ports: list[int] = list(args.port) if args.port else [cli.DEFAULT_PORT]
    if args.low_water > args.high_water:
        print(
            f"loopmon serve: --low-water ({args.low_water}) must not exceed "
            f"--high-water ({args.high_water})",
            file=err,
        )
        return 2
    if args.high_water <= 0:
        print("loopmon serve: --high-water must be positive", file=err)
        return 2
    raise_fd_limit(args.max_connections + 64)
    try:
        loop = IOLoop(backend=args.backend, make_current=False)
    except (ValueError, RuntimeError) as exc:
        print(f"loopmon serve: {exc}", file=err)
        return 2
    server = EchoServer(
        loop,
        strategy=args.strategy,
        max_connections=args.max_connections,
        high_water=args.high_water,
        low_water=args.low_water,
    )
    try:
        try:
            listeners = [server.start_listener(args.host, port) for port in ports]
        except ListenerError as exc:
            print(f"loopmon serve: {exc}", file=err, flush=True)
            return 2
        for listener in listeners:
            print(f"listening on {listener.address} (backend {loop.backend})", file=out)
        out.flush()
        status = None
        if not args.quiet:
            status = PeriodicCallback(_Status(loop, server, out), STATUS_S * 1000, io_loop=loop)
            status.start()

        def on_signal(signum: int, frame: Any) -> None:
            loop.add_callback_from_signal(loop.stop)

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread: the caller stops the loop
                pass
        try:
            loop.start()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            if status is not None:
                status.stop()
        return 0
    finally:
        server.close_all()
        loop.close()
