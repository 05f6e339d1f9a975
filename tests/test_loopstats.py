"""The live per-fd counters and their frozen records."""

from __future__ import annotations

import socket

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.loopstats import FdStat


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
        assert new is not None and new is not old and new.ready == [0] * 32
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
