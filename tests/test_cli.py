"""The ``loopmon`` command's own surface: version, help, and no display."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loopmon import __version__
from loopmon.cli import build_parser


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


def test_history_mb_is_the_windows_option() -> None:

    assert build_parser().parse_args([]).history_mb == 300
    assert build_parser().parse_args(["--history-mb", "50", "gui"]).history_mb == 50
    assert build_parser().parse_args(["gui", "--history-mb", "64"]).history_mb == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--history-mb", "0"])
