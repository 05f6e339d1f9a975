"""The ``loopmon`` command's own surface: version, help, and no display."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loopmon import __version__
from loopmon.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopmon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"loopmon {__version__}"


def test_help_lists_the_subcommands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for name in ("serve", "load", "bench", "gui"):
        assert name in proc.stdout


def test_no_display_is_one_clear_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    proc = run(env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "xvfb-run" in lines[0] and "loopmon serve" in lines[0]
    # What it suggests runs as written (here, `python -m loopmon`, as this test started it).
    suggested = lines[0].split("`xvfb-run -a ")[1].split("`")[0]
    version = subprocess.run(
        [*shlex.split(suggested), "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("loopmon ")
    assert "Traceback" not in proc.stderr
    # Nothing of Qt was even loaded to find that out.
    assert proc.stdout == ""


def test_bad_port_is_a_usage_error() -> None:
    proc = run("serve", "--port", "70000")
    assert proc.returncode == 2
    assert "port out of range" in proc.stderr


def test_options_before_the_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--port", "5", "--backend", "poll", "gui"])
    assert (args.port, args.backend) == ([5], "poll")
    args = build_parser().parse_args(["gui", "--port", "6"])
    assert args.port == [6]


def test_a_bracketed_host_is_the_address_inside() -> None:
    # As in a URL, and as loopmon prints its IPv6 listeners ([::1]:10000).
    parser = build_parser()
    assert parser.parse_args(["serve", "--host", "[::1]"]).host == "::1"
    assert parser.parse_args(["--host", "[::1]"]).host == "::1"
    assert parser.parse_args(["serve", "--host", "::1"]).host == "::1"
    assert parser.parse_args(["serve", "--host", "localhost"]).host == "localhost"


# A sitecustomize that hides the gui extra: its packages look uninstalled to this interpreter.
_HIDE_GUI = """
import importlib.abc, sys

class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "numpy"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
"""


def test_the_window_without_the_gui_extra_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_HIDE_GUI)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    check = subprocess.run(
        [sys.executable, "-c", "import PySide6"], env=env, capture_output=True, check=False
    )
    assert check.returncode != 0, "the blocker did not hide PySide6"
    proc = run(env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "PySide6, pyqtgraph, numpy" in lines[0]
    # What it suggests works as written in a venv that is not activated: this interpreter's
    # pip (a bare `pip` was another Python's), and the checkout loopmon was installed from
    # (pip's direct_url.json; `loopmon[gui]` would be looked for in the package index).
    suggested = shlex.split(lines[0].split("`")[1])
    assert suggested[:4] == [sys.executable, "-m", "pip", "install"]
    assert suggested[4] == f"{ROOT}[gui]"
    # The headless commands do not need it.
    assert run("serve", "--help", env=env).returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 sockets as on Linux")
def test_a_display_no_x_server_answers_is_one_clear_line_and_exit_2() -> None:
    # DISPLAY left over from an X server that is gone: Qt aborted (exit 134) blaming a missing
    # libxcb-cursor0 that was installed.
    pytest.importorskip("PySide6")
    n = next(
        n
        for n in range(300, 1000)
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists()
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = f":{n}"
    proc = run(env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"DISPLAY=:{n}" in lines[0] and "xvfb-run -a" in lines[0] and "serve" in lines[0]


def test_the_no_display_advice_names_the_script_that_ran(tmp_path: Path) -> None:
    # After the README's Quick start, loopmon is .venv/bin/loopmon, not on PATH: the advice
    # must name that, or the command it suggests is "not found".
    script = Path(sys.executable).with_name("loopmon")
    if not script.exists():
        pytest.skip("no loopmon script next to this interpreter (not an installed venv)")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    env["PATH"] = "/usr/bin:/bin"  # the venv not activated
    proc = subprocess.run(
        [str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert f"`xvfb-run -a {script.resolve()}`" in proc.stderr


def test_loopmon_run_routes_to_the_program_with_its_argv_and_exit_status(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(
        "import asyncio, sys\n"
        "async def main():\n"
        "    print('argv', sys.argv[1:])\n"
        "    return 3\n"
        "sys.exit(asyncio.run(main()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "loopmon", "run", str(script), "a", "--port", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "argv ['a', '--port', '5']\n"


def test_loopmon_run_dies_of_the_signal_its_program_did_not_handle(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("raise KeyboardInterrupt\n")
    proc = subprocess.run(
        [sys.executable, "-m", "loopmon", "run", str(script)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGINT, proc.stderr


def test_history_mb_is_the_windows_option() -> None:

    assert build_parser().parse_args([]).history_mb == 300
    assert build_parser().parse_args(["--history-mb", "50", "gui"]).history_mb == 50
    assert build_parser().parse_args(["gui", "--history-mb", "64"]).history_mb == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--history-mb", "0"])
