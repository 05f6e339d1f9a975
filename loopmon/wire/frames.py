"""Frames: a 4-byte big-endian length, a 1-byte type, then the body.

The length counts the type byte and the body (so it is at least 1). Each direction has its own
cap, checked on the length before a byte of the body is buffered: a producer sends frames of up
to 16 MiB (a keyframe of many connections), a consumer up to 64 KiB (hellos and commands), so
a gigabyte length prefix, or text typed at the port, is refused at once. Types a side never
receives are refused too: garbage shows as a ``WireError`` within its first five bytes.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from loopmon.wire.codec import WireError

HEADER: Final = struct.Struct(">IB")
HEADER_SIZE: Final = HEADER.size  # 5
TO_CONSUMER_MAX: Final = 16 << 20  # the cap on a producer's frames (length field value)
TO_PRODUCER_MAX: Final = 64 << 10  # the cap on a consumer's frames

# Frame types.
CONSUMER_HELLO: Final = 0x01
PRODUCER_HELLO: Final = 0x02
ERROR: Final = 0x03
GOODBYE: Final = 0x04
LOST: Final = 0x05
KEYFRAME: Final = 0x10
DELTA: Final = 0x11
COMMAND: Final = 0x20
REPLY: Final = 0x21

TYPE_NAMES: Final = {
    CONSUMER_HELLO: "consumer hello",
    PRODUCER_HELLO: "producer hello",
    ERROR: "error",
    GOODBYE: "goodbye",
    LOST: "lost",
    KEYFRAME: "keyframe",
    DELTA: "delta",
    COMMAND: "command",
    REPLY: "reply",
}
# What each side may receive.
FROM_CONSUMER: Final = frozenset({CONSUMER_HELLO, GOODBYE, COMMAND})
FROM_PRODUCER: Final = frozenset({PRODUCER_HELLO, ERROR, GOODBYE, LOST, KEYFRAME, DELTA, REPLY})

_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from


class Frame(NamedTuple):
    type: int
    body: bytes


def encode_frame(kind: int, body: bytes | bytearray, limit: int = TO_CONSUMER_MAX) -> bytes:
    """The bytes of one frame; ``WireError`` if it would exceed ``limit``."""
    length = len(body) + 1
    if length > limit:
        raise WireError(f"a {TYPE_NAMES.get(kind, kind)} frame of {length} bytes is over {limit}")
    return _pack_header(length, kind) + body


class FrameReader:
    """Splits a byte stream into frames, however it is cut: ``feed`` returns the frames
    completed so far and keeps the rest. A bad length or type raises ``WireError`` and the
    reader is then unusable (the stream has no way to resynchronise). Frames completed before
    the bad header in the same ``feed`` are returned first, and ``broken`` then says why the
    next ``feed`` will raise: a hello followed at once by a frame of a newer version's type is
    answered as a hello (a version error listing the versions spoken), not as garbage."""

    def __init__(self, limit: int, accept: frozenset[int] = FROM_PRODUCER) -> None:
        self.limit = limit
        self.accept = accept
        self._buf = bytearray()
        self._broken = ""

    @property
    def broken(self) -> str:
        """Why the stream cannot go on ("" while it can): act on it after the frames."""
        return self._broken

    @property
    def buffered(self) -> int:
        """Bytes held for a frame not yet complete (never more than the cap + 5)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if self._broken:
            raise WireError(self._broken)
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        limit = self.limit
        accept = self.accept
        while end - pos >= HEADER_SIZE:
            length, kind = _unpack_header(buf, pos)
            if length > limit or length < 1:
                self._broken = (
                    f"a frame length of {length} bytes (the most allowed is {limit}): "
                    "not a loopmon telemetry stream, or a broken one"
                )
            elif kind not in accept:
                self._broken = f"a frame of unknown or unexpected type 0x{kind:02x}"
            if self._broken:
                del buf[:]
                if frames:
                    return frames  # the next feed raises; ``broken`` says so now
                raise WireError(self._broken)
            stop = pos + 4 + length
            if stop > end:
                break
            frames.append(Frame(kind, bytes(buf[pos + HEADER_SIZE : stop])))
            pos = stop
        if pos:
            del buf[:pos]
        return frames
