"""The closes section of a snapshot frame, and a keyframe with that section rewritten.

In both frame kinds the closed connections sit in one contiguous section (docs/protocol.md,
"Snapshots"): a row block of their last rows, then (if any) a float column of ``closed_at`` and
a text column of reasons, then uvarint ``closed_omitted``. The encoder writes it with
``put_closes`` and says where it lies (``Span``, offsets in the frame).

``with_closes`` is what lets a consumer that lost frames get the closes of the frames it
skipped without a keyframe of its own: the producer's one shared keyframe, sent as three
slices of the shared bytes around this consumer's own closes section (a new 5-byte header in
front, since the length changes). Its cost grows with the closes listed, never with the
connections held, and the keyframe's bytes are not copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from loopmon.snapshot import ClosedConnection
from loopmon.wire.codec import WireError, put_uvarint
from loopmon.wire.columns import put_floats, put_texts
from loopmon.wire.frames import HEADER, HEADER_SIZE, TO_CONSUMER_MAX
from loopmon.wire.rows import put_rows

# Closed connections listed in one frame; the rest are counted. Producers list at most 1,000
# an interval (telemetry, the instrument); a frame lists more when its snapshot stands for
# several: a catch-up keyframe (the closes of the frames a consumer lost: the publisher keeps
# 10,000), or a consumer's own encoding of a snapshot that absorbed others (attach --record, a
# mailbox's carry-over: 10,000). The cap is theirs, so no end of the path cuts what another
# kept.
CLOSED_PER_FRAME: Final = 10_000

# (start, end): where a frame's closes section lies, as offsets in the frame's bytes.
Span = tuple[int, int]


def put_closes(
    out: bytearray,
    closed: Sequence[ClosedConnection],
    omitted: int,
    limit: int = CLOSED_PER_FRAME,
) -> None:
    """The closes section: the first ``limit`` of ``closed``; the rest added to ``omitted``."""
    if len(closed) > limit:
        omitted += len(closed) - limit
        closed = closed[:limit]
    put_rows(out, [c.row for c in closed])
    if closed:
        put_floats(out, [c.closed_at for c in closed])
        put_texts(out, [c.reason for c in closed])
    put_uvarint(out, omitted)


def with_closes(
    frame: bytes,
    span: Span,
    closed: Sequence[ClosedConnection],
    omitted: int,
    limit: int,
) -> tuple[memoryview, ...]:
    """``frame`` (a keyframe or delta whose closes section is ``span``) with that section
    replaced by ``closed`` (the first ``limit``; the rest counted) and ``omitted``: the parts
    to send in order, the frame's own bytes as slices of it, not copies. ``WireError`` if a
    record cannot be encoded or the frame would pass the cap."""
    start, end = span
    if not HEADER_SIZE <= start <= end <= len(frame):
        raise WireError(f"a closes section at {span} in a frame of {len(frame)} bytes")
    section = bytearray()
    try:
        put_closes(section, closed, omitted, limit)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise WireError(f"cannot encode the closed connections: {exc}") from None
    length = len(frame) - 4 - (end - start) + len(section)  # the length counts the type byte
    if length > TO_CONSUMER_MAX:
        raise WireError(f"a frame of {length} bytes is over {TO_CONSUMER_MAX}")
    view = memoryview(frame)
    header = HEADER.pack(length, frame[4])
    return (
        memoryview(header),
        view[HEADER_SIZE:start],
        memoryview(section),
        view[end:],
    )
