"""The event-mask raster: one row per fd, the last minute across, each cell what the fd had
registered during that time slice.

A row is two strips and a gap: the upper strip is READ (blue), the lower WRITE (orange). Mixing
both into one colour made the seed strategy's flips (READ, WRITE, READ... many times a slice)
an unreadable grey-pink; two strips show each share on its own. Brightness comes from the
time-in-mask fractions the loop accounts at every change, not from the mask at snapshot time,
so a WRITE registered for a millisecond still shows: any share at all is drawn at least at
35 % strength, brighter the longer it was held.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QWidget

from loopmon.gui.history import WINDOW_S, FdHistory
from loopmon.gui.plot_panel import PlotPanel, time_axis

MAX_ROWS = 64
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


class MaskRaster(PlotPanel):
    title = "Event masks"

    def __init__(
        self,
        history: FdHistory,
        clock: Callable[[], float] = time.monotonic,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.history = history
        self._clock = clock
        self.plot = self.graphics.addPlot(row=0, col=0)
        time_axis(self.plot)
        self.plot.showGrid(x=False, y=False)
        self.plot.getAxis("left").setWidth(48)
        self.plot.invertY(True)
        self.plot.setLabel("left", "fd")
        self.image = pg.ImageItem(axisOrder="col-major")
        self.plot.addItem(self.image)
        self.legend = pg.LegendItem(colCount=len(LEGEND), horSpacing=14)
        self.graphics.addItem(self.legend, row=1, col=0)
        for name, rgb in LEGEND:
            sample = pg.PlotDataItem(
                [0], [0], pen=None, symbol="s", symbolSize=12, symbolPen=None,
                symbolBrush=pg.mkBrush(*rgb.astype(int).tolist()),
            )  # fmt: skip
            self.legend.addItem(sample, name)
        self._selected: list[int] = []
        self._busiest: list[int] = []
        self._ranked_at = -1e9
        self.rows: list[int] = []

    def set_selected(self, fds: Sequence[int]) -> None:
        self._selected = list(fds)
        self.changed()

    def _choose_rows(self) -> list[int]:
        live = self.history.live
        now = self._clock()
        selected = [int(f) for f in np.asarray(self._selected)[np.isin(self._selected, live)]]
        selected = sorted(selected)[:MAX_ROWS]
        room = MAX_ROWS - len(selected)
        if now - self._ranked_at >= RERANK_S:
            self._busiest = self.history.busiest(MAX_ROWS)
            self._ranked_at = now
        chosen = set(selected)
        others = [fd for fd in self._busiest if fd not in chosen]
        if others:
            others = [int(f) for f in np.asarray(others)[np.isin(others, live)]]
        return selected + others[:room]

    def redraw(self) -> None:
        rows = self._choose_rows()
        self.rows = rows
        if not rows:
            self.image.clear()
            self.plot.getAxis("left").setTicks([[]])
            return
        fds = np.asarray(rows, dtype=np.int64)
        read, write, known = self.history.fractions(fds)
        cells = mask_cells(read, write, known)  # (slices, fds, strips, rgb)
        image = cells.reshape(cells.shape[0], len(rows) * STRIPS, 3)
        self.image.setImage(image, autoLevels=False)
        start = self.history.slice_times()[0] - self.history.now
        self.image.setRect(QRectF(start, 0, WINDOW_S, len(rows)))
        self.plot.setYRange(0, len(rows), padding=0)
        step = max(1, len(rows) // 24)
        selected = set(self._selected)
        ticks = [
            (i + 0.5, f"▸{fd}" if fd in selected else str(fd))
            for i, fd in enumerate(rows)
            if i % step == 0 or fd in selected
        ]
        self.plot.getAxis("left").setTicks([ticks])
