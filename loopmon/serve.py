"""``loopmon serve``: the echo server headless, its loop on the main thread.

Once every listener is up it prints ``listening on HOST:PORT (backend NAME)`` for each, then a
status line a second (unless ``--quiet``). SIGINT or SIGTERM closes listeners and connections
and exits 0. A listener that cannot start (port in use, permission denied, unknown host) is one
line on stderr naming the address and the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import select
import signal
import sys
from typing import Any, TextIO

from loopmon import cli, telemetry
from loopmon.echo import ListenerError
from loopmon.events import READ
from loopmon.ioloop import IOLoop
from loopmon.loadgen import count, raise_fd_limit
from loopmon.mailbox import Mailbox
from loopmon.metrics import options as metrics_options
from loopmon.runner import LoopRunner
from loopmon.snapshot import LagWindow, LoopFigures, Snapshot

__all__ = [
    "StatusPrinter",
    "add_arguments",
    "format_bytes",
    "run",
    "status_line",
]

STATUS_S = 1.0
# Snapshots a second behind the status line: two per line, so each line covers a full second.
STATUS_HZ = 2.0
MAX_TELEMETRY_HZ = 1000.0


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
    parser.add_argument(
        "--telemetry-hz",
        type=float,
        default=None,
        help=(
            f"snapshots per second (default: {STATUS_HZ:g}, what the status line needs; none "
            "with --quiet; the window takes 25)"
        ),
    )
    metrics_options.add_arguments(parser)


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
    turned_away: int = 0,
    lag: LagWindow | None = None,
) -> str:
    """One compact line for the last interval: ``bytes_in``/``bytes_out`` were moved during
    ``interval.span_s``; ``connections`` and ``queue_bytes`` are as of now; ``turned_away``
    connections were closed at once (over --max-connections, or an fd the poller cannot
    watch) during the interval, and are mentioned only when there were some; ``lag`` is the
    loop's lag over the window it names (n/a before a sample falls in it)."""
    span = interval.span_s
    rate_in = bytes_in / span if span > 0 else 0.0
    rate_out = bytes_out / span if span > 0 else 0.0
    if lag is None or lag.p99_s is None:
        lag_text = "lag p99 n/a"
    else:
        lag_text = f"lag p99 {lag.p99_s * 1000:.2f} ms (last {lag.window_s:.0f} s)"
    return (
        f"{connections} conns | {interval.events_per_s:,.0f} events/s | "
        f"in {format_bytes(rate_in)}/s out {format_bytes(rate_out)}/s | "
        f"queued {format_bytes(queue_bytes)} | busy {interval.utilization:.0%} | "
        + lag_text
        + (f" | {turned_away:,} turned away" if turned_away > 0 else "")
    )


def turned_away(snapshot: Snapshot) -> int:
    """Connections the listeners closed at once or could not take, since they started."""
    return sum(row.refused + row.errors for row in snapshot.listeners)


class StatusPrinter:
    """Reads the telemetry mailbox and prints ``status_line`` about once a second: the same
    snapshots the window shows, so both report the same numbers.

    It reads on the loop thread, as a handler of the mailbox's fd, rather than on a thread of
    its own: a second thread, even one asleep in ``select``, costs a single-threaded server
    about 5 % per round trip (see ``loopmon.watchdog``). So that a stuck terminal or a full
    pipe can never block the loop, a line is written only when ``out`` is writable at once;
    otherwise it is skipped (``skipped`` counts them) and the next line covers the longer
    interval."""

    def __init__(self, mailbox: Mailbox, out: TextIO, every_s: float = STATUS_S) -> None:
        self.mailbox = mailbox
        self.out = out
        self.every_s = every_s
        self.skipped = 0
        self._printed: Snapshot | None = None
        # Counted from the start, not from the first snapshot: connections turned away before
        # the first line are reported on it.
        self._turned_away = 0
        self._loop: IOLoop | None = None

    def attach(self, loop: IOLoop) -> None:
        """Start reading; call on the loop's thread."""
        self._loop = loop
        loop.add_handler(self.mailbox.fileno(), self._on_mail, READ)

    def detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.remove_handler(self.mailbox.fileno())

    def _on_mail(self, fd: int, events: int) -> None:
        snapshot, _, _ = self.mailbox.take()
        if snapshot is None or not snapshot.alive:
            return
        printed = self._printed
        if printed is None:
            self._printed = snapshot  # the baseline: the first line covers a full second
            return
        if snapshot.taken_at - printed.taken_at < self.every_s * 0.98:
            return
        if not self._writable():
            self.skipped += 1
            return
        line = status_line(
            snapshot.totals.minus(printed.totals),
            len(snapshot.connections),
            snapshot.queue_bytes,
            snapshot.bytes_in - printed.bytes_in,
            snapshot.bytes_out - printed.bytes_out,
            turned_away(snapshot) - self._turned_away,
            snapshot.lag,
        )
        self._printed = snapshot
        self._turned_away = turned_away(snapshot)
        try:
            print(line, file=self.out, flush=True)
        except (OSError, ValueError):
            self.detach()  # stdout went away (a closed pipe): keep serving, stop printing

    def _writable(self) -> bool:
        try:
            fd = self.out.fileno()
        except (AttributeError, OSError, ValueError):
            return True  # not a file (a StringIO): writing cannot block
        try:
            # select(), which every OS supports on a terminal (macOS's poll() does not), as
            # long as the number fits in FD_SETSIZE; poll() past it.
            if fd < 1024:
                return bool(select.select([], [fd], [], 0)[1])
            probe = select.poll()
            probe.register(fd, select.POLLOUT)
            return any(mask & select.POLLOUT for _, mask in probe.poll(0))
        except (OSError, ValueError):
            return False


