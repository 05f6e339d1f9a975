"""The window's Record button, with the Save dialog patched: every snapshot the window gets
is in the file, the size is shown, the folder remembered, and a recording that stops by
itself says why."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeRunner, busy_connections, snapshot
from PySide6.QtWidgets import QFileDialog

from loopmon.gui.bridge import Batch
from loopmon.gui.main_window import MainWindow
from loopmon.gui.settings import open_settings
from loopmon.snapshot import ProducerInfo
from loopmon.wire.recording import RecordingReader

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent
SESSION = "rec-session"
PRODUCER = ProducerInfo("serve", "loopmon serve", 4242, "epoll", SESSION, 900.0)


@pytest.fixture
def runner() -> Iterator[FakeRunner]:
    fake = FakeRunner()
    fake.producer = PRODUCER
    fake.start()
    yield fake
    fake.stop()
    fake.mailbox.close()


@pytest.fixture
def window(qtbot, runner: FakeRunner, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    win = MainWindow(
        runner,
        settings=open_settings(tmp_path / "settings.ini"),
        load_program=[sys.executable, str(HERE / "fake_load.py")],
        view_interval_s=0.0,
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


class Dialog:
    """QFileDialog.getSaveFileName, answering ``path`` and keeping what it was offered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offered: list[str] = []

    def __call__(
        self, parent: object, title: str, suggested: str, *rest: object
    ) -> tuple[str, str]:
        self.offered.append(suggested)
        return str(self.path), ""


def snap(seq: int):  # type: ignore[no-untyped-def]
    return snapshot(
        seq,
        taken_at=1000.0 + seq / 25,
        session=SESSION,
        connections=busy_connections(20, step=seq),
    )


def test_record_writes_every_snapshot_until_pressed_again(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "recs"
    folder.mkdir()
    dialog = Dialog(folder / "first.lmrec")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    window.on_batch(Batch(snap(1), [], {}))  # before: not recorded
    window.recording.action.trigger()
    assert window.recording.action.isChecked()
    assert window.recording.action.text() == "Stop recording"
    assert window.recording.label.text().startswith("recording: ")
    for seq in range(2, 40):
        window.on_batch(Batch(snap(seq), [], {}))
    window.recording.timer.timeout.emit()  # the 1 s write-out
    assert "recording: " in window.recording.label.text()
    assert window.recording.label.text() != "recording: 0 B"
    window.recording.action.trigger()
    assert not window.recording.action.isChecked()
    assert window.recording.action.text() == "Record"
    assert window.recording.recorder is None
    assert "first.lmrec" in window.recording.label.text()
    window.on_batch(Batch(snap(40), [], {}))  # after: not recorded
    with RecordingReader(folder / "first.lmrec") as reader:
        assert reader.indexed
        got = [item.snapshot for item in reader.snapshots()]
    assert got == [snap(seq) for seq in range(2, 40)]
    # The next Save dialog opens in the folder last recorded to.
    dialog.path = folder / "second.lmrec"
    window.recording.action.trigger()
    assert Path(dialog.offered[-1]).parent == folder
    window.recording.action.trigger()


def test_a_cancelled_dialog_starts_nothing(
    window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: ("", ""))
    window.recording.action.trigger()
    assert not window.recording.action.isChecked()
    assert window.recording.recorder is None


def test_a_recording_that_stops_by_itself_says_why(
    qtbot,
    window: MainWindow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", Dialog(tmp_path / "small.lmrec"))
    window.recording.max_bytes = 2048
    stops: list[str] = []
    window.recording.stopped.connect(stops.append)
    window.recording.action.trigger()
    seq = 1
    while not stops and seq < 2000:
        window.on_batch(Batch(snap(seq), [], {}))
        window.recording.timer.timeout.emit()
        seq += 1
    assert stops and "size limit" in stops[0]
    qtbot.waitUntil(lambda: not window.recording.action.isChecked())
    assert window.recording.label.text() == stops[0]
    window.on_batch(Batch(snap(seq + 1), [], {}))  # the window goes on
    assert window.recording.label.text() == stops[0]
    with RecordingReader(tmp_path / "small.lmrec") as reader:
        assert [item.snapshot.seq for item in reader.snapshots()]


def test_closing_the_window_closes_the_recording(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", Dialog(tmp_path / "shut.lmrec"))
    window.recording.action.trigger()
    window.on_batch(Batch(snap(1), [], {}))
    window.close()
    with RecordingReader(tmp_path / "shut.lmrec") as reader:
        assert reader.indexed
        assert [item.snapshot.seq for item in reader.snapshots()] == [1]
