"""Snapshots as JSON (a debugging and test hook: ``loopmon run --dump-snapshots FILE``).

Not the wire format (that is the stream's codec): a plain, lossless rendering of the records,
rows as objects with their field names, so a test can compare what was measured with a real
client."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from loopmon.snapshot import Snapshot


def plain(value: Any) -> Any:
    """Records as dicts, tuples as lists, everything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def to_json(snapshot: Snapshot) -> str:
    return json.dumps(plain(snapshot), separators=(",", ":"))
