"""The time axis every view shares: how wide a stretch they show and where the cursor is.

The cursor is the right edge of what the views show, and the moment the table and the status
strip describe; live is the cursor at now (``cursor is None``). Pausing puts the cursor at now
and keeps it there while the loop runs on; panning moves it (and pauses); End returns to live.
The width zooms from ``MIN_WIDTH_S`` to the whole history.
"""

from __future__ import annotations

MIN_WIDTH_S = 10.0
DEFAULT_WIDTH_S = 60.0
ZOOM_STEP = 1.5  # one wheel notch or one +/-
PAN_STEP = 0.1  # one arrow key: a tenth of the width


class TimeAxis:
    def __init__(self, width_s: float = DEFAULT_WIDTH_S) -> None:
        self.width_s = width_s
        self.cursor: float | None = None

    @property
    def live(self) -> bool:
        return self.cursor is None

    def at(self, now: float) -> float:
        """The moment shown."""
        return now if self.cursor is None else min(self.cursor, now)

    def range(self, now: float) -> tuple[float, float]:
        """(first, last) moment the views show."""
        end = self.at(now)
        return end - self.width_s, end

    def zoom(self, steps: float, start: float, now: float) -> None:
        """In by ``steps`` (out if negative), within 10 s .. the whole history."""
        widest = max(now - start, MIN_WIDTH_S)
        width = self.width_s / ZOOM_STEP**steps
        self.width_s = min(max(width, MIN_WIDTH_S), widest)

    def pan(self, widths: float, start: float, now: float) -> None:
        """Move the cursor by ``widths`` of the width shown (back if negative; of the history,
        while that is shorter than the width); pauses if live."""
        at = self.at(now) + widths * min(self.width_s, max(now - start, MIN_WIDTH_S))
        self.cursor = min(max(at, start), now)

    def scrub(self, at: float, start: float, now: float) -> None:
        """Put the cursor at ``at`` (within history)."""
        self.cursor = min(max(at, start), now)

    def pause(self, now: float) -> None:
        if self.cursor is None:
            self.cursor = now

    def go_live(self) -> None:
        self.cursor = None
