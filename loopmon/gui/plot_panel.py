"""What every plot in the window shares: a pyqtgraph layout held as a member (pyqtgraph ships
no types, so nothing here subclasses it), redraw only while visible, PNG export, and the one
time axis: each plot shows ``[cursor - width, cursor]`` of the window's Timeline (x in seconds
before the cursor), the wheel asks to zoom and dragging to pan (the window moves the shared
axis, so every view follows), and restarted producers are marked with a line."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import QEvent, QObject, Signal
from PySide6.QtGui import QMouseEvent, QShowEvent, QWheelEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

from loopmon.gui.history import WINDOW_S
from loopmon.gui.model.ticks import LABEL_PX, value_ticks
from loopmon.gui.model.time_axis import TimeAxis
from loopmon.gui.model.timeline import State, Timeline

SESSION_PEN = pg.mkPen("#e0e0e0", width=1, style=pg.QtCore.Qt.PenStyle.DashLine)
CURSOR_PEN = pg.mkPen("#ffb74d", width=2)

pg.setConfigOptions(antialias=False, background="#15171c", foreground="#c8ccd4")


class PlotPanel(QWidget):
    """A plot widget fed by ``changed()``: it redraws at once when visible, otherwise on show."""

    title = "plot"
    zoom_requested = Signal(float)  # wheel notches, in if positive
    pan_requested = Signal(float)  # widths of the shown range, later if positive

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = Timeline()
        self.axis = TimeAxis()
        self.state: State | None = None  # the Timeline at the cursor, as the table shows it
        self.time_plots: list[pg.PlotItem] = []
        self._lines: dict[int, list[pg.InfiniteLine]] = {}
        self._drag_x: float | None = None
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setContentsMargins(4, 4, 8, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self._dirty = False
        self.frozen = False  # paused: keep showing what is shown, whatever changes
        self.refreshes = 0
        self.graphics.viewport().installEventFilter(self)

    def attach(self, timeline: Timeline, axis: TimeAxis) -> None:
        self.timeline = timeline
        self.axis = axis

    def add_time_plot(self, plot: pg.PlotItem, label: bool = True) -> None:
        time_axis(plot, label)
        self.time_plots.append(plot)

    def shown_range(self) -> tuple[float, float]:
        """(first, last) axis time shown, and every time plot set to it (x: seconds before
        the cursor), with a line at each session's start and, paused, at the cursor."""
        t0, t1 = self.axis.range(self.timeline.now)
        width = t1 - t0
        marks = [m.at - t1 for m in self.timeline.sessions[1:] if t0 <= m.at <= t1]
        for plot in self.time_plots:
            box = plot.getViewBox()
            box.setLimits(xMin=-width, xMax=0)
            plot.setXRange(-width, 0, padding=0)
            self._place_lines(plot, marks, cursor=not self.axis.live)
        return t0, t1

    def _place_lines(self, plot: pg.PlotItem, marks: list[float], cursor: bool) -> None:
        lines = self._lines.setdefault(id(plot), [])
        wanted = [(x, SESSION_PEN) for x in marks] + ([(0.0, CURSOR_PEN)] if cursor else [])
        while len(lines) < len(wanted):
            line = pg.InfiniteLine(angle=90, movable=False)
            plot.addItem(line)
            lines.append(line)
        for i, line in enumerate(lines):
            if i < len(wanted):
                line.setPen(wanted[i][1])
                line.setValue(wanted[i][0])
                line.show()
            else:
                line.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Wheel and isinstance(event, QWheelEvent):
            steps = event.angleDelta().y() / 120
            if steps:
                self.zoom_requested.emit(steps)
            return True
        if isinstance(event, QMouseEvent):
            x = event.position().x()
            if kind == QEvent.Type.MouseButtonPress:
                self._drag_x = x
                return True
            if kind == QEvent.Type.MouseMove and self._drag_x is not None:
                width_px = max(self.graphics.viewport().width(), 1)
                dx, self._drag_x = x - self._drag_x, x
                if dx:
                    self.pan_requested.emit(-dx / width_px)  # the content follows the mouse
                return True
            if kind == QEvent.Type.MouseButtonRelease:
                self._drag_x = None
                return True
        return False

    def changed(self, force: bool = False) -> None:
        """New data (``force``: the cursor moved, which a paused view follows too)."""
        if self.isVisible() and (force or not self.frozen):
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
    """The range shown, the cursor at the right; y ranges are set by the panel (``fit_y``),
    which is cheaper than pyqtgraph's auto-range and keeps zero on the axis."""
    plot.setXRange(-WINDOW_S, 0, padding=0)
    plot.getViewBox().setLimits(xMin=-WINDOW_S, xMax=0)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.showGrid(x=True, y=True, alpha=0.15)
    plot.disableAutoRange()
    plot.setYRange(0, 1, padding=0)
    plot.getAxis("left").setWidth(62)
    if label:
        plot.setLabel("bottom", "seconds before the time shown (live: now)")


def fit_y(
    plot: pg.PlotItem,
    *series: np.ndarray,
    floor: float = 1.0,
    fmt: Callable[[float], str] | None = None,
) -> None:
    """Show 0 .. a little above the largest value (at least ``floor``); with ``fmt``, label
    the y axis with as many round values as its height has room for."""
    # NaN marks a gap (no lag sample in the window yet): it is no value to fit.
    finite = [s[np.isfinite(s)] for s in series]
    top = max((float(s.max()) for s in finite if len(s)), default=0.0)
    shown = max(top * 1.12, floor)
    if fmt is None:
        plot.setYRange(0, shown, padding=0)
    else:
        label_y(plot, shown, fmt)


def label_y(plot: pg.PlotItem, top: float, fmt: Callable[[float], str]) -> None:
    """Show 0 .. ``top`` and label it with round values no closer than a label's height
    apart: on a short plot pyqtgraph's own ticks overprint ("60000" over "20000"). The range
    reaches half a label past both ends, so that the labels at 0 and at the top fit inside:
    with the grid on, pyqtgraph drops a label that sticks out of the plot at all, and at
    ``padding=0`` those are the two (a 44 px health plot showed no label)."""
    height = plot.getViewBox().height() or 100.0  # before the first layout: a guess
    half = LABEL_PX / 2
    margin = top * half / max(height - 2 * half, 1.0) if top > 0 else 0.0
    plot.setYRange(-margin, top + margin, padding=0)
    ticks = value_ticks(top, height, fmt)
    axis = plot.getAxis("left")
    if getattr(axis, "_loopmon_ticks", None) != ticks:  # new ticks redraw the axis, in Python
        axis._loopmon_ticks = ticks
        axis.setTicks([ticks])
