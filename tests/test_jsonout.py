"""The JSON objects of ``attach --json``: the issue's fields, masks as letters, unmeasured
figures as null, the loop over the interval since the previous object."""

from __future__ import annotations

import json

from loopmon.cli.jsonout import mask_letters, snapshot_object
from loopmon.events import ERROR, READ, WRITE
from loopmon.histogram import bucket_of
from loopmon.snapshot import (
    ClosedConnection,
    ConnectionRow,
    LagHistogram,
    ListenerRow,
    LoopEvent,
    LoopFigures,
    Snapshot,
    TaskRow,
)


def row(i: int, **changes: object) -> ConnectionRow:
    base = ConnectionRow(
        fd=i + 5, peer=f"[::1]:{40000 + i}", listener_id=1, state="open", mask=READ | ERROR,
        read_fraction=1.0, write_fraction=0.0, id=i, local="[::1]:10000", bytes_in=10,
        bytes_out=10,
    )  # fmt: skip
    return base._replace(**changes)  # type: ignore[arg-type]


def lag(*samples: float) -> LagHistogram:
    counts = [0] * 147
    for s in samples:
        counts[bucket_of(s)] += 1
    return LagHistogram(tuple(counts), max(samples))


def snap(seq: int, **changes: object) -> Snapshot:
    fields: dict[str, object] = {
        "seq": seq, "taken_at": 100.0 + seq, "backend": "epoll", "strategy": "direct",
        "uptime_s": float(seq), "session": "s1",
    }  # fmt: skip
    fields.update(changes)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_masks_are_letters_and_error_is_never_spelled() -> None:
    assert [mask_letters(m | ERROR) for m in (0, READ, WRITE, READ | WRITE)] == [
        "", "R", "W", "RW"
    ]  # fmt: skip


def test_the_issues_fields_and_nulls() -> None:
    s = snap(
        3,
        connections=(
            row(1),
            row(2, bytes_in=None, bytes_out=None, queue_bytes=None, ready_error=2),
        ),
        closed=(ClosedConnection(row(9, mask=0), 102.5, "closed by the peer"),),
        listeners=(ListenerRow(1, "::1", 10000, "listening", accepted=3, connections=2),),
        events=(LoopEvent(102.0, "stall", "a stall", -1, "stack", None),),
        tasks=(TaskRow(4, "Task-4", "main", "pending", 1.5, "main.py:3"),),
    )
    obj = json.loads(json.dumps(snapshot_object(s, dropped_frames=2)))
    one, two = obj["connections"]
    assert one["peer"] == "[::1]:40001" and one["listener"] == 1 and one["mask"] == "R"
    assert one["kind"] == "connection" and one["local"] == "[::1]:10000" and one["loop"] == 1
    assert two["bytes_in"] is None and two["queue_bytes"] is None and two["error_seen"] is True
    [closed] = obj["closed"]
    assert closed["id"] == 9 and closed["reason"] == "closed by the peer"
    assert closed["closed_at"] == 2.5 and closed["bytes_in"] == 10  # its final figures
    assert obj["listeners"] == [
        {"id": 1, "address": "[::1]:10000", "state": "listening", "accepted": 3, "refused": 0,
         "open": 2, "error": ""}
    ]  # fmt: skip
    assert obj["events"] == [
        {"t": 2.0, "kind": "stall", "id": None, "fd": None, "text": "a stall", "detail": "stack"}
    ]
    assert obj["tasks"][0]["waiting_at"] == "main.py:3"
    assert obj["dropped_frames"] == 2 and obj["session"] == "s1" and obj["t"] == 3.0
    assert "tasks" not in snapshot_object(snap(4))  # serve has none


def test_the_loop_covers_the_interval_since_the_previous_object() -> None:
    earlier = snap(1, totals=LoopFigures(span_s=1.0, iterations=10, events=5, lag=lag(0.001)))
    later = snap(
        5,  # frames 2-4 were lost to this consumer
        interval=LoopFigures(span_s=0.04, iterations=1),
        totals=LoopFigures(
            span_s=2.0, iterations=40, events=25, busy_s=0.5, poll_s=0.5,
            lag=lag(0.001, 0.02, 0.02),
        ),
    )  # fmt: skip
    loop = snapshot_object(later, previous=earlier)["loop"]
    assert loop["iterations"] == 30 and loop["events"] == 20 and loop["span_s"] == 1.0
    assert 0.015 < loop["lag_p50_s"] < 0.025  # only the samples of the interval
    alone = snapshot_object(later)["loop"]
    assert alone["iterations"] == 1 and alone["lag_p50_s"] is None
    other_session = snapshot_object(later, previous=snap(1, session="s0"))["loop"]
    assert other_session["iterations"] == 1
