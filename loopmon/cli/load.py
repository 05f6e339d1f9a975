"""``loopmon load``: the command around the load generator (``loopmon.load``): its options, the
checks before a run (the target is this machine, the descriptor limit, select()'s FD_SETSIZE),
signals, and the summary as text or JSON.

Exit status: 1 if any byte mismatched, or if any connection failed or errored (the summary
and one line on stderr say how many); 2 on a usage error or when no connection could be made at
all; else 0. Stopping a run with SIGINT or SIGTERM is not a failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from typing import Any, TextIO

from loopmon import pollers
from loopmon.cli.args import (
    FD_HEADROOM,
    port_number,
    positive_float,
    positive_int,
    raise_fd_limit,
)
from loopmon.ioloop import IOLoop
from loopmon.load.generator import (
    DEFAULT_INFLIGHT,
    DEFAULT_READ_RATE,
    MAX_SIZE,
    MODES,
    LoadGenerator,
)
from loopmon.netaddr import DEFAULT_HOST, DEFAULT_PORT, describe_error, format_address, host_address
from loopmon.pollers.select import FD_SETSIZE
from loopmon.units import byte_rate

__all__ = ["add_arguments", "format_progress", "format_summary", "run"]


def message_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"at most {MAX_SIZE:,} bytes (64 MiB): {value:,}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help="server address (%(default)s)")
    parser.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help="server port (%(default)s)"
    )
    parser.add_argument(
        "--clients", type=positive_int, default=10, help="connections (%(default)s)"
    )
    parser.add_argument(
        "--size", type=message_size, default=1024, help="message size in bytes (%(default)s)"
    )
    parser.add_argument(
        "--duration", type=positive_float, default=5.0, help="seconds to run (%(default)s)"
    )
    parser.add_argument("--mode", choices=MODES, default="rr", help="traffic (%(default)s)")
    parser.add_argument(
        "--inflight",
        type=positive_int,
        default=None,
        help=f"flood only: bytes sent but not yet echoed, per client ({DEFAULT_INFLIGHT})",
    )
    parser.add_argument(
        "--read-rate",
        type=positive_int,
        default=None,
        help=f"slow only: bytes read per second, per client ({DEFAULT_READ_RATE})",
    )
    parser.add_argument(
        "--backend",
        choices=pollers.BACKENDS,
        default=None,
        help="poller for the client's own loop (default: best available)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    parser.add_argument(
        "--progress",
        choices=("auto", "none", "jsonl"),
        default="auto",
        help="auto: a progress line on a terminal; jsonl: a JSON object per second on stderr",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a target that is not this machine",
    )


def resolve(host: str, port: int) -> tuple[int, Any]:
    """(family, sockaddr) of ``host:port``; OSError if it does not resolve."""
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def is_this_machine(family: int, sockaddr: Any) -> bool:
    """Loopback, unspecified, or one of this machine's own addresses (it can bind there)."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
    except ValueError:
        return False
    if addr.is_loopback or addr.is_unspecified:
        return True
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((sockaddr[0], 0, *sockaddr[2:]))
    except OSError:
        return False
    return True


def format_summary(s: dict[str, Any]) -> str:
    if s["latency_p50_ms"] is None:
        latency = "latency n/a (no round trip completed)"
    else:
        latency = (
            f"latency p50 {s['latency_p50_ms']:.3f} ms, p99 {s['latency_p99_ms']:.3f} ms, "
            f"max {s['latency_max_ms']:.3f} ms"
        )
    held = f"{s['connections_held']:,} of {_count(s['clients'], 'connection')}"
    return (
        f"{s['mode']}: {_count(s['clients'], 'client')} x {s['size']:,} B for "
        f"{s['duration_s']:.1f} s ({s['backend']})\n"
        f"  {_count(s['round_trips'], 'round trip')}, {s['round_trips_per_s']:,.0f}/s, "
        f"{byte_rate(s['mb_per_s'] * 1e6)} echoed\n"
        f"  {latency}\n"
        f"  {held} open at the end; "
        f"sent {s['bytes_sent']:,} B, received {s['bytes_received']:,} B\n"
        f"  {_count(s['errors'], 'error')}, {_count(s['mismatches'], 'mismatch', 'mismatches')}, "
        f"{_count(s['connect_failures'], 'connect failure')}"
    )


