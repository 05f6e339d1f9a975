"""``loopmon run [options] script.py [args...]`` (or ``-m module [args...]``): run a program as
``python script.py`` would, with every event loop it makes watched by ``loopmon.instrument``.

The same process, so the same ``sys.argv``, ``sys.path[0]``, ``__main__``, signals and exit
status; loopmon writes nothing to stdout, and to stderr only lines that begin with
``loopmon:``. An exception the program does not catch is printed by ``sys.excepthook`` without
loopmon's frames, as Python would print it (``run_program`` runs it).

The ``loopmon`` command routes ``run`` here through ``add_arguments`` and ``run``;
``python -m loopmon.cli.run`` is the same command on its own (the tests use it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

import loopmon.instrument
from loopmon.cli.run_program import run_program
from loopmon.instrument import Instrument
from loopmon.instrument.dump import to_json
from loopmon.metrics import options as metrics_options
from loopmon.snapshot import Snapshot
from loopmon.stream import options as stream_options
from loopmon.stream import tokens
from loopmon.stream.options import TelemetryError
from loopmon.stream.pump import PublisherPump

if TYPE_CHECKING:
    from loopmon.metrics.thread import ExporterThread

DEFAULT_TELEMETRY = "127.0.0.1:0"


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--telemetry",
        metavar="HOST:PORT",
        nargs="?",
        const=DEFAULT_TELEMETRY,
        default=None,
        help=f"stream snapshots on this address ({DEFAULT_TELEMETRY} when given bare)",
    )
    parser.add_argument(
        "--window",
        action="store_true",
        help="open the window attached to the stream (loopmon attach, a process of its own; "
        "implies --telemetry)",
    )
    parser.add_argument("--record", metavar="FILE", help="record the stream to FILE")
    parser.add_argument(
        "--stall-threshold",
        type=positive_float,
        default=0.1,
        metavar="SECONDS",
        help="a loop busy this long without polling is a stall (%(default)s)",
    )
    parser.add_argument(
        "--stall-watch",
        choices=("signal", "thread", "off"),
        default="signal",
        help="signal: a SIGALRM timer for a loop on the main thread when the program leaves "
        "SIGALRM free, else a thread (the default); thread: always a thread (~5 %% of a "
        "small round trip); off: stalls are counted, without a stack",
    )
    parser.add_argument(
        "--snapshot-hz",
        type=positive_float,
        default=25.0,
        metavar="HZ",
        help="snapshots a second for the stream and --dump-snapshots (%(default)s)",
    )
    parser.add_argument(
        "--dump-snapshots",
        metavar="FILE",
        help="debugging: write every snapshot to FILE as a JSON line ('-' for stderr, each "
        "line prefixed 'loopmon: ')",
    )
    parser.add_argument(
        "--build-snapshots",
        action="store_true",
        help="benchmarks: build snapshots at --snapshot-hz for no consumer (a stream's cost "
        "less its encoding)",
    )
    stream_options.add_arguments(parser, with_address=False)
    metrics_options.add_arguments(parser)
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE",
        help="run a library module as a script (the rest of the line is its arguments)",
    )
    parser.add_argument("program", nargs=argparse.REMAINDER, help="script.py [args...]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopmon run",
        description="Run a Python program with its event loops watched by loopmon.",
    )
    add_arguments(parser)
    return parser


# -- the stream (opened here before the program runs) ----------------------------------------


def open_stream(instrument: Instrument, args: argparse.Namespace, program: str) -> _Stream | None:
    """With ``--telemetry`` (or ``--window``, which needs it): the telemetry port, served from
    the program's loop at the instrument's ticks (``stream.pump`` says why not a thread), bound
    and announced on stderr before the program starts, and the window opened on it. Raises
    ``TelemetryError`` (or argparse's error for a malformed address) when the port cannot be
    used: the program does not run."""
    if args.telemetry is None and not args.window:
        return None
    plan = stream_options.prepare(
        stream_options.address(args.telemetry or DEFAULT_TELEMETRY),
        allow_remote=getattr(args, "allow_remote", False),
        max_consumers=args.max_consumers,
    )
    assert plan is not None
    pump = PublisherPump(
        plan.sock,
        instrument.producer_info(program),
        plan.token,
        max_consumers=plan.max_consumers,
        own=instrument.own,
        disown=instrument.disown,
    )
    pump.start()
    instrument.add_pump(pump.pump)
    instrument.say(f"loopmon: telemetry on {pump.address_text}")
    instrument.say(f"loopmon: token file {plan.token_file}")
    if args.window:
        open_window(instrument, pump.address_text, plan.token)
    return _Stream(pump, plan)


class _Stream:
    """The publisher and its plan (the token file), closed together at exit."""

    def __init__(self, pump: PublisherPump, plan: stream_options.Plan) -> None:
        self.pump = pump
        self.plan = plan
        self.publish = pump.publish
        self._pid = os.getpid()

    def close(self) -> None:
        if os.getpid() != self._pid:
            # A forked child of the program's that ran to its end: the port and the token
            # file are its parent's (the instrument closed the sockets in the child).
            return
        self.pump.close("the program exited")
        tokens.remove_token(self.plan.token_file)


def open_window(instrument: Instrument, address: str, token: bytes) -> None:
    """``loopmon attach`` on the stream, in a process of its own (a session of its own, so
    the terminal's Ctrl-C for the program leaves it open: the window may outlive the program;
    its output goes nowhere, so the program's stdout and stderr stay the program's)."""
    import subprocess

    from loopmon.cli import window

    absent = window.missing()
    if absent:
        instrument.say(window.NO_GUI.format(missing=", ".join(absent)))
        return
    if not window.has_display():
        instrument.say("loopmon: --window: no display found (DISPLAY and WAYLAND_DISPLAY unset)")
        return
    env = dict(os.environ, **{tokens.ENV_VAR: token.hex()})
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loopmon", "attach", address],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        instrument.say(f"loopmon: --window: cannot start the window: {exc}")
        return
    instrument.say(f"loopmon: the window is pid {proc.pid}")


def _dump_sink(target: str, instrument: Instrument) -> tuple[Callable[[Snapshot], None], IO[str]]:
    if target == "-":
        stream = sys.stderr

        def to_stderr(snapshot: Snapshot) -> None:
            stream.write("loopmon: " + to_json(snapshot) + "\n")
            stream.flush()

        return to_stderr, stream
    out = open(target, "w", encoding="utf-8")  # noqa: SIM115  # closed by main
    instrument.own(out)

    def to_file(snapshot: Snapshot) -> None:
        out.write(to_json(snapshot) + "\n")
        out.flush()

    return to_file, out


def program_of(args: argparse.Namespace) -> tuple[str | None, str | None, list[str], str]:
    """(script, module, its arguments, the name the stream gives it); ValueError with the
    line to print when the command line names no program that can run."""
    if args.module:
        return None, args.module[0], list(args.module[1:]), f"-m {args.module[0]}"
    if args.program:
        script = args.program[0]
        if not os.path.exists(script):
            raise ValueError(f"can't open file {script!r}: no such file")
        return script, None, list(args.program[1:]), os.path.basename(script)
    raise ValueError("run needs script.py or -m module")


def start_metrics(
    plan: metrics_options.Plan, instrument: Instrument, program: str
) -> ExporterThread:
    """/metrics on a thread of loopmon's own (``metrics.thread`` says why, and what crosses
    between it and the program's loop thread that builds the snapshots it is fed)."""
    metrics = plan.start_thread(
        instrument.producer_info(program),
        note=lambda line: instrument.say(f"loopmon: {line}"),
        own=instrument.own,
        disown=instrument.disown,
        own_loop=instrument.own_loop,
    )
    instrument.say(f"loopmon: metrics on {metrics.address}")
    return metrics


def bare_telemetry(args: argparse.Namespace) -> None:
    """``--telemetry script.py``: argparse gave the script to the optional address; an address
    always holds a colon, so a value without one is the program, and --telemetry was bare."""
    value = args.telemetry
    if value is not None and ":" not in value and not args.module:
        args.telemetry = DEFAULT_TELEMETRY
        args.program = [value, *(args.program or [])]


def _debug_sinks(
    args: argparse.Namespace, instrument: Instrument, sinks: list[Callable[[Snapshot], None]]
) -> IO[str] | None:
    """Append the dump's and the benchmarks' sinks; the dump file, if any."""
    dump_file: IO[str] | None = None
    if args.dump_snapshots:
        sink, dump_file = _dump_sink(args.dump_snapshots, instrument)
        sinks.append(sink)
    if args.record:
        instrument.say("loopmon: --record is not in this build yet; the program runs without it")
    if args.build_snapshots:
        sinks.append(lambda snapshot: None)
    return dump_file


def run(args: argparse.Namespace) -> int:
    bare_telemetry(args)
    try:
        script, module, program_args, name = program_of(args)
    except ValueError as exc:
        print(f"loopmon: {exc}", file=sys.stderr)
        return 2
    try:
        # Checked and bound before the program starts: a bad address, or no prometheus_client,
        # is one line and exit 2 with the program not run.
        metrics_plan = metrics_options.prepare(args)
    except metrics_options.MetricsError as exc:
        print(f"loopmon: {exc}", file=sys.stderr)
        return 2
    instrument = Instrument(stall_threshold=args.stall_threshold, stall_watch=args.stall_watch)
    loopmon.instrument._installed.append(instrument)
    try:
        stream = open_stream(instrument, args, name)
    except (argparse.ArgumentTypeError, TelemetryError) as exc:
        if metrics_plan is not None:
            metrics_plan.close()
        print(f"loopmon: {exc}", file=sys.stderr)
        return 2
    metrics = None if metrics_plan is None else start_metrics(metrics_plan, instrument, name)
    fed = (metrics.update if metrics else None, stream.publish if stream else None)
    sinks: list[Callable[[Snapshot], None]] = [sink for sink in fed if sink is not None]
    dump_file = _debug_sinks(args, instrument, sinks)
    for sink in sinks:
        instrument.start_periodic(sink, args.snapshot_hz)
    instrument.install()
    status = run_program(script, module, program_args)
    try:
        final = instrument.snapshot()  # the loops' last figures, the closes since the last
        for sink in sinks:
            sink(final)
    except Exception as exc:
        instrument.say(f"loopmon: the last snapshot failed: {exc!r}")
    finally:
        if metrics is not None:
            metrics.close()
        if stream is not None:
            stream.close()
        if dump_file is not None and dump_file is not sys.stderr:
            dump_file.close()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def exit_with(status: int) -> None:
    """Exit as the program would have: a negative status is a signal it did not handle
    (SIGINT's KeyboardInterrupt), so die of that signal, as Python does."""
    if status < 0:
        sys.stdout.flush()
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


if __name__ == "__main__":
    exit_with(main())
