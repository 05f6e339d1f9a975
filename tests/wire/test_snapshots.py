"""The snapshot codec: keyframes and deltas decode to the snapshots encoded, whatever changed
between them; a delta applies only to its base; garbage is only ever WireError."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import (
    canonical,
    closed,
    events,
    ints,
    listeners,
    nints,
    rows,
    snapshots,
    unique,
)

from loopmon.snapshot import ClosedConnection, ConnectionRow, ListenerRow, LoopEvent, Snapshot
from loopmon.wire import SnapshotDecoder, SnapshotEncoder, WireError
from loopmon.wire.closes import CLOSED_PER_FRAME
from loopmon.wire.frames import DELTA, KEYFRAME, TO_CONSUMER_MAX, Frame, FrameReader
from loopmon.wire.snapshots import EVENTS_PER_KIND


def frame(data: bytes) -> Frame:
    [f] = FrameReader(TO_CONSUMER_MAX).feed(data)
    return f


def row(i: int, **changes: object) -> ConnectionRow:
    base = ConnectionRow(
        fd=i + 5, peer=f"127.0.0.1:{40000 + i}", listener_id=1, state="open", mask=0x19,
        read_fraction=1.0, write_fraction=0.0, id=i, local="127.0.0.1:10000",
    )  # fmt: skip
    return base._replace(**changes)  # type: ignore[arg-type]


def snap(seq: int, connections: tuple[ConnectionRow, ...] = (), **changes: object) -> Snapshot:
    return dataclasses.replace(
        Snapshot(seq, seq / 25, "epoll", "direct", session="s", connections=connections),
        **changes,  # type: ignore[arg-type]
    )


@settings(max_examples=150)
@given(snapshots())
def test_keyframe_round_trip(s: Snapshot) -> None:
    assert SnapshotDecoder().decode(frame(SnapshotEncoder().encode(s).keyframe())) == canonical(s)


POOL = 8
SLOW = {"suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@st.composite
def sequences(draw: st.DrawFn) -> list[Snapshot]:
    """Snapshots of one session whose rows come, go, stay (the same object, as telemetry
    reuses them), change a few figures or are replaced by anything at all."""
    first = draw(snapshots(unique(rows(st.integers(1, POOL)), POOL), st.just("s")))
    out = [first]
    for seq in range(first.seq + 1, first.seq + draw(st.integers(1, 6))):
        held = {r.id: r for r in out[-1].connections}
        connections = []
        for i in draw(st.permutations(range(1, POOL + 1))):
            choice = draw(st.sampled_from(["gone", "same", "tweak", "new"]))
            old = held.get(i)
            if choice == "gone" or (old is None and choice != "new"):
                continue
            if choice == "same" and old is not None:
                connections.append(old)
            elif choice == "tweak" and old is not None:
                connections.append(
                    old._replace(
                        bytes_in=draw(nints),
                        ready_read=min(old.ready_read + draw(st.integers(0, 9)), 2**63 - 1),
                        state=draw(st.sampled_from([old.state, "paused"])),
                        read_fraction=draw(st.sampled_from([old.read_fraction, 0.25])),
                    )
                )
            else:
                connections.append(draw(rows(st.just(i))))
        # The rest of the snapshot changes a little (drawing a whole new one each time makes
        # the examples too big to generate quickly).
        prev = out[-1]
        out.append(
            dataclasses.replace(
                prev,
                seq=seq,
                connections=tuple(connections),
                listeners=tuple(
                    {
                        r.id: r
                        for r in draw(unique(listeners, 2))
                        + draw(st.sampled_from([prev.listeners, ()]))
                    }.values()
                ),
                events=tuple(draw(st.lists(events, max_size=2))),
                closed=tuple(draw(st.lists(closed, max_size=2))),
                loops=draw(st.sampled_from([prev.loops, ()])),
                tasks=draw(st.sampled_from([prev.tasks, None, ()])),
                bytes_in=draw(ints),
            )
        )
    return out


@settings(max_examples=100, **SLOW)  # type: ignore[arg-type]
@given(sequences())
def test_decoding_through_deltas_equals_decoding_each_keyframe(seq: list[Snapshot]) -> None:
    encoder = SnapshotEncoder()
    through = SnapshotDecoder()
    for i, s in enumerate(seq):
        encoded = encoder.encode(s)
        alone = SnapshotDecoder().decode(frame(encoded.keyframe()))
        if i == 0:
            assert encoded.delta is None
            got = through.decode(frame(encoded.keyframe()))
        else:
            assert encoded.delta is not None
            got = through.decode(frame(encoded.delta))
        assert got == alone == canonical(s)


@settings(max_examples=60, **SLOW)  # type: ignore[arg-type]
@given(sequences(), st.data())
def test_damaged_frames_raise_only_wire_error(seq: list[Snapshot], data: st.DataObject) -> None:
    encoder = SnapshotEncoder()
    decoder = SnapshotDecoder()
    for i, s in enumerate(seq):
        encoded = encoder.encode(s)
        good = frame(encoded.keyframe() if i == 0 else encoded.delta)  # type: ignore[arg-type]
        body = good.body
        cut = data.draw(st.integers(0, len(body)))
        in_step = True
        for bad in (body[:cut], body[:cut] + data.draw(st.binary(min_size=1, max_size=6))):
            before = decoder.last
            try:
                decoder.decode(Frame(good.type, bad))
                in_step = False  # damaged yet readable (the damage rebuilt the frame, say)
            except WireError:
                assert decoder.last is before  # a failed frame changes nothing
        if in_step:
            decoder.decode(good)
        else:
            decoder.decode(frame(encoded.keyframe()))


@given(st.sampled_from([KEYFRAME, DELTA]), st.binary(max_size=300))
def test_garbage_raises_only_wire_error(kind: int, body: bytes) -> None:
    decoder = SnapshotDecoder()
    decoder.decode(frame(SnapshotEncoder().encode(snap(1, (row(1),))).keyframe()))
    try:
        decoder.decode(Frame(kind, body))
    except WireError:
        pass


def test_a_delta_applies_only_to_its_base() -> None:
    encoder = SnapshotEncoder()
    first = encoder.encode(snap(1, (row(1),)))
    second = encoder.encode(snap(2, (row(1, bytes_in=5),)))
    third = encoder.encode(snap(3, (row(1, bytes_in=9),)))
    decoder = SnapshotDecoder()
    with pytest.raises(WireError, match="before any keyframe"):
        decoder.decode(frame(second.delta))  # type: ignore[arg-type]
    decoder.decode(frame(first.keyframe()))
    with pytest.raises(WireError, match="against frame 2, but the last frame was 1"):
        decoder.decode(frame(third.delta))  # type: ignore[arg-type]
    assert decoder.decode(frame(second.delta)).connections[0].bytes_in == 5  # type: ignore[arg-type]


def test_unmeasured_figures_stay_null_through_deltas() -> None:
    unmeasured = {f: None for f in ("queue_bytes", "queue_chunks", "bytes_in", "bytes_out")}
    encoder = SnapshotEncoder()
    decoder = SnapshotDecoder()
    decoder.decode(frame(encoder.encode(snap(1, (row(1, **unmeasured),))).keyframe()))
    got = decoder.decode(
        frame(encoder.encode(snap(2, (row(1, ready_read=3, **unmeasured),))).delta)
    )  # type: ignore[arg-type]
    assert got.connections[0].bytes_in is None and got.connections[0].ready_read == 3
    got = decoder.decode(frame(encoder.encode(snap(3, (row(1, bytes_in=0),))).delta))  # type: ignore[arg-type]
    assert got.connections[0].bytes_in == 0 and got.connections[0].queue_bytes == 0


def test_only_changed_rows_travel() -> None:
    held = tuple(row(i) for i in range(1, 1001))
    encoder = SnapshotEncoder()
    encoder.encode(snap(1, held))
    quiet = encoder.encode(snap(2, held)).delta
    busy = list(held)
    busy[500] = busy[500]._replace(bytes_in=4096, bytes_out=4096, ready_read=3, messages=3)
    one = encoder.encode(snap(3, tuple(busy))).delta
    assert quiet is not None and one is not None
    assert len(one) - len(quiet) <= 24  # even alone, with its block's overhead
    for i in range(0, 1000, 10):
        busy[i] = busy[i]._replace(bytes_in=4096 + i, bytes_out=4000 + i, ready_read=3 + i % 3)
    many = encoder.encode(snap(4, tuple(busy))).delta
    assert many is not None and (len(many) - len(quiet)) / 100 <= 12
    # A rebuilt row equal to the last is not a change (with fewer than three rows in four
    # rebuilt: past that, the whole table travels, below).
    rebuilt = [r._replace() if i % 2 else r for i, r in enumerate(busy)]
    assert len(encoder.encode(snap(5, tuple(rebuilt))).delta) == len(quiet)  # type: ignore[arg-type]


def busy_frames(n: int, frames: int, share: float, seed: int) -> list[Snapshot]:
    """Snapshots of ``n`` rows where a random ``share`` of them changes each frame, as an
    echo server's busy connections do, the rest being the same objects."""
    import random

    rng = random.Random(seed)
    rows = tuple(row(i) for i in range(1, n + 1))
    out = [snap(1, rows)]
    for seq in range(2, frames + 2):
        rows = tuple(
            r._replace(
                bytes_in=r.bytes_in + rng.randint(1, 900),  # type: ignore[operator]
                ready_read=r.ready_read + 1,
                write_fraction=rng.choice((0.0, 0.5)),
            )
            if rng.random() < share
            else r
            for r in rows
        )
        out.append(snap(seq, rows))
    return out


