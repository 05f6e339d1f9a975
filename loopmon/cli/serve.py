"""``loopmon serve``: the echo server headless, its loop on the main thread.

Once every listener is up it prints ``listening on HOST:PORT (backend NAME)`` for each, then
``metrics on ...`` and ``telemetry on HOST:PORT`` and ``token file PATH`` for the ports asked for,
then ``recording to FILE`` for ``--record``, then a status line a second (unless ``--quiet``).
``--telemetry`` publishes from the loop itself (no thread), at 25 snapshots a second unless
``--telemetry-hz`` says otherwise; so does ``--record`` (or at ``--record-hz``), writing every
snapshot to a new file (the publisher's encoding shared when there is one). A recording that
stops by itself (its size limit, a slow or failed write) is one line on stderr, and the server
goes on; at the signal the recording is closed (its index written). SIGINT or
SIGTERM says goodbye to the stream's consumers, closes listeners and connections and exits 0.
A listener that cannot start (port in use, permission denied, unknown host) is one line on
stderr naming the address and the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TextIO

from loopmon import __version__, telemetry
from loopmon.cli.args import (
    FD_HEADROOM,
    add_record_arguments,
    add_server_arguments,
    byte_count,
    count,
    positive_float,
    raise_fd_limit,
    record_refusal,
)
from loopmon.cli.serve_record import close_recording, feed_recorder, open_recorder
from loopmon.cli.status import StatusPrinter, status_line
from loopmon.echo import Listener, ListenerError
from loopmon.metrics import options as metrics_options
from loopmon.netaddr import DEFAULT_PORT, is_loopback
from loopmon.runner import LoopRunner
from loopmon.snapshot import ProducerInfo
from loopmon.stream import options as stream_options
from loopmon.stream.publisher import Publisher, echo_commands
from loopmon.stream.reactor import IOLoopReactor
from loopmon.wire import messages as msgs
from loopmon.wire.recording import Recorder, RecordingError

__all__ = ["StatusPrinter", "add_arguments", "run", "status_line"]

# Snapshots a second behind the status line: two per line, so each line covers a full second.
STATUS_HZ = 2.0
# What the stream publishes at unless --telemetry-hz says otherwise: what the window draws.
STREAM_HZ = 25.0
# What a consumer of serve may ask: everything but switching backends (a restart would close
# every connection the consumer is watching).
STREAM_COMMANDS: tuple[str, ...] = (
    msgs.START_LISTENER,
    msgs.STOP_LISTENER,
    msgs.CLOSE_CONNECTION,
    msgs.SET_STRATEGY,
)
MAX_TELEMETRY_HZ = 1000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(parser)
    parser.add_argument(
        "--max-connections",
        type=count,
        default=10_000,
        help="beyond this, new connections are accepted and closed at once (%(default)s)",
    )
    parser.add_argument(
        "--high-water",
        type=byte_count,
        default=1 << 20,
        help="stop reading a connection with this much output queued (default 1M)",
    )
    parser.add_argument(
        "--low-water",
        type=byte_count,
        default=256 << 10,
        help="resume reading once its queue is down to this (default 256K)",
    )
    parser.add_argument("--quiet", action="store_true", help="no status line")
    parser.add_argument(
        "--telemetry-hz",
        type=float,
        default=None,
        help=(
            f"snapshots per second (default: {STATUS_HZ:g}, what the status line needs; "
            f"{STREAM_HZ:g} with --telemetry; none with --quiet)"
        ),
    )
    stream_options.add_arguments(parser)
    metrics_options.add_arguments(parser)
    add_record_arguments(parser)
    parser.add_argument(
        "--record-hz",
        type=positive_float,
        default=None,
        metavar="HZ",
        help=f"with --record: snapshots a second (default {STREAM_HZ:g}; --telemetry-hz, if "
        "given, is the one rate of both)",
    )


# -- the command ------------------------------------------------------------------------------


class Refused(Exception):
    """Options serve cannot run with: its message is one line on stderr, and exit status 2."""


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    # sys.stdout is None when the shell closed it (``>&-``): serve anyway, printing nothing.
    out: TextIO | None = stdout or sys.stdout
    err = stderr or sys.stderr or sys.__stderr__
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="loopmon serve: %(message)s")
    try:
        runner, metrics_plan, stream_plan, recorder = prepare(args, err)
    except (
        Refused,
        metrics_options.MetricsError,
        stream_options.TelemetryError,
        RecordingError,
    ) as exc:
        print(f"loopmon serve: {exc}", file=err)
        return 2
    telemetry.give_gc_headroom()  # serve owns its process (see telemetry's GC HEADROOM)
    info = producer_info(runner)
    if stream_plan is not None and not is_loopback(stream_plan.address[0]):
        warning = stream_options.remote_warning(*stream_plan.address)
        print(f"loopmon serve: warning: {warning}", file=err)
    failure: list[ListenerError] = []
    status = None if args.quiet or out is None else StatusPrinter(runner.mailbox, out)
    ports: list[int] = list(args.port) if args.port else [DEFAULT_PORT]
    exporters: list[Any] = []
    publishers: list[Publisher] = []

    def close_stream() -> None:
        # On the loop thread, before it stops: consumers get a goodbye, not a reset.
        for publisher in publishers:
            publisher.close("the producer is stopping")
        if recorder is not None:
            recorder.close()

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
        if metrics_plan is not None:
            # /metrics from this loop, fed every snapshot (the mailbox keeps only the latest).
            producer = metrics_options.producer(
                "serve", "loopmon serve", r.session, loop.backend, telemetry.MEASURES
            )
            exporter = metrics_plan.start(loop, producer)
            r.snapshot_observers.append(exporter.update)
            exporters.append(exporter)
        lines = [f"metrics on {exporter.address}" for exporter in exporters]
        lines += start_outputs(r, info, stream_plan, recorder, publishers)
        if out is not None and announce(listeners, loop.backend, out, err, lines) and status:
            status.attach(loop)

    try:
        run_until_signalled(runner, on_ready, before_stop=close_stream)
    finally:
        close_ports(exporters, metrics_plan, publishers, stream_plan)
        close_recording(recorder, served=not failure)
    if failure:
        print(f"loopmon serve: {failure[0]}", file=err, flush=True)
        return 2
    if runner.error:
        print(f"loopmon serve: the loop died: {runner.error.splitlines()[-1]}", file=err)
        return 1
    return 0


def close_ports(
    exporters: list[Any],
    metrics_plan: metrics_options.Plan | None,
    publishers: list[Publisher],
    stream_plan: stream_options.Plan | None,
) -> None:
    """The loop is closed: close the metrics and telemetry ports and their connections, and
    remove the token file."""
    for exporter in exporters:
        exporter.close(detach=False)
    if metrics_plan is not None and not exporters:
        metrics_plan.close()
    for publisher in publishers:
        # Still open when the loop stopped by itself (it died): close the sockets only.
        publisher.close("the producer's loop stopped", detach=False)
    if stream_plan is not None:
        stream_plan.close()


def prepare(
    args: argparse.Namespace, err: TextIO | None = None
) -> tuple[LoopRunner, metrics_options.Plan | None, stream_options.Plan | None, Recorder | None]:
    """The runner, the metrics and telemetry ports bound and the recording file created
    before the loop starts: a bad address or a name taken is one line and exit 2, never a
    server that half started. Raises ``Refused``, ``MetricsError``, ``TelemetryError`` or
    ``RecordingError`` with nothing left open."""
    metrics_plan: metrics_options.Plan | None = None
    stream_plan: stream_options.Plan | None = None
    try:
        hz = telemetry_hz(args)
        metrics_plan = metrics_options.prepare(args)
        if metrics_plan is not None and hz <= 0:
            if getattr(args, "telemetry_hz", None) is not None:
                raise Refused("--metrics needs telemetry (--telemetry-hz > 0)")
            hz = STATUS_HZ  # --quiet: snapshots for the collector only
        stream_plan = stream_options.prepare(
            getattr(args, "telemetry", None),
            allow_remote=getattr(args, "allow_remote", False),
            max_consumers=getattr(args, "max_consumers", stream_options.MAX_CONSUMERS),
        )
        runner = make_runner(args, hz)
        try:
            recorder = open_recorder(args, producer_info(runner), err)
        except BaseException:
            runner.mailbox.close()
            raise
        return runner, metrics_plan, stream_plan, recorder
    except BaseException:
        if metrics_plan is not None:
            metrics_plan.close()
        if stream_plan is not None:
            stream_plan.close()
        raise


def producer_info(r: LoopRunner) -> ProducerInfo:
    """Who this producer is, for the stream's hello and the recording's header."""
    return ProducerInfo(
        kind="serve",
        program="loopmon serve",
        pid=os.getpid(),
        backend=r.backend,
        session=r.session,
        started_at=time.time(),
        commands=STREAM_COMMANDS,
        measures=telemetry.MEASURES,
        version=__version__,
    )


def start_outputs(
    r: LoopRunner,
    info: ProducerInfo,
    stream_plan: stream_options.Plan | None,
    recorder: Recorder | None,
    publishers: list[Publisher],
) -> list[str]:
    """On the loop thread: the publisher (added to ``publishers``) and the recorder fed;
    the lines that announce them."""
    lines = []
    if stream_plan is not None:
        publisher = start_stream(stream_plan, r, info)
        publishers.append(publisher)
        lines.append(f"telemetry on {publisher.address_text}")
        lines.append(f"token file {stream_plan.token_file}")
    if recorder is not None:
        feed_recorder(recorder, r, publishers[0] if publishers else None)
        lines.append(f"recording to {recorder.path}")
    return lines


def start_stream(plan: stream_options.Plan, r: LoopRunner, info: ProducerInfo) -> Publisher:
    """The publisher on the runner's loop (its thread), fed every snapshot."""
    loop, server = r.loop, r.server
    assert loop is not None and server is not None
    info = replace(info, backend=loop.backend)
    publisher = Publisher(
        IOLoopReactor(loop),
        info,
        plan.token,
        sock=plan.sock,
        commands=echo_commands(server),
        max_consumers=plan.max_consumers,
    )
    publisher.start()
    r.snapshot_observers.append(publisher.publish)
    return publisher


