"""The live per-fd counters: flat arrays the hot path updates in place, and what reads them."""

from __future__ import annotations

import socket

from loopmon.events import READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.loopstats import SLOTS, FdCounters, FdStat


def test_claim_grows_keeps_others_and_zeroes_a_reused_fd() -> None:
    counters = FdCounters()
    counters.claim(3)
    counters.cells[3 * SLOTS + READ] += 5
    counters.cells[3 * SLOTS] += 0.25
    counters.claim(1000)  # grows past the first allocation
    assert counters.ready(3)[READ] == 5 and counters.handler_time(3) == 0.25
    assert counters.ready(1000) == [0] * SLOTS
    counters.claim(3)  # a new registration of fd 3 starts from zero
    assert counters.ready(3) == [0] * SLOTS and counters.handler_time(3) == 0.0


def test_handler_slot_is_not_a_readiness_count() -> None:
    counters = FdCounters()
    counters.claim(7)
    counters.cells[7 * SLOTS] += 1.5
    assert counters.ready(7)[0] == 0  # slot 0 is mask 0, which no poller delivers


def test_a_detached_stat_keeps_its_figures_when_the_fd_is_registered_again() -> None:
    loop = IOLoop(make_current=False)
    a, b = socket.socketpair()
    try:
        loop.add_handler(a.fileno(), lambda fd, ev: loop.stop(), READ)
        b.send(b"x")
        loop.start()
        old = loop.fd_stat(a.fileno())
        assert old is not None and old.ready[READ] >= 1 and old.handler_time >= 0.0
        counts = list(old.ready)
        loop.remove_handler(a.fileno())
        loop.add_handler(a.fileno(), lambda fd, ev: None, WRITE)
        new = loop.fd_stat(a.fileno())
        assert new is not None and new is not old
        assert new.ready == [0] * SLOTS
        assert old.ready == counts  # not the new registration's counters
        assert old.freeze(loop.time()).ready_read == counts[READ] + counts[READ | 8]
    finally:
        loop.close()
        a.close()
        b.close()


def test_a_stat_made_alone_has_its_own_counters() -> None:
    stat = FdStat(5, READ, 0.0)
    assert stat.ready == [0] * SLOTS and stat.handler_time == 0.0
