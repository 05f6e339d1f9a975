"""The window's Record button: every snapshot the window receives (the Timeline's feed)
written to a file the Save dialog names, until pressed again.

It writes on the GUI thread, where the snapshots arrive, and a 1 s timer writes out what is
buffered when snapshots stop coming (a hung producer). The label beside the button shows the
bytes written; a recording that stops by itself (its size limit, a slow or failed write) says
why there and in ``stopped``, and the button comes up. The folder last saved to is
remembered, as the exports' is.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PySide6.QtCore import QObject, QSettings, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QLabel, QWidget

from loopmon.gui.model import units
from loopmon.gui.settings import read_str
from loopmon.snapshot import ProducerInfo, Snapshot
from loopmon.wire.recording import Recorder, RecordingError

FLUSH_MS = 1000
SETTINGS_KEY = "record/dir"
SUFFIX = ".lmrec"


class RecordControl(QObject):
    """``action`` (checkable) starts and stops; ``label`` shows the size or why it stopped."""

    stopped = Signal(str)  # a recording ended by itself, with its message

    def __init__(
        self,
        parent: QWidget,
        settings: QSettings,
        producer: Callable[[], ProducerInfo | None],
        ask_path: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.settings = settings
        self.producer = producer
        self.ask_path = ask_path or self._ask_path
        self.recorder: Recorder | None = None
        self.max_bytes: int | None = None  # a size limit for the next recording
        self._session = ""
        self.action = QAction("Record", self)
        self.action.setCheckable(True)
        self.action.setToolTip(
            "Write every snapshot to a recording file (loopmon replay FILE); press again to stop"
        )
        self.action.toggled.connect(self._toggled)
        self.label = QLabel("")
        self.label.setObjectName("recordLabel")
        self.timer = QTimer(self)
        self.timer.setInterval(FLUSH_MS)
        self.timer.timeout.connect(self._tick)
        self._pending_snapshot: Snapshot | None = None

    # -- the button ---------------------------------------------------------------------------
    def _toggled(self, on: bool) -> None:
        if on and self.recorder is None:
            if not self.start():
                self.action.setChecked(False)
        elif not on and self.recorder is not None:
            self.stop()

    def _ask_path(self, suggested: str) -> str:
        path, _ = QFileDialog.getSaveFileName(
            self.parent_widget,
            "Record to",
            suggested,
            f"loopmon recordings (*{SUFFIX});;All files (*)",
        )
        return path

    def _suggested(self) -> str:
        last = read_str(self.settings, SETTINGS_KEY, "")
        folder = last if last and os.path.isdir(last) else os.getcwd()
        return os.path.join(folder, f"loopmon{SUFFIX}")

    def start(self, path: str | None = None) -> bool:
        """Ask for a file (unless given one) and start; False if nothing was started. The
        Save dialog asked whether to replace a file that exists: replacing it is forced."""
        producer = self.producer()
        if producer is None:
            self.label.setText("nothing to record yet: no producer")
            return False
        asked = path is None
        if path is None:
            path = self.ask_path(self._suggested())
            if not path:
                return False
        try:
            self.recorder = Recorder(
                path,
                producer,
                force=asked,
                max_bytes=self.max_bytes,
                writer_name="loopmon window",
                on_stop=self._on_stop,
            )
        except RecordingError as exc:
            self.label.setText(str(exc))
            return False
        self._session = producer.session
        self.settings.setValue(SETTINGS_KEY, os.path.dirname(os.path.abspath(path)))
        self.timer.start()
        self.action.setText("Stop recording")  # a checked toolbar button is easy to miss
        self.label.setToolTip(path)
        self._show_size()
        if not self.action.isChecked():
            self.action.setChecked(True)
        return True

    def stop(self) -> None:
        recorder, self.recorder = self.recorder, None
        self.timer.stop()
        if recorder is None:
            return
        self.action.setText("Record")
        recorder.close()
        if not recorder.message:
            self.label.setText(
                f"recorded {units.byte_size(recorder.written)} to {os.path.basename(recorder.path)}"
            )
        if self.action.isChecked():
            self.action.setChecked(False)

    # -- the feed -----------------------------------------------------------------------------
    def take(self, snapshot: Snapshot) -> None:
        """Every snapshot the window receives."""
        recorder = self.recorder
        if recorder is None:
            return
        if snapshot.session != self._session:
            producer = self.producer()
            if producer is not None and producer.session == snapshot.session:
                recorder.hello(producer)  # a restarted producer
            self._session = snapshot.session
        recorder.record(snapshot)
        if not recorder.stopped:
            self._show_size()

    def _tick(self) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.flush()
            if not recorder.stopped:
                self._show_size()

    def _show_size(self) -> None:
        assert self.recorder is not None
        self.label.setText(f"recording: {units.byte_size(self.recorder.written)}")

    def _on_stop(self, message: str) -> None:
        # Called inside the recorder (on this thread): finish after it returns.
        self.label.setText(message)
        QTimer.singleShot(0, self.stop)
        self.stopped.emit(message)
