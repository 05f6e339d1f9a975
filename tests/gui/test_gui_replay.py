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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replay_window(qtbot: Any, tmp_path: Path, clock: Any = None) -> tuple[MainWindow, ReplayBar]:
    record(tmp_path / "r", session(100))
    source = RecordingSource(tmp_path / "r")
    kw = {"clock": clock} if clock is not None else {}
    win = MainWindow(source, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.0, **kw)
    qtbot.addWidget(win)
    bar = ReplayBar(source, win.timeline, win, win.status)
    win.addToolBar(bar)
    return win, bar


def test_the_status_strip_says_the_replays_recorded_moment_never_live(
    qtbot: Any, tmp_path: Path
) -> None:
    clock = FakeClock()
    win, bar = replay_window(qtbot, tmp_path, clock)
    source = bar.source
    age = win.status.labels["age"]
    source.start()
    try:
        bar.speed.setCurrentIndex(bar.speed.findText("0.5x"))  # the 4 s take 8: still playing
        bar.play_action.setChecked(True)
        qtbot.waitUntil(lambda: win.timeline.latest is not None, timeout=10000)
        assert age.text().startswith("replay "), age.text()
        assert "playing 0.5x" in age.text()
        assert " of 4.0 s" in age.text()  # 100 snapshots at 25 Hz
        bar.play_action.setChecked(False)
        assert age.text().endswith("· paused")
        # Nothing arrives while it is paused: still the replay's moment, and never stale.
        clock.now += 30.0
        win.status.check_age()
        assert age.text().startswith("replay ")
        assert "old" not in age.text() and not win.status.stale
        assert "live" not in age.text()
    finally:
        win.shutdown()
        source.mailbox.close()


def test_a_paused_replay_says_the_moment_on_the_recordings_clock(
    qtbot: Any, tmp_path: Path
) -> None:
    win, bar = replay_window(qtbot, tmp_path)
    source = bar.source
    source.start()
    try:
        bar.seek(2.0)
        qtbot.waitUntil(lambda: win.timeline.latest is not None, timeout=10000)
        snap = win.timeline.latest
        assert snap is not None
        win.set_paused(True)
        # The producer started at INFO.started_at (2023-11-14 22:13:20 UTC): that wall
        # clock plus the snapshot's uptime, not this process's clock.
        from loopmon.gui.model import units

        expected = units.wall_time(1_700_000_000.0 + snap.uptime_s)
        assert f"PAUSED at {expected}" in win.status.labels["paused"].text()
    finally:
        win.shutdown()
        source.mailbox.close()


def test_the_load_panel_is_greyed_in_a_replay_with_the_reason(qtbot: Any, tmp_path: Path) -> None:
    win, bar = replay_window(qtbot, tmp_path)
    source = bar.source
    source.start()
    try:
        bar.seek(1.0)
        qtbot.waitUntil(lambda: win.timeline.latest is not None, timeout=10000)
        load = win.load_panel
        assert not load.start_button.isEnabled()
        assert not load.clients_spin.isEnabled() and not load.target_combo.isEnabled()
        assert "recorded" in load.unavailable_message.text()
        assert not load.unavailable_message.isHidden()
        load.start()
        assert not load.running
    finally:
        win.shutdown()
        source.mailbox.close()
