"""The JSON objects ``attach --json`` and ``replay --json`` print, one per snapshot.

One function of a snapshot, so that a live stream and a recording of it print the same objects
(same ``t``, same figures) whichever way they were decoded. Times are seconds since the
producer's session began; a figure the producer does not measure is null.
"""

from __future__ import annotations

from typing import Any

from loopmon.events import READ, WRITE
from loopmon.snapshot import ClosedConnection, ConnectionRow, LoopEvent, Snapshot, TaskRow

_MASKS = {0: "", READ: "R", WRITE: "W", READ | WRITE: "RW"}


def mask_letters(mask: int) -> str:
    """The registered interest: ERROR is always registered, so it is not spelled."""
    return _MASKS[mask & (READ | WRITE)]


def _connection(row: ConnectionRow, *, foreign: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "fd": row.fd,
        "peer": row.peer,
        "listener": row.listener_id or None,
        "state": row.state,
        "mask": mask_letters(row.mask),
        "error_seen": row.ready_error > 0,
        "bytes_in": row.bytes_in,
        "bytes_out": row.bytes_out,
        "queue_bytes": row.queue_bytes,
        "read_fraction": round(row.read_fraction, 6),
        "write_fraction": round(row.write_fraction, 6),
        "ready": [row.ready_read, row.ready_write, row.ready_error],
        "messages": row.messages,
    }
    if foreign or row.kind != "connection" or row.local:
        out["kind"] = row.kind
        out["local"] = row.local
        out["loop"] = row.loop
    return out


def _closed(closed: ClosedConnection, start: float, *, foreign: bool) -> dict[str, Any]:
    out = _connection(closed.row, foreign=foreign)
    out["closed_at"] = round(closed.closed_at - start, 6)
    out["reason"] = closed.reason
    return out


def _event(event: LoopEvent, start: float) -> dict[str, Any]:
    return {
        "t": round(event.at - start, 6),
        "kind": event.kind,
        "id": event.id,
        "fd": event.fd if event.fd >= 0 else None,
        "text": event.text,
        "detail": event.detail,
    }


def _task(task: TaskRow) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "coro": task.coro,
        "state": task.state,
        "age_s": round(task.age_s, 6),
        "waiting_at": task.waiting_at,
        "loop": task.loop,
    }


def snapshot_object(snap: Snapshot, *, dropped_frames: int = 0) -> dict[str, Any]:
    """The object printed for ``snap``. ``dropped_frames``: frames the producer dropped for
    this consumer since the previous object (a slow reader's loss, told by the producer)."""
    start = snap.taken_at - snap.uptime_s
    foreign = snap.tasks is not None or bool(snap.loops)
    interval = snap.interval
    out: dict[str, Any] = {
        "session": snap.session,
        "seq": snap.seq,
        "t": round(snap.uptime_s, 6),
        "backend": snap.backend,
        "alive": snap.alive,
        "connections": [_connection(r, foreign=foreign) for r in snap.connections],
        "closed": [_closed(c, start, foreign=foreign) for c in snap.closed],
        "closed_omitted": snap.closed_omitted,
        "listeners": [
            {
                "id": lst.id,
                "address": lst.address,
                "state": lst.state,
                "accepted": lst.accepted,
                "refused": lst.refused,
                "open": lst.connections,
                "error": lst.error,
            }
            for lst in snap.listeners
        ],
        "loop": {
            "span_s": round(interval.span_s, 6),
            "iterations": interval.iterations,
            "events": interval.events,
            "callbacks": interval.callbacks,
            "utilization": round(interval.utilization, 6),
            "lag_p50_s": snap.lag.p50_s,
            "lag_p99_s": snap.lag.p99_s,
            "lag_window_s": round(snap.lag.window_s, 3),
            "stalls": interval.stalls,
            "errors": interval.errors,
        },
        "events": [_event(e, start) for e in snap.events],
        "dropped_frames": dropped_frames,
    }
    if snap.tasks is not None:
        out["tasks"] = [_task(t) for t in snap.tasks]
    if snap.loops:
        out["loops"] = [
            {
                "id": lp.id,
                "name": lp.name,
                "backend": lp.backend,
                "iterations": lp.interval.iterations,
                "events": lp.interval.events,
                "utilization": round(lp.interval.utilization, 6),
                "lag_p50_s": lp.lag.p50_s,
                "lag_p99_s": lp.lag.p99_s,
                "tasks": lp.tasks,
                "alive": lp.alive,
            }
            for lp in snap.loops
        ]
    if not snap.alive:
        out["error"] = snap.error
    return out
