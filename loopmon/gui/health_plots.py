"""Loop health over the range the time axis shows: events/s, iterations/s, utilization and lag
p50/p99, from the Timeline's slices (thinned slices keep the lag's maxima)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from loopmon.gui.history import HealthHistory
from loopmon.gui.model import units
from loopmon.gui.plot_panel import PlotPanel, fit_y, label_y
from loopmon.gui.timeline_columns import loop_columns

_EMPTY = np.zeros(0)


class HealthPlots(PlotPanel):
    title = "Loop health"

    def __init__(self, health: HealthHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.health = health
        g = self.graphics
        over = f"over the last {health.rate_window_s:g} s"  # as the status strip's figures
        self.events_plot = g.addPlot(row=0, col=0, title=f"events / s, {over}")
        self.iterations_plot = g.addPlot(row=1, col=0, title=f"iterations / s, {over}")
        self.util_plot = g.addPlot(row=2, col=0, title=f"utilization %, {over}")
        self.lag_plot = g.addPlot(
            row=3, col=0, title="lag (ms), p50 and p99 over the last 10 s (highest kept)"
        )
        plots = (self.events_plot, self.iterations_plot, self.util_plot, self.lag_plot)
        for i, plot in enumerate(plots):
            last = i == len(plots) - 1
            self.add_time_plot(plot, label=last)
            # Four plots share a tab: small titles, and the seconds under the last one only
            # (the x axes are linked), so each keeps the height its y labels need.
            plot.setTitle(plot.titleLabel.text, size="9pt")
            if not last:
                plot.getAxis("bottom").setStyle(showValues=False)
            if i:
                plot.setXLink(self.events_plot)
        self.util_plot.setYRange(0, 100, padding=0.02)
        self.lag_plot.setYRange(0, 0.1, padding=0)
        self.lag_plot.addLegend(offset=(-10, 5), labelTextSize="8pt")
        self.events = self.events_plot.plot(pen=pg.mkPen("#4fb3bf", width=1.5))
        self.iterations = self.iterations_plot.plot(pen=pg.mkPen("#b57edc", width=1.5))
        self.utilization = self.util_plot.plot(
            pen=pg.mkPen("#e8a33d", width=1.5), fillLevel=0, brush=(232, 163, 61, 50)
        )
        self.lag_p50 = self.lag_plot.plot(pen=pg.mkPen("#5fb36b", width=1.5), name="p50")
        self.lag_p99 = self.lag_plot.plot(pen=pg.mkPen("#d96b6b", width=1.5), name="p99")
        self.curves = {
            "events": self.events,
            "iterations": self.iterations,
            "utilization": self.utilization,
            "lag_p50": self.lag_p50,
            "lag_p99": self.lag_p99,
        }

    def redraw(self) -> None:
        t0, t1 = self.shown_range()
        cols = loop_columns(self.timeline, t0, t1)
        if not len(cols.x):
            for curve in self.curves.values():
                curve.setData(_EMPTY, _EMPTY)
            return
        columns = {
            "events": cols.events,
            "iterations": cols.iterations,
            "utilization": cols.utilization,
            "lag_p50": cols.lag_p50,
            "lag_p99": cols.lag_p99,
        }
        for name, curve in self.curves.items():
            curve.setData(cols.x, columns[name])
        fit_y(self.events_plot, columns["events"], fmt=units.rate)
        fit_y(self.iterations_plot, columns["iterations"], fmt=units.rate)
        label_y(self.util_plot, 100.0, _percent)
        fit_y(self.lag_plot, columns["lag_p50"], columns["lag_p99"], floor=0.1, fmt=_ms)


def _percent(v: float) -> str:
    return f"{v:.0f}"


def _ms(v: float) -> str:
    return f"{v:.3g}"
