"""A keyframe with its closes section rewritten for one consumer (``wire.closes``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import canonical, closed, snapshots

from loopmon.snapshot import ClosedConnection, Snapshot
from loopmon.wire import SnapshotDecoder, SnapshotEncoder, WireError
from loopmon.wire.closes import with_closes
from loopmon.wire.frames import Frame


def decode(parts: tuple[memoryview, ...] | bytes) -> Snapshot:
    data = parts if isinstance(parts, bytes) else b"".join(parts)
    assert int.from_bytes(data[:4], "big") == len(data) - 4  # the header says the new length
    return SnapshotDecoder().decode(Frame(data[4], data[5:]))


@settings(max_examples=150)
@given(
    snapshots(),
    st.lists(closed, max_size=12).map(tuple),
    st.integers(0, 2**40),
    st.integers(0, 12),
)
def test_a_keyframe_with_other_closes_decodes_to_the_snapshot_with_those_closes(
    snap: Snapshot, closes: tuple[ClosedConnection, ...], omitted: int, limit: int
) -> None:
    encoded = SnapshotEncoder().encode(snap)
    keyframe = encoded.keyframe()
    parts = with_closes(keyframe, encoded.keyframe_closes(), closes, omitted, limit)
    expected = dataclasses.replace(
        snap, closed=closes[:limit], closed_omitted=omitted + max(0, len(closes) - limit)
    )
    assert decode(parts) == canonical(expected)
    # The snapshot's own closes, put back, give the keyframe byte for byte.
    same = with_closes(keyframe, encoded.keyframe_closes(), snap.closed, snap.closed_omitted, 1000)
    assert b"".join(same) == keyframe


def test_the_keyframe_bytes_are_sliced_not_copied() -> None:
    snap = Snapshot(1, 0.0, "epoll", "direct", session="s")
    encoded = SnapshotEncoder().encode(snap)
    keyframe = encoded.keyframe()
    parts = with_closes(keyframe, encoded.keyframe_closes(), (), 5, 10)
    assert all(p.obj is keyframe for p in (parts[1], parts[3]))
    assert decode(parts).closed_omitted == 5


def test_a_span_outside_the_frame_is_wire_error() -> None:
    keyframe = SnapshotEncoder().encode(Snapshot(1, 0.0, "epoll", "direct")).keyframe()
    with pytest.raises(WireError):
        with_closes(keyframe, (2, 3), (), 0, 10)
    with pytest.raises(WireError):
        with_closes(keyframe, (10, len(keyframe) + 1), (), 0, 10)
