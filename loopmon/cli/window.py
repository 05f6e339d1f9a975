"""``loopmon`` (or ``loopmon gui``): the monitor window on an embedded echo server.

Checks what the window needs before importing any of it: a display, and the ``gui`` extra
(PySide6, pyqtgraph, numpy). Without either it says in one line what to do and exits 2, so a
headless machine or a core install gets advice, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shlex
import shutil
import socket
import sys
import urllib.parse
from pathlib import Path

from loopmon.cli.args import add_server_arguments

__all__ = [
    "GUI_PACKAGES",
    "NO_DISPLAY",
    "NO_GUI",
    "NO_X_SERVER",
    "add_arguments",
    "has_display",
    "install_command",
    "missing",
    "run",
    "this_command",
    "unreachable_display",
    "x_server_answers",
]

# What the gui extra installs (pyproject.toml): the window imports all three.
GUI_PACKAGES = ("PySide6", "pyqtgraph", "numpy")
NO_GUI = (
    "loopmon: the window needs the gui extra ({missing} not installed): `{install}`; "
    "serve, load and bench run without it."
)

NO_DISPLAY = (
    "loopmon: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run the window under a "
    "virtual display with `xvfb-run -a {command}` (apt-get install xvfb), or run headless with "
    "`{command} serve`."
)

NO_X_SERVER = (
    "loopmon: no X server answers at DISPLAY={display} (it may have stopped). Run the window "
    "under a virtual display with `xvfb-run -a {command}` (apt-get install xvfb), or run "
    "headless with `{command} serve`."
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


def install_command() -> str:
    """How to add the gui extra to this very install, as a shell would take it: this
    interpreter's pip (a venv need not be activated, and a bare ``pip`` may be another
    Python's), and the checkout or folder loopmon was installed from when pip recorded one
    (``direct_url.json``), else the package's name."""
    source = "loopmon"
    try:
        recorded = importlib.metadata.distribution("loopmon").read_text("direct_url.json")
        url = json.loads(recorded or "{}").get("url", "")
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError):
        url = ""
    if url.startswith("file://"):
        folder = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        if (folder / "pyproject.toml").is_file():
            source = str(folder)
    return f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(source + '[gui]')}"


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def x_server_answers(display: str, timeout_s: float = 1.0) -> bool:
    """Whether an X server takes a connection at ``display`` (``[host]:N[.screen]``) where Qt's
    xcb plugin would look: a local display's Unix socket (the file, or the abstract one Xorg
    and Xvfb also open), a remote one's TCP port 6000 + N. A form it does not know: True (Qt
    tries). Without this, a DISPLAY left from a stopped server made Qt abort with a misleading
    message about libxcb-cursor0."""
    host, sep, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not sep or not number.isdigit() or "/" in host:
        return True
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        for address in (path, "\0" + path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                try:
                    sock.connect(address)
                except OSError:
                    continue
                return True
        return False
    try:
        with socket.create_connection((host.strip("[]"), 6000 + int(number)), timeout_s):
            return True
    except OSError:
        return False


def unreachable_display() -> str | None:
    """DISPLAY, when Qt would use it (X11, no Wayland, no other platform chosen) and no X server
    answers there; else None."""
    display = os.environ.get("DISPLAY", "")
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if not sys.platform.startswith("linux") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    if not display or platform not in ("", "xcb"):
        return None
    return None if x_server_answers(display) else display


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
        print(NO_GUI.format(missing=", ".join(absent), install=install_command()), file=sys.stderr)
        return 2
    if not has_display():
        print(NO_DISPLAY.format(command=this_command()), file=sys.stderr)
        return 2
    display = unreachable_display()
    if display is not None:
        print(NO_X_SERVER.format(display=display, command=this_command()), file=sys.stderr)
        return 2
    from loopmon.gui import app

    return app.main(args)