def telemetry_hz(args: argparse.Namespace) -> float:
    """Snapshots a second for these options; ``Refused`` for options that cannot work."""
    if args.low_water > args.high_water:
        raise Refused(
            f"--low-water ({args.low_water}) must not exceed --high-water ({args.high_water})"
        )
    if args.high_water <= 0:
        raise Refused("--high-water must be positive")
    refusal = record_refusal(args)
    if refusal is not None:
        raise Refused(refusal)
    hz: float | None = getattr(args, "telemetry_hz", None)
    record_hz: float | None = getattr(args, "record_hz", None)
    recording = getattr(args, "record", None) is not None
    if hz is not None and record_hz is not None:
        raise Refused("--record-hz or --telemetry-hz, not both: one rate serves both")
    if hz is None and record_hz is not None:
        hz = record_hz
    elif hz is None:
        # A snapshot nobody reads is pure cost to the echo: build only what the line needs.
        if getattr(args, "telemetry", None) is not None or recording:
            hz = STREAM_HZ
        else:
            hz = 0.0 if args.quiet else STATUS_HZ
    elif hz <= 0 and getattr(args, "telemetry", None) is not None:
        raise Refused("--telemetry needs snapshots (--telemetry-hz > 0)")
    elif hz <= 0 and recording:
        raise Refused("--record needs snapshots (--telemetry-hz > 0)")
    if not 0 <= hz <= MAX_TELEMETRY_HZ:
        raise Refused(f"--telemetry-hz must be 0 to {MAX_TELEMETRY_HZ:g}")
    if hz <= 0 and not args.quiet:
        raise Refused("the status line needs telemetry (--telemetry-hz > 0)")
    return hz