@pytest.mark.parametrize("share", [1.0, 0.86, 0.5])
def test_the_whole_table_decodes_as_the_row_by_row_deltas(share: float) -> None:
    # The WHOLE TABLE path (most rows changed, the same rows as the last frame) gives the
    # snapshots the row-by-row deltas give, and is taken exactly when three rows in four or
    # more changed.
    frames = busy_frames(40, 12, share, seed=int(share * 100))
    encoder = SnapshotEncoder()
    decoder = SnapshotDecoder()
    for s in frames:
        encoded = encoder.encode(s)
        got = decoder.decode(frame(encoded.keyframe() if encoded.delta is None else encoded.delta))
        assert got == canonical(s)
    if share == 0.5:
        assert encoder.whole_frames == 0
    else:
        assert encoder.whole_frames >= 10  # the last frames all took it (the first two may not)


def test_the_whole_table_keeps_its_columns_and_starts_over_after_a_change_of_rows() -> None:
    frames = busy_frames(40, 6, 1.0, seed=3)
    encoder = SnapshotEncoder()
    decoder = SnapshotDecoder()
    for s in frames[:4]:
        encoded = encoder.encode(s)
        decoder.decode(frame(encoded.keyframe() if encoded.delta is None else encoded.delta))
    assert encoder.whole_frames == 3
    kept = encoder._table
    assert kept is not None and kept[2] is not None  # the ids' coding, kept for the next
    # A connection goes: not the same rows, so row by row; then whole again.
    fewer = dataclasses.replace(frames[4], connections=frames[4].connections[1:])
    for s in (fewer, dataclasses.replace(frames[5], connections=frames[5].connections[1:])):
        encoded = encoder.encode(s)
        assert encoded.delta is not None
        assert decoder.decode(frame(encoded.delta)) == canonical(s)
    assert encoder.whole_frames == 4


