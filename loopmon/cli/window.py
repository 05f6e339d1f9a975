"""``loopmon`` (or ``loopmon gui``): the monitor window on an embedded echo server.

Checks what the window needs before importing any of it: a display, and the ``gui`` extra
(PySide6, pyqtgraph, numpy). Without either it says in one line what to do and exits 2, so a
headless machine or a core install gets advice, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path

from loopmon.cli.args import add_server_arguments

__all__ = [
    "GUI_PACKAGES",
    "NO_DISPLAY",
    "NO_GUI",
    "add_arguments",
    "has_display",
    "missing",
    "run",
    "this_command",
]

# What the gui extra installs (pyproject.toml): the window imports all three.
GUI_PACKAGES = ("PySide6", "pyqtgraph", "numpy")
NO_GUI = (
    "loopmon: the window needs the gui extra ({missing} not installed): "
    "pip install 'loopmon[gui]' (from a checkout: pip install '.[gui]'); "
    "serve, load and bench run without it."
)

NO_DISPLAY = (
    "loopmon: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run the window under a "
    "virtual display with `xvfb-run -a {command}` (apt-get install xvfb), or run headless with "
    "`{command} serve`."
)


def add_arguments(parser: argparse.ArgumentParser, *, inherit: bool = False) -> None:
    """The server's options and the window's own (``inherit``: a subcommand repeating the
    top-level options, whose defaults must not overwrite what was given before its name)."""
    add_server_arguments(parser, inherit=inherit)
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


def this_command() -> str:
    """How to run loopmon again as it was run now, as a shell would take it: ``loopmon`` when
    that is on PATH, else the script's own path (``.venv/bin/loopmon`` after the README's Quick
    start), or ``python -m loopmon`` with this interpreter."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name in ("__main__.py", "-c", "-m"):
        return f"{shlex.quote(sys.executable)} -m loopmon"
    on_path = shutil.which(script.name)
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return script.name
    try:
        shown = script.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = script.resolve()
    text = str(shown)
    return shlex.quote(text if "/" in text else f"./{text}")


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def missing(packages: tuple[str, ...] = GUI_PACKAGES) -> list[str]:
    """Those of ``packages`` that cannot be imported here (looked up, not imported)."""
    absent = []
    for name in packages:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(name)
    return absent


def run(args: argparse.Namespace) -> int:
    absent = missing()
    if absent:
        print(NO_GUI.format(missing=", ".join(absent)), file=sys.stderr)
        return 2
    if not has_display():
        print(NO_DISPLAY.format(command=this_command()), file=sys.stderr)
        return 2
    from loopmon.gui import app

    return app.main(args)
