"""The event-mask raster: one row per connection, the range the time axis shows across, each
cell what the connection had registered during that time. Closed connections within the range
come right after the selected ones, labelled with a cross: their row goes grey (no data) where
they closed, so a burst of closes stays in view as long as the history holds it.

A row is two strips and a gap: the upper strip is READ (blue), the lower WRITE (orange). Mixing
both into one colour made the seed strategy's flips (READ, WRITE, READ... many times a slice)
an unreadable grey-pink; two strips show each share on its own. Brightness comes from the
time-in-mask fractions the loop accounts at every change, not from the mask at snapshot time,
so a WRITE registered for a millisecond still shows: any share at all is drawn at least at
35 % strength, brighter the longer it was held.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QWidget

from loopmon.gui.model.ticks import spaced_rows
from loopmon.gui.plot_panel import PlotPanel
from loopmon.gui.timeline_columns import ConnectionGrid, GridCache, busiest

Key = tuple[str, int]  # (session, id)
MAX_ROWS = 64
LEGEND_SAMPLE_PX = 34  # a legend entry's colour sample and the spacing after it
LEGEND_SPACING = 14
RERANK_S = 1.0
STRIPS = 3  # image rows per fd: READ, WRITE, gap

NONE_RGB = np.array([10, 10, 14], dtype=np.float32)
NO_DATA_RGB = np.array([48, 50, 56], dtype=np.float32)
GAP_RGB = np.array([21, 23, 28], dtype=np.float32)  # the plot's background
READ_RGB = np.array([52, 120, 235], dtype=np.float32)
WRITE_RGB = np.array([245, 145, 30], dtype=np.float32)
FLOOR = 0.35

LEGEND: tuple[tuple[str, np.ndarray], ...] = (
    ("READ (upper strip)", NONE_RGB + READ_RGB),
    ("WRITE (lower strip)", NONE_RGB + WRITE_RGB),
    ("brighter = held longer", NONE_RGB + FLOOR * WRITE_RGB),
    ("not registered", NONE_RGB),
    ("no data", NO_DATA_RGB),
)


def _strength(share: np.ndarray) -> np.ndarray:
    return np.where(share > 0, FLOOR + (1 - FLOOR) * share, 0.0)


def mask_cells(read: np.ndarray, write: np.ndarray, known: np.ndarray) -> np.ndarray:
    """RGB uint8 from READ/WRITE fractions of any shape ``S``: shape ``S + (STRIPS, 3)``,
    the strips being READ, WRITE and a gap."""
    out = np.empty((*read.shape, STRIPS, 3), dtype=np.float32)
    out[..., 0, :] = NONE_RGB + _strength(read)[..., None] * READ_RGB
    out[..., 1, :] = NONE_RGB + _strength(write)[..., None] * WRITE_RGB
    unknown = ~known
    out[unknown, 0, :] = NO_DATA_RGB
    out[unknown, 1, :] = NO_DATA_RGB
    out[..., 2, :] = GAP_RGB
    return np.clip(out, 0, 255).astype(np.uint8)


def legend_columns(widths: Sequence[float], room: float, spacing: float) -> int:
    """The most columns (entries placed row by row) whose widest entries fit in ``room``."""
    for columns in range(len(widths), 1, -1):
        needed = sum(max(widths[c::columns]) for c in range(columns))
        if needed + spacing * (columns - 1) <= room:
            return columns
    return 1


class MaskRaster(PlotPanel):
    title = "Event masks"

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._clock = clock
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.add_time_plot(self.plot)
        self.plot.showGrid(x=False, y=False)
        self.plot.getAxis("left").setWidth(48)
        self.plot.invertY(True)
        self.plot.setLabel("left", "fd")
        self.image = pg.ImageItem(axisOrder="col-major")
        self.plot.addItem(self.image)
        self.legend = pg.LegendItem(colCount=len(LEGEND), horSpacing=LEGEND_SPACING)
        self.graphics.addItem(self.legend, row=1, col=0)
        for name, rgb in LEGEND:
            sample = pg.PlotDataItem(
                [0], [0], pen=None, symbol="s", symbolSize=12, symbolPen=None,
                symbolBrush=pg.mkBrush(*rgb.astype(int).tolist()),
            )  # fmt: skip
            self.legend.addItem(sample, name)
        self.legend_widths = [
            LEGEND_SAMPLE_PX + label.boundingRect().width() for _, label in self.legend.items
        ]
        self._selected: list[Key] = []
        self._ticks: list[tuple[float, str]] = []
        self._busiest: list[Key] = []
        self._ranked: tuple[float, float] = (0.0, 0.0)
        self._ranked_at = -1e9
        self.rows: list[int] = []  # the fds shown, top to bottom
        self.keys: list[Key] = []  # (session, id) of each row
        self.ghost_rows: set[Key] = set()
        self._cache = GridCache()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_legend(event.size().width())

    def fit_legend(self, width: float) -> None:
        """The legend in as many columns as ``width`` has room for: in one row of five it
        was 780 px wide, and at a 1,070 px window the scene grew past the view, which cut
        the plot's right end (the time shown) off."""
        columns = legend_columns(self.legend_widths, width - 24, LEGEND_SPACING)
        self.legend.setColumnCount(columns)

    def set_selected(self, keys: Sequence[Key]) -> None:
        self._selected = list(keys)
        self.changed(force=True)

    def _fd(self, key: Key) -> int:
        static = self.timeline.static(key)
        return static.fd if static is not None else -1

    def _choose_rows(self, t0: float, t1: float) -> list[Key]:
        state = self.state
        if state is None:
            return []
        open_keys = [(state.session, r.id) for r in state.rows]
        ghosts = [g for g in state.ghosts if g.at >= t0]
        self.ghost_rows = {(g.session, g.row.id) for g in ghosts}
        present = set(open_keys) | self.ghost_rows
        chosen = sorted((k for k in self._selected if k in present), key=self._fd)[:MAX_ROWS]
        taken = set(chosen)
        closed = [k for k in ((g.session, g.row.id) for g in reversed(ghosts)) if k not in taken]
        closed = closed[: max((MAX_ROWS - len(chosen)) // 2, 0)]
        taken.update(closed)
        now = self._clock()
        # Re-ranked each second, or when the range jumps by half its width or changes width:
        # a scrub keeps the rows in place (and the grid's cache of them).
        r0, r1 = self._ranked
        moved = abs(t1 - r1) > (t1 - t0) / 2 or not math.isclose(t1 - t0, r1 - r0)
        if moved or (self.axis.live and now - self._ranked_at >= RERANK_S):
            self._busiest = busiest(self.timeline, open_keys, t0, t1, MAX_ROWS)
            self._ranked_at, self._ranked = now, (t0, t1)
        others = [k for k in self._busiest if k not in taken]
        return (chosen + closed + others)[:MAX_ROWS]

    def redraw(self) -> None:
        t0, t1 = self.shown_range()
        keys = self._choose_rows(t0, t1)
        self.keys = keys
        statics = [self.timeline.static(k) for k in keys]
        self.rows = [s.fd if s is not None else -1 for s in statics]
        if not keys:
            self.image.clear()
            self._ticks = []
            self.plot.getAxis("left").setTicks([[]])
            return
        grid = ConnectionGrid(self.timeline, keys, t0, t1, self._cache)
        cells = mask_cells(grid.read, grid.write, grid.known)  # (columns, rows, strips, rgb)
        image = cells.reshape(cells.shape[0], len(keys) * STRIPS, 3)
        self.image.setImage(image, autoLevels=False)
        self.image.setRect(QRectF(grid.x0, 0, t1 - t0, len(keys)))
        self.plot.setYRange(0, len(keys), padding=0)
        selected = set(self._selected)
        # As many labels as the height has room for: selected rows first, then ghosts, then
        # evenly spaced ones (a label for every ghost overprinted its neighbours).
        wanted = [i for i, k in enumerate(keys) if k in selected]
        wanted += [i for i, k in enumerate(keys) if k in self.ghost_rows and k not in selected]
        height = self.plot.getViewBox().height() or 300.0  # before the first layout: a guess
        ticks = []
        for i in spaced_rows(len(keys), height, wanted):
            key, fd = keys[i], self.rows[i]
            mark = "▸" if key in selected else ""
            ticks.append((i + 0.5, f"{mark}{fd}{' ✕' if key in self.ghost_rows else ''}"))
        if ticks != self._ticks:  # new ticks redraw the axis (its labels, in Python)
            self._ticks = ticks
            self.plot.getAxis("left").setTicks([ticks])
