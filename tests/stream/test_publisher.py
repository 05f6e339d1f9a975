"""The publisher on a reactor the test drives: handshakes, snapshots, commands, and what bad
or slow consumers cannot do to it."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct

import pytest
from stream_helpers import INFO, TOKEN, PumpReactor, RawConsumer, row, snapshot

from loopmon.snapshot import ClosedConnection, ListenerRow, Snapshot
from loopmon.stream import publisher as publisher_module
from loopmon.stream.publisher import Publisher
from loopmon.wire import (
    Command,
    ConsumerHello,
    ErrorMessage,
    Lost,
    ProducerHello,
    Reply,
    SetStrategy,
    SnapshotDecoder,
    StartListener,
    StopListener,
    decode_message,
    encode_message,
)
from loopmon.wire.frames import DELTA, ERROR, KEYFRAME, LOST, PRODUCER_HELLO, Frame
from loopmon.wire.snapshots import Encoded


def commands(call: object) -> ListenerRow | None:
    if isinstance(call, StartListener):
        return ListenerRow(7, call.host, 4242, "listening")
    if isinstance(call, StopListener):
        raise KeyError(f"no listener with id {call.listener_id}")
    return None


@pytest.fixture
def reactor() -> PumpReactor:
    return PumpReactor()


@pytest.fixture
def publisher(reactor: PumpReactor):  # type: ignore[no-untyped-def]
    pub = Publisher(reactor, INFO, TOKEN, commands=commands, max_consumers=4)
    pub.start()
    yield pub
    pub.close()


def attached(publisher: Publisher, reactor: PumpReactor) -> RawConsumer:
    consumer = RawConsumer(publisher.address)
    consumer.hello()
    [hello] = consumer.read(reactor, 1)
    assert hello.type == PRODUCER_HELLO
    assert decode_message(hello) == ProducerHello(INFO)
    return consumer


def test_hello_then_keyframe_then_deltas(publisher: Publisher, reactor: PumpReactor) -> None:
    consumer = attached(publisher, reactor)
    decoder = SnapshotDecoder()
    for seq in (1, 2, 3):
        publisher.publish(snapshot(seq, bump=seq))
        [frame] = consumer.read(reactor, 1)
        assert frame.type == (KEYFRAME if seq == 1 else DELTA)
        assert decoder.decode(frame) == snapshot(seq, bump=seq)


def test_a_late_consumer_gets_the_latest_keyframe(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    early = attached(publisher, reactor)
    publisher.publish(snapshot(1))
    publisher.publish(snapshot(2, bump=1))
    late = attached(publisher, reactor)
    [frame] = late.read(reactor, 1)
    assert frame.type == KEYFRAME
    assert SnapshotDecoder().decode(frame) == snapshot(2, bump=1)
    assert [f.type for f in early.read(reactor, 2)] == [KEYFRAME, DELTA]


def error_then_close(consumer: RawConsumer, reactor: PumpReactor) -> ErrorMessage:
    [frame] = consumer.read(reactor, 1)
    assert frame.type == ERROR
    consumer.read(reactor, 1)
    assert consumer.eof
    error = decode_message(frame)
    assert isinstance(error, ErrorMessage)
    return error


@pytest.mark.parametrize("token", [b"", bytes(32), TOKEN[:-1]])
def test_a_bad_token_gets_one_error_then_close(
    publisher: Publisher, reactor: PumpReactor, token: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = RawConsumer(publisher.address)
    consumer.hello(token)
    with caplog.at_level(logging.WARNING, "loopmon.stream"):
        error = error_then_close(consumer, reactor)
    assert error.kind == "token"
    assert "token" in caplog.text
    publisher.publish(snapshot(1))
    attached(publisher, reactor)  # and the producer goes on


def test_a_newer_version_is_told_the_versions_spoken(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    consumer = RawConsumer(publisher.address)
    body = b"LMON\x02" + b"anything version 2 says"
    consumer.send(struct.pack(">IB", len(body) + 1, 0x01) + body)
    error = error_then_close(consumer, reactor)
    assert error.kind == "version" and error.supported == (1,)


def test_a_newer_hello_followed_at_once_by_a_newer_frame_is_told_the_versions(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    """A version-2 consumer may send its next frame (of a type version 1 lacks) with its
    hello: it is answered as a hello of another version, so it can retry with version 1."""
    consumer = RawConsumer(publisher.address)
    consumer.send(
        encode_message(ConsumerHello(TOKEN, version=2, client="v2"))
        + struct.pack(">IB", 4, 0x22)
        + b"new"
    )
    error = error_then_close(consumer, reactor)
    assert error.kind == "version" and error.supported == (1,)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        struct.pack(">IB", 1 << 30, 0x01),  # a gigabyte length prefix
        struct.pack(">IB", 5, 0x01) + b"XXXX",  # a hello without the magic
        encode_message(Command(1, SetStrategy("seed"))),  # a command before the hello
    ],
)
def test_garbage_drops_the_consumer_with_a_reason(
    publisher: Publisher, reactor: PumpReactor, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = RawConsumer(publisher.address)
    with caplog.at_level(logging.WARNING, "loopmon.stream"):
        consumer.send(garbage)
        consumer.read(reactor, 2)
    assert consumer.eof
    assert publisher.consumers == 0
    assert "dropped consumer" in caplog.text
    attached(publisher, reactor)


def test_no_hello_in_time_is_dropped(publisher: Publisher, reactor: PumpReactor) -> None:
    consumer = RawConsumer(publisher.address)
    consumer.read(reactor, 1, rounds=5)
    assert publisher.consumers == 1
    reactor.advance(6.0)
    assert error_then_close(consumer, reactor).kind == "timeout"


def test_commands_get_replies_with_their_ids(publisher: Publisher, reactor: PumpReactor) -> None:
    consumer = attached(publisher, reactor)
    consumer.send(
        encode_message(Command(5, StartListener("127.0.0.1", 0)))
        + encode_message(Command(6, StopListener(9)))
        + encode_message(Command(7, SetStrategy("seed")))  # not in INFO.commands
    )
    replies = [decode_message(f) for f in consumer.read(reactor, 3)]
    assert replies == [
        Reply(5, ListenerRow(7, "127.0.0.1", 4242, "listening")),
        Reply(6, None, "KeyError", "no listener with id 9"),
        Reply(7, None, "UnsupportedCommand", "this producer does not take set_strategy"),
    ]


def test_a_consumer_that_stops_reading_loses_frames_not_producer_memory(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    consumer = attached(publisher, reactor)
    consumer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    [state] = publisher._consumers.values()
    state.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for seq in range(1, 200):
        publisher.publish(snapshot(seq, n=2000, bump=seq))
        reactor.pump(1, 0)
        # Never more than one snapshot frame waits for it (plus small notices).
        assert sum(len(m) for m in state.out) <= len(publisher.latest.keyframe()) + 64  # type: ignore[union-attr]
    assert state.lost_total > 0 and publisher.frames_lost == state.lost_total
    # It reads again: told how many it lost, then the latest keyframe, then deltas.
    decoder = SnapshotDecoder()
    frames: list[Frame] = []
    for _ in range(100):  # a 4 KiB window moves slowly (delayed acks): read until caught up
        frames += consumer.read(reactor, 1000, rounds=50)
        if not state.out and not state.behind:
            frames += consumer.read(reactor, 1000, rounds=5)
            break
    types = [f.type for f in frames]
    assert LOST in types
    lost = decode_message(frames[types.index(LOST)])
    assert isinstance(lost, Lost) and lost.frames > 0
    assert frames[types.index(LOST) + 1].type == KEYFRAME
    for f in frames[types.index(LOST) + 1 :]:
        decoder.decode(f)
    publisher.publish(snapshot(500, n=2000, bump=7))
    [last] = consumer.read(reactor, 1)
    assert decoder.decode(last) == snapshot(500, n=2000, bump=7)


def test_a_consumer_that_has_not_read_for_10_s_is_dropped(
    publisher: Publisher, reactor: PumpReactor, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = attached(publisher, reactor)
    consumer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    [state] = publisher._consumers.values()
    state.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    for seq in range(1, 100):  # until its socket is full
        publisher.publish(snapshot(seq, n=5000, bump=seq))
        reactor.pump(1, 0)
        if state.out:
            break
    assert state.out
    reactor.advance(9.0)
    assert publisher.consumers == 1
    with caplog.at_level(logging.WARNING, "loopmon.stream"):
        reactor.advance(2.0)
    assert publisher.consumers == 0
    assert "has not read for 10 s" in caplog.text
    consumer.close()


def test_past_max_consumers_are_refused_busy(publisher: Publisher, reactor: PumpReactor) -> None:
    kept = [attached(publisher, reactor) for _ in range(publisher.max_consumers)]
    extra = RawConsumer(publisher.address)
    assert error_then_close(extra, reactor).kind == "busy"
    assert publisher.refused == 1
    publisher.publish(snapshot(1))
    for consumer in kept:
        assert [f.type for f in consumer.read(reactor, 1)] == [KEYFRAME]


def test_100_consumers_at_once_and_a_connect_close_loop(reactor: PumpReactor) -> None:
    publisher = Publisher(reactor, INFO, TOKEN)
    publisher.start()
    try:
        crowd = [socket.create_connection(publisher.address, timeout=5) for _ in range(100)]
        reactor.pump(20)
        assert publisher.consumers == 32 and publisher.refused == 68
        for sock in crowd:
            sock.close()
        for _ in range(200):
            socket.create_connection(publisher.address, timeout=5).close()
            reactor.pump(1, 0)
        reactor.pump(30)
        assert publisher.consumers == 0
        consumer = attached(publisher, reactor)
        publisher.publish(snapshot(1))
        assert [f.type for f in consumer.read(reactor, 1)] == [KEYFRAME]
    finally:
        publisher.close()


def test_close_says_goodbye(publisher: Publisher, reactor: PumpReactor) -> None:
    consumer = attached(publisher, reactor)
    publisher.close("stopping")
    [frame] = consumer.read(reactor, 1)
    assert decode_message(frame).reason == "stopping"  # type: ignore[union-attr]


def test_with_no_consumer_nothing_is_encoded_until_one_attaches(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    for seq in (1, 2, 3):
        publisher.publish(snapshot(seq, bump=seq))
    assert publisher.latest is not None and publisher.latest._keyframe is None
    assert publisher.encoder.last is None  # not a byte encoded for no one
    consumer = attached(publisher, reactor)
    decoder = SnapshotDecoder()
    [key] = consumer.read(reactor, 1)
    assert key.type == KEYFRAME and decoder.decode(key) == snapshot(3, bump=3)
    publisher.publish(snapshot(4, bump=4))
    [delta] = consumer.read(reactor, 1)
    assert delta.type == DELTA and decoder.decode(delta) == snapshot(4, bump=4)


def _frame(data: bytes) -> Frame:
    return Frame(data[4], data[5:])


def test_a_tap_gets_every_encoding_in_order_with_or_without_consumers(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    taken: list[Encoded] = []
    publisher.taps.append(taken.append)
    publisher.publish(snapshot(1))
    publisher.publish(snapshot(2, bump=1))  # no consumer: encoded all the same
    consumer = attached(publisher, reactor)
    [key] = consumer.read(reactor, 1)
    assert SnapshotDecoder().decode(key) == snapshot(2, bump=1)
    publisher.publish(snapshot(3, bump=2))  # the consumer's arrival reset nothing
    assert [e.seq for e in taken] == [1, 2, 3]
    assert taken[0].delta is None and taken[1].delta and taken[2].delta
    decoder = SnapshotDecoder()
    decoder.decode(_frame(taken[0].keyframe()))
    for i, encoded in enumerate(taken[1:], 2):
        assert encoded.delta is not None
        assert decoder.decode(_frame(encoded.delta)) == snapshot(i, bump=i - 1)


def test_a_tap_added_after_unencoded_snapshots_starts_from_a_keyframe(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    consumer = attached(publisher, reactor)
    publisher.publish(snapshot(1))
    consumer.close()
    reactor.pump()
    publisher.publish(snapshot(2, bump=1))  # no one left: not encoded, the encoder is stale
    taken: list[Encoded] = []
    publisher.taps.append(taken.append)
    publisher.publish(snapshot(3, bump=2))
    [encoded] = taken
    assert encoded.delta is None  # not a delta against snapshot 1, which no tap has seen


def _stalled(publisher: Publisher, reactor: PumpReactor) -> tuple[RawConsumer, SnapshotDecoder]:
    """A consumer that stopped reading: its socket full of a keyframe it has not taken."""
    consumer = RawConsumer(publisher.address, rcvbuf=4096)
    consumer.hello()
    [hello] = consumer.read(reactor, 1)
    assert hello.type == PRODUCER_HELLO
    [state] = [c for c in publisher._consumers.values() if c.address.endswith(
        f":{consumer.sock.getsockname()[1]}"
    )]  # fmt: skip
    state.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    publisher.publish(snapshot(1, n=BIG))
    reactor.pump(1, 0)
    assert state.out  # it holds a frame its socket has not taken
    return consumer, SnapshotDecoder()


BIG = 2_000  # rows: a keyframe (~26 KB) larger than the consumer's socket takes unread


def _with_closes(seq: int, first: int, n: int, omitted: int = 0) -> Snapshot:
    """Snapshot ``seq`` (the same BIG rows) reporting ``n`` closes, ids from ``first``:
    connections opened and closed within the interval."""
    closes = tuple(
        ClosedConnection(row(i, state="closed", bytes_in=i), seq / 25, f"closed {i}")
        for i in range(first, first + n)
    )
    return dataclasses.replace(snapshot(seq, n=BIG), closed=closes, closed_omitted=omitted)


def _read_snapshots(
    consumer: RawConsumer, decoder: SnapshotDecoder, reactor: PumpReactor, until_seq: int
) -> tuple[list[Snapshot], list[Lost]]:
    """Read (pumping) until the snapshot ``until_seq`` is decoded."""
    snaps: list[Snapshot] = []
    lost: list[Lost] = []
    for _ in range(400):
        for f in consumer.read(reactor, 1000, rounds=5):
            if f.type in (KEYFRAME, DELTA):
                snaps.append(decoder.decode(f))
            elif f.type == LOST:
                message = decode_message(f)
                assert isinstance(message, Lost)
                lost.append(message)
        if snaps and snaps[-1].seq == until_seq:
            break
    return snaps, lost


def test_a_lagging_consumer_gets_every_close_of_the_frames_it_lost(
    publisher: Publisher, reactor: PumpReactor
) -> None:
    steady = attached(publisher, reactor)
    lagging, decoder = _stalled(publisher, reactor)
    steady_decoder = SnapshotDecoder()
    # Connections close while it does not read: 7 snapshots of 3 closes each, one of which
    # the producer itself could not list (counted in closed_omitted).
    sent: list[ClosedConnection] = []
    for seq in range(2, 9):
        snap = _with_closes(seq, 100_000 + 3 * seq, 3, omitted=1 if seq == 5 else 0)
        sent += snap.closed
        publisher.publish(snap)
        reactor.pump(1, 0)
    snaps, lost = _read_snapshots(lagging, decoder, reactor, until_seq=8)
    assert [s.seq for s in snaps] == [1, 8]  # the stalled keyframe, then the catch-up one
    assert sum(m.frames for m in lost) == 7
    # Every close of the lost frames, in the order they closed, with its figures and reason.
    assert snaps[1].closed == tuple(sent)
    assert snaps[1].closed_omitted == 1
    assert len(snaps[1].connections) == BIG
    # The consumer that kept up got each close once, in the delta of its own snapshot.
    seen, _ = _read_snapshots(steady, steady_decoder, reactor, until_seq=8)
    assert [c for s in seen for c in s.closed] == sent
    # Deltas go on from the catch-up keyframe, with their own closes only.
    publisher.publish(_with_closes(9, 200_000, 2))
    [after], _ = _read_snapshots(lagging, decoder, reactor, until_seq=9)
    assert [c.row.id for c in after.closed] == [200_000, 200_001]
    assert publisher.closes_not_kept == 0


def test_closes_past_the_bound_are_counted_and_told_the_newest_kept(
    publisher: Publisher, reactor: PumpReactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "MAX_MISSED_CLOSES", 5)
    lagging, decoder = _stalled(publisher, reactor)
    sent: list[ClosedConnection] = []
    for seq in range(2, 6):
        snap = _with_closes(seq, 100_000 + 4 * seq, 4)
        sent += snap.closed
        publisher.publish(snap)
    snaps, _ = _read_snapshots(lagging, decoder, reactor, until_seq=5)
    assert snaps[-1].closed == tuple(sent[-5:])  # the newest five: the bound
    assert snaps[-1].closed_omitted == len(sent) - 5  # and the rest, counted
    assert publisher.closes_not_kept == len(sent) - 5
    # Nothing is held for it once it caught up.
    [state] = publisher._consumers.values()
    assert not state.missed and state.missed_omitted == 0
