"""The window driven with qtbot against the fake runner and hand-built snapshots: no loop."""

from __future__ import annotations

import csv
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import FakeRunner, busy_connections, connection, event, figures, listeners, snapshot
from PySide6.QtCore import QByteArray, Qt

from loopmon.gui.bridge import Batch
from loopmon.gui.event_log import EventLog
from loopmon.gui.listener_panel import say
from loopmon.gui.main_window import MainWindow
from loopmon.gui.model.export import CSV_COLUMNS
from loopmon.gui.settings import open_settings
from loopmon.snapshot import KINDS, ClosedConnection, ListenerRow

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent


@pytest.fixture
def runner() -> Iterator[FakeRunner]:
    fake = FakeRunner()
    fake.start()
    yield fake
    fake.stop()
    fake.mailbox.close()


@pytest.fixture
def window(qtbot, runner: FakeRunner, tmp_path: Path) -> MainWindow:
    win = MainWindow(
        runner,
        settings=open_settings(tmp_path / "settings.ini"),
        load_program=[sys.executable, str(HERE / "fake_load.py")],
        view_interval_s=0.0,  # views follow every snapshot: tests need no waiting
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def feed(win: MainWindow, snap, events=(), dropped: dict[str, int] | None = None) -> None:  # type: ignore[no-untyped-def]
    win.on_batch(Batch(snap, list(events), dropped or {}))


def table_fds(win: MainWindow) -> list[int]:
    """The fds of the open connections shown (ghosts of closed ones left out)."""
    model = win.table.model
    return [model.fd_at(r) for r in range(model.rowCount()) if model.ghost_at(r) is None]


# -- listeners ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "port", "complaint"),
    [
        ("127.0.0.1", "70000", "out of range"),
        ("127.0.0.1", "-1", "not a port"),
        ("127.0.0.1", "http", "not a port"),
        ("127.0.0.1", "", "enter a port"),
        ("300.1.1.1", "8000", "not an IPv4/IPv6"),
        ("example.com", "8000", "not an IPv4/IPv6"),
    ],
)
def test_start_with_bad_input_shows_why_and_sends_nothing(
    qtbot, window: MainWindow, runner: FakeRunner, host: str, port: str, complaint: str
) -> None:
    panel = window.listener_panel
    panel.set_host_port(host, port)
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    shown = panel.host_error.text() + panel.port_error.text()
    assert complaint in shown
    assert "nothing was started" in panel.start_message.text()
    assert "d03030" in panel.start_message.styleSheet()
    assert not [c for c in runner.calls if c[0] == "start_listener"]


def test_fields_are_validated_while_typing(qtbot, window: MainWindow) -> None:
    panel = window.listener_panel
    panel.port_edit.clear()
    qtbot.keyClicks(panel.port_edit, "99999")
    assert "out of range" in panel.port_error.text()
    panel.port_edit.setText("8080")
    assert panel.port_error.text() == ""
    panel.host_edit.setText("[::1]")
    assert panel.host_error.text() == ""


def test_start_on_port_zero_adds_a_row_with_the_real_port(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "0")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: [r.port for r in panel.model.rows] == [41000], timeout=2000)
    assert ("start_listener", "127.0.0.1", 0) in runner.calls
    assert panel.start_message.text() == "listening on 127.0.0.1:41000"
    # the load panel can now aim at it
    assert window.load_panel.target_combo.currentText() == "127.0.0.1:41000"


def test_a_failure_from_the_loop_shows_beside_start(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    runner.fail_starts[("127.0.0.1", 10000)] = "address already in use"
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "10000")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "address already in use" in panel.start_message.text(), timeout=2000)
    assert panel.start_message.text() == "127.0.0.1:10000: address already in use"
    assert "d03030" in panel.start_message.styleSheet()
    assert panel.model.rows == []


def test_fix_the_address_first_goes_once_the_address_is_valid(qtbot, window: MainWindow) -> None:
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "http")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert "nothing was started" in panel.start_message.text()
    panel.port_edit.setText("80801")  # still wrong: the message stays
    assert "nothing was started" in panel.start_message.text()
    panel.port_edit.setText("8080")
    assert panel.start_message.text() == ""


def test_address_in_use_goes_when_the_address_changes(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    runner.fail_starts[("127.0.0.1", 10000)] = "address already in use"
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "10000")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "already in use" in panel.start_message.text(), timeout=2000)
    panel.port_edit.setText("10001")
    assert panel.start_message.text() == ""


