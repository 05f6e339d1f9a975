"""The replay's controls: a toolbar with play/pause, the speed, the position and a jump to
the next stall, exception, listener event or close.

It drives a ``RecordingSource`` (which posts into the mailbox the window already watches) and
clears the window's Timeline on every seek, since the snapshots after a seek do not continue
the ones before it.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QLabel, QMainWindow, QToolBar

from loopmon.gui.model.timeline import Timeline
from loopmon.sources.recording import JUMP_KINDS, RecordingSource

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
JUMP_NAMES = {
    "stall": "Next stall",
    "exception": "Next exception",
    "listener": "Next listener event",
    "close": "Next close",
}


class ReplayBar(QToolBar):
    def __init__(self, source: RecordingSource, timeline: Timeline, parent: QMainWindow) -> None:
        super().__init__("Replay", parent)
        self.setObjectName("replayBar")
        self.source = source
        self.timeline = timeline
        self.play_action = self.addAction("Play")
        self.play_action.setCheckable(True)
        self.play_action.toggled.connect(self._play)
        self.speed = QComboBox()
        for speed in SPEEDS:
            self.speed.addItem(f"{speed:g}x", speed)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.currentIndexChanged.connect(self._speed)
        self.addWidget(self.speed)
        self.jump_actions = {}
        for what in JUMP_KINDS:
            action = self.addAction(JUMP_NAMES[what])
            action.triggered.connect(lambda _=False, w=what: self.jump(w))
            self.jump_actions[what] = action
        self.position = QLabel()
        self.addWidget(self.position)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.show_position)
        self.timer.start(250)
        self.show_position()

    def _play(self, on: bool) -> None:
        if on:
            self.source.play()
        else:
            self.source.pause()
        self.play_action.setText("Pause" if on else "Play")

    def _speed(self, index: int) -> None:
        self.source.set_speed(float(self.speed.itemData(index)))

    def jump(self, what: str) -> None:
        moment = self.source.jump(what)
        if moment is None:
            self.position.setText(f"{self._where()}: no {JUMP_NAMES[what].lower()[5:]} after")
            return
        self.timeline.clear()
        self.position.setText(f"{self._where()}: {moment.kind}: {moment.text}")

    def seek(self, at: float) -> None:
        self.source.seek(at)
        self.timeline.clear()

    def _where(self) -> str:
        return f"{self.source.position:.1f} s of {self.source.duration:.1f} s"

    def show_position(self) -> None:
        if self.play_action.isChecked() and not self.source.playing:
            self.play_action.setChecked(False)  # it reached the end
        if not self.position.text() or self.source.playing:
            self.position.setText(self._where())
