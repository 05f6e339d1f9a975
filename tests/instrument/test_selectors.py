"""The watched selectors select exactly what CPython's do, and count readiness per fd."""

from __future__ import annotations

import itertools
import selectors
import socket
from collections.abc import Iterator

import pytest

from loopmon.events import READ, WRITE
from loopmon.instrument import internals
from loopmon.instrument.epoll_selector import WatchedEpollSelector
from loopmon.instrument.fdtable import FdTable
from loopmon.instrument.selector import WatchedSelector


def table() -> FdTable:
    return FdTable(1, itertools.count(1), set())


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def ready_of(selected: list[tuple[selectors.SelectorKey, int]]) -> set[tuple[int, int]]:
    return {(key.fd, events) for key, events in selected}


@pytest.mark.skipif(not internals.epoll_selector_ok(), reason="no epoll copy here")
def test_the_epoll_copy_selects_what_epoll_selector_does(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    plain = selectors.EpollSelector()  # type: ignore[attr-defined, unused-ignore]
    watched = WatchedEpollSelector(table())
    (a0, b0), (a1, b1), (a2, _) = pairs
    b0.send(b"x")  # a0 readable
    b1.send(b"y")  # a1 readable and writable
    masks = {a0: selectors.EVENT_READ, a1: selectors.EVENT_READ | selectors.EVENT_WRITE}
    masks[a2] = selectors.EVENT_WRITE  # writable only
    for s in (plain, watched):
        for sock, mask in masks.items():
            s.register(sock, mask, "data")
    want = ready_of(plain.select(0))
    assert ready_of(watched.select(0)) == want
    assert want == {(a0.fileno(), 1), (a1.fileno(), 3), (a2.fileno(), 2)}
    watched.select(0)
    t = watched.table
    assert t.entries[a0.fileno()].stat.ready_counts() == (2, 0, 0)
    assert t.entries[a1.fileno()].stat.ready_counts() == (2, 2, 0)
    assert t.entries[a2.fileno()].stat.ready_counts() == (0, 2, 0)
    assert watched.iterations == 2 and watched.events == 6
    assert t.entries[a1.fileno()].stat.mask == READ | WRITE
    plain.close()
    watched.close()


def test_the_wrapper_counts_readiness_and_masks(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    watched = WatchedSelector(selectors.PollSelector(), table())
    (a0, b0), _, _ = pairs
    watched.register(a0, selectors.EVENT_READ)
    assert watched.select(0) == []
    b0.send(b"x")
    assert ready_of(watched.select(0)) == {(a0.fileno(), 1)}
    watched.modify(a0, selectors.EVENT_READ | selectors.EVENT_WRITE)
    assert ready_of(watched.select(0)) == {(a0.fileno(), 3)}
    stat = watched.table.entries[a0.fileno()].stat
    assert stat.ready_counts() == (2, 1, 0)
    assert stat.mask == READ | WRITE
    assert watched.iterations == 3
    watched.close()
    assert watched.table.entries == {}
    closed, _ = watched.table.take_closed()
    assert [c.reason for c in closed] == ["loop closed"]


def test_a_paused_connection_keeps_its_row_and_a_reused_fd_gets_a_new_one(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    t = table()
    (a0, _), _, _ = pairs
    fd = a0.fileno()
    t.added(fd, READ, 1.0)
    first = t.entries[fd].id
    t.removed(fd, 2.0)  # asyncio's pause_reading with nothing to write
    (row,) = t.rows(3.0, 0.0)
    assert row.state == "paused" and row.id == first and row.mask == 0
    t.added(fd, READ, 4.0)  # resume_reading: the same socket
    assert t.entries[fd].id == first
    assert t.take_closed() == ([], 0)
    # The socket closes and the kernel hands its number to a new one at once.
    t.removed(fd, 5.0)
    a0.close()
    replacement = socket.socket()
    try:
        if replacement.fileno() != fd:
            pytest.skip("the kernel gave another number")
        t.added(fd, READ, 6.0)
        assert t.entries[fd].id != first
        closed, _ = t.take_closed()
        assert [c.row.id for c in closed] == [first]
    finally:
        replacement.close()


def test_an_unwatched_fd_that_closed_is_reported_closed_at_the_next_snapshot(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    t = table()
    (a0, _), _, _ = pairs
    fd = a0.fileno()
    t.added(fd, READ, 1.0)
    t.removed(fd, 2.0)
    a0.close()
    assert t.rows(3.0, 0.0) == ()
    closed, _ = t.take_closed()
    assert [c.row.state for c in closed] == ["closed"]


def test_fractions_are_the_share_of_the_interval_each_mask_was_held(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    t = table()
    (a0, _), _, _ = pairs
    fd = a0.fileno()
    t.added(fd, READ, 0.0)
    t.changed(fd, READ | WRITE, 7.5)
    (row,) = t.rows(10.0, 0.0)
    assert row.read_fraction == pytest.approx(1.0)
    assert row.write_fraction == pytest.approx(0.25)
    (row2,) = t.rows(20.0, 10.0)
    assert row2.write_fraction == pytest.approx(1.0)
    (row3,) = t.rows(30.0, 20.0)
    assert row3 is row2  # quiet: the same row object