def test_a_table_of_rebuilt_equal_rows_is_no_change_at_all() -> None:
    held = tuple(row(i) for i in range(1, 1001))
    encoder = SnapshotEncoder()
    encoder.encode(snap(1, held))
    quiet = encoder.encode(snap(2, held)).delta
    rebuilt = encoder.encode(snap(3, tuple(r._replace() for r in held))).delta
    assert quiet is not None and rebuilt is not None
    assert encoder.whole_frames == 0 and len(rebuilt) == len(quiet)
    # Most rebuilt, a few changed: the whole table, whose unchanged rows cost next to nothing.
    some = tuple(r._replace(ready_read=1) if r.id % 100 == 0 else r._replace() for r in held)
    changed = encoder.encode(snap(4, some)).delta
    assert changed is not None and encoder.whole_frames == 1
    assert len(changed) - len(quiet) <= 40  # the ids (all gaps 1) and one sparse column


def test_the_keyframe_is_built_once() -> None:
    encoded = SnapshotEncoder().encode(snap(1, (row(1),)))
    assert encoded.keyframe() is encoded.keyframe()


def test_a_new_session_starts_over() -> None:
    encoder = SnapshotEncoder()
    encoder.encode(snap(1, (row(1),)))
    assert encoder.encode(snap(1, (row(1),), session="other")).delta is None


