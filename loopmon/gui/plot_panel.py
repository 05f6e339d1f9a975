"""What every plot in the window shares: a pyqtgraph layout held as a member (pyqtgraph ships
no types, so nothing here subclasses it), redraw only while visible, and PNG export."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from loopmon.gui.history import WINDOW_S

pg.setConfigOptions(antialias=False, background="#15171c", foreground="#c8ccd4")


class PlotPanel(QWidget):
    """A plot widget fed by ``changed()``: it redraws at once when visible, otherwise on show."""

    title = "plot"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setContentsMargins(4, 4, 8, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self._dirty = False
        self.frozen = False  # paused: keep showing what is shown, whatever changes
        self.refreshes = 0

    def changed(self) -> None:
        if self.isVisible() and not self.frozen:
            self.refresh()
        else:
            self._dirty = True

    def set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        if not frozen and self._dirty and self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        self._dirty = False
        self.refreshes += 1
        self.redraw()

    def redraw(self) -> None:  # pragma: no cover - every panel overrides it
        raise NotImplementedError

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._dirty and not self.frozen:
            self.refresh()

    def export_png(self, path: str, width: int = 1200) -> None:
        """Write the panel (plots and legend) as a PNG image, as the window would show it."""
        if self._dirty and not self.frozen:
            self.refresh()
        exporter = pyqtgraph.exporters.ImageExporter(self.graphics.scene())
        exporter.parameters()["width"] = width
        exporter.export(path)


def time_axis(plot: pg.PlotItem, label: bool = True) -> None:
    """The last minute, newest at the right; y ranges are set by the panel (``fit_y``), which
    is cheaper than pyqtgraph's auto-range and keeps zero on the axis."""
    plot.setXRange(-WINDOW_S, 0, padding=0)
    plot.getViewBox().setLimits(xMin=-WINDOW_S, xMax=0)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.disableAutoRange()
    plot.setYRange(0, 1, padding=0)
    plot.getAxis("left").setWidth(62)
    if label:
        plot.setLabel("bottom", "seconds ago")


def fit_y(plot: pg.PlotItem, *series: np.ndarray, floor: float = 1.0) -> None:
    """Show 0 .. a little above the largest value (at least ``floor``)."""
    # NaN marks a gap (no lag sample in the window yet): it is no value to fit.
    finite = [s[np.isfinite(s)] for s in series]
    top = max((float(s.max()) for s in finite if len(s)), default=0.0)
    plot.setYRange(0, max(top * 1.12, floor), padding=0)
