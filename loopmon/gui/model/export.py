"""Saving what the window shows: the connections as CSV (raw numbers, not the table's rounded
text), and plots as PNG (PlotPanel.export_png)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence

from loopmon.events import mask_names
from loopmon.snapshot import ConnectionRow

CSV_COLUMNS = (
    "fd",
    "peer",
    "listener_id",
    "listener",
    "state",
    "mask",
    "read_fraction",
    "write_fraction",
    "ready_read",
    "ready_write",
    "ready_error",
    "queue_bytes",
    "queue_chunks",
    "bytes_in",
    "bytes_out",
    "messages",
    "age_s",
)


def write_connections_csv(
    path: str | os.PathLike[str],
    rows: Sequence[ConnectionRow],
    taken_at: float,
    listener_address: Callable[[int], str] = str,
) -> int:
    """Write ``rows`` (as of a snapshot taken at ``taken_at``); returns the number written."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for r in rows:
            out.writerow(
                (
                    r.fd,
                    r.peer,
                    r.listener_id,
                    listener_address(r.listener_id),
                    r.state,
                    mask_names(r.mask),
                    f"{r.read_fraction:.4f}",
                    f"{r.write_fraction:.4f}",
                    r.ready_read,
                    r.ready_write,
                    r.ready_error,
                    r.queue_bytes,
                    r.queue_chunks,
                    r.bytes_in,
                    r.bytes_out,
                    r.messages,
                    f"{max(taken_at - r.created_at, 0.0):.3f}",
                )
            )
    return len(rows)
