"""The live per-fd counters and their frozen records."""

from __future__ import annotations

import socket

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.loopstats import FdStat
from tests.loop_helpers import FakeClock


def test_a_new_registration_of_the_same_fd_starts_from_zero() -> None:
    loop = IOLoop(make_current=False)
    a, b = socket.socketpair()
    try:
        loop.add_handler(a.fileno(), lambda fd, ev: (a.recv(10), loop.stop()), READ)
        b.send(b"x")
        loop.start()
        old = loop.fd_stat(a.fileno())
        assert old is not None and old.ready[READ] == 1 and old.handler_time >= 0.0
        loop.remove_handler(a.fileno())
        loop.add_handler(a.fileno(), lambda fd, ev: None, WRITE)
        new = loop.fd_stat(a.fileno())
        assert new is not None and new is not old and new.ready is not old.ready
        assert new.ready_counts() == (0, 0, 0) and new.handler_time == 0.0
        assert old.ready[READ] == 1  # the old record is untouched
    finally:
        loop.close()
        a.close()
        b.close()


def test_ready_counts_count_a_mask_with_both_bits_in_both() -> None:
    stat = FdStat(5, READ, 0.0)
    stat.ready[READ] += 2
    stat.ready[READ | WRITE] += 1
    stat.ready[READ | ERROR] += 1
    assert stat.ready_counts() == (4, 1, 1)


def test_ready_counts_without_an_error_mask_ignore_the_dispatch_cells() -> None:
    # The short path (no ERROR mask seen) must read only the count cells, not what the loop
    # keeps in the cells no mask uses.
    stat = FdStat(5, READ | WRITE, 0.0)
    stat.ready[2], stat.ready[3], stat.ready[0] = object(), print, 0.5
    stat.ready[READ] += 3
    stat.ready[WRITE] += 2
    stat.ready[READ | WRITE] += 1
    assert stat.ready_counts() == (4, 3, 0)
    stat.ready[WRITE | ERROR] += 1
    assert stat.ready_counts() == (4, 4, 1)


def test_handler_time_is_exact_and_kept_apart_from_the_readiness_counts() -> None:
    # Handler time shares the readiness list (cell 0, which no mask uses): a mix-up would
    # show as a count that moved by a fraction or a time that moved by one.
    clock = FakeClock()
    loop = IOLoop(make_current=False, time_func=clock)
    a, b = socket.socketpair()
    calls: list[int] = []

    def slow(fd: int, events: int) -> None:
        a.recv(1)  # one byte a pass: level triggering calls again while two are left
        calls.append(events)
        clock.advance(0.25)
        if len(calls) == 3:
            loop.stop()

    try:
        loop.add_handler(a.fileno(), slow, READ)
        b.send(b"xyz")
        loop.start()
        (fd,) = loop.stats().fds
        assert fd.handler_time_s == 0.75
        assert (fd.ready_read, fd.ready_write, fd.ready_error) == (3, 0, 0)
    finally:
        loop.close()
        a.close()
        b.close()


def test_no_special_cell_can_be_indexed_by_a_delivered_mask() -> None:
    # The dispatch counts an event with ``cells[events & 31] += 1`` in the same list that holds
    # the handler, its object, its time and its registration poll: a mask that reached one of
    # those cells would overwrite the handler with an int. Every mask a poller may deliver is
    # a non-empty combination of READ, WRITE and ERROR's two bits.
    from itertools import combinations

    from loopmon.loopstats import HANDLER, HANDLER_TIME, OBJ, REGISTERED

    special = {HANDLER_TIME, OBJ, HANDLER, REGISTERED}
    assert len(special) == 4
    bits = (READ, WRITE, 0x008, 0x010)  # ERROR is EPOLLERR | EPOLLHUP
    assert ERROR == 0x008 | 0x010
    delivered = {sum(combo) for n in range(1, len(bits) + 1) for combo in combinations(bits, n)}
    for mask in delivered:
        assert mask & 31 == mask and mask & 31 not in special, mask
    stat = FdStat(3, READ, 0.0)
    assert len(stat.ready) == 32 and all(cell < 32 for cell in special)
