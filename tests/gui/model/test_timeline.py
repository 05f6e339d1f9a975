"""The Timeline, without Qt: ghosts, scrubbing, thinning, the budget, sessions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopmon.gui.model.timeline import RESTARTED, VANISHED, Timeline
from loopmon.snapshot import ClosedConnection, ConnectionRow, LagWindow, LoopFigures, Snapshot

SPAN = 0.04


def row(cid: int, fd: int | None = None, queue: int = 0, bytes_in: int = 0, read: float = 1.0,
        write: float = 0.0, state: str = "open") -> ConnectionRow:  # fmt: skip
    return ConnectionRow(
        fd=fd if fd is not None else cid + 10, peer=f"127.0.0.1:{40000 + cid}", listener_id=1,
        state=state, mask=1, read_fraction=read, write_fraction=write, queue_bytes=queue,
        bytes_in=bytes_in, bytes_out=bytes_in, messages=bytes_in // 10, created_at=0.0, id=cid,
    )  # fmt: skip


def snap(seq: int, rows: tuple[ConnectionRow, ...] = (), closed: tuple[ClosedConnection, ...] = (),
         session: str = "s1", events: int = 0, queue: int = 0, lag: float | None = None,
         t0: float = 100.0) -> Snapshot:  # fmt: skip
    return Snapshot(
        seq=seq, taken_at=t0 + seq * SPAN, backend="epoll", strategy="direct", session=session,
        interval=LoopFigures(span_s=SPAN, events=events, iterations=1, busy_s=0.01, poll_s=0.03),
        connections=rows, closed=closed, queue_bytes=queue,
        lag=LagWindow(p50_s=lag, p99_s=lag, max_s=lag, window_s=10.0, samples=1),
    )  # fmt: skip


def test_a_closed_connection_becomes_a_ghost_with_its_reason_and_final_figures() -> None:
    tl = Timeline()
    for seq in range(1, 20):
        tl.add(snap(seq, (row(1, bytes_in=seq * 100), row(2))))
    final = row(1, bytes_in=2500)
    gone = ClosedConnection(final, 100.0 + 19.5 * SPAN, "peer closed")
    tl.add(snap(20, (row(2),), closed=(gone,)))
    state = tl.state_at()
    assert [r.id for r in state.rows] == [2]
    (ghost,) = state.ghosts
    assert ghost.reason == "peer closed" and ghost.row.bytes_in == 2500
    assert ghost.session == "s1" and math.isclose(ghost.at, 100.0 + 19.5 * SPAN)
    for seq in range(21, 200):  # it stays while history holds it
        tl.add(snap(seq, (row(2),)))
    assert [g.row.id for g in tl.state_at().ghosts] == [1]


def test_scrubbing_back_shows_a_closed_connection_open_with_its_figures_then() -> None:
    tl = Timeline()
    for seq in range(1, 100):
        tl.add(snap(seq, (row(1, bytes_in=seq * 100, queue=seq), row(2, fd=11))))
    gone = ClosedConnection(row(1, bytes_in=9999), 104.0, "reset")
    tl.add(snap(100, (row(2, fd=11),), closed=(gone,)))
    for seq in range(101, 150):
        tl.add(snap(seq, (row(3, fd=11),)))  # fd 11 reused by another connection: not one row
    then = tl.state_at(100.0 + 50 * SPAN)
    ids = {r.id: r for r in then.rows}
    assert set(ids) == {1, 2}
    assert not then.ghosts
    # the figures of the slice holding the cursor, never later ones
    assert 4500 <= ids[1].bytes_in <= 5500 and ids[1].queue_bytes is not None
    assert ids[1].fd == 11 and ids[1].peer.endswith("40001")
    now = tl.state_at()
    assert [r.id for r in now.rows] == [3]
    assert {g.row.id for g in now.ghosts} == {1, 2}
    assert {g.row.id: g.reason for g in now.ghosts}[2] == VANISHED


def test_a_session_restart_is_marked_and_its_ids_are_its_own() -> None:
    tl = Timeline()
    for seq in range(1, 30):
        tl.add(snap(seq, (row(1),)), received_at=float(seq))
    end_of_first = tl.now
    for seq in range(1, 30):  # a new producer: its own clock, ids from 1 again
        tl.add(snap(seq, (row(1, bytes_in=7),), session="s2", t0=5.0), received_at=40.0 + seq)
    assert [m.session for m in tl.sessions] == ["s1", "s2"]
    assert tl.sessions[1].at > end_of_first  # after the first, with the gap seen between them
    assert math.isclose(tl.sessions[1].at - end_of_first, 41.0 - 29.0)
    state = tl.state_at()
    assert state.session == "s2" and [r.bytes_in for r in state.rows] == [7]
    (ghost,) = state.ghosts
    assert (ghost.session, ghost.row.id, ghost.reason) == ("s1", 1, RESTARTED)
    before = tl.state_at(end_of_first - 0.1)
    assert before.session == "s1" and [r.id for r in before.rows] == [1]


_FRAME = st.tuples(st.integers(0, 50), st.integers(0, 10**6), st.none() | st.floats(0, 2))


@settings(max_examples=40, deadline=None)
@given(st.lists(_FRAME, min_size=1, max_size=400))
def test_thinning_keeps_sums_and_maxima(frames: list[tuple[int, int, float | None]]) -> None:
    # tiers so short that everything is thinned twice within the frames fed
    tl = Timeline(slice_s=0.2, tiers=((1.0, 1.0), (3.0, 3.0)))
    for seq, (events, queue, lag) in enumerate(frames, start=1):
        tl.add(snap(seq, (row(1, queue=queue),), events=events, queue=queue, lag=lag))
    tl.add(snap(len(frames) + 200, ()))  # far later: closes the last slice and thins
    tl.thin()
    slices = tl.slices
    assert sum(p.loop.events for p in slices) == sum(e for e, _, _ in frames)
    assert sum(p.loop.frames for p in slices) == len(frames)
    assert max(p.loop.queue_max for p in slices) == max(q for _, q, _ in frames)
    lags = [lag for _, _, lag in frames if lag is not None]
    kept = [p.loop.lag_max for p in slices if not math.isnan(p.loop.lag_max)]
    assert (max(kept) if kept else None) == (max(lags) if lags else None)
    # the connection's deepest queue survives thinning too (float32 columns)
    deepest = max(p.qmax[p.column(1)] for p in slices if p.column(1) is not None)
    assert math.isclose(deepest, max(q for _, q, _ in frames), rel_tol=1e-6)
    assert any(p.width > 0.2 + 1e-9 for p in slices) or len(frames) < 30
    # utilization stays weighted by span: busy 0.01 of every 0.04
    assert all(math.isclose(p.loop.utilization, 0.25) for p in slices if p.loop.frames)


def test_the_budget_is_respected_thinning_before_dropping() -> None:
    budget = 150_000
    tl = Timeline(budget_bytes=budget, max_width_s=5.0)  # coarsened to 5 s, then dropped
    rows = tuple(row(i) for i in range(1, 51))
    widths_seen = set()
    for seq in range(1, 5000):
        tl.add(snap(seq, tuple(r._replace(bytes_in=seq) for r in rows), events=1))
        assert tl.nbytes <= budget + tl.open_nbytes
        widths_seen.update(round(p.width, 1) for p in tl.slices[:1])
    assert max(widths_seen) > 1.0  # the oldest were coarsened before any was dropped
    assert tl.dropped_slices > 0
    assert tl.start > 100.0  # the oldest history went
    assert tl.state_at().rows == tl.latest.connections if tl.latest else False


def test_upkeep_is_spread_one_merge_a_frame_at_most() -> None:
    """Thinning and coarsening for the budget merge at most one run of slices per frame, and
    none in a frame that finishes a slice: no frame carries the history's upkeep in one go
    (thinning every fifth slice at once made that frame a p99 of 18 ms at 1,000 rows)."""
    tl = Timeline(budget_bytes=2_000_000, tiers=((2.0, 1.0), (6.0, 5.0)))
    merges = 0
    join = tl._join

    def counting(group: list, out: list) -> bool:  # type: ignore[type-arg]
        nonlocal merges
        merged = join(group, out)
        merges += merged
        return merged

    tl._join = counting  # type: ignore[method-assign]
    rows = tuple(row(i) for i in range(1, 21))
    most = 0
    for seq in range(1, 3000):
        merges = 0
        slices_before = len(tl.slices) + (tl.dropped_slices)
        tl.add(snap(seq, tuple(r._replace(bytes_in=seq) for r in rows), events=1))
        finished = len(tl.slices) + tl.dropped_slices + merges > slices_before
        most = max(most, merges)
        if finished and tl.nbytes <= tl.budget_bytes * 0.9:
            assert merges == 0, seq
    assert most == 1
    widths = {round(p.width, 1) for p in tl.slices}
    assert {0.2, 1.0, 5.0} <= widths  # and yet every tier was thinned
    old = [p for p in tl.slices if p.end <= tl.now - 6.0 - 5.0]
    assert old and all(p.width >= 5.0 - 1e-6 for p in old)


def test_the_time_axis_zooms_pans_and_returns_to_live() -> None:
    from loopmon.gui.model.time_axis import MIN_WIDTH_S, TimeAxis

    axis = TimeAxis(width_s=60.0)
    assert axis.live and axis.range(500.0) == (440.0, 500.0)
    axis.zoom(10, start=100.0, now=500.0)
    assert axis.width_s == MIN_WIDTH_S
    axis.zoom(-100, start=100.0, now=500.0)
    assert axis.width_s == 400.0  # the whole history
    axis.pan(-0.1, start=100.0, now=500.0)
    assert not axis.live and axis.at(600.0) == 460.0  # paused: now moves on, the cursor not
    axis.pan(-10, start=100.0, now=600.0)
    assert axis.cursor == 100.0  # not before history
    axis.go_live()
    assert axis.at(700.0) == 700.0
    axis.pause(700.0)
    assert axis.at(800.0) == 700.0
    young = TimeAxis(width_s=60.0)  # a fresh window: 20 s of history, 60 s wide
    young.pan(-0.1, start=980.0, now=1000.0)
    assert young.cursor == 998.0  # a tenth of what there is, not 6 s of 20


def test_slices_are_aligned_so_thinning_gives_whole_widths_and_a_skip_leaves_no_gap() -> None:
    tl = Timeline(tiers=((2.0, 1.0),))
    for seq in range(1, 200):
        tl.add(snap(seq, (row(1),)))
    tl.add(snap(260, (row(1),)).__class__(**{**_fields(snap(260, (row(1),))),
           "interval": LoopFigures(span_s=61 * SPAN)}))  # fmt: skip
    for seq in range(261, 400):
        tl.add(snap(seq, (row(1),)))
    widths = sorted({round(p.width, 6) for p in tl.slices})
    assert 1.0 in widths and 0.8 not in widths
    for a, b in zip(tl.slices, tl.slices[1:], strict=False):
        assert math.isclose(a.end, b.start, abs_tol=1e-6)  # no hole where frames were skipped


def _fields(s: Snapshot) -> dict[str, object]:
    return {name: getattr(s, name) for name in Snapshot.__dataclass_fields__}


def test_a_write_flip_shorter_than_a_frame_is_kept_in_its_slice() -> None:
    tl = Timeline()
    for seq in range(1, 20):
        tl.add(snap(seq, (row(1, write=0.01 if seq == 7 else 0.0),)))
    part = tl.slices[tl.slice_index(100.0 + 7 * SPAN)]
    read, write = part.fractions(part.column(1) or 0)
    assert read == pytest.approx(1.0) and 0 < write < 0.01  # a sliver of the slice, not lost


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.integers(0, 10**9)), min_size=3,
                 max_size=3),
        min_size=2, max_size=6,
    )
)  # fmt: skip
def test_merging_slices_of_the_same_connections_in_c_equals_merging_per_id(
    frames: list[list[tuple[float, float, int]]],
) -> None:
    """The hot path (slices.py's ``_merge_same_ids``, column sums in C) gives what the per-id
    merge gives, to the bit."""
    from loopmon.gui.model.slices import Slice, SliceBuilder, _merge_by_id, merge

    parts = []
    for k, frame in enumerate(frames):
        builder = SliceBuilder("s", k * 0.2, (k + 1) * 0.2)
        rows = tuple(
            row(i + 1, read=r, write=w, queue=q, bytes_in=q) for i, (r, w, q) in enumerate(frame)
        )
        builder.add(snap(k + 1, rows), rows)
        parts.append(builder.finish())
    fast = merge(parts)
    slow = _merge_by_id(parts, Slice("s", parts[0].start, parts[-1].end))
    for name in ("ids", "watched", "read", "write", "qmax", "mask", "state", "figs"):
        assert getattr(fast, name) == getattr(slow, name), name
