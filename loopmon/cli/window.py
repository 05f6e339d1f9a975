"""``loopmon`` (or ``loopmon gui``): the monitor window on an embedded echo server.

Checks what the window needs before importing any of it: a display, and the ``gui`` extra
(PySide6, pyqtgraph, numpy). Without either it says in one line what to do and exits 2, so a
headless machine or a core install gets advice, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from loopmon.cli.args import add_server_arguments

__all__ = ["NO_DISPLAY", "add_arguments", "has_display", "run"]

NO_DISPLAY = (
    "loopmon: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run the window under a "
    "virtual display with `xvfb-run -a loopmon`, or run headless with `loopmon serve`."
)


def add_arguments(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    add_server_arguments(parser, inherit=inherit)


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    if not has_display():
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    from loopmon.gui import app

    return app.main(args)
