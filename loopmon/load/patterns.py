"""The byte streams the load generator sends: one shared pseudo-random pattern
(``PATTERN_SIZE`` bytes from a seeded generator), each connection a window into it starting at
an offset fixed by its index, so two connections never expect the same bytes at the same
position and an echo crossed between connections is caught.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = ["PATTERN_SIZE", "expected_bytes", "pattern", "stream_start"]

PATTERN_SIZE: Final = 1 << 20
_PATTERN_SEED: Final = 0x100B
_STRIDE: Final = 0x9E3779B1  # odd: index * stride is distinct mod 2**20 for every index < 2**20

_pattern: bytes | None = None


def pattern() -> bytes:
    """The shared pattern, twice over, so any window of up to PATTERN_SIZE bytes is one slice."""
    global _pattern
    if _pattern is None:
        once = random.Random(_PATTERN_SEED).randbytes(PATTERN_SIZE)
        _pattern = once + once
    return _pattern


def stream_start(index: int) -> int:
    """Where connection ``index``'s stream starts in the pattern."""
    return (index * _STRIDE) % PATTERN_SIZE


def expected_bytes(index: int, offset: int, length: int) -> bytes:
    """Bytes ``offset:offset+length`` of connection ``index``'s stream (for tests and peers)."""
    pat = pattern()
    out = []
    while length > 0:
        pos = (stream_start(index) + offset) % PATTERN_SIZE
        take = min(length, PATTERN_SIZE)
        out.append(pat[pos : pos + take])
        offset += take
        length -= take
    return b"".join(out)
