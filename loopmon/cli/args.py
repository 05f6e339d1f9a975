"""What the subcommands share: argparse types (ports, counts, hosts, byte counts), the options
the window and ``serve`` both take, and (from ``loopmon.fdlimit``, where the bench can reach
it too) the descriptor-limit raiser with its headroom.

Every type raises ``argparse.ArgumentTypeError`` with the value and what is wrong with it, so a
typo is one usage line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math

from loopmon.fdlimit import FD_HEADROOM, raise_fd_limit
from loopmon.netaddr import DEFAULT_HOST, DEFAULT_PORT, host_address

__all__ = [
    "FD_HEADROOM",
    "add_record_arguments",
    "add_server_arguments",
    "byte_count",
    "count",
    "host_address",
    "port_number",
    "positive_float",
    "positive_int",
    "raise_fd_limit",
]


def port_number(text: str) -> int:
    """A TCP port, 0-65535: 0 asks the kernel for a free one when listening (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        why = "must not be negative" if least == 0 else f"must be at least {least}"
        raise argparse.ArgumentTypeError(f"{why}: {value}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    return _whole_number(text, 1)


def count(text: str) -> int:
    """A whole number that may be zero (argparse type)."""
    return _whole_number(text, 0)


def positive_float(text: str) -> float:
    """A finite number of seconds above zero (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def byte_count(text: str) -> int:
    """A byte count, with an optional K/M/G suffix (powers of 1024: 1M, 256K, 1MiB)."""
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


def add_server_arguments(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """Options shared by the window and ``serve``: what to listen on and how to echo.
    ``inherit``: a subcommand repeating the top-level options, whose defaults must not
    overwrite what was given before the subcommand's name."""
    from loopmon.pollers import BACKENDS

    def default(value: object) -> object:
        return argparse.SUPPRESS if inherit else value

    parser.add_argument(
        "--host",
        type=host_address,
        default=default(DEFAULT_HOST),
        help=f"address to listen on ({DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        action="append",
        default=default(None),
        help=f"port to listen on; repeat for several listeners (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default(None),
        help="poller (default: best available)",
    )
    parser.add_argument(
        "--strategy",
        choices=("seed", "direct"),
        default=default("direct"),
        help="echo strategy (direct)",
    )


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """``--record FILE``, ``--force`` and ``--record-max SIZE`` (serve and attach)."""
    group = parser.add_argument_group("recording (loopmon replay; docs/recording.md)")
    group.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="write every snapshot to FILE, a new file (mode 0600)",
    )
    group.add_argument("--force", action="store_true", help="with --record: replace FILE")
    group.add_argument(
        "--record-max",
        type=byte_count,
        default=None,
        metavar="SIZE",
        help="with --record: stop recording at this size (K/M/G suffixes)",
    )


def record_refusal(args: argparse.Namespace) -> str | None:
    """What is wrong with the recording options, if anything."""
    if getattr(args, "record", None) is None:
        for name in ("force", "record_max", "record_hz"):
            if getattr(args, name, None) not in (None, False):
                return f"--{name.replace('_', '-')} needs --record FILE"
    elif args.record_max is not None and args.record_max <= 0:
        return "--record-max must be positive"
    return None