# -- the command ------------------------------------------------------------------------------


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    # sys.stdout is None when the shell closed it (``>&-``): serve anyway, printing nothing.
    out: TextIO | None = stdout or sys.stdout
    err = stderr or sys.stderr or sys.__stderr__
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
    hz = getattr(args, "telemetry_hz", None)
    if hz is None:
        # A snapshot nobody reads is pure cost to the echo: build only what the line needs.
        hz = 0.0 if args.quiet else STATUS_HZ
    # -- metrics (issue 20): check --metrics and bind its port before the loop starts ------
    try:
        metrics_plan = metrics_options.prepare(args)
    except metrics_options.MetricsError as exc:
        print(f"loopmon serve: {exc}", file=err)
        return 2
    if metrics_plan is not None and hz <= 0:
        if getattr(args, "telemetry_hz", None) is not None:
            metrics_plan.close()
            print("loopmon serve: --metrics needs telemetry (--telemetry-hz > 0)", file=err)
            return 2
        hz = STATUS_HZ  # --quiet: snapshots for the collector only
    metrics_exporter: list[Any] = []
    # -- end metrics ----------------------------------------------------------------------
    if not 0 <= hz <= MAX_TELEMETRY_HZ:
        print(f"loopmon serve: --telemetry-hz must be 0 to {MAX_TELEMETRY_HZ:g}", file=err)
        return 2
    if hz <= 0 and not args.quiet:
        print("loopmon serve: the status line needs telemetry (--telemetry-hz > 0)", file=err)
        return 2
    raise_fd_limit(args.max_connections + 64)
    try:
        runner = LoopRunner(
            backend=args.backend,
            strategy=args.strategy,
            telemetry_hz=hz,
            server_options={
                "max_connections": args.max_connections,
                "high_water": args.high_water,
                "low_water": args.low_water,
            },
        )
    except (ValueError, RuntimeError) as exc:
        print(f"loopmon serve: {exc}", file=err)
        return 2
    failure: list[ListenerError] = []
    status = None if args.quiet or out is None else StatusPrinter(runner.mailbox, out)

    def on_ready(r: LoopRunner) -> None:
        # On the loop thread, before any connection: all listeners or none.
        server, loop = r.server, r.loop
        assert server is not None and loop is not None
        try:
            listeners = [server.start_listener(args.host, port) for port in ports]
        except ListenerError as exc:
            failure.append(exc)
            loop.stop()
            return
        # -- metrics (issue 20): serve /metrics from this loop, fed every snapshot --------
        if metrics_plan is not None:
            exporter = metrics_plan.start(
                loop,
                metrics_options.producer(
                    "serve", "loopmon serve", r.session, loop.backend, telemetry.MEASURES
                ),
            )
            r.snapshot_observers.append(exporter.update)
            metrics_exporter.append(exporter)
        # -- end metrics ------------------------------------------------------------------
        if out is None:
            return
        try:
            for listener in listeners:
                print(f"listening on {listener.address} (backend {loop.backend})", file=out)
            for exporter in metrics_exporter:  # metrics (issue 20)
                print(f"metrics on {exporter.address}", file=out)
            out.flush()
        except (OSError, ValueError) as exc:
            # A full disk or a closed pipe: the echo does not need stdout, so keep serving.
            print(f"loopmon serve: cannot write to stdout ({exc}); serving silently", file=err)
            return
        if status is not None:
            status.attach(loop)

    def on_signal(signum: int, frame: Any) -> None:
        runner.stop_from_signal()

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread: the caller stops the loop
            pass
    try:
        runner.run(on_ready)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        runner.mailbox.close()
        # -- metrics (issue 20): the loop is closed; close the port and its connections --
        for exporter in metrics_exporter:
            exporter.close(detach=False)
        if metrics_plan is not None and not metrics_exporter:
            metrics_plan.close()
        # -- end metrics ------------------------------------------------------------------
    if failure:
        print(f"loopmon serve: {failure[0]}", file=err, flush=True)
        return 2
    if runner.error:
        print(f"loopmon serve: the loop died: {runner.error.splitlines()[-1]}", file=err)
        return 1
    return 0
