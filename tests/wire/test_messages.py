"""Control messages: round trips, garbage, and the hello check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_strategies import listeners, producers, texts, uints

from loopmon.wire import (
    PROTOCOL_VERSION,
    CloseConnection,
    Command,
    ConsumerHello,
    ErrorMessage,
    Goodbye,
    Lost,
    ProducerHello,
    Reply,
    SetStrategy,
    StartListener,
    StopListener,
    WireError,
    check_consumer_hello,
    decode_message,
    encode_message,
)
from loopmon.wire.frames import FROM_CONSUMER, TO_CONSUMER_MAX, Frame, FrameReader
from loopmon.wire.messages import PROTOCOL, TOKEN, VERSION

calls = st.one_of(
    st.builds(StartListener, texts, uints),
    st.builds(StopListener, uints, st.booleans()),
    st.builds(CloseConnection, uints),
    st.builds(SetStrategy, texts),
)
messages = st.one_of(
    st.builds(ConsumerHello, st.binary(max_size=64), st.just(PROTOCOL_VERSION), texts),
    st.builds(ProducerHello, producers),
    st.builds(ErrorMessage, texts, texts, st.lists(uints, max_size=4).map(tuple)),
    st.builds(Goodbye, texts),
    st.builds(Lost, uints, uints),
    st.builds(Command, uints, calls),
    st.builds(Reply, uints),
    st.builds(Reply, uints, listeners),
    st.builds(Reply, uints, st.none(), texts.filter(bool), texts),
)


def one_frame(data: bytes) -> Frame:
    [frame] = FrameReader(TO_CONSUMER_MAX, frozenset(range(256))).feed(data)
    return frame


@given(messages)
def test_round_trip(msg: object) -> None:
    assert decode_message(one_frame(encode_message(msg))) == msg  # type: ignore[arg-type]


@given(messages, st.data())
def test_truncated_or_damaged_raises_only_wire_error(msg: object, data: st.DataObject) -> None:
    frame = one_frame(encode_message(msg))  # type: ignore[arg-type]
    body = frame.body
    cut = data.draw(st.integers(0, len(body)))
    for damaged in (
        body[:cut],
        body[:cut] + data.draw(st.binary(max_size=8)) + body[cut:],
    ):
        try:
            decode_message(Frame(frame.type, damaged))
        except WireError:
            pass


@given(st.integers(0, 255), st.binary(max_size=200))
def test_garbage_raises_only_wire_error(kind: int, body: bytes) -> None:
    try:
        decode_message(Frame(kind, body))
    except WireError:
        pass


def test_a_hello_of_another_protocol_is_told_apart() -> None:
    with pytest.raises(WireError, match="LMON"):
        decode_message(Frame(0x01, b"HTTP/1.1 200 OK"))


def test_a_newer_consumer_is_told_which_versions_the_producer_speaks() -> None:
    data = encode_message(ConsumerHello(b"t" * 32, PROTOCOL_VERSION))
    newer = data.replace(b"LMON\x01", b"LMON\x07", 1) + b"fields of version 7"
    newer = len(newer[4:]).to_bytes(4, "big") + newer[4:]
    [frame] = FrameReader(1 << 16, FROM_CONSUMER).feed(newer)
    hello = decode_message(frame)
    assert isinstance(hello, ConsumerHello) and hello.version == 7
    error = check_consumer_hello(hello, b"t" * 32)
    assert error is not None and error.kind == VERSION and error.supported == (1,)
    assert "newer" in error.message


def test_the_token_is_checked() -> None:
    token = bytes(range(32))
    assert check_consumer_hello(ConsumerHello(token), token) is None
    for bad in (b"", bytes(32), token[:-1], token + b"x"):
        error = check_consumer_hello(ConsumerHello(bad), token)
        assert error is not None and error.kind == TOKEN
    error = check_consumer_hello(Goodbye(), token)
    assert error is not None and error.kind == PROTOCOL


def test_a_value_that_cannot_be_encoded_is_wire_error() -> None:
    with pytest.raises(WireError):
        encode_message(Lost(-1, 0))
    with pytest.raises(WireError):
        encode_message(Command(1, StartListener("h", 2**64)))
    with pytest.raises(WireError):
        encode_message("not a message")  # type: ignore[arg-type]
