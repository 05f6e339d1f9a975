"""Codecs of the small records, one at a time: loop figures, lag, listeners, loops, tasks,
events and the producer's description. Connection rows, which come by the thousand, are coded
column by column instead (``rows``)."""

from __future__ import annotations

from itertools import compress
from typing import Final

from loopmon.snapshot import (
    LagHistogram,
    LagWindow,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    LoopRow,
    ProducerInfo,
    TaskRow,
)
from loopmon.wire.codec import (
    Reader,
    WireError,
    put_bool,
    put_f64,
    put_opt_f64,
    put_opt_svarint,
    put_str,
    put_strs,
    put_svarint,
    put_uvarint,
)

MAX_BUCKETS: Final = 4096
MAX_NAMES: Final = 256  # commands or figures a hello may list
MAX_TEXT: Final = 4096  # an event's text, in characters; longer is cut (and marked)
MAX_DETAIL: Final = 65536  # an event's detail (a stack, a traceback)
CUT: Final = " [...]"


# -- loop figures ----------------------------------------------------------------------------


def put_histogram(out: bytearray, lag: LagHistogram) -> None:
    """The bucket count, then only the non-zero buckets: (gap to it, count) pairs."""
    counts = lag.counts
    if len(counts) > MAX_BUCKETS:
        raise WireError(f"a histogram of {len(counts)} buckets")
    put_uvarint(out, len(counts))
    nonzero = list(compress(range(len(counts)), counts))  # in C: two of these a frame
    put_uvarint(out, len(nonzero))
    last = -1
    for i in nonzero:
        put_uvarint(out, i - last - 1)
        put_svarint(out, counts[i])
        last = i
    put_f64(out, lag.max_s)


def get_histogram(r: Reader) -> LagHistogram:
    n = r.count(MAX_BUCKETS, "histogram buckets")
    k = r.count(n, "non-zero histogram buckets")
    counts = [0] * n
    last = -1
    for _ in range(k):
        last += r.uvarint() + 1
        if last >= n:
            raise WireError("a histogram bucket past the last")
        counts[last] = r.svarint()
    return LagHistogram(tuple(counts), r.f64())


def put_figures(out: bytearray, f: LoopFigures) -> None:
    put_f64(out, f.span_s)
    put_svarint(out, f.iterations)
    put_svarint(out, f.events)
    put_svarint(out, f.callbacks)
    put_svarint(out, f.timers)
    put_f64(out, f.busy_s)
    put_f64(out, f.poll_s)
    put_histogram(out, f.lag)
    put_svarint(out, f.stalls)
    put_svarint(out, f.errors)


def get_figures(r: Reader) -> LoopFigures:
    return LoopFigures(
        span_s=r.f64(),
        iterations=r.svarint(),
        events=r.svarint(),
        callbacks=r.svarint(),
        timers=r.svarint(),
        busy_s=r.f64(),
        poll_s=r.f64(),
        lag=get_histogram(r),
        stalls=r.svarint(),
        errors=r.svarint(),
    )


def put_lag(out: bytearray, lag: LagWindow) -> None:
    put_opt_f64(out, lag.p50_s)
    put_opt_f64(out, lag.p99_s)
    put_opt_f64(out, lag.max_s)
    put_f64(out, lag.window_s)
    put_svarint(out, lag.samples)


def get_lag(r: Reader) -> LagWindow:
    return LagWindow(r.opt_f64(), r.opt_f64(), r.opt_f64(), r.f64(), r.svarint())


# -- listeners, loops, tasks -----------------------------------------------------------------


def put_listener(out: bytearray, row: ListenerRow) -> None:
    put_uvarint(out, row.id)
    put_str(out, row.host)
    put_uvarint(out, row.port)
    put_str(out, row.state)
    put_svarint(out, row.accepted)
    put_svarint(out, row.refused)
    put_svarint(out, row.errors)
    put_svarint(out, row.connections)
    put_str(out, row.error)


def get_listener(r: Reader) -> ListenerRow:
    return ListenerRow(
        id=r.uvarint(),
        host=r.text(),
        port=r.uvarint(),
        state=r.text(),
        accepted=r.svarint(),
        refused=r.svarint(),
        errors=r.svarint(),
        connections=r.svarint(),
        error=r.text(),
    )


def put_loop(out: bytearray, row: LoopRow) -> None:
    put_uvarint(out, row.id)
    put_str(out, row.name)
    put_str(out, row.backend)
    put_figures(out, row.interval)
    put_figures(out, row.totals)
    put_lag(out, row.lag)
    put_opt_svarint(out, row.tasks)
    put_bool(out, row.alive)


def get_loop(r: Reader) -> LoopRow:
    return LoopRow(
        id=r.uvarint(),
        name=r.text(),
        backend=r.text(),
        interval=get_figures(r),
        totals=get_figures(r),
        lag=get_lag(r),
        tasks=r.opt_svarint(),
        alive=r.bool(),
    )


def put_task(out: bytearray, row: TaskRow) -> None:
    put_uvarint(out, row.id)
    put_str(out, row.name)
    put_str(out, row.coro)
    put_str(out, row.state)
    put_f64(out, row.age_s)
    put_str(out, row.waiting_at)
    put_uvarint(out, row.loop)


def get_task(r: Reader) -> TaskRow:
    return TaskRow(
        id=r.uvarint(),
        name=r.text(),
        coro=r.text(),
        state=r.text(),
        age_s=r.f64(),
        waiting_at=r.text(),
        loop=r.uvarint(),
    )


# -- events ----------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def put_event(out: bytearray, event: LoopEvent) -> None:
    put_f64(out, event.at)
    put_str(out, event.kind)
    put_str(out, _cut(event.text, MAX_TEXT))
    put_svarint(out, event.fd)
    put_str(out, _cut(event.detail, MAX_DETAIL))
    put_opt_svarint(out, event.id)


def get_event(r: Reader) -> LoopEvent:
    return LoopEvent(
        at=r.f64(),
        kind=r.text(),
        text=r.text(),
        fd=r.svarint(),
        detail=r.text(),
        id=r.opt_svarint(),
    )


# -- the producer ----------------------------------------------------------------------------


def put_producer(out: bytearray, info: ProducerInfo) -> None:
    put_str(out, info.kind)
    put_str(out, info.program)
    put_uvarint(out, info.pid)
    put_str(out, info.backend)
    put_str(out, info.session)
    put_f64(out, info.started_at)
    put_strs(out, info.commands)
    put_strs(out, info.measures)
    put_str(out, info.version)


def get_producer(r: Reader) -> ProducerInfo:
    return ProducerInfo(
        kind=r.text(),
        program=r.text(),
        pid=r.uvarint(),
        backend=r.text(),
        session=r.text(),
        started_at=r.f64(),
        commands=r.texts(MAX_NAMES, "commands"),
        measures=r.texts(MAX_NAMES, "figures"),
        version=r.text(),
    )
