"""The replay's controls: a toolbar with play/pause, the speed, the position and a jump to
the next stall, exception, listener event or close.

It drives a ``RecordingSource`` (which posts into the mailbox the window already watches) and
clears the window's Timeline on every seek, since the snapshots after a seek do not continue
the ones before it. It tells the window's status strip (``status``) the recorded moment
reached and whether it plays, which the strip says where a live source's snapshot age is.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QComboBox, QLabel, QMainWindow, QToolBar

from loopmon.gui.model import units
from loopmon.gui.model.timeline import Timeline
from loopmon.gui.model.wording import replay_position
from loopmon.gui.status_strip import StatusStrip
from loopmon.sources.recording import JUMP_KINDS, RecordingSource

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
JUMP_NAMES = {
    "stall": "Next stall",
    "exception": "Next exception",
    "listener": "Next listener event",
    "close": "Next close",
}


class ReplayBar(QToolBar):
    def __init__(
        self,
        source: RecordingSource,
        timeline: Timeline,
        parent: QMainWindow,
        status: StatusStrip | None = None,
    ) -> None:
        super().__init__("Replay", parent)
        self.setObjectName("replayBar")
        self.source = source
        self.timeline = timeline
        self.status = status
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
        self.show_status()

    def _speed(self, index: int) -> None:
        self.source.set_speed(float(self.speed.itemData(index)))
        self.show_status()

    def jump(self, what: str) -> None:
        moment = self.source.jump(what)
        if moment is None:
            self.position.setText(f"{self._where()}: no {JUMP_NAMES[what].lower()[5:]} after")
            return
        self.timeline.clear()
        self.position.setText(f"{self._where()}: {moment.kind}: {moment.text}")
        self.show_status()

    def seek(self, at: float) -> None:
        self.source.seek(at)
        self.timeline.clear()
        self.show_status()

    def _where(self) -> str:
        return f"{self.source.position:.1f} s of {self.source.duration:.1f} s"

    def show_position(self) -> None:
        if self.play_action.isChecked() and not self.source.playing:
            self.play_action.setChecked(False)  # it reached the end
        if not self.position.text() or self.source.playing:
            self.position.setText(self._where())
        self.show_status()

    def show_status(self) -> None:
        """The strip: the recorded moment reached (the recording's own wall clock: its header's
        start plus the position), where in the file, playing or paused and at what speed."""
        if self.status is None:
            return
        source = self.source
        recorded = units.wall_time(source.reader.header.started_at + source.position)
        self.status.show_replay(
            replay_position(
                recorded,
                source.position,
                source.duration,
                source.playing,
                source.finished,
                source.speed,
            )
        )
