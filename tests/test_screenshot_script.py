"""scripts/screenshot.sh as the README runs it: the window shot, the user's settings untouched."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshot.sh"
LOOPMON = Path(sys.executable).with_name("loopmon")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("Xvfb", "import", "xwininfo")),
        reason="needs Xvfb, ImageMagick's import and xwininfo (the script's own requirements)",
    ),
    pytest.mark.skipif(not LOOPMON.exists(), reason="loopmon is not installed beside python"),
]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_shot_is_the_window_at_the_screen_size_and_the_users_settings_are_left_alone(
    tmp_path: Path,
) -> None:
    # The window remembers its size in the user's settings: a shot taken with them came out at
    # whatever size the user last left (1,066 x 666 of a 1,600 x 1,000 screen), and the shot's
    # window then saved its own state over theirs. The script's window gets a profile of its own.
    config = tmp_path / "config"
    config.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "LOOPMON_SETTINGS")}
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(config),
        LOOPMON=str(LOOPMON),
        SIZE="1024x700",
        SETTLE="1",
    )
    out = tmp_path / "shot.png"
    proc = subprocess.run(
        ["sh", str(SCRIPT), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    width, height = png_size(out)
    assert 0.9 * 1024 <= width <= 1024 and 0.9 * 700 <= height <= 700, (width, height)
    assert list(config.rglob("*")) == [], "the script's window wrote the user's settings"
