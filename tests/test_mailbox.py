"""The mailbox: latest snapshot replaces the unread one, events are bounded, one wake."""

from __future__ import annotations

import select
import threading
import tracemalloc

from loopmon.mailbox import Mailbox
from loopmon.snapshot import LoopEvent, Snapshot


def snap(seq: int) -> Snapshot:
    return Snapshot(seq=seq, taken_at=float(seq), backend="epoll", strategy="direct")


def readable(mailbox: Mailbox) -> bool:
    return bool(select.select([mailbox.fileno()], [], [], 0)[0])


def test_unread_snapshot_is_replaced_not_queued() -> None:
    box = Mailbox()
    for i in range(1, 101):
        box.post(snap(i))
    assert readable(box)
    snapshot, events, dropped = box.take()
    assert snapshot is not None and snapshot.seq == 100
    assert (events, dropped) == ([], 0)
    assert not readable(box)
    assert box.take() == (None, [], 0)
    box.close()


def test_event_log_is_bounded_and_counts_what_it_dropped() -> None:
    box = Mailbox(log_size=10)
    box.post(None, [LoopEvent(float(i), "connect", f"c{i}") for i in range(25)])
    _, events, dropped = box.take()
    assert [e.text for e in events] == [f"c{i}" for i in range(15, 25)]
    assert dropped == 15
    box.close()


def test_poke_wakes_with_nothing_new() -> None:
    box = Mailbox()
    box.poke()
    assert readable(box)
    assert box.take() == (None, [], 0)
    assert not readable(box)
    box.close()


def test_reader_thread_sees_every_final_state() -> None:
    box = Mailbox()
    last_seen: list[int] = []
    events_seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set() or readable(box):
            if box.wait(0.5):
                snapshot, events, _ = box.take()
                if snapshot is not None:
                    last_seen.append(snapshot.seq)
                events_seen.extend(e.text for e in events)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 5001):
        box.post(snap(i), [LoopEvent(float(i), "connect", str(i))])
    done.set()
    thread.join(10)
    assert last_seen[-1] == 5000
    assert last_seen == sorted(last_seen)
    assert events_seen == [str(i) for i in range(1, 5001)]
    box.close()


def test_a_reader_that_never_reads_leaves_memory_flat() -> None:
    box = Mailbox(log_size=1000)
    for i in range(2000):  # warm up to the bound
        box.post(snap(i), [LoopEvent(float(i), "connect", "x")])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(20000):
        box.post(snap(i), [LoopEvent(float(i), "connect", "x")])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 200_000, after - before
    box.close()


def test_a_frequent_kind_never_evicts_a_rare_one() -> None:
    # A churn of connects and closes must not push out the one stall or listener failure
    # that matters: each kind keeps its own last N.
    box = Mailbox(log_size=10)
    box.post(None, [LoopEvent(0.0, "listener_failed", "port in use")])
    box.post(None, [LoopEvent(1.0 + i, "connect", f"c{i}") for i in range(1000)])
    box.post(None, [LoopEvent(2000.0, "stall", "blocked")])
    box.post(None, [LoopEvent(3000.0 + i, "close", f"x{i}") for i in range(50)])
    _, events, dropped = box.take_by_kind()
    kinds = [e.kind for e in events]
    assert kinds.count("listener_failed") == 1 and kinds.count("stall") == 1
    assert kinds.count("connect") == 10 and kinds.count("close") == 10
    assert dropped == {"connect": 990, "close": 40}
    # Posting order is kept across kinds.
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert events[0].text == "port in use"
    box.close()


def test_a_replaced_snapshot_hands_on_its_closes_and_its_interval() -> None:
    from loopmon.snapshot import ClosedConnection, ConnectionRow, LoopFigures

    def row(cid: int) -> ConnectionRow:
        return ConnectionRow(fd=cid, peer="", listener_id=1, state="open", mask=1,
                             read_fraction=1.0, write_fraction=0.0, id=cid)  # fmt: skip

    def closed_snap(seq: int, cid: int, session: str = "s") -> Snapshot:
        return Snapshot(
            seq=seq, taken_at=float(seq), backend="epoll", strategy="direct", session=session,
            interval=LoopFigures(span_s=0.04, events=10, iterations=2),
            closed=(ClosedConnection(row(cid), float(seq), "peer closed"),), closed_omitted=1,
        )  # fmt: skip

    box = Mailbox()
    box.post(closed_snap(1, 7))
    box.post(closed_snap(2, 8))
    box.post(closed_snap(3, 9))
    snapshot, _, _ = box.take()
    assert snapshot is not None and snapshot.seq == 3
    assert [c.row.id for c in snapshot.closed] == [7, 8, 9]  # none lost, oldest first
    assert snapshot.closed_omitted == 3
    assert snapshot.interval.events == 30 and snapshot.interval.iterations == 6
    assert abs(snapshot.interval.span_s - 0.12) < 1e-9
    assert box.replaced == 2
    box.post(closed_snap(4, 10))  # read: nothing to carry
    snapshot, _, _ = box.take()
    assert snapshot is not None and [c.row.id for c in snapshot.closed] == [10]
    box.post(closed_snap(5, 11, session="old"))
    box.post(closed_snap(6, 12, session="new"))  # another session's ids mean other things
    snapshot, _, _ = box.take()  # the old session's last first, unmixed
    assert snapshot is not None and [c.row.id for c in snapshot.closed] == [11]
    snapshot, _, _ = box.take()
    assert snapshot is not None and [c.row.id for c in snapshot.closed] == [12]
    box.close()


def test_a_restarted_producers_snapshot_never_swallows_the_old_sessions_last() -> None:
    """A remote source's mailbox lives across reconnects: the old session's last unread
    snapshot (its closes) is taken first, with the events posted before the switch."""
    from loopmon.snapshot import ClosedConnection, ConnectionRow

    def closed_snap(seq: int, cid: int, session: str) -> Snapshot:
        row = ConnectionRow(fd=5, peer="", listener_id=1, state="open", mask=1,
                            read_fraction=1.0, write_fraction=0.0, id=cid)  # fmt: skip
        gone = (ClosedConnection(row, 1.0, "peer closed"),)
        return Snapshot(seq=seq, taken_at=float(seq), backend="epoll", strategy="direct",
                        session=session, closed=gone)  # fmt: skip

    box = Mailbox()
    box.post(closed_snap(1, 7, "old"), [LoopEvent(1.0, "close", "old close")])
    box.post(closed_snap(2, 8, "old"))
    box.post(closed_snap(1, 1, "new"), [LoopEvent(0.5, "loop", "new loop")])
    first, events, _ = box.take()
    assert first is not None and first.session == "old"
    assert [c.row.id for c in first.closed] == [7, 8]
    assert [e.text for e in events] == ["old close"]
    assert readable(box)  # woken again for the new session's
    second, events, _ = box.take()
    assert second is not None and second.session == "new"
    assert [c.row.id for c in second.closed] == [1]
    assert [e.text for e in events] == ["new loop"]
    assert box.take() == (None, [], 0)
    box.close()
