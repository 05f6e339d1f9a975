"""The recording file's layout (docs/recording.md): a header, then records, each with a magic,
a kind, a length and a CRC32.

A **block** record holds up to a second of snapshot frames, byte for byte as on the wire, each
after the recorder's time of it, compressed together with zlib (one stream a block: measured,
per-block compression is 20 % smaller than per-frame on quiet frames and the same on busy
ones; benchmarks/bench_recording.py). A keyframe always opens a block, so any block flagged
``KEY`` can be decoded without what came before it: that is what seeking and skipping past
damage rely on. A block's uncompressed prefix says when it starts and ends, its session, and
its notable moments (stalls, exceptions, listener events, closes), so the index and the jump
list are built without decompressing anything.

An **index** record (written at close) lists every block; a fixed 12-byte trailer points at it.
A file without one (a killed producer) is indexed by a scan of the record headers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from loopmon.snapshot import ProducerInfo
from loopmon.wire import records
from loopmon.wire.codec import (
    Reader,
    WireError,
    put_f64,
    put_str,
    put_uvarint,
)

FORMAT_VERSION: Final = 1
FILE_MAGIC: Final = b"LMONREC\x1a"  # \x1a: a text tool printing the file stops here
RECORD_MAGIC: Final = b"\xa7LMR"
RECORD_HEADER: Final = struct.Struct("<4sBII")  # magic, kind, payload length, crc32
TRAILER: Final = struct.Struct("<Q4s")  # the index record's offset, TRAILER_MAGIC
TRAILER_MAGIC: Final = b"LMRI"
MAX_PAYLOAD: Final = 256 << 20  # a record's payload; more is damage, not data
MAX_HEADER: Final = 1 << 20

# Record kinds.
BLOCK: Final = 1
HELLO: Final = 2  # a producer's hello: a new producer (a restart) from here on
INDEX: Final = 3
KINDS: Final = frozenset({BLOCK, HELLO, INDEX})

# Block flags.
KEY: Final = 1  # the block's first frame is a keyframe

NOTABLE: Final = frozenset(
    {
        "stall",
        "exception",
        "listener_started",
        "listener_stopped",
        "listener_failed",
        "listener_full",
        "close",
        "loop",
    }
)
MOMENTS_PER_KIND: Final = 8  # moments of one kind listed in a block; jumps need the first
MOMENT_TEXT: Final = 200


class RecordingError(Exception):
    """A file that is not a recording, or of a newer format, or cannot be read at all: one
    line for the user."""


@dataclass(frozen=True, slots=True)
class Moment:
    """Something worth jumping to: ``at`` on the recording's time axis (seconds since it
    began, the recorder's clock)."""

    at: float
    kind: str  # an event kind of NOTABLE ("close" also for a closed connection)
    text: str


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """A block as its prefix describes it, and where it lies."""

    offset: int  # of the record header
    size: int  # the whole record
    flags: int
    count: int  # frames
    first_at: float
    last_at: float
    session: str
    moments: tuple[Moment, ...] = ()

    @property
    def key(self) -> bool:
        return bool(self.flags & KEY)


# -- the header -------------------------------------------------------------------------------


def encode_header(info: ProducerInfo, started_at: float, writer: str) -> bytes:
    body = bytearray()
    put_f64(body, started_at)
    put_str(body, writer)
    records.put_producer(body, info)
    out = bytearray(FILE_MAGIC)
    put_uvarint(out, FORMAT_VERSION)
    out += struct.pack("<I", len(body)) + body + struct.pack("<I", zlib.crc32(body))
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    started_at: float  # wall clock (Unix time) when recording began
    writer: str  # what wrote it: "loopmon serve --record", ...
    producer: ProducerInfo
    size: int  # bytes, up to the first record


def decode_header(data: bytes) -> Header:
    """``data``: the file's first bytes (up to MAX_HEADER)."""
    if not data.startswith(FILE_MAGIC):
        raise RecordingError("not a loopmon recording (no LMONREC magic at its start)")
    r = Reader(data, len(FILE_MAGIC))
    try:
        version = r.uvarint()
        if version != FORMAT_VERSION:
            newer = "newer than" if version > FORMAT_VERSION else "not"
            raise RecordingError(
                f"a recording of format version {version}, {newer} what this loopmon reads "
                f"({FORMAT_VERSION}): open it with the loopmon that made it"
            )
        (length,) = struct.unpack("<I", r.take(4))
        if length > MAX_HEADER:
            raise RecordingError(f"a recording header of {length} bytes: a damaged file")
        body = r.take(length)
        (crc,) = struct.unpack("<I", r.take(4))
    except WireError:
        raise RecordingError("a recording cut inside its header: nothing to replay") from None
    if zlib.crc32(body) != crc:
        raise RecordingError("the recording's header is damaged (CRC mismatch)")
    b = Reader(body)
    try:
        started_at = b.f64()
        writer = b.text()
        producer = records.get_producer(b)
    except WireError as exc:
        raise RecordingError(f"the recording's header cannot be read: {exc}") from None
    return Header(version, started_at, writer, producer, r.pos)


