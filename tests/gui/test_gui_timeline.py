"""The window's timeline: ghosts in the table, pause and scrub with the keys, zoom, the memory
shown, a restarted producer (the fake runner and hand-built snapshots: no loop)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import FakeRunner, connection, figures, snapshot
from PySide6.QtCore import Qt

from loopmon.gui.bridge import Batch
from loopmon.gui.connection_model import GHOST_COLOUR, STATE
from loopmon.gui.main_window import MainWindow
from loopmon.gui.settings import open_settings
from loopmon.snapshot import ClosedConnection

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent
SPAN = 0.04


@pytest.fixture
def window(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = FakeRunner()
    runner.start()
    win = MainWindow(
        runner,
        settings=open_settings(tmp_path / "settings.ini"),
        load_program=[sys.executable, str(HERE / "fake_load.py")],
        view_interval_s=0.0,
        history_mb=64,
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    yield win
    runner.stop()
    runner.mailbox.close()


def frame(seq: int, rows, closed=(), session: str = "one", t0: float = 1000.0):  # type: ignore[no-untyped-def]
    return snapshot(
        seq=seq, taken_at=t0 + seq * SPAN, connections=tuple(rows), closed=tuple(closed),
        session=session, interval=figures(span_s=SPAN),
    )  # fmt: skip


def feed(win: MainWindow, snap) -> None:  # type: ignore[no-untyped-def]
    win.on_batch(Batch(snap, [], {}))


def shown(win: MainWindow) -> dict[int, tuple[int | None, bool]]:
    """id -> (bytes_in, ghost) of the table's rows."""
    model = win.table.model
    return {r.id: (r.bytes_in, model.ghost_at(i) is not None) for i, r in enumerate(model.rows)}


def run_a_close(win: MainWindow) -> None:
    for seq in range(1, 51):  # two seconds of two connections
        feed(win, frame(seq, [connection(10, id=1, bytes_in=seq * 100), connection(11, id=2)]))
    last = connection(10, id=1, bytes_in=5100, state="closed")
    feed(win, frame(51, [connection(11, id=2)], [ClosedConnection(last, 1002.03, "peer closed")]))
    for seq in range(52, 301):  # ten seconds more; fd 10 is reused at once by another
        feed(win, frame(seq, [connection(11, id=2), connection(10, id=3)]))


def test_a_closed_connection_stays_as_a_dimmed_ghost_with_its_reason_and_figures(
    qtbot, window: MainWindow
) -> None:
    run_a_close(window)
    assert shown(window) == {2: (1100, False), 3: (1000, False), 1: (5100, True)}
    model = window.table.model
    (row,) = [i for i in range(model.rowCount()) if model.ghost_at(i) is not None]
    state_text = model.data(model.index(row, STATE))
    assert state_text.startswith("✕ peer closed, ") and state_text.endswith(" ago")
    assert model.data(model.index(row, 0), Qt.ItemDataRole.ForegroundRole) == GHOST_COLOUR
    assert window.table.count_label.text() == "2 connections · 1 closed"


def test_space_pauses_arrows_scrub_back_to_the_connection_open_and_end_returns(
    qtbot, window: MainWindow
) -> None:
    run_a_close(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.paused and window.status.labels["paused"].text().startswith("PAUSED at ")
    width = window.axis.width_s
    assert width == 60.0
    whole = window.timeline.now - window.timeline.start
    qtbot.keyClick(window, Qt.Key.Key_Minus)
    assert window.axis.width_s == pytest.approx(whole)  # no wider than the whole session
    qtbot.keyClick(window, Qt.Key.Key_Plus)
    qtbot.keyClick(window, Qt.Key.Key_Plus)
    assert window.axis.width_s == 10.0  # no narrower
    for _ in range(11):  # eleven seconds back: a second in, before the close
        qtbot.keyClick(window, Qt.Key.Key_Left)
    at = window.axis.cursor
    assert at is not None and window.timeline.now - at == pytest.approx(11.0)
    then = shown(window)
    assert set(then) == {1, 2} and not then[1][1]  # open then, not a ghost
    assert 2000 <= (then[1][0] or 0) <= 3000  # with its figures then (about a second in)
    assert "(11 s ago)" in window.status.labels["paused"].text()
    feed(window, frame(301, [connection(11, id=2)]))  # the loop runs on meanwhile
    assert window.timeline.frames == 301 and set(shown(window)) == {1, 2}
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert not window.paused and window.axis.live
    assert shown(window)[1] == (5100, True)
    assert window.status.labels["paused"].text() == ""


def test_the_memory_in_use_is_shown_against_the_budget(qtbot, window: MainWindow) -> None:
    run_a_close(window)
    text = window.status.labels["history"].text()
    assert text.startswith("history ") and text.endswith("of 64.0 MiB")
    assert window.timeline.nbytes > 0


def test_a_restarted_producer_is_a_new_session_on_the_same_axis(qtbot, window: MainWindow) -> None:
    run_a_close(window)
    for seq in range(1, 30):  # its own clock and ids again from 1
        feed(window, frame(seq, [connection(12, id=1, bytes_in=7)], session="two", t0=5.0))
    tl = window.timeline
    assert [m.session for m in tl.sessions] == ["one", "two"]
    assert tl.sessions[1].at > 1000.0 + 300 * SPAN
    model = window.table.model
    opened = [(r.id, r.bytes_in) for i, r in enumerate(model.rows) if model.ghost_at(i) is None]
    assert opened == [(1, 7)]  # the new session's connection 1
    ghosts = [model.ghost_at(i) for i in range(model.rowCount()) if model.ghost_at(i)]
    assert {(g.session, g.row.id) for g in ghosts if g} == {("one", 1), ("one", 2), ("one", 3)}
