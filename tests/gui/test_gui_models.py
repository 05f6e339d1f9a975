"""The table and log models under Qt's model tester, fed hand-built snapshots."""

from __future__ import annotations

import pytest
from fakes import busy_connections, connection, event, listeners, snapshot
from PySide6.QtCore import QModelIndex, Qt

from loopmon.events import ERROR, READ, WRITE
from loopmon.gui.connection_model import AGE, FD, MASK, MASK_ROLE, QUEUE, ConnectionModel
from loopmon.gui.event_model import TEXT, EventLogModel
from loopmon.gui.listener_model import ListenerModel
from loopmon.snapshot import ListenerRow

pytestmark = pytest.mark.gui


def column(model: ConnectionModel, col: int) -> list[str]:
    return [model.data(model.index(r, col)) for r in range(model.rowCount())]


def test_connection_model_passes_the_model_tester(qtmodeltester) -> None:
    model = ConnectionModel()
    model.set_snapshot(snapshot(connections=busy_connections(50)))
    qtmodeltester.check(model, force_py=True)
    for step in range(1, 4):  # same fds: dataChanged path
        model.set_snapshot(snapshot(seq=step + 1, connections=busy_connections(50, step)))
    model.set_snapshot(snapshot(seq=9, connections=busy_connections(30)))  # reset path
    model.sort(QUEUE, Qt.SortOrder.DescendingOrder)  # layout change path
    model.set_filter("paused")
    model.set_filter("")
    model.set_snapshot(snapshot(seq=10, connections=()))


def test_connection_model_shows_row_values() -> None:
    model = ConnectionModel()
    row = connection(
        7, peer="[::1]:5555", mask=READ | WRITE | ERROR, queue_bytes=2048, created_at=990.0
    )
    model.set_snapshot(snapshot(taken_at=1000.0, connections=(row,)))
    assert model.rowCount() == 1
    assert model.data(model.index(0, FD)) == "7"
    assert model.data(model.index(0, MASK)) == "READ|WRITE|ERROR"
    assert model.data(model.index(0, MASK), MASK_ROLE) == READ | WRITE | ERROR
    assert model.data(model.index(0, QUEUE)) == "2.0 KiB"
    assert model.data(model.index(0, AGE)) == "10 s"
    assert model.data(model.index(0, 2)) == "127.0.0.1:10000"  # the listener's address


def test_connection_model_sorts_every_column_both_ways() -> None:
    model = ConnectionModel()
    rows = (
        connection(3, queue_bytes=10, created_at=5.0),
        connection(1, queue_bytes=30, created_at=1.0),
        connection(2, queue_bytes=20, created_at=9.0),
    )
    model.set_snapshot(snapshot(connections=rows))
    model.sort(QUEUE, Qt.SortOrder.DescendingOrder)
    assert column(model, FD) == ["1", "2", "3"]
    model.sort(FD, Qt.SortOrder.AscendingOrder)
    assert column(model, FD) == ["1", "2", "3"]
    model.sort(AGE, Qt.SortOrder.AscendingOrder)  # youngest first: the latest created_at
    assert column(model, FD) == ["2", "3", "1"]
    # the order holds for the next snapshot too
    model.set_snapshot(snapshot(seq=2, connections=rows))
    assert column(model, FD) == ["2", "3", "1"]


def test_connection_model_filters_by_text() -> None:
    model = ConnectionModel()
    rows = (
        connection(5, peer="10.0.0.5:4000"),
        connection(6, peer="10.0.0.6:4000", state="paused"),
        connection(7, peer="192.168.1.7:4000", mask=READ | WRITE | ERROR),
    )
    model.set_snapshot(snapshot(connections=rows))
    model.set_filter("10.0.0")
    assert column(model, FD) == ["5", "6"]
    model.set_filter("PAUSED")
    assert column(model, FD) == ["6"]
    model.set_filter("write")
    assert column(model, FD) == ["7"]
    model.set_filter("fd:7")
    assert column(model, FD) == ["7"]
    model.set_filter("5")  # an fd, or a peer or listener address holding it
    assert "5" in column(model, FD)
    model.set_filter("")
    assert model.rowCount() == 3


def test_listener_model_passes_the_model_tester(qtmodeltester) -> None:
    model = ListenerModel()
    model.set_listeners(listeners(10000, 10001))
    qtmodeltester.check(model, force_py=True)
    model.announce(ListenerRow(id=9, host="::1", port=4000, state="listening"))
    assert [r.address for r in model.rows] == ["127.0.0.1:10000", "127.0.0.1:10001", "[::1]:4000"]
    model.forget(1)
    assert [r.id for r in model.rows] == [2, 9]
    model.set_listeners(listeners(10000, 10001))  # an older snapshot still has #1: stays gone
    assert [r.id for r in model.rows] == [2, 9]


