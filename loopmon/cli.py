"""The ``loopmon`` command: the window by default, ``serve``, ``load`` and ``bench`` headless.

Subcommands own their options (``add_arguments``) and their work (``run``); this module only
routes, and imports the GUI lazily so the headless commands never load Qt.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from loopmon import __version__

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10000
NO_DISPLAY = (
    "loopmon: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run the window under a "
    "virtual display with `xvfb-run -a loopmon`, or run headless with `loopmon serve`."
)


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


def add_window_arguments(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """Options of the window alone (``inherit`` as for ``add_server_arguments``)."""
    parser.add_argument(
        "--history-mb",
        type=history_mb,
        default=argparse.SUPPRESS if inherit else 300,
        help="memory the window's history may use, in MiB; older history is thinned, then "
        "dropped (300)",
    )


def history_mb(text: str) -> int:
    try:
        mb = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of MiB: {text!r}") from None
    if mb < 1:
        raise argparse.ArgumentTypeError(f"at least 1 MiB: {mb}")
    return mb


def host_address(text: str) -> str:
    """A host as typed: ``[::1]`` (as in a URL, and as loopmon prints its listeners) is ::1."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    from loopmon import bench, loadgen, serve

    parser = argparse.ArgumentParser(
        prog="loopmon",
        description="Watch a readiness-based event loop work. With no subcommand, opens the "
        "monitor window on an embedded echo server (127.0.0.1:10000).",
    )
    parser.add_argument("--version", action="version", version=f"loopmon {__version__}")
    add_server_arguments(parser)
    add_window_arguments(parser)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_arguments(
        subs.add_parser("serve", help="run the echo server headless, with a status line")
    )
    loadgen.add_arguments(subs.add_parser("load", help="drive an echo server with checked load"))
    bench.add_arguments(
        subs.add_parser("bench", help="benchmark loopmon against asyncio and friends")
    )
    gui = subs.add_parser("gui", help="open the monitor window (the default)")
    add_server_arguments(gui, inherit=True)
    add_window_arguments(gui, inherit=True)
    return parser


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is None:
        args.port = [DEFAULT_PORT]
    if args.command == "serve":
        from loopmon import serve

        return serve.run(args)
    if args.command == "load":
        from loopmon import loadgen

        return loadgen.run(args)
    if args.command == "bench":
        from loopmon import bench

        return bench.run(args)
    if not has_display():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    from loopmon.gui import app

    return app.main(args)
