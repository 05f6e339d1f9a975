"""The IOLoop adapter: one handler per fd whose mask is the union of reader and writer."""

from __future__ import annotations

import socket

from loopmon.events import ERROR, READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.stream.reactor import IOLoopReactor


def test_reader_and_writer_share_one_handler_and_its_mask() -> None:
    loop = IOLoop(make_current=False)
    a, b = socket.socketpair()
    try:
        reactor = IOLoopReactor(loop)
        calls: list[str] = []
        fd = a.fileno()
        reactor.add_reader(fd, lambda: calls.append("read"))
        assert loop.fd_stat(fd).mask == READ | ERROR  # type: ignore[union-attr]
        reactor.add_writer(fd, lambda: calls.append("write"))
        assert loop.fd_stat(fd).mask == READ | WRITE | ERROR  # type: ignore[union-attr]
        b.send(b"x")
        reactor._ready(fd, READ | WRITE)
        assert calls == ["read", "write"]
        reactor.remove_writer(fd)
        assert loop.fd_stat(fd).mask == READ | ERROR  # type: ignore[union-attr]
        reactor.remove_reader(fd)
        assert loop.fd_stat(fd) is None
        reactor.remove_reader(fd)  # twice is harmless
        fired: list[float] = []
        timer = reactor.call_later(10.0, lambda: fired.append(1.0))
        timer.cancel()
        reactor.call_later(0.0, lambda: (fired.append(2.0), loop.stop()))
        loop.start()
        assert fired == [2.0]
    finally:
        a.close()
        b.close()
        loop.close()
