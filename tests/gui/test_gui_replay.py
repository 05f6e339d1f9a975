"""The window on a recording: the replay bar plays it into the timeline, and a jump clears
the timeline and shows the moment."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "wire"))
from test_recording import record, session

from loopmon.gui.main_window import MainWindow
from loopmon.gui.replay_bar import ReplayBar
from loopmon.gui.settings import open_settings
from loopmon.sources.recording import RecordingSource


def test_the_replay_bar_plays_and_jumps(qtbot: Any, tmp_path: Path) -> None:
    record(tmp_path / "r", session(100))
    source = RecordingSource(tmp_path / "r")
    win = MainWindow(source, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.0)
    qtbot.addWidget(win)
    bar = ReplayBar(source, win.timeline, win)
    win.addToolBar(bar)
    source.start()
    try:
        bar.speed.setCurrentIndex(bar.speed.count() - 1)  # 64x: four seconds in 60 ms
        bar.play_action.setChecked(True)
        # The mailbox hands the window the latest snapshot (closes carried over): the last
        # one arrives however many the window took on the way.
        last = win.timeline
        qtbot.waitUntil(lambda: last.latest is not None and last.latest.seq == 100, timeout=20000)
        qtbot.waitUntil(lambda: source.finished, timeout=5000)
        bar.show_position()
        assert not bar.play_action.isChecked()
        bar.seek(0.0)
        bar.jump("stall")
        assert "stall" in bar.position.text()
        qtbot.waitUntil(lambda: win.timeline.frames >= 1, timeout=5000)
        bar.jump("listener")
        assert "no listener event" in bar.position.text()
    finally:
        win.shutdown()
        source.mailbox.close()