def _count(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 client', '2 clients': the window's ``wording.plural``, which this Qt-free command
    cannot import without the window's package."""
    return f"{count:,} {noun if count == 1 else (nouns or noun + 's')}"


def format_progress(p: dict[str, Any]) -> str:
    return (
        f"{p['elapsed_s']:5.1f} s  {p['round_trips_per_s']:>10,.0f} rt/s  "
        f"{byte_rate(p['mb_per_s'] * 1e6):>11}  {p['open_connections']} open  "
        f"{p['errors']} errors  {p['mismatches']} mismatches"
    )


class Refused(Exception):
    """A run that cannot start: its message is one line on stderr, and the exit status 2."""


def run(
    args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        check_options(args)
        family, sockaddr, target = resolve_target(args, err)
        loop = open_loop(args)
    except Refused as exc:
        print(f"loopmon load: {exc}", file=err)
        return 2
    progress = args.progress
    tty_line = progress == "auto" and err.isatty()

    def show(p: dict[str, Any]) -> None:
        if progress == "jsonl":
            print(json.dumps(p), file=err, flush=True)
        else:
            print("\r" + format_progress(p), end="", file=err, flush=True)

    gen = LoadGenerator(
        loop,
        family,
        sockaddr,
        mode=args.mode,
        clients=args.clients,
        size=args.size,
        duration=args.duration,
        inflight=args.inflight or DEFAULT_INFLIGHT,
        read_rate=args.read_rate or DEFAULT_READ_RATE,
        on_progress=show if progress == "jsonl" or tty_line else None,
    )
    try:
        drive(loop, gen)
    except (OSError, ValueError) as exc:
        # The loop's own setup failed (its signal pipe, say): nothing ran.
        print(f"loopmon load: cannot run the client's loop: {describe_error(exc)}", file=err)
        return 2
    if tty_line:
        print(file=err)
    return report(args, gen, target, out, err)


def check_options(args: argparse.Namespace) -> None:
    for option, value, mode in (
        ("--inflight", args.inflight, "flood"),
        ("--read-rate", args.read_rate, "slow"),
    ):
        if value is not None and args.mode != mode:
            raise Refused(f"{option} applies to --mode {mode} only")


def resolve_target(args: argparse.Namespace, err: TextIO) -> tuple[int, Any, str]:
    """(family, sockaddr, HOST:PORT) of the server to load; ``Refused`` unless it is this
    machine or --allow-remote says another may be loaded (then a warning on ``err``)."""
    port = args.port[-1] if isinstance(args.port, list) else args.port
    if port == 0:
        raise Refused("--port 0 names no server (a listener's port is 1-65535)")
    host = host_address(args.host)  # [::1], as in a URL or the listeners' own addresses
    try:
        family, sockaddr = resolve(host, port)
    except OSError as exc:
        raise Refused(f"cannot resolve {host}: {describe_error(exc)}") from None
    if not is_this_machine(family, sockaddr):
        if not args.allow_remote:
            raise Refused(
                f"{host} is not this machine; refusing to load another host "
                "(pass --allow-remote to do it anyway)"
            )
        print(f"loopmon load: warning: loading {host}, another machine", file=err)
    return family, sockaddr, format_address(host, port)


def open_loop(args: argparse.Namespace) -> IOLoop:
    """The client's loop, once the descriptors --clients needs are there to be had."""
    need = args.clients + FD_HEADROOM
    limit = raise_fd_limit(need)
    if limit is not None and need > limit:
        raise Refused(
            f"--clients {args.clients} needs about {need:,} open files; this process may "
            f"have {limit:,} (ulimit -n, up to ulimit -Hn)"
        )
    try:
        loop = IOLoop(backend=args.backend, make_current=False)
    except (ValueError, RuntimeError) as exc:
        raise Refused(str(exc)) from None
    if loop.backend == "select" and need > FD_SETSIZE:
        # Every connection is an fd, and select() cannot watch one numbered FD_SETSIZE or more.
        loop.close()
        raise Refused(
            f"--backend select watches fds below {FD_SETSIZE} only: at most "
            f"{FD_SETSIZE - FD_HEADROOM} clients (use epoll, kqueue or poll for more)"
        )
    return loop


def drive(loop: IOLoop, gen: LoadGenerator) -> None:
    """Run ``gen`` on ``loop`` to its end, SIGINT and SIGTERM ending it early; closes the loop."""

    def on_signal(signum: int, frame: Any) -> None:
        loop.add_callback_from_signal(gen.finish, signal.Signals(signum).name)

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass
    try:
        gen.start()
        if not gen.finished:
            loop.start()
        gen.finish()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        loop.close()


def report(
    args: argparse.Namespace, gen: LoadGenerator, target: str, out: TextIO, err: TextIO
) -> int:
    """The summary on ``out``, problems on ``err``, and the exit status."""
    summary = gen.summary()
    if gen.connections_made == 0:
        reason = gen.exit_reason if gen.exit_reason.startswith("cannot") else "no connection made"
        print(f"loopmon load: {target}: {reason.removeprefix('cannot connect: ')}", file=err)
        if args.json:
            print(json.dumps(summary), file=out, flush=True)
        return 2
    if args.json:
        print(json.dumps(summary), file=out, flush=True)
    else:
        print(f"target {target}", file=out)
        print(format_summary(summary), file=out, flush=True)
    if gen.reasons:
        top = ", ".join(f"{why} x{n}" for why, n in gen.reasons.most_common(5))
        print(f"loopmon load: problems: {top}", file=err)
    if gen.mismatches:
        print(f"loopmon load: MISMATCH: {gen.first_mismatch}", file=err)
        return 1
    if gen.errors or gen.connect_failures:
        # Scripts read the status: a run that lost connections did not do what was asked.
        print(
            f"loopmon load: failed: {gen.errors:,} errors, "
            f"{gen.connect_failures:,} connect failures",
            file=err,
        )
        return 1
    return 0
