"""The ``loopmon`` command: the window by default; ``serve``, ``load`` and ``bench`` headless.

Each subcommand is a module of this package that owns its options (``add_arguments``) and its
work (``run(args)``), composing the layers below it; ``args`` holds what they share. This module
only routes. The window's module imports the GUI lazily, so the headless commands never load Qt
and run where the ``gui`` extra is not installed. A new subcommand (replay) is a
module here and a line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from loopmon import __version__
from loopmon.netaddr import DEFAULT_PORT

__all__ = ["COMMANDS", "build_parser", "main"]

# (name, help): the order --help lists them in; each name is a module of this package.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("serve", "run the echo server headless, with a status line"),
    ("load", "drive an echo server with checked load"),
    ("bench", "benchmark loopmon against asyncio and friends"),
    ("attach", "watch a producer's telemetry stream (serve --telemetry, run --telemetry)"),
    ("run", "run a Python program (asyncio, Tornado 6, loopmon's loop) with its loops watched"),
    ("replay", "replay a recording in the window, or print it with --json"),
    ("gui", "open the monitor window (the default)"),
)


def _module(name: str) -> ModuleType:
    # Explicit imports (not importlib), so the layer contract sees every one of them.
    from loopmon.cli import attach, bench, load, replay, run, serve, window

    modules: dict[str, ModuleType] = {
        "serve": serve,
        "attach": attach,
        "load": load,
        "bench": bench,
        "run": run,
        "replay": replay,
        "gui": window,
    }
    return modules[name]


def build_parser() -> argparse.ArgumentParser:
    from loopmon.cli import window

    parser = argparse.ArgumentParser(
        prog="loopmon",
        description="Watch a readiness-based event loop work. With no subcommand, opens the "
        f"monitor window on an embedded echo server (127.0.0.1:{DEFAULT_PORT}).",
    )
    parser.add_argument("--version", action="version", version=f"loopmon {__version__}")
    window.add_arguments(parser)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS:
        sub = subs.add_parser(name, help=help_text)
        if name == "gui":
            window.add_arguments(sub, inherit=True)
        else:
            _module(name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.port is None:
        args.port = [DEFAULT_PORT]
    code: int = _module(args.command or "gui").run(args)
    if code < 0:
        # ``run``'s program died of a signal it did not handle: die of it too, so the shell
        # sees what it would have seen without loopmon.
        from loopmon.cli.run import exit_with

        exit_with(code)
    return code
