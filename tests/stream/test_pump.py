"""``stream.pump``: the publisher ``loopmon run`` serves from the program's loop thread, with no
thread of its own (a second thread costs a single-threaded program on every syscall)."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from stream_helpers import INFO, TOKEN, RawConsumer, snapshot

from loopmon.stream.pump import PublisherPump, PumpReactor
from loopmon.wire import decode_message
from loopmon.wire.frames import DELTA, GOODBYE, KEYFRAME, PRODUCER_HELLO
from loopmon.wire.snapshots import SnapshotDecoder


class Driven:
    """What ``RawConsumer.read`` pumps: the real reactor (None once it is closed)."""

    def __init__(self, reactor: PumpReactor | None) -> None:
        self.reactor = reactor

    def pump(self, rounds: int, timeout: float) -> None:
        for _ in range(rounds if self.reactor is not None else 0):
            self.reactor.pump(timeout)  # type: ignore[union-attr]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_reactor_runs_only_when_pumped() -> None:
    clock = Clock()
    reactor = PumpReactor(clock)
    a, b = socket.socketpair()
    try:
        calls: list[str] = []
        reactor.add_reader(a.fileno(), lambda: calls.append("read"))
        reactor.add_writer(a.fileno(), lambda: calls.append("write"))
        b.send(b"x")
        assert calls == []  # nothing happens between pumps
        reactor.pump()
        assert calls == ["read", "write"]  # the reader first, as IOLoopReactor
        reactor.remove_writer(a.fileno())
        calls.clear()
        reactor.pump()
        assert calls == ["read"]
        reactor.remove_reader(a.fileno())
        reactor.remove_reader(a.fileno())  # twice is harmless
        calls.clear()
        reactor.pump()
        assert calls == []
    finally:
        reactor.close()
        a.close()
        b.close()


def test_timers_fire_at_the_first_pump_due_in_order_and_cancelled_never() -> None:
    clock = Clock()
    reactor = PumpReactor(clock)
    fired: list[int] = []
    reactor.call_later(0.2, lambda: fired.append(2))
    reactor.call_later(0.1, lambda: fired.append(1))
    reactor.call_later(0.15, lambda: fired.append(9)).cancel()
    reactor.pump()
    assert fired == []
    clock.now += 0.5
    assert fired == []  # not before the pump
    reactor.pump()
    assert fired == [1, 2]
    reactor.close()


def test_a_failing_callback_is_logged_never_raised_into_the_program(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reactor = PumpReactor(Clock())
    fired: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    reactor.call_later(0.0, boom)
    reactor.call_later(0.0, lambda: fired.append(1))
    with caplog.at_level(logging.ERROR, logger="loopmon.stream"):
        reactor.pump()
    assert fired == [1] and "a stream callback failed" in caplog.text
    reactor.close()


def test_a_consumer_is_served_on_the_callers_thread_and_told_goodbye() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    owned: list[object] = []
    pump = PublisherPump(sock, INFO, TOKEN, own=owned.append, disown=owned.remove)
    threads = threading.active_count()
    pump.start()
    assert threading.active_count() == threads  # no thread: the whole point
    assert sock in owned and pump.reactor in owned  # loopmon's fds, closed in a forked child
    host, port = sock.getsockname()[:2]
    consumer = RawConsumer((host, port))
    driven = Driven(pump.reactor)
    try:
        consumer.hello()
        [hello] = consumer.read(driven, 1)  # type: ignore[arg-type]
        assert hello.type == PRODUCER_HELLO
        assert any(isinstance(o, socket.socket) and o is not sock for o in owned)
        decoder = SnapshotDecoder()
        for seq in (1, 2):
            pump.publish(snapshot(seq, bump=seq))  # encodes, sends, pumps: one call
            [frame] = consumer.read(driven, 1)  # type: ignore[arg-type]
            assert frame.type == (KEYFRAME if seq == 1 else DELTA)
            assert decoder.decode(frame) == snapshot(seq, bump=seq)
        pump.close("the program exited")
        [bye] = consumer.read(Driven(None), 1)  # type: ignore[arg-type]
        assert bye.type == GOODBYE and decode_message(bye).reason == "the program exited"  # type: ignore[union-attr]
        assert owned == []  # all disowned before their close
        assert sock.fileno() == -1
    finally:
        consumer.close()


def test_publish_sends_what_waits_before_the_new_frame() -> None:
    # A frame left queued by the previous tick goes out first, while the socket has room:
    # otherwise the publisher counts the consumer as still full and it loses this one.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    pump = PublisherPump(sock, INFO, TOKEN, own=lambda _: None, disown=lambda _: None)
    pump.start()
    a, b = socket.socketpair()
    order: list[str] = []
    try:
        pump.reactor.add_writer(a.fileno(), lambda: order.append("queued frames sent"))
        publish = pump.publisher.publish
        pump.publisher.publish = lambda s: (order.append("publish"), publish(s))  # type: ignore[assignment, func-returns-value]
        pump.publish(snapshot(1))
        assert order == ["queued frames sent", "publish", "queued frames sent"]
    finally:
        pump.reactor.remove_writer(a.fileno())
        pump.close()
        a.close()
        b.close()
