"""Column codecs: a list of values of one field, over many rows, coded as a whole.

Connection rows travel column by column (all their ``bytes_in``, then all their ``peer`` ...),
so each column is coded with the cheapest of a few modes, chosen by looking at it once, and the
work happens in C (``map``, ``array``, ``min``/``max``) rather than per value in Python: a
delta of 1,000 changed rows must encode in about a millisecond on the producer's loop.

Integer columns (``put_ints``), one mode byte then:

- ``ZERO``: every value is 0. Nothing follows.
- ``CONST``: every value is the same: one svarint.
- ``PACK``: the smallest value (svarint), a width byte (1, 2, 4 or 8), then each value minus
  the smallest as an unsigned little-endian integer of that width.
- ``SPARSE``: k (uvarint), the k positions of the non-zero values (each as the gap from the
  previous position plus one, the first as its position), then the k values (svarints).
- ``VARINTS``: each value as an svarint (what nothing else can take).

Nullable integer columns (``put_nints``): a byte 0 and an integer column, or a byte 1 and each
value as an optional svarint (0 for None, zigzag(v) + 1 otherwise).

Float columns (``put_floats``): ``RAW`` (each as a little-endian double), or ``TABLE`` (k <= 255
distinct doubles, then a byte per row: its index).

Text columns (``put_texts``): ``TABLE`` (k <= 255 distinct strings, then a byte per row),
``JOINED`` (the prefix every value shares, as a string, then the rest of each value joined by
NUL characters into one string), or ``LENGTHS`` (each value as a string: for values holding a
NUL).
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import add, getitem, sub
from typing import Final

from loopmon.wire.codec import (
    I64_END,
    I64_MIN,
    Reader,
    WireError,
    pack_f64,
    put_opt_svarint,
    put_str,
    put_svarint,
    put_uvarint,
)

ZERO: Final = 0
CONST: Final = 1
PACK: Final = 2
SPARSE: Final = 3
VARINTS: Final = 4

RAW: Final = 0
TABLE: Final = 1
JOINED: Final = 2
LENGTHS: Final = 3

_BIG_ENDIAN = sys.byteorder == "big"
# The array type code of each width (the C sizes vary; the wire's do not).
_CODES: dict[int, str] = {}
for _code in "BHILQ":
    _CODES.setdefault(array(_code).itemsize, _code)
WIDTHS: Final = (1, 2, 4, 8)
assert all(w in _CODES for w in WIDTHS), "this platform lacks an unsigned integer array width"


def _width(span: int) -> int:
    if span < 0x100:
        return 1
    if span < 0x10000:
        return 2
    if span < 0x100000000:
        return 4
    return 8


def _packed(values: Sequence[int], base: int, width: int) -> bytes:
    shifted = values if base == 0 else map(sub, values, repeat(base))
    arr = array(_CODES[width], shifted)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _unpacked(data: bytes, width: int) -> array[int]:
    arr = array(_CODES[width])
    arr.frombytes(data)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr


# -- integers --------------------------------------------------------------------------------


def put_ints(out: bytearray, values: Sequence[int]) -> None:
    """Code ``values`` (ints, no None); ``WireError`` for a value beyond 64 bits, TypeError
    for one that is not an integer (the encoders say which record it was)."""
    n = len(values)
    nonzero = n - values.count(0)
    if nonzero == 0:
        out.append(ZERO)
        return
    # Sparse costs a position and a whole svarint a value, and Python time for each: only
    # for columns at most a quarter non-zero (the figures of a few rows that changed), which
    # are found without a min and a max.
    if nonzero * 4 <= n:
        positions = list(compress(range(n), values))
        data = bytearray()
        put_uvarint(data, nonzero)
        last = -1
        for i in positions:
            put_uvarint(data, i - last - 1)
            last = i
        for i in positions:
            put_svarint(data, values[i])
        out.append(SPARSE)
        out += data
        return
    lo = min(values)
    hi = max(values)
    if lo == hi:
        if not I64_MIN <= lo < I64_END:
            raise WireError("an integer beyond 64 bits")
        out.append(CONST)
        put_svarint(out, lo)
        return
    if lo < I64_MIN or hi >= I64_END:
        raise WireError("an integer beyond 64 bits")
    width = _width(hi - lo)
    if lo > 0 and _width(hi) == width:
        lo = 0  # as narrow without a base, and no subtraction to make (counters' growth)
    try:
        packed = _packed(values, lo, width)
    except OverflowError:
        raise WireError("an integer column holds something else") from None
    out.append(PACK)
    put_svarint(out, lo)
    out.append(width)
    out += packed


def get_ints(r: Reader, n: int) -> list[int]:
    mode = r.u8()
    if mode == ZERO:
        return [0] * n
    if mode == CONST:
        return [r.svarint()] * n
    if mode == PACK:
        base = r.svarint()
        width = r.u8()
        if width not in _CODES or width not in WIDTHS:
            raise WireError(f"an integer column of width {width}")
        arr = _unpacked(r.take(n * width), width)
        if base == 0:
            return arr.tolist()
        if width == 8 and arr and base + max(arr) >= I64_END:
            raise WireError("an integer beyond 64 bits")
        return list(map(add, arr, repeat(base)))
    if mode == SPARSE:
        k = r.count(n, "non-zero values in a column")
        values = [0] * n
        positions = []
        last = -1
        for _ in range(k):
            last += r.uvarint() + 1
            if last >= n:
                raise WireError("a column position past its last row")
            positions.append(last)
        for i in positions:
            values[i] = r.svarint()
        return values
    if mode == VARINTS:
        return [r.svarint() for _ in range(n)]
    raise WireError(f"an integer column of unknown mode {mode}")


def put_nints(out: bytearray, values: Sequence[int | None]) -> None:
    if None not in values:
        out.append(0)
        put_ints(out, values)  # type: ignore[arg-type]
        return
    out.append(1)
    for v in values:
        put_opt_svarint(out, v)


def get_nints(r: Reader, n: int) -> list[int | None]:
    if not r.bool():
        return get_ints(r, n)  # type: ignore[return-value]
    opt = r.opt_svarint
    return [opt() for _ in range(n)]


# -- floats ----------------------------------------------------------------------------------


def put_floats(out: bytearray, values: Sequence[float]) -> None:
    n = len(values)
    try:
        distinct = set(values) if n > 4 else ()
        if 0 < len(distinct) <= 255 and len(distinct) * 8 + n < n * 8:
            table = list(distinct)
            index = {v: i for i, v in enumerate(table)}
            out.append(TABLE)
            out.append(len(table))
            for v in table:
                out += pack_f64(v)
            out += bytes(map(index.__getitem__, values))
            return
        data = array("d", values)
    except TypeError:
        raise WireError("a float column holds something else") from None
    if _BIG_ENDIAN:
        data.byteswap()
    out.append(RAW)
    out += data.tobytes()


def get_floats(r: Reader, n: int) -> list[float]:
    mode = r.u8()
    if mode == RAW:
        arr = array("d")
        arr.frombytes(r.take(n * 8))
        if _BIG_ENDIAN:
            arr.byteswap()
        return arr.tolist()
    if mode == TABLE:
        k = r.u8()
        table = [r.f64() for _ in range(k)]
        indices = r.take(n)
        try:
            return list(map(table.__getitem__, indices))
        except IndexError:
            raise WireError("a float column's index past its table") from None
    raise WireError(f"a float column of unknown mode {mode}")


# -- text ------------------------------------------------------------------------------------


def put_texts(out: bytearray, values: Sequence[str]) -> None:
    n = len(values)
    try:
        distinct = set(values)
    except TypeError:
        raise WireError("a text column holds something else") from None
    if len(distinct) <= 255 and (len(distinct) < n or n == 1):
        table = sorted(distinct)
        index = {v: i for i, v in enumerate(table)}
        out.append(TABLE)
        out.append(len(table))
        for v in table:
            put_str(out, v)
        out += bytes(map(index.__getitem__, values))
        return
    # Mostly distinct (peers): the prefix they share once, then the rest of each, joined by
    # NULs into one string, so both ends work in C (join, split) rather than value by value.
    try:
        # The common prefix of all is that of the least and the greatest.
        prefix = os.path.commonprefix([min(values), max(values)])  # noqa: RUF071
        rest: Iterable[str] = (
            map(getitem, values, repeat(slice(len(prefix), None))) if prefix else values
        )
        joined = "\0".join(rest)
    except TypeError:
        raise WireError("a text column holds something else") from None
    if joined.count("\0") == n - 1:
        out.append(JOINED)
        put_str(out, prefix)
        put_str(out, joined)
        return
    out.append(LENGTHS)  # some text holds a NUL itself
    for v in values:
        put_str(out, v)


def get_texts(r: Reader, n: int) -> list[str]:
    mode = r.u8()
    if mode == TABLE:
        k = r.u8()
        table = [r.text() for _ in range(k)]
        indices = r.take(n)
        try:
            return list(map(table.__getitem__, indices))
        except IndexError:
            raise WireError("a text column's index past its table") from None
    if mode == JOINED:
        prefix = r.text()
        parts = r.text().split("\0")
        if len(parts) != n:
            raise WireError(f"a text column of {len(parts)} values where {n} were due")
        return list(map(prefix.__add__, parts)) if prefix else parts
    if mode == LENGTHS:
        return [r.text() for _ in range(n)]
    raise WireError(f"a text column of unknown mode {mode}")