def make_runner(args: argparse.Namespace, hz: float) -> LoopRunner:
    raise_fd_limit(args.max_connections + FD_HEADROOM)
    try:
        return LoopRunner(
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
        raise Refused(str(exc)) from None


def announce(
    listeners: list[Listener],
    backend: str,
    out: TextIO,
    err: TextIO | None,
    more: Sequence[str] = (),
) -> bool:
    """``listening on ...`` for each listener, then ``more`` lines (the other ports: metrics,
    telemetry); False when stdout cannot be written."""
    try:
        for listener in listeners:
            print(f"listening on {listener.address} (backend {backend})", file=out)
        for line in more:
            print(line, file=out)
        out.flush()
    except (OSError, ValueError) as exc:
        # A full disk or a closed pipe: the echo does not need stdout, so keep serving.
        print(f"loopmon serve: cannot write to stdout ({exc}); serving silently", file=err)
        return False
    return True


def run_until_signalled(
    runner: LoopRunner,
    on_ready: Callable[[LoopRunner], None],
    before_stop: Callable[[], None] | None = None,
) -> None:
    """Run the loop on this thread until SIGINT or SIGTERM (or the loop stops itself);
    ``before_stop`` runs on the loop thread when a signal stops it, before it stops."""

    def stop() -> None:
        if before_stop is not None:
            try:
                before_stop()
            except Exception:
                logging.getLogger("loopmon.serve").exception("closing before the stop failed")
        runner.stop_from_loop()

    def on_signal(signum: int, frame: Any) -> None:
        loop = runner.loop
        if loop is not None:
            loop.add_callback_from_signal(stop)

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