def test_rows_come_back_in_id_order_even_when_a_lower_id_arrives() -> None:
    encoder = SnapshotEncoder()
    decoder = SnapshotDecoder()
    decoder.decode(frame(encoder.encode(snap(1, (row(5), row(9)))).keyframe()))
    got = decoder.decode(frame(encoder.encode(snap(2, (row(9), row(5), row(2)))).delta))  # type: ignore[arg-type]
    assert [r.id for r in got.connections] == [2, 5, 9]


def test_closed_connections_are_bounded_and_the_rest_counted() -> None:
    closed = tuple(
        ClosedConnection(row(i, state="closed"), 1.0 + i, "peer closed")
        for i in range(CLOSED_PER_FRAME + 7)
    )
    got = SnapshotDecoder().decode(
        frame(SnapshotEncoder().encode(snap(1, closed=closed, closed_omitted=3)).keyframe())
    )
    assert got.closed == closed[:CLOSED_PER_FRAME]
    assert got.closed_omitted == 3 + 7


def test_a_flood_of_one_kind_never_evicts_a_rare_one() -> None:
    stall = LoopEvent(0.5, "stall", "loop blocked 120 ms", detail="stack")
    flood = tuple(LoopEvent(float(i), "connect", f"c{i}") for i in range(EVENTS_PER_KIND + 50))
    events = (stall, *flood)
    decoder = SnapshotDecoder()
    got = decoder.decode(frame(SnapshotEncoder().encode(snap(1, events=events)).keyframe()))
    assert got.events[0] == stall
    assert got.events[1:] == flood[50:]  # each kind keeps its newest
    assert decoder.events_omitted == 50


def test_long_event_texts_are_cut_and_marked() -> None:
    event = LoopEvent(0.0, "exception", "x" * 10_000, detail="y" * 100_000)
    [got] = (
        SnapshotDecoder()
        .decode(frame(SnapshotEncoder().encode(snap(1, events=(event,))).keyframe()))
        .events
    )
    assert len(got.text) == 4096 and got.text.endswith("[...]")
    assert len(got.detail) == 65536


@pytest.mark.parametrize(
    "bad",
    [
        row(1, fd=None),
        row(1, bytes_in=2**64),
        row(1, peer=b"bytes"),
        row(1, read_fraction="x"),
    ],
)
def test_a_row_that_cannot_be_encoded_is_wire_error_and_the_encoder_recovers(
    bad: ConnectionRow,
) -> None:
    with pytest.raises(WireError):
        SnapshotEncoder().encode(snap(1, (bad,))).keyframe()
    encoder = SnapshotEncoder()
    encoder.encode(snap(1, (row(1),)))
    with pytest.raises(WireError):
        encoder.encode(snap(2, (bad,)))
    # The failed delta was not committed: the next one starts again from a keyframe.
    assert encoder.encode(snap(3, (row(1),))).delta is None


def test_two_records_of_one_id_are_refused() -> None:
    with pytest.raises(WireError, match="share an id"):
        SnapshotEncoder().encode(snap(1, (row(1), row(1, fd=99))))
    twice = (ListenerRow(1, "::1", 1, "listening"), ListenerRow(1, "::1", 2, "listening"))
    with pytest.raises(WireError, match="share an id"):
        SnapshotEncoder().encode(snap(1, listeners=twice)).keyframe()


def test_every_snapshot_field_is_drawn_so_every_one_round_trips() -> None:
    # A field added to Snapshot after the codec (closed_ready was one) and not drawn by the
    # strategy would round-trip at its default only, and a codec that drops it would pass.
    strategy = snapshots().wrapped_strategy  # type: ignore[attr-defined]
    drawn = set(strategy.kwargs)
    assert drawn == {f.name for f in dataclasses.fields(Snapshot)}


@pytest.mark.parametrize("ready", [None, (0, 0, 0), (3, 2**40, 1)])
def test_closed_ready_travels_in_keyframes_and_deltas(ready: tuple[int, int, int] | None) -> None:
    encoder, decoder = SnapshotEncoder(), SnapshotDecoder()
    first = snap(1, closed_ready=(1, 1, 1))
    second = snap(2, closed_ready=ready)
    assert decoder.decode(frame(encoder.encode(first).keyframe())).closed_ready == (1, 1, 1)
    encoded = encoder.encode(second)
    assert encoded.delta is not None
    assert decoder.decode(frame(encoded.delta)).closed_ready == ready
    assert SnapshotDecoder().decode(frame(encoded.keyframe())).closed_ready == ready