def test_listener_ids_stopped_in_one_session_do_not_hide_another_sessions() -> None:
    # A restarted producer numbers its listeners from 1 again: the model keys on (session, id).
    model = ListenerModel()
    model.set_listeners(listeners(10000), session="a")
    model.forget(1)
    assert model.rows == []
    model.set_listeners(listeners(10000), session="a")  # a late snapshot of the stopped one
    assert model.rows == []
    model.set_listeners(listeners(10001), session="b")  # the new producer's listener #1
    assert [r.address for r in model.rows] == ["127.0.0.1:10001"]
    # answers from the old producer change nothing in the new one
    model.forget(1, session="a")
    model.announce(ListenerRow(id=7, host="::1", port=1, state="listening"), session="a")
    assert [r.address for r in model.rows] == ["127.0.0.1:10001"]
    model.forget(1, session="b")
    assert model.rows == []


def test_a_listener_announced_before_the_first_session_belongs_to_it() -> None:
    model = ListenerModel()
    model.announce(ListenerRow(id=1, host="127.0.0.1", port=10000, state="listening"))
    model.set_listeners((), session="a")  # a snapshot taken before the listener was added
    assert [r.id for r in model.rows] == [1]


def test_listener_model_hides_stopped_listeners() -> None:
    model = ListenerModel()
    rows = listeners(1, 2)
    model.set_listeners((rows[0], ListenerRow(id=2, host="127.0.0.1", port=2, state="stopped")))
    assert [r.id for r in model.rows] == [1]


def test_event_log_model_passes_the_model_tester(qtmodeltester) -> None:
    model = EventLogModel(max_entries=20)
    model.add([event("connect", fd=5), event("stall", detail="frame 1\nframe 2\nframe 3")])
    qtmodeltester.check(model, force_py=True)
    model.add([event("close", fd=5), event("exception", detail="Traceback\n  boom")] * 15)
    model.set_kinds({"stall", "exception"})
    model.add([event("stall", detail="a\nb")])
    model.set_kinds({"connect", "close"})
    model.clear()


def test_event_log_is_bounded_and_keeps_the_newest() -> None:
    model = EventLogModel(max_entries=100)
    model.add([event("connect", text=f"c{i}", fd=i) for i in range(250)])
    assert model.rowCount() == 100
    assert model.event_at(0).text == "c150"
    assert model.event_at(99).text == "c249"
    assert model.trimmed == {"connect": 150}
    model.add([], dropped={"connect": 7})
    assert model.not_kept == {"connect": 157}


def test_event_log_keeps_each_kinds_newest() -> None:
    model = EventLogModel(max_entries=10)
    model.add([event("stall", text="rare")])
    model.add([event("connect", text=f"c{i}") for i in range(25)])
    model.add([event("close", text=f"x{i}") for i in range(3)])
    texts = [model.event_at(r).text for r in range(model.rowCount())]
    assert texts == ["rare", *(f"c{i}" for i in range(15, 25)), "x0", "x1", "x2"]
    # interleaved churn: the connects let go sit between the closes kept
    model.add([event("connect" if i % 2 else "close", text=f"m{i}") for i in range(40)])
    texts = [model.event_at(r).text for r in range(model.rowCount())]
    assert texts[0] == "rare" and len(texts) == 21
    assert texts[1:] == [f"m{i}" for i in range(20, 40)]


def test_event_log_model_stays_consistent_when_interleaved_rows_go(qtmodeltester) -> None:
    model = EventLogModel(max_entries=8)
    model.add([event("connect" if i % 3 else "close", fd=i) for i in range(12)])
    qtmodeltester.check(model, force_py=True)
    model.add([event("connect", fd=i) for i in range(5)])  # a few runs: removed in place
    model.add([event("close", fd=i) for i in range(8)])
    model.add([event("stall", detail="a\nb")])


def test_event_log_filters_by_kind_and_shows_a_stack_as_children() -> None:
    model = EventLogModel()
    stack = 'File "echo.py", line 10, in handle\n  time.sleep(0.5)'
    model.add([event("connect", fd=4), event("stall", text="loop blocked 0.5 s", detail=stack)])
    model.set_kinds({"stall"})
    assert model.rowCount() == 1
    parent = model.index(0, 0)
    assert model.hasChildren(parent)
    assert model.rowCount(parent) == 2
    assert model.data(model.index(1, TEXT, parent)) == "  time.sleep(0.5)"
    assert model.parent(model.index(1, TEXT, parent)) == parent
    model.set_kinds({"connect"})
    assert model.rowCount() == 1
    assert not model.hasChildren(model.index(0, 0))
    assert model.rowCount(QModelIndex()) == 1
