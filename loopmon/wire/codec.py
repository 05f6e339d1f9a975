"""The codec's primitives: its one error, varints, floats, strings, and a bounds-checked reader.

Integers are LEB128 varints (7 bits a byte, least significant group first, the top bit set on
every byte but the last); signed ones are zigzag-mapped first (0, -1, 1, -2 ... -> 0, 1, 2, 3
...), so small magnitudes of either sign take one byte. Floats are IEEE 754 doubles, little
endian. A string is its UTF-8 length as a varint, then the bytes. Every value fits 64 bits:
anything wider is refused on both sides.
"""

from __future__ import annotations

import struct
from typing import Final

U64: Final = 1 << 64
I64_MIN: Final = -(1 << 63)
I64_END: Final = 1 << 63
MAX_VARINT_BYTES: Final = 10

_F64 = struct.Struct("<d")
pack_f64 = _F64.pack
_unpack_f64 = _F64.unpack_from


class WireError(Exception):
    """The codec's one error: a frame or message that cannot be read (or a value that cannot
    be written). Its text says what was wrong, for a log line."""


# -- writing ---------------------------------------------------------------------------------


def put_uvarint(out: bytearray, n: int) -> None:
    if 0 <= n < 0x80:
        out.append(n)
        return
    if not 0 <= n < U64:
        raise WireError(f"unsigned value out of range: {n}")
    _put_varint(out, n)


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def put_svarint(out: bytearray, n: int) -> None:
    if not I64_MIN <= n < I64_END:
        raise WireError(f"signed value out of range: {n}")
    put_uvarint(out, n << 1 if n >= 0 else ((-n) << 1) - 1)


def put_opt_svarint(out: bytearray, n: int | None) -> None:
    """None is 0; a value v is zigzag(v) + 1."""
    if n is None:
        out.append(0)
    else:
        if not I64_MIN <= n < I64_END:
            raise WireError(f"signed value out of range: {n}")
        _put_varint(out, zigzag(n) + 1)  # up to 2**64: one more than a plain uvarint


def put_f64(out: bytearray, x: float) -> None:
    out += pack_f64(x)


def put_opt_f64(out: bytearray, x: float | None) -> None:
    """None is a 0 byte; a value is a 1 byte and the double."""
    if x is None:
        out.append(0)
    else:
        out.append(1)
        out += pack_f64(x)


def put_bool(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def put_bytes(out: bytearray, data: bytes) -> None:
    put_uvarint(out, len(data))
    out += data


def put_str(out: bytearray, text: str) -> None:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireError(f"text that is not valid Unicode: {exc}") from None
    put_uvarint(out, len(data))
    out += data


def put_strs(out: bytearray, texts: tuple[str, ...]) -> None:
    put_uvarint(out, len(texts))
    for text in texts:
        put_str(out, text)


# -- reading ---------------------------------------------------------------------------------


class Reader:
    """Reads primitives from one frame body, checking every bound: running off the end, an
    overlong varint or a bad UTF-8 string is a ``WireError``, never an IndexError."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def uvarint(self, limit: int = U64) -> int:
        """An unsigned varint below ``limit``."""
        buf = self.buf
        pos = self.pos
        if pos >= self.end:
            raise WireError("truncated: a number runs past the end of the frame")
        b = buf[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        result = b & 0x7F
        shift = 7
        pos += 1
        while True:
            if pos >= self.end:
                raise WireError("truncated: a number runs past the end of the frame")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 7 * MAX_VARINT_BYTES:
                raise WireError("a number longer than 10 bytes")
        if result >= limit:
            raise WireError("a number wider than 64 bits")
        self.pos = pos
        return result

    def svarint(self) -> int:
        n = self.uvarint()
        return (n >> 1) ^ -(n & 1)

    def opt_svarint(self) -> int | None:
        n = self.uvarint(U64 + 1)
        if n == 0:
            return None
        n -= 1
        return (n >> 1) ^ -(n & 1)

    def count(self, limit: int, what: str) -> int:
        """A count that may not exceed ``limit``: garbage must not make us allocate
        gigabytes."""
        n = self.uvarint()
        if n > limit:
            raise WireError(f"{what}: {n} is more than the {limit} allowed")
        return n

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise WireError("truncated: a byte runs past the end of the frame")
        self.pos = pos + 1
        return self.buf[pos]

    def bool(self) -> bool:
        b = self.u8()
        if b > 1:
            raise WireError(f"a flag that is neither 0 nor 1: {b}")
        return b == 1

    def f64(self) -> float:
        pos = self.pos
        if pos + 8 > self.end:
            raise WireError("truncated: a number runs past the end of the frame")
        self.pos = pos + 8
        value: float = _unpack_f64(self.buf, pos)[0]
        return value

    def opt_f64(self) -> float | None:
        return self.f64() if self.bool() else None

    def take(self, n: int) -> bytes:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise WireError(f"truncated: {n} bytes announced, {self.end - pos} left")
        self.pos = pos + n
        return bytes(self.buf[pos : pos + n])

    def blob(self) -> bytes:
        return self.take(self.uvarint())

    def text(self) -> str:
        n = self.uvarint()
        pos = self.pos
        if pos + n > self.end:
            raise WireError(f"truncated: a text of {n} bytes, {self.end - pos} left")
        self.pos = pos + n
        try:
            return str(self.buf[pos : pos + n], "utf-8")
        except UnicodeDecodeError:
            raise WireError("a text that is not valid UTF-8") from None

    def texts(self, limit: int, what: str) -> tuple[str, ...]:
        return tuple(self.text() for _ in range(self.count(limit, what)))

    def done(self) -> None:
        if self.pos != self.end:
            raise WireError(f"{self.end - self.pos} bytes left over at the end of a frame")
