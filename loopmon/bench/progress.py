"""The progress line on stderr while the bench runs (a terminal only)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One line on stderr, rewritten in place on a terminal, else one line per step."""

    def __init__(self, total: float, stream: TextIO | None = None) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = False

    def show(self, text: str, weight: float = 0.0) -> None:
        elapsed = time.monotonic() - self.started
        fraction = min(self.done / self.total, 1.0)
        eta = f", ~{elapsed / fraction * (1 - fraction):.0f} s left" if fraction > 0.02 else ""
        line = f"bench {fraction:4.0%} {elapsed:4.0f} s{eta}: {text}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:160])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True
        self.done += weight

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
