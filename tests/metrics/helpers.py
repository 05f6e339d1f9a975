"""Shared pieces for the metrics tests: hand-built snapshots and a producer, and one-pass
driving of a loop whose clock the test moves."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from loopmon import histogram
from loopmon.ioloop import IOLoop
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    ListenerRow,
    LoopFigures,
    ProducerInfo,
    Snapshot,
)
from loopmon.telemetry import MEASURES

SERVE = ProducerInfo(
    kind="serve",
    program="loopmon serve",
    pid=1,
    backend="epoll",
    session="s1",
    started_at=0.0,
    measures=MEASURES,
)
EVERYTHING = replace(SERVE, kind="run", measures=(*MEASURES, "tasks"))


def row(conn_id: int, *, fd: int | None = None, **fields: Any) -> ConnectionRow:
    values: dict[str, Any] = {
        "fd": conn_id + 10 if fd is None else fd,
        "peer": f"127.0.0.1:{40000 + conn_id}",
        "listener_id": 1,
        "state": "open",
        "mask": 1,
        "read_fraction": 1.0,
        "write_fraction": 0.0,
        "id": conn_id,
        "local": "127.0.0.1:10000",
    }
    values.update(fields)
    return ConnectionRow(**values)


def closed(r: ConnectionRow, at: float = 0.0, reason: str = "peer closed") -> ClosedConnection:
    return ClosedConnection(r._replace(state="closed"), at, reason)


def lag(*seconds: float) -> LagHistogram:
    counts = [0] * histogram.NBUCKETS
    for s in seconds:
        counts[histogram.bucket_of(s)] += 1
    return LagHistogram(tuple(counts), max(seconds, default=0.0))


def figures(**fields: Any) -> LoopFigures:
    return LoopFigures(**fields)


def snapshot(seq: int, at: float, **fields: Any) -> Snapshot:
    fields.setdefault("session", "s1")
    fields.setdefault("listeners", (ListenerRow(1, "127.0.0.1", 10000, "listening"),))
    return Snapshot(seq=seq, taken_at=at, backend="epoll", strategy="direct", **fields)


def pump(loop: IOLoop, passes: int = 1) -> None:
    """Run ``passes`` passes that each poll once without blocking, then return."""
    for _ in range(passes):
        loop.add_callback(lambda: loop.add_callback(loop.stop))
        loop.start()
