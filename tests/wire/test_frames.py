"""Frames: any split of a stream gives the same frames; bad lengths and types are WireError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopmon.wire import WireError
from loopmon.wire.frames import (
    COMMAND,
    CONSUMER_HELLO,
    DELTA,
    FROM_CONSUMER,
    FROM_PRODUCER,
    KEYFRAME,
    REPLY,
    TO_CONSUMER_MAX,
    TO_PRODUCER_MAX,
    Frame,
    FrameReader,
    encode_frame,
)

frames = st.lists(
    st.builds(Frame, st.sampled_from(sorted(FROM_PRODUCER)), st.binary(max_size=300)), max_size=8
)


@given(frames, st.lists(st.integers(0, 3000), max_size=10))
def test_any_split_gives_the_same_frames(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f.type, f.body) for f in sent)
    points = sorted({min(c, len(stream)) for c in cuts})
    reader = FrameReader(TO_CONSUMER_MAX)
    got: list[Frame] = []
    start = 0
    for point in [*points, len(stream)]:
        got += reader.feed(stream[start:point])
        start = point
    assert got == sent
    assert reader.buffered == 0


def test_byte_by_byte() -> None:
    stream = encode_frame(KEYFRAME, b"abc") + encode_frame(DELTA, b"")
    reader = FrameReader(TO_CONSUMER_MAX)
    got = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert got == [Frame(KEYFRAME, b"abc"), Frame(DELTA, b"")]


def test_a_gigabyte_prefix_is_refused_before_any_body() -> None:
    reader = FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER)
    with pytest.raises(WireError, match="frame length of 1073741824"):
        reader.feed(struct.pack(">IB", 1 << 30, CONSUMER_HELLO))
    assert reader.buffered == 0
    with pytest.raises(WireError):  # and it stays broken
        reader.feed(b"")


def test_frames_before_a_bad_header_come_out_first_and_then_it_is_broken() -> None:
    reader = FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER)
    hello = encode_frame(CONSUMER_HELLO, b"hello")
    assert reader.feed(hello + encode_frame(0x22, b"a newer type")) == [
        Frame(CONSUMER_HELLO, b"hello")
    ]
    assert "type 0x22" in reader.broken
    with pytest.raises(WireError, match="type 0x22"):
        reader.feed(hello)


def test_text_typed_at_the_port_is_refused_at_once() -> None:
    with pytest.raises(WireError):
        FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER).feed(b"GET / HTTP/1.1\r\n")


def test_the_cap_is_exact() -> None:
    body = bytes(TO_PRODUCER_MAX - 1)
    [frame] = FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER).feed(encode_frame(COMMAND, body))
    assert frame.body == body
    with pytest.raises(WireError):
        encode_frame(COMMAND, body + b"x", TO_PRODUCER_MAX)


def test_a_zero_length_and_a_type_not_for_this_side_are_refused() -> None:
    with pytest.raises(WireError):
        FrameReader(TO_CONSUMER_MAX).feed(struct.pack(">IB", 0, KEYFRAME))
    with pytest.raises(WireError, match="type 0x21"):
        FrameReader(TO_PRODUCER_MAX, FROM_CONSUMER).feed(encode_frame(REPLY, b""))


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_garbage_raises_only_wire_error(chunks: list[bytes]) -> None:
    for limit, accept in ((TO_CONSUMER_MAX, FROM_PRODUCER), (TO_PRODUCER_MAX, FROM_CONSUMER)):
        reader = FrameReader(limit, accept)
        try:
            for chunk in chunks:
                reader.feed(chunk)
        except WireError:
            pass
        assert reader.buffered <= limit + 4
