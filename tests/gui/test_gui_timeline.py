"""The window's timeline: ghosts in the table, pause and scrub with the keys, zoom, the memory
shown, a restarted producer (the fake runner and hand-built snapshots: no loop)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import FakeRunner, connection, event, figures, snapshot
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
    window.raster.refresh()  # the restart is marked where it sits in the range shown
    lines = [ln for ln in window.raster._lines[id(window.raster.plot)] if ln.isVisible()]
    t1 = window.timeline.now
    assert [round(ln.value(), 2) for ln in lines] == [round(tl.sessions[1].at - t1, 2)]


def test_the_event_log_shows_what_had_happened_by_the_cursor(qtbot, window: MainWindow) -> None:
    for seq in range(1, 301):
        events = [event("connect", text=f"c{seq}", at=1000.0 + seq * SPAN)] if seq % 50 == 0 else []
        window.on_batch(Batch(frame(seq, [connection(10, id=1)]), events, {}))
    assert window.event_log.model.rowCount() == 6
    qtbot.keyClick(window, Qt.Key.Key_Space)
    window.zoom(10)  # 10 s wide: each arrow a second
    for _ in range(5):
        qtbot.keyClick(window, Qt.Key.Key_Left)

    # the cursor at 1007: c50 .. c150 (at 1002, 1004, 1006) had happened
    def texts() -> list[str]:
        model = window.event_log.model
        return [model.event_at(r).text for r in range(model.rowCount())]

    assert len(texts()) == 6  # hidden behind the plots: not rebuilt at each move
    window.tabs.setCurrentWidget(window.event_log)  # shown: as of the cursor
    assert texts() == ["c50", "c100", "c150"]
    qtbot.keyClick(window, Qt.Key.Key_Right)  # shown, it follows each move at once
    assert texts() == ["c50", "c100", "c150", "c200"]
    window.tabs.setCurrentIndex(0)
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert window.event_log.model.rowCount() == 6


def test_the_wheel_zooms_and_dragging_pans_every_view(qtbot, window: MainWindow) -> None:
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    run_a_close(window)
    window.zoom(-100)
    whole = window.axis.width_s
    viewport = window.raster.graphics.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)
    wheel = QWheelEvent(
        centre, viewport.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
        False,
    )  # fmt: skip
    QApplication.sendEvent(viewport, wheel)
    assert window.axis.width_s == pytest.approx(max(whole / 1.5, 10.0))
    assert window.axis.live  # zooming alone does not pause
    start = viewport.rect().center()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, start + QPoint(viewport.width() // 4, 0))
    qtbot.mouseRelease(
        viewport, Qt.MouseButton.LeftButton, pos=start + QPoint(viewport.width() // 4, 0)
    )
    assert window.paused  # dragging right goes back in time, a quarter of the width
    assert window.timeline.now - (window.axis.cursor or 0) == pytest.approx(
        window.axis.width_s / 4, rel=0.1
    )
    # every plot shows the same range
    ranges = {
        tuple(round(v, 3) for v in p.time_plots[0].viewRange()[0]) for p in window.plots.values()
    }
    assert len(ranges) <= 2  # hidden tabs catch up when shown


def test_snapshots_the_mailbox_replaced_lose_no_close(qtbot, window: MainWindow) -> None:
    mailbox = window.runner.mailbox  # type: ignore[union-attr]
    rows = [connection(10 + i, id=i) for i in range(1, 6)]
    window.on_batch(Batch(frame(1, rows), [], {}))
    for seq in range(2, 6):  # four snapshots posted before the window takes any
        gone = rows[seq - 2]
        closed = [ClosedConnection(gone, 1000.0 + seq * SPAN, f"reason {seq}")]
        mailbox.post(frame(seq, rows[seq - 1 :], closed))
    window.bridge.poll()  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: window.timeline.frames == 2, timeout=2000)
    ghosts = {g.row.id: g.reason for g in window.timeline.state_at().ghosts}
    assert ghosts == {1: "reason 2", 2: "reason 3", 3: "reason 4", 4: "reason 5"}
    assert window.timeline.latest is not None
    assert window.timeline.latest.interval.span_s == pytest.approx(4 * SPAN)  # counts too


def test_the_table_lists_the_newest_ghosts_under_a_churn(
    qtbot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopmon.gui import main_window

    monkeypatch.setattr(main_window, "TABLE_GHOSTS", 3)
    for seq in range(1, 11):  # one connection closes each frame
        gone = connection(100 + seq, id=seq)
        feed(window, frame(seq, [], [ClosedConnection(gone, 1000.0 + seq * SPAN, "churn")]))
    listed = sorted(r.id for r in window.table.model.rows)
    assert listed == [8, 9, 10]
    assert window.table.count_label.text() == "0 connections · 10 closed (3 listed)"
    assert "newest 3 closed" in window.table.count_label.toolTip()


def test_the_grid_cache_answers_as_a_fresh_lookup_does() -> None:
    import numpy as np

    from loopmon.gui.model.timeline import Timeline
    from loopmon.gui.timeline_columns import ConnectionGrid, GridCache

    tl = Timeline()
    for seq in range(1, 400):
        rows = [connection(10 + i, id=i, write_fraction=(seq % (i + 2)) / 10) for i in range(6)]
        tl.add(frame(seq, rows if seq < 300 else rows[:3]))
    keys = [("one", i) for i in range(6)]
    cache = GridCache()
    for end in (1008.0, 1008.3, 1012.0, 1016.0, 1015.5):
        cached = ConnectionGrid(tl, keys, end - 10, end, cache)
        fresh = ConnectionGrid(tl, keys, end - 10, end)
        for name in ("read", "write", "known", "queue"):
            assert np.array_equal(getattr(cached, name), getattr(fresh, name)), (end, name)