# -- records ------------------------------------------------------------------------------------


def encode_record(kind: int, payload: bytes | bytearray) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes((kind,))))
    return RECORD_HEADER.pack(RECORD_MAGIC, kind, len(payload), crc) + payload


def check_record(kind: int, payload: bytes, crc: int) -> bool:
    return zlib.crc32(payload, zlib.crc32(bytes((kind,)))) == crc


def _put_moments(out: bytearray, moments: Iterable[Moment]) -> None:
    moments = tuple(moments)
    put_uvarint(out, len(moments))
    for m in moments:
        put_f64(out, m.at)
        put_str(out, m.kind)
        put_str(out, m.text[:MOMENT_TEXT])


def _get_moments(r: Reader) -> tuple[Moment, ...]:
    n = r.count(1 << 16, "moments")
    return tuple(Moment(r.f64(), r.text(), r.text()) for _ in range(n))


def block_prefix(
    flags: int, count: int, first_at: float, last_at: float, session: str, moments: list[Moment]
) -> bytearray:
    out = bytearray((flags,))
    put_uvarint(out, count)
    put_f64(out, first_at)
    put_f64(out, last_at)
    put_str(out, session)
    _put_moments(out, moments)
    return out


def read_block_prefix(payload: bytes, offset: int, size: int) -> tuple[BlockInfo, int]:
    """The block's description and where its compressed frames start in ``payload``."""
    r = Reader(payload)
    flags = r.u8()
    count = r.uvarint()
    first_at = r.f64()
    last_at = r.f64()
    session = r.text()
    moments = _get_moments(r)
    return BlockInfo(offset, size, flags, count, first_at, last_at, session, moments), r.pos


@dataclass(frozen=True, slots=True)
class Closing:
    """What the index record says besides the blocks: when and why recording stopped, and
    the producers that said hello after the first (restarts)."""

    at: float
    reason: str
    hellos: tuple[tuple[float, ProducerInfo], ...] = ()


def encode_index(blocks: Iterable[BlockInfo], closing: Closing) -> bytes:
    out = bytearray()
    put_f64(out, closing.at)
    put_str(out, closing.reason)
    put_uvarint(out, len(closing.hellos))
    for at, info in closing.hellos:
        put_f64(out, at)
        records.put_producer(out, info)
    blocks = tuple(blocks)
    put_uvarint(out, len(blocks))
    previous = 0
    for b in blocks:
        put_uvarint(out, b.offset - previous)
        previous = b.offset
        put_uvarint(out, b.size)
        out.append(b.flags)
        put_uvarint(out, b.count)
        put_f64(out, b.first_at)
        put_f64(out, b.last_at)
        put_str(out, b.session)
        _put_moments(out, b.moments)
    return bytes(out)


def decode_index(payload: bytes) -> tuple[list[BlockInfo], Closing]:
    r = Reader(payload)
    at = r.f64()
    reason = r.text()
    hellos = tuple((r.f64(), records.get_producer(r)) for _ in range(r.count(1 << 20, "hellos")))
    n = r.count(1 << 32, "blocks")
    out = []
    offset = 0
    for _ in range(n):
        offset += r.uvarint()
        size = r.uvarint()
        flags = r.u8()
        count = r.uvarint()
        first_at = r.f64()
        last_at = r.f64()
        session = r.text()
        out.append(
            BlockInfo(offset, size, flags, count, first_at, last_at, session, _get_moments(r))
        )
    r.done()
    return out, Closing(at, reason, hellos)


def encode_hello(info: ProducerInfo, at: float) -> bytes:
    out = bytearray()
    put_f64(out, at)
    records.put_producer(out, info)
    return bytes(out)


def decode_hello(payload: bytes) -> tuple[float, ProducerInfo]:
    r = Reader(payload)
    return r.f64(), records.get_producer(r)