def test_address_in_use_goes_when_its_listener_here_stops(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    panel = window.listener_panel
    panel.start_listener("127.0.0.1", 10000)
    qtbot.waitUntil(lambda: len(panel.model.rows) == 1, timeout=2000)
    runner.fail_starts[("127.0.0.1", 10000)] = "address already in use"
    panel.set_host_port("127.0.0.1", "10000")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "already in use" in panel.start_message.text(), timeout=2000)
    qtbot.mouseClick(panel.buttons[panel.model.rows[0].id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    assert panel.start_message.text() == ""


def test_listening_on_goes_when_that_listener_stops(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    # "listening on 127.0.0.1:45003" stayed beside Start, above an empty table, once it stopped.
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "0")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(panel.model.rows) == 1, timeout=2000)
    assert panel.start_message.text() == "listening on 127.0.0.1:41000"
    qtbot.mouseClick(panel.buttons[panel.model.rows[0].id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    assert panel.start_message.text() == ""
    assert panel.stop_message.text().startswith("stopped 127.0.0.1:41000")


def test_a_full_listener_keeps_its_address_readable(qtbot, window: MainWindow) -> None:
    # "full: select's FD_SETSIZE" took the table's width and left the address "12...".
    import dataclasses

    from loopmon.echo.listener import FULL_STATE

    row = dataclasses.replace(listeners(34277)[0], state=FULL_STATE, accepted=993)
    feed(window, snapshot(listeners=(row,)))
    window.resize(800, 600)
    settle(qtbot, window)
    table = window.listener_panel.table
    wanted = table.fontMetrics().horizontalAdvance("127.0.0.1:34277")
    assert table.columnWidth(0) > wanted
    assert not table.horizontalScrollBar().isVisible()
    index = window.listener_panel.model.index(0, 1)
    assert FULL_STATE in window.listener_panel.model.data(index, Qt.ItemDataRole.ToolTipRole)


def test_nothing_to_load_goes_once_there_is_a_target(qtbot, window: MainWindow) -> None:
    load = window.load_panel
    load.start()
    assert "nothing to load" in load.result_label.text()
    load.set_targets(listeners(10000))
    assert load.result_label.text() == ""


@pytest.mark.parametrize("close_connections", [False, True])
def test_stop_removes_the_listener(
    qtbot, window: MainWindow, runner: FakeRunner, close_connections: bool
) -> None:
    panel = window.listener_panel
    panel.start_listener("::1", 0)
    qtbot.waitUntil(lambda: len(panel.model.rows) == 1, timeout=2000)
    listener_id = panel.model.rows[0].id
    panel.close_check.setChecked(close_connections)
    qtbot.mouseClick(panel.buttons[listener_id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    assert ("stop_listener", listener_id, close_connections) in runner.calls
    assert panel.stop_message.text().startswith("stopped [::1]:41000")


def test_listeners_after_a_producer_restart_show_and_can_be_stopped_and_loaded(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    panel = window.listener_panel
    runner.publish()
    qtbot.waitUntil(lambda: panel.model.session == runner.session, timeout=2000)
    panel.start_listener("127.0.0.1", 0)
    qtbot.waitUntil(lambda: len(panel.model.rows) == 1, timeout=2000)
    qtbot.mouseClick(panel.buttons[1], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    # The producer is replaced (a new session), and numbers its listeners from 1 again.
    runner.replace_producer()
    runner.publish()
    qtbot.waitUntil(lambda: panel.model.session == runner.session, timeout=2000)
    panel.start_listener("127.0.0.1", 0)
    qtbot.waitUntil(lambda: [r.id for r in panel.model.rows] == [1], timeout=2000)
    runner.publish()  # a snapshot confirms it, and it stays
    qtbot.waitUntil(lambda: runner.mailbox.takes >= 4, timeout=2000)
    assert [r.port for r in panel.model.rows] == [41001]
    combo = window.load_panel.target_combo  # a choice: its first target stopped
    assert [combo.itemText(i) for i in range(combo.count())] == ["127.0.0.1:41001"]
    qtbot.mouseClick(panel.buttons[1], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    assert runner.listeners == {}


def test_a_listener_started_before_the_first_snapshot_stays_the_load_target(
    window: MainWindow,
) -> None:
    # At launch the window asks for a listener before any snapshot has named the session;
    # the first snapshot may have been taken before the listener was added.
    panel = window.listener_panel
    panel.model.announce(ListenerRow(id=1, host="127.0.0.1", port=10000, state="listening"))
    assert window.load_panel.target_combo.currentText() == "127.0.0.1:10000"
    feed(window, snapshot(listeners=(), session="s1"))
    assert [r.port for r in panel.model.rows] == [10000]
    feed(window, snapshot(seq=2, listeners=listeners(10000), session="s1"))
    assert window.load_panel.target_combo.currentText() == "127.0.0.1:10000"
    assert window.load_panel.start_button.isEnabled()
    assert window.load_panel.target_message.text() == ""


def test_command_results_are_handled_in_the_gui_thread(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    assert window.commands is not None
    seen: list[str] = []
    window.commands.set_strategy(
        "seed", lambda _r, _e: seen.append(threading.current_thread().name)
    )
    qtbot.waitUntil(lambda: bool(seen), timeout=2000)
    assert seen == [threading.main_thread().name]


# -- connections table ------------------------------------------------------------------------
def test_selection_is_kept_across_updates_by_fd(window: MainWindow) -> None:
    rows = tuple(connection(fd) for fd in range(10, 20))
    feed(window, snapshot(seq=1, connections=rows))
    window.table.select_fds([15, 17])
    assert window.table.selected_fds() == [15, 17]
    # same fds, new numbers
    feed(
        window,
        snapshot(seq=2, connections=tuple(connection(fd, bytes_in=9) for fd in range(10, 20))),
    )
    assert window.table.selected_fds() == [15, 17]
    # a connection before them closes, new ones arrive: rows move, the selection follows
    moved = tuple(connection(fd) for fd in [*range(12, 20), 30, 31])
    feed(window, snapshot(seq=3, connections=moved))
    assert window.table.selected_fds() == [15, 17]
    view_rows = sorted(i.row() for i in window.table.view.selectionModel().selectedRows())
    assert [window.table.model.fd_at(r) for r in view_rows] == [15, 17]
    # sorted the other way
    window.table.view.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    assert table_fds(window)[0] == 31
    assert window.table.selected_fds() == [15, 17]
    # one of them closes
    feed(window, snapshot(seq=4, connections=tuple(c for c in moved if c.fd != 15)))
    assert table_fds(window) == [31, 30, 19, 18, 17, 16, 14, 13, 12]
    assert window.table.selected_fds() == [15, 17]  # 15 stays, a ghost, selected
    assert sorted(conn_id for _, conn_id in window.raster._selected) == [15, 17]  # (session, id)


def test_a_ghost_and_a_live_row_sharing_an_fd_are_never_selected_together(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    """fd 15 closed (a ghost, id 1) and was reused at once (id 2): selecting the open row
    selects it alone, and closing it names id 2."""
    old = connection(15, id=1, peer="127.0.0.1:1")
    new = connection(15, id=2, peer="127.0.0.1:2")
    runner.connections = [old]
    first = runner.snapshot()
    gone = (ClosedConnection(old, first.taken_at + 0.01, "peer closed"),)
    runner.connections = [new]
    feed(window, first)
    feed(window, runner.snapshot(taken_at=first.taken_at + 0.04, closed=gone))
    model = window.table.model
    assert model.rowCount() == 2
    live = next(r for r in range(2) if model.ghost_at(r) is None)
    ghost = 1 - live
    window.table.view.selectRow(live)
    assert len(window.table.view.selectionModel().selectedRows()) == 1
    assert window.table.selected_keys() == [(runner.session, 2)]
    assert window.raster._selected == [(runner.session, 2)]
    window.table.select_fds([15])  # by fd: the open row, not both
    assert window.table.selected_keys() == [(runner.session, 2)]
    qtbot.mouseClick(window.table.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.table.message.text() == "closed fd 15", timeout=2000)
    assert ("close_connection", 2) in runner.calls
    window.table.view.selectRow(ghost)  # a ghost is closed already: nothing to close
    assert window.table.selected_keys() == [(model.ghost_at(ghost).session, 1)]  # type: ignore[union-attr]
    assert not window.table.close_button.isEnabled()


def test_a_row_of_an_earlier_session_is_never_closed_by_its_id(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    """Scrubbed back past a producer's restart, the table shows the old session's open rows;
    their ids name other connections in the new session: nothing is sent."""
    runner.connections = [connection(7, id=5)]
    for t in (1000.0, 1000.2, 1000.4):
        feed(window, runner.snapshot(taken_at=t))
    old_session = runner.session
    runner.replace_producer()
    runner.connections = [connection(9, id=5)]  # the same id, another connection
    feed(window, runner.snapshot(taken_at=5.0))
    old = window.timeline.state_at(1000.25)
    assert old.session == old_session and [r.id for r in old.rows] == [5]
    window.table.set_state(old, ())  # what a scrub back there shows
    window.table.select_fds([7])
    assert window.table.selected_keys() == [(old_session, 5)]
    assert not window.table.close_button.isEnabled()
    window.table.close_selected()
    assert not [c for c in runner.calls if c[0] == "close_connection"]


def test_filter_narrows_the_table(qtbot, window: MainWindow) -> None:
    rows = (
        connection(5, peer="10.0.0.5:1"),
        connection(6, peer="10.0.0.6:1"),
        connection(7, peer="192.168.0.7:1"),
    )
    feed(window, snapshot(connections=rows))
    qtbot.keyClicks(window.table.filter_edit, "192.168")
    assert table_fds(window) == [7]
    assert window.table.count_label.text() == "1 of 3 connections"
    # the filter holds for the next snapshot
    feed(window, snapshot(seq=2, connections=(*rows, connection(8, peer="192.168.0.8:1"))))
    assert table_fds(window) == [7, 8]
    window.table.filter_edit.clear()
    assert table_fds(window) == [5, 6, 7, 8]


def test_close_selected_sends_close_and_reports(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    runner.connections = [connection(fd) for fd in (21, 22, 23)]
    feed(window, runner.snapshot())
    window.table.select_fds([22])
    assert window.table.close_button.isEnabled()
    qtbot.mouseClick(window.table.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.table.message.text() == "closed fd 22", timeout=2000)
    assert ("close_connection", 22) in runner.calls
    qtbot.waitUntil(lambda: table_fds(window) == [21, 23], timeout=2000)

    runner.fail_closes[23] = "Bad file descriptor"
    window.table.select_fds([23])
    window.table.close_selected()
    qtbot.waitUntil(lambda: "Bad file descriptor" in window.table.message.text(), timeout=2000)
    assert "d03030" in window.table.message.styleSheet()


def test_csv_export_holds_the_rows_shown(tmp_path: Path, window: MainWindow) -> None:
    rows = (
        connection(5, peer="10.0.0.5:1", queue_bytes=300, bytes_in=1000, created_at=990.0),
        connection(6, peer="10.0.0.6:1", write_fraction=0.25, created_at=995.5),
    )
    feed(window, snapshot(taken_at=1000.0, connections=rows))
    path = tmp_path / "conns.csv"
    assert window.export_connections(str(path)) == 2
    with path.open(newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == list(CSV_COLUMNS)
    assert [r["fd"] for r in got] == ["5", "6"]
    assert got[0]["peer"] == "10.0.0.5:1"
    assert got[0]["listener"] == "127.0.0.1:10000"
    assert got[0]["mask"] == "READ|ERROR"
    assert got[0]["queue_bytes"] == "300"
    assert got[0]["bytes_in"] == "1000"
    assert got[0]["age_s"] == "10.000"
    assert got[1]["write_fraction"] == "0.2500"
    window.table.filter_edit.setText("10.0.0.6")
    assert window.export_connections(str(path)) == 1


# -- pause, log, status ------------------------------------------------------------------------
def test_pause_freezes_the_views_while_the_status_runs_on(qtbot, window: MainWindow) -> None:
    feed(window, snapshot(seq=1, connections=(connection(1),)), [event("connect", fd=1)])
    window.pause_action.trigger()
    assert window.paused
    assert window.status.labels["paused"].text().startswith("PAUSED at ")
    feed(
        window,
        snapshot(seq=2, taken_at=1001.0, connections=(connection(1), connection(2))),
        [event("connect", fd=2)],
    )
    assert table_fds(window) == [1]
    assert window.event_log.model.rowCount() == 1
    assert window.status.labels["connections"].text() == "2 connections"  # the strip is live
    drawn = {key: panel.refreshes for key, panel in window.plots.items()}
    window.table.select_fds([1])  # selecting redraws the plot shown at the cursor, no other
    window.tabs.setCurrentIndex(2)
    now = {key: panel.refreshes for key, panel in window.plots.items()}
    assert now["health"] == drawn["health"] and now["queues"] == drawn["queues"]
    window.pause_action.trigger()
    assert not window.paused
    assert table_fds(window) == [1, 2]
    assert window.plots["health"].refreshes > drawn["health"]
    assert window.event_log.model.rowCount() == 2


def test_views_refresh_at_most_once_per_interval(qtbot, runner: FakeRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    win = MainWindow(runner, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.2)
    qtbot.addWidget(win)
    for seq in range(1, 6):
        conns = tuple(connection(fd) for fd in range(seq))
        feed(win, snapshot(seq=seq, connections=conns), [event("connect", fd=seq)])
    assert table_fds(win) == [0]  # the first was shown at once, the rest wait for the frame
    assert win.status.labels["connections"].text() == "5 connections"  # the strip took every one
    qtbot.waitUntil(lambda: table_fds(win) == [0, 1, 2, 3, 4], timeout=2000)
    assert win.frames == 2
    assert win.event_log.model.rowCount() == 5


def test_event_log_is_bounded_and_says_what_it_no_longer_keeps(window: MainWindow) -> None:
    log = window.event_log
    log.model.max_entries = 100
    churn = [event("connect", text=f"c{i}", fd=i) for i in range(150)]
    feed(window, None, churn, dropped={"connect": 1200})
    assert log.model.rowCount() == 100
    assert log.model.event_at(0).text == "c50"
    assert log.dropped_label.text() == "1,250 older connect entries not kept"
    assert log.dropped_label.isVisibleTo(log)
    feed(window, None, [event("close", fd=i) for i in range(101)])
    assert log.dropped_label.text() == ("1,250 older connect and 1 older close entries not kept")


def test_rare_events_survive_churn_in_the_window(qtbot, window: MainWindow) -> None:
    log = window.event_log
    log.model.max_entries = 50
    rare = [
        event("listener_started", "listening on 127.0.0.1:10000"),
        event("loop", "loop started on epoll"),
        event("stall", "loop blocked 0.5 s"),
        event("exception", "handler failed"),
        event("refusal", "refused 3"),
        event("listener_full", "full: select's FD_SETSIZE"),
    ]
    feed(window, None, rare)
    for _ in range(20):  # churn, in many batches and between frames
        feed(window, None, [event("connect" if i % 2 else "close", fd=i) for i in range(200)])
    log.set_kinds(set(KINDS) - {"connect", "close"})
    assert [log.model.event_at(r).text for r in range(log.model.rowCount())] == [
        e.text for e in rare
    ]
    assert log.model.total == 6 + 2 * 50


def test_a_paused_window_keeps_rare_events_until_it_resumes(qtbot, window: MainWindow) -> None:
    window.set_paused(True)
    feed(window, None, [event("stall", "the one that matters")])
    feed(window, None, [event("connect", fd=i % 900) for i in range(12_000)])
    window.set_paused(False)
    log = window.event_log
    log.set_kinds({"stall"})
    assert [log.model.event_at(r).text for r in range(log.model.rowCount())] == [
        "the one that matters"
    ]
    assert "older connect entries not kept" in log.dropped_label.text()


def test_the_log_keeps_following_after_a_kind_is_toggled(qtbot, window: MainWindow) -> None:
    log = window.event_log
    window.tabs.setCurrentWidget(log)
    bar = log.tree.verticalScrollBar()
    feed(window, None, [event("connect" if i % 2 else "close", fd=i) for i in range(300)])
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)
    log.kind_buttons["close"].click()  # hide closes: the rows are rebuilt
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum(), timeout=2000)
    feed(window, None, [event("connect", text="newest", fd=5) for _ in range(50)])
    qtbot.waitUntil(lambda: bar.value() == bar.maximum(), timeout=2000)
    last = log.model.index(log.model.rowCount() - 1, 0)
    assert log.tree.visualRect(last).intersects(log.tree.viewport().rect())


def test_kind_toggles_wrap_rather_than_widen_the_window(qtbot) -> None:
    log = EventLog()
    qtbot.addWidget(log)
    wide = sum(b.sizeHint().width() for b in log.kind_buttons.values())
    assert log.minimumSizeHint().width() < wide
    log.resize(300, 400)
    log.show()
    qtbot.waitExposed(log)
    tops = {b.geometry().top() for b in log.kind_buttons.values()}
    assert len(tops) > 1  # on more than one line


def test_event_log_filters_by_kind_and_expands_a_stall(qtbot, window: MainWindow) -> None:
    log = window.event_log
    feed(
        window,
        None,
        [
            event("connect", fd=3),
            event("stall", text="loop blocked 250 ms", detail="File x\n  sleep(0.25)"),
            event("close", fd=3, text="closed: peer reset"),
        ],
    )
    qtbot.mouseClick(log.kind_buttons["connect"], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(log.kind_buttons["close"], Qt.MouseButton.LeftButton)
    assert log.model.rowCount() == 1
    stall = log.model.index(0, 0)
    log.tree.expand(stall)
    assert log.tree.isExpanded(stall)
    assert log.model.rowCount(stall) == 2


def test_status_age_turns_red_when_snapshots_stop(qtbot, runner: FakeRunner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    now = [500.0]
    win = MainWindow(
        runner, settings=open_settings(tmp_path / "s.ini"), clock=lambda: now[0], view_interval_s=0
    )
    qtbot.addWidget(win)
    age = win.status.labels["age"]
    assert win.status.stale  # nothing received yet
    feed(win, snapshot())
    assert not win.status.stale
    assert age.styleSheet() == ""
    now[0] += 0.6
    win.status.check_age()
    assert not win.status.stale
    now[0] += 1.0  # the loop sends nothing: only the timer notices
    qtbot.waitUntil(lambda: win.status.stale, timeout=2000)
    assert "c62828" in age.styleSheet()
    assert "1.6 s old" in age.text()
    feed(win, snapshot(seq=2))
    assert not win.status.stale


def test_the_age_never_says_live_while_the_views_are_paused(
    qtbot, runner: FakeRunner, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    now = [500.0]
    win = MainWindow(
        runner, settings=open_settings(tmp_path / "s.ini"), clock=lambda: now[0], view_interval_s=0
    )
    qtbot.addWidget(win)
    age = win.status.labels["age"]
    feed(win, snapshot())
    assert age.text() == "live"
    win.pause_action.trigger()
    feed(win, snapshot(seq=2, taken_at=1001.0))  # fresh data while the views show the past
    assert "PAUSED at" in win.status.labels["paused"].text()
    assert "live" not in age.text()
    assert age.text() == "paused · newest snapshot 0.0 s old"
    assert "not now" in age.toolTip()
    now[0] += 1.6  # a stream that stops still shows while paused
    win.status.check_age()
    assert win.status.stale and "c62828" in age.styleSheet()
    assert age.text() == "paused · newest snapshot 1.6 s old"
    win.live_action.trigger()
    feed(win, snapshot(seq=3, taken_at=1002.0))
    assert age.text() == "live" and not win.status.stale


def test_status_strip_shows_rates_between_received_snapshots(window: MainWindow) -> None:
    feed(window, snapshot(seq=1, taken_at=1000.0, totals=figures(span_s=100.0, events=1000)))
    later = figures(span_s=102.0, events=21000, iterations=400_000)  # 20k events in 2 s
    feed(window, snapshot(seq=9, taken_at=1002.0, totals=later))
    assert window.status.labels["events"].text() == "10.0k ev/s"
    assert window.status.labels["backend"].text() == "epoll · direct"


def test_events_per_s_is_over_a_second_in_the_plot_and_the_strip(window: MainWindow) -> None:
    # One nc line: one event in one 40 ms snapshot interval reads 25/s over that interval.
    events = 0
    for i in range(100):
        events += i == 40
        totals = figures(span_s=100.0 + i * 0.04, events=events, iterations=1000 + i)
        quiet = figures(span_s=0.04, events=0)
        feed(window, snapshot(seq=i + 1, taken_at=1000.0 + i * 0.04, totals=totals, interval=quiet))
        if i == 40:
            assert window.status.labels["events"].text() == "1 ev/s"
            assert window.health.latest.window_s == pytest.approx(1.0)
    plotted = window.health.ring.column("events")
    assert plotted.max() == pytest.approx(1.0)  # never the 25/s spike
    assert plotted[40:65].min() == pytest.approx(1.0)  # for the second that holds it
    assert plotted[-1] == 0.0
    assert window.status.labels["events"].text() == "0 ev/s"  # the same figure as the plot
    assert "over the last 1 s" in window.health_plots.events_plot.titleLabel.text


def test_a_dead_loop_is_shown(window: MainWindow) -> None:
    feed(window, snapshot(alive=False, error="RuntimeError: boom"))
    assert "loop died: RuntimeError: boom" in window.status.labels["backend"].text()


# -- loop controls -----------------------------------------------------------------------------
def test_backend_switch_asks_first(qtbot, window: MainWindow, runner: FakeRunner) -> None:
    panel = window.loop_panel
    questions: list[str] = []
    panel.confirm = lambda q: questions.append(q) is not None  # declines
    panel.choose_backend("poll")
    assert questions and "Restart the loop on poll" in questions[0]
    assert not [c for c in runner.calls if c[0] == "restart"]
    assert panel.backend_combo.currentText() == "epoll"
    panel.confirm = lambda q: True
    panel.choose_backend("poll")
    qtbot.waitUntil(lambda: panel.backend_message.text() == "running on poll", timeout=2000)
    assert ("restart", "poll") in runner.calls


def test_strategy_switch(qtbot, window: MainWindow, runner: FakeRunner) -> None:
    panel = window.loop_panel
    panel.choose_strategy("seed")
    qtbot.waitUntil(
        lambda: panel.strategy_message.text().startswith("echoing with seed"), timeout=2000
    )
    assert ("set_strategy", "seed") in runner.calls
    assert runner.strategy == "seed"


# -- plots ---------------------------------------------------------------------------------
def test_plot_items_are_made_once(window: MainWindow) -> None:
    counts = None
    for step in range(40):
        conns = busy_connections(30 + step % 5, step)
        feed(window, snapshot(seq=step + 1, taken_at=1000 + step * 0.04, connections=conns))
        window.apply_views(window.latest, every_plot=True)
        now = [len(p.graphics.scene().items()) for p in window.plots.values()]
        counts = counts or now
        assert now == counts


def test_raster_puts_selected_fds_first_and_caps_rows(window: MainWindow) -> None:
    conns = busy_connections(200)
    feed(window, snapshot(connections=conns))
    window.table.select_fds([150, 40])
    window.raster.refresh()
    assert window.raster.rows[:2] == [40, 150]
    assert len(window.raster.rows) == 64


def test_png_export(tmp_path: Path, window: MainWindow) -> None:
    feed(window, snapshot(connections=busy_connections(20)))
    for key in window.plots:
        path = tmp_path / f"{key}.png"
        window.export_plot(key, str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- window-wide ------------------------------------------------------------------------------
def test_ctrl_q_closes_the_window_and_stops_the_runner(
    qtbot, window: MainWindow, runner: FakeRunner
) -> None:
    window.activateWindow()
    assert window.quit_action.shortcut().toString() == "Ctrl+Q"
    with qtbot.waitSignal(window.closed, timeout=2000):
        qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert runner.stopped


def test_settings_are_remembered(qtbot, runner: FakeRunner, tmp_path: Path) -> None:
    path = tmp_path / "remember.ini"
    first = MainWindow(runner, settings=open_settings(path))
    qtbot.addWidget(first)
    first.listener_panel.set_host_port("::1", "12345")
    first.load_panel.clients_spin.setValue(77)
    first.load_panel.mode_combo.setCurrentText("flood")
    first.event_log.set_kinds({"stall", "exception"})
    first.close()
    second = MainWindow(FakeRunner(), settings=open_settings(path))
    qtbot.addWidget(second)
    assert second.listener_panel.host_edit.text() == "::1"
    assert second.listener_panel.port_edit.text() == "12345"
    assert second.load_panel.clients_spin.value() == 77
    assert second.load_panel.mode_combo.currentText() == "flood"
    assert second.event_log.model.kinds == {"stall", "exception"}


def test_a_window_saved_on_a_bigger_screen_reopens_as_large_as_fits(
    qtbot, runner: FakeRunner, tmp_path: Path
) -> None:
    # Qt's restoreGeometry shrinks a geometry saved on a wider screen to two thirds of this one:
    # a window last used at 1,600 x 1,000 came back at 553 x 400 on an 800 x 600 screen, and
    # stayed that small, saved so, on the next run at 1,600 x 1,000 (1,066 x 666).
    path = tmp_path / "bigger.ini"
    first = MainWindow(runner, settings=open_settings(path))
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    free = first.screen().availableGeometry().size()
    first.resize(free.width() * 7 // 4, free.height() * 3 // 2)
    first.close()
    settings = open_settings(path)
    saved = bytes(settings.value("window/geometry").data())
    # saveGeometry's format 3 keeps the screen's width at bytes 46-49: say it was twice this one.
    assert struct.unpack(">i", saved[46:50]) == (free.width(),)
    settings.setValue(
        "window/geometry", QByteArray(saved[:46] + struct.pack(">i", 2 * free.width()) + saved[50:])
    )
    settings.sync()
    second = MainWindow(FakeRunner(), settings=open_settings(path))
    qtbot.addWidget(second)
    second.show()
    qtbot.waitExposed(second)
    frame = second.frameGeometry()
    assert frame.width() <= free.width() and frame.height() <= free.height()
    assert frame.width() >= free.width() * 0.9, (frame, free)
    assert frame.height() >= free.height() * 0.9, (frame, free)


def test_listeners_from_snapshots_appear(window: MainWindow) -> None:
    feed(window, snapshot(listeners=listeners(10000, 10001)))
    assert [r.port for r in window.listener_panel.model.rows] == [10000, 10001]
    assert set(window.listener_panel.buttons) == {1, 2}
    assert "10000" in window.windowTitle()


def test_counts_are_worded_in_the_singular_for_one(window: MainWindow) -> None:
    feed(window, snapshot(connections=(connection(5),)))
    assert window.table.count_label.text() == "1 connection"
    assert window.status.labels["connections"].text() == "1 connection"


def test_the_title_says_loopmon_once(window: MainWindow) -> None:
    from PySide6.QtWidgets import QApplication

    from loopmon.gui.model.wording import shown_title

    feed(window, snapshot(listeners=listeners(10000)))
    original = QApplication.applicationDisplayName()
    for name in ("loopmon", original, ""):
        QApplication.setApplicationDisplayName(name)
        window._listeners_changed()
        title = shown_title(window.windowTitle(), QApplication.applicationDisplayName())
        assert title.count("loopmon") == 1, title
        assert "127.0.0.1:10000" in title
    QApplication.setApplicationDisplayName("loopmon")
    feed(window, snapshot(seq=2, backend="poll", listeners=listeners(10000)))
    assert window.windowTitle().startswith("poll")  # the backend follows, listeners unchanged
    QApplication.setApplicationDisplayName(original)


def test_save_dialogs_open_in_the_last_folder_else_the_working_directory(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    asked: list[str] = []
    answer = [""]

    def dialog(_parent, _title, where, _filter):  # type: ignore[no-untyped-def]
        asked.append(where)
        return answer[0], ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    monkeypatch.chdir(tmp_path)
    window._ask_export_csv()
    assert asked[-1] == str(tmp_path / "connections.csv")
    (tmp_path / "out").mkdir()
    answer[0] = str(tmp_path / "out" / "mine.csv")
    window._ask_export_csv()
    answer[0] = ""
    window._ask_export_png("queues")
    assert asked[-1] == str(tmp_path / "out" / "queues.png")


def test_sizes_are_iec_in_the_queue_plot(qtbot, window: MainWindow) -> None:
    window.tabs.setCurrentWidget(window.queue_plot)
    deep = connection(7, queue_bytes=3 << 20, queue_chunks=4)
    feed(window, snapshot(connections=(deep,)))
    feed(window, snapshot(seq=2, taken_at=1000.5, connections=(deep,)))
    window.queue_plot.refresh()
    axis = window.queue_plot.plot.getAxis("left")
    assert axis.labelText == "queued (MiB)"
    assert not axis.autoSIPrefix
    assert window.queue_plot.total.yData[-1] == pytest.approx(3.0)
    assert window.table.model.data(window.table.model.index(0, 5)) == "3.0 MiB"


def test_the_error_chip_is_quiet_until_an_error_is_seen(window: MainWindow) -> None:
    from loopmon.events import ERROR, READ
    from loopmon.gui.connection_model import ERRORS_SEEN_ROLE
    from loopmon.gui.mask_delegate import chip_look

    assert chip_look(ERROR, READ | ERROR, errors_seen=0) == "quiet"
    assert chip_look(ERROR, READ | ERROR, errors_seen=1) == "on"
    assert chip_look(READ, READ | ERROR, errors_seen=0) == "on"
    assert chip_look(ERROR, READ, errors_seen=3) == "off"
    feed(window, snapshot(connections=(connection(5, ready_error=2),)))
    model = window.table.model
    assert model.data(model.index(0, 4), ERRORS_SEEN_ROLE) == 2


def test_load_throughput_is_in_mib_per_s() -> None:
    from loopmon.gui.load_panel import LoadPanel
    from loopmon.gui.model.units import mib_per_s

    assert mib_per_s({"mb_per_s": 1.048576}) == pytest.approx(1.0)
    assert mib_per_s({"mib_per_s": 2.5, "mb_per_s": 9.0}) == 2.5
    summary = {"mode": "rr", "clients": 1, "size": 1, "mb_per_s": 10.48576}
    assert "10.0 MiB/s" in LoadPanel.describe_summary(summary)
    assert "MB/s" not in LoadPanel.describe_summary(summary)


def test_the_load_summary_counts_one_in_the_singular() -> None:
    from loopmon.gui.load_panel import LoadPanel

    summary = {"mode": "rr", "clients": 1, "size": 1, "round_trips": 1, "errors": 1}
    text = LoadPanel.describe_summary(dict(summary, mismatches=1))
    assert "rr · 1 client x" in text and "1 round trip " in text
    assert "1 error, 1 mismatch" in text


def test_a_strategy_change_from_the_loop_is_in_the_event_log(window: MainWindow) -> None:
    feed(window, None, [event("loop", "echo strategy: direct -> seed")])
    log = window.event_log.model
    assert log.event_at(log.rowCount() - 1).text == "echo strategy: direct -> seed"


# -- layout ------------------------------------------------------------------------------------
LONG = "a very long message that goes on " * 6 + "x" * 120


def settle(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Let the layouts take in what changed (posted LayoutRequest events)."""
    from PySide6.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()
    win.layout().activate()


def test_the_window_opens_within_the_screen(window: MainWindow) -> None:
    free = window.screen().availableGeometry()
    assert window.frameGeometry().width() <= free.width()
    assert window.frameGeometry().height() <= free.height()


def test_long_messages_wrap_and_never_widen_the_window(qtbot, window: MainWindow) -> None:
    window.resize(1280, 720)
    settle(qtbot, window)
    width, dock = window.width(), window.controls_dock.width()
    assert not window.table.view.horizontalScrollBar().isVisible()
    assert not window.controls_scroll.horizontalScrollBar().isVisible()
    for label in window.status.labels.values():
        label.setText(LONG)
    window.listener_panel.host_edit.setText("bad-host-" + "y" * 200)  # its error quotes it
    say(window.listener_panel.start_message, LONG, error=True)
    say(window.listener_panel.stop_message, LONG, error=True)
    say(window.loop_panel.backend_message, LONG, error=True)
    say(window.load_panel.result_label, LONG, error=True)
    say(window.load_panel.live_label, LONG)
    say(window.table.message, LONG, error=True)
    settle(qtbot, window)
    assert "bad-host-" in window.listener_panel.host_error.text()
    assert window.minimumSizeHint().width() <= 1280
    assert window.width() == width
    assert window.controls_dock.width() == dock
    assert not window.controls_scroll.horizontalScrollBar().isVisible()


def test_at_800_by_600_nothing_overlaps(qtbot, window: MainWindow) -> None:
    window.resize(800, 600)
    settle(qtbot, window)
    hint = window.minimumSizeHint()
    assert hint.width() <= 800 and hint.height() <= 600
    assert window.width() == 800

    def rect(widget):  # type: ignore[no-untyped-def]
        return widget.rect().translated(widget.mapTo(window, widget.rect().topLeft()))

    dock = rect(window.controls_dock)
    for widget in (window.table.filter_edit, window.table.count_label, window.tabs):
        assert not rect(widget).intersects(dock), widget
    panel = window.load_panel
    assert not rect(panel.start_button).intersects(rect(panel.stop_button))
