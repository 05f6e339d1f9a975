"""Connection rows on the wire, column by column: blocks of whole rows (new rows, closed
rows, a keyframe's) and blocks of changes to rows the consumer already has.

A block is a row count, then one column per field of ``ConnectionRow`` in its order
(``FIELDS``). The ``id`` column is coded as differences from the previous row's id (the first
from 0): ascending ids make it a column of small gaps.

A change block is a row count, the id column (ascending ids, each one the consumer holds),
a uvarint whose bit i is set when field i (in ``FIELDS`` order) changed in some row, then the
column of each such field, each one of: ``DIFF`` (an integer column of new minus old, for
integers and for nullable integers with no None on either side), ``SET`` (k positions, as in
a sparse column, then the k new values in the field's own value coding: optional svarint,
double or string) or ``ALL`` (a whole value column of new values).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from itertools import accumulate, compress
from operator import add, ne, sub
from typing import Any, Final

from loopmon.snapshot import ConnectionRow
from loopmon.wire.codec import (
    Reader,
    WireError,
    pack_f64,
    put_opt_svarint,
    put_str,
    put_uvarint,
)
from loopmon.wire.columns import (
    get_floats,
    get_ints,
    get_nints,
    get_texts,
    put_floats,
    put_ints,
    put_nints,
    put_texts,
)

INT: Final = "int"
NINT: Final = "int|null"
FLOAT: Final = "float"
TEXT: Final = "text"

# Version 1's row: every field of ConnectionRow, in its order, with its wire kind.
FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("fd", INT),
    ("peer", TEXT),
    ("listener_id", INT),
    ("state", TEXT),
    ("mask", INT),
    ("read_fraction", FLOAT),
    ("write_fraction", FLOAT),
    ("ready_read", INT),
    ("ready_write", INT),
    ("ready_error", INT),
    ("queue_bytes", NINT),
    ("queue_chunks", NINT),
    ("bytes_in", NINT),
    ("bytes_out", NINT),
    ("messages", NINT),
    ("created_at", FLOAT),
    ("id", INT),
    ("kind", TEXT),
    ("local", TEXT),
    ("loop", INT),
)
if tuple(name for name, _ in FIELDS) != ConnectionRow._fields:  # pragma: no cover
    raise ImportError("ConnectionRow changed: the wire's FIELDS (and its version) must follow")
ID_INDEX: Final = ConnectionRow._fields.index("id")
MAX_ROWS: Final = 1 << 18  # rows in one block: garbage must not make us build millions

DIFF: Final = 1
SET: Final = 2
ALL: Final = 3

_make_row: Callable[[Any], ConnectionRow] = functools.partial(tuple.__new__, ConnectionRow)


def _put_values(out: bytearray, kind: str, values: Sequence[Any]) -> None:
    if kind == INT:
        put_ints(out, values)
    elif kind == NINT:
        put_nints(out, values)
    elif kind == FLOAT:
        put_floats(out, values)
    else:
        put_texts(out, values)


def _get_values(r: Reader, kind: str, n: int) -> list[Any]:
    if kind == INT:
        return get_ints(r, n)
    if kind == NINT:
        return get_nints(r, n)
    if kind == FLOAT:
        return get_floats(r, n)
    return get_texts(r, n)


def _put_one(out: bytearray, kind: str, value: Any) -> None:
    if kind in (INT, NINT):
        put_opt_svarint(out, value)
    elif kind == FLOAT:
        out += pack_f64(value)
    else:
        put_str(out, value)


def _get_one(r: Reader, kind: str) -> Any:
    if kind in (INT, NINT):
        value = r.opt_svarint()
        if value is None and kind == INT:
            raise WireError("a null in a column that cannot be null")
        return value
    if kind == FLOAT:
        return r.f64()
    return r.text()


def _id_gaps(ids: Sequence[int]) -> list[int]:
    return [ids[0], *map(sub, ids[1:], ids[:-1])] if ids else []


# -- whole rows ------------------------------------------------------------------------------


def put_rows(out: bytearray, rows: Sequence[ConnectionRow]) -> None:
    n = len(rows)
    if n > MAX_ROWS:
        raise WireError(f"{n} rows in one block, over the {MAX_ROWS} allowed")
    put_uvarint(out, n)
    if not n:
        return
    for i, (column, (_, kind)) in enumerate(zip(zip(*rows, strict=False), FIELDS, strict=True)):
        if i == ID_INDEX:
            put_ints(out, _id_gaps(column))
        else:
            _put_values(out, kind, column)


def get_rows(r: Reader) -> list[ConnectionRow]:
    n = r.count(MAX_ROWS, "rows in a block")
    if not n:
        return []
    columns: list[Any] = []
    for i, (_, kind) in enumerate(FIELDS):
        if i == ID_INDEX:
            columns.append(list(accumulate(get_ints(r, n))))
        else:
            columns.append(_get_values(r, kind, n))
    return list(map(_make_row, zip(*columns, strict=False)))


# -- changes ---------------------------------------------------------------------------------


def put_changes(
    out: bytearray, rows: Sequence[ConnectionRow], olds: Sequence[ConnectionRow]
) -> None:
    """``rows`` (ascending ids) against ``olds``, the previous rows of the same ids."""
    if len(rows) > MAX_ROWS:
        raise WireError(f"{len(rows)} rows in one block, over the {MAX_ROWS} allowed")
    if not rows:
        put_uvarint(out, 0)
        return
    put_change_columns(out, list(zip(*rows, strict=False)), list(zip(*olds, strict=False)))


def put_change_columns(
    out: bytearray,
    new_columns: Sequence[Sequence[Any]],
    old_columns: Sequence[Sequence[Any]],
    id_block: bytes | None = None,
) -> bytes:
    """A change block from the rows' columns (``zip(*rows)``: one per field, ascending ids,
    at least one row) and those of the rows they replace. ``id_block``, when given, is what
    this returned for the same id column before (reused, not coded again). Returns the id
    block."""
    n = len(new_columns[ID_INDEX])
    if n > MAX_ROWS:
        raise WireError(f"{n} rows in one block, over the {MAX_ROWS} allowed")
    if id_block is None:
        ids = bytearray()
        put_uvarint(ids, n)
        put_ints(ids, _id_gaps(new_columns[ID_INDEX]))  # first: the decoder finds the rows by it
        id_block = bytes(ids)
    out += id_block
    body = bytearray()
    present = 0
    for i, (_, kind) in enumerate(FIELDS):
        if i == ID_INDEX:
            continue
        new = new_columns[i]
        old = old_columns[i]
        if new == old:  # most columns: C compares, by identity mostly
            continue
        present |= 1 << i
        if kind in (INT, NINT):
            try:
                diffs = list(map(sub, new, old))
                column = bytearray()
                put_ints(column, diffs)
            except TypeError:
                if kind == INT:
                    raise WireError(f"{FIELDS[i][0]} is not an integer in every row") from None
                # a null on one side: the values, below
            except WireError:
                # A difference wider than 64 bits (from one extreme to the other).
                body.append(ALL)
                _put_values(body, kind, new)
                continue
            else:
                body.append(DIFF)
                body += column
                continue
        changed = list(map(ne, new, old))
        k = changed.count(True)
        if k * 4 < n:
            body.append(SET)
            put_uvarint(body, k)
            last = -1
            positions = list(compress(range(n), changed))
            for p in positions:
                put_uvarint(body, p - last - 1)
                last = p
            for p in positions:
                _put_one(body, kind, new[p])
        else:
            body.append(ALL)
            _put_values(body, kind, new)
    put_uvarint(out, present)
    out += body
    return id_block


def get_changes(
    r: Reader, held: dict[int, ConnectionRow]
) -> tuple[list[ConnectionRow], list[ConnectionRow]]:
    """(the changed rows, the rows they replace); ``held`` (by id) is only read."""
    n = r.count(MAX_ROWS, "changed rows")
    if not n:
        return [], []
    ids = list(accumulate(get_ints(r, n)))
    try:
        olds = list(map(held.__getitem__, ids))
    except KeyError as exc:
        raise WireError(f"a change to connection {exc.args[0]}, which the consumer lacks") from None
    old_columns = list(zip(*olds, strict=False))
    present = r.uvarint()
    if present >> len(FIELDS) or present & (1 << ID_INDEX):
        raise WireError(f"a change to fields that are not there: {present:#x}")
    columns: list[Any] = []
    for i, (_, kind) in enumerate(FIELDS):
        if i == ID_INDEX:
            columns.append(ids)
            continue
        old = old_columns[i]
        if not present & (1 << i):
            columns.append(old)
            continue
        mode = r.u8()
        if mode == DIFF:
            if kind not in (INT, NINT):
                raise WireError("a difference in a column that is not integer")
            try:
                columns.append(list(map(add, old, get_ints(r, n))))
            except TypeError:
                raise WireError("a difference to a null figure") from None
        elif mode == SET:
            k = r.count(n, "changed values")
            values = list(old)
            positions = []
            last = -1
            for _ in range(k):
                last += r.uvarint() + 1
                if last >= n:
                    raise WireError("a change past the last row")
                positions.append(last)
            for p in positions:
                values[p] = _get_one(r, kind)
            columns.append(values)
        elif mode == ALL:
            columns.append(_get_values(r, kind, n))
        else:
            raise WireError(f"a change column of unknown mode {mode}")
    return list(map(_make_row, zip(*columns, strict=False))), olds


# -- id lists --------------------------------------------------------------------------------


def put_ids(out: bytearray, ids: Sequence[int]) -> None:
    """Ascending ids (each below 2**64): a count, then each as the gap from the one before
    (the first from 0), a uvarint."""
    if len(ids) > MAX_ROWS:
        raise WireError(f"{len(ids)} ids in one list, over the {MAX_ROWS} allowed")
    put_uvarint(out, len(ids))
    last = 0
    for key in ids:
        put_uvarint(out, key - last)
        last = key


def get_ids(r: Reader) -> list[int]:
    ids = []
    last = 0
    for _ in range(r.count(MAX_ROWS, "ids")):
        last += r.uvarint()
        ids.append(last)
    return ids
