"""Hypothesis strategies for the records the wire carries, within the wire's limits."""

from __future__ import annotations

from hypothesis import strategies as st

from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    LagWindow,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    LoopRow,
    ProducerInfo,
    Snapshot,
    TaskRow,
)

I64 = st.integers(-(2**63), 2**63 - 1)
U64 = st.integers(0, 2**64 - 1)
# Mostly the small numbers real rows hold, now and then the extremes.
ints = st.one_of(st.integers(0, 300), st.integers(-5, 70_000), I64)
nints = st.one_of(st.none(), ints)
uints = st.one_of(st.integers(0, 300), U64)
floats = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(allow_nan=False))
opt_floats = st.one_of(st.none(), floats)
texts = st.one_of(st.sampled_from(["", "open", "127.0.0.1:10000"]), st.text(max_size=12))
ids = st.integers(1, 2**40)

histograms = st.builds(LagHistogram, st.lists(st.integers(0, 50), max_size=150).map(tuple), floats)
figures = st.builds(
    LoopFigures,
    span_s=floats,
    iterations=ints,
    events=ints,
    callbacks=ints,
    timers=ints,
    busy_s=floats,
    poll_s=floats,
    lag=histograms,
    stalls=ints,
    errors=ints,
)
lags = st.builds(LagWindow, opt_floats, opt_floats, opt_floats, floats, ints)
listeners = st.builds(
    ListenerRow,
    id=uints,
    host=texts,
    port=uints,
    state=texts,
    accepted=ints,
    refused=ints,
    errors=ints,
    connections=ints,
    error=texts,
)
loop_rows = st.builds(
    LoopRow,
    id=uints,
    name=texts,
    backend=texts,
    interval=figures,
    totals=figures,
    lag=lags,
    tasks=nints,
    alive=st.booleans(),
)
tasks = st.builds(
    TaskRow,
    id=uints,
    name=texts,
    coro=texts,
    state=texts,
    age_s=floats,
    waiting_at=texts,
    loop=uints,
)
events = st.builds(
    LoopEvent,
    at=floats,
    kind=st.one_of(st.sampled_from(["connect", "close", "stall"]), texts),
    text=texts,
    fd=ints,
    detail=texts,
    id=nints,
)


def rows(id_strategy: st.SearchStrategy[int] = ids) -> st.SearchStrategy[ConnectionRow]:
    return st.builds(
        ConnectionRow,
        fd=ints,
        peer=texts,
        listener_id=ints,
        state=texts,
        mask=ints,
        read_fraction=floats,
        write_fraction=floats,
        ready_read=ints,
        ready_write=ints,
        ready_error=ints,
        queue_bytes=nints,
        queue_chunks=nints,
        bytes_in=nints,
        bytes_out=nints,
        messages=nints,
        created_at=floats,
        id=id_strategy,
        kind=texts,
        local=texts,
        loop=ints,
    )


def unique(strategy: st.SearchStrategy, max_size: int) -> st.SearchStrategy:  # type: ignore[type-arg]
    return st.lists(strategy, max_size=max_size, unique_by=lambda r: r.id).map(tuple)


closed = st.builds(ClosedConnection, rows(), floats, texts)
producers = st.builds(
    ProducerInfo,
    kind=texts,
    program=texts,
    pid=uints,
    backend=texts,
    session=texts,
    started_at=floats,
    commands=st.lists(texts, max_size=5).map(tuple),
    measures=st.lists(texts, max_size=5).map(tuple),
    version=texts,
)


def snapshots(
    connections: st.SearchStrategy[tuple[ConnectionRow, ...]] | None = None,
    session: st.SearchStrategy[str] = texts,
) -> st.SearchStrategy[Snapshot]:
    return st.builds(
        Snapshot,
        seq=st.integers(0, 2**40),
        taken_at=floats,
        backend=texts,
        strategy=texts,
        uptime_s=floats,
        interval=figures,
        totals=figures,
        listeners=unique(listeners, 4),
        connections=connections if connections is not None else unique(rows(), 8),
        events=st.lists(events, max_size=5).map(tuple),
        queue_bytes=ints,
        bytes_in=ints,
        bytes_out=ints,
        lag=lags,
        alive=st.booleans(),
        error=texts,
        session=session,
        closed=st.lists(closed, max_size=4).map(tuple),
        closed_omitted=uints,
        loops=unique(loop_rows, 3),
        tasks=st.one_of(st.none(), unique(tasks, 4)),
        closed_ready=st.one_of(st.none(), st.tuples(ints, ints, ints)),
    )


def canonical(snap: Snapshot) -> Snapshot:
    """What a snapshot decodes to: records keyed by id come back in ascending id order."""
    import dataclasses

    def by_id(records):  # type: ignore[no-untyped-def]
        return tuple(sorted(records, key=lambda r: r.id))

    return dataclasses.replace(
        snap,
        connections=by_id(snap.connections),
        listeners=by_id(snap.listeners),
        loops=by_id(snap.loops),
        tasks=None if snap.tasks is None else by_id(snap.tasks),
    )
