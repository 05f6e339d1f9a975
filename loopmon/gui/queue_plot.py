"""Queue depth over the last minute: the total queued bytes, the deepest connections, and the
selected connection highlighted. Sizes are in IEC units (KiB, MiB), as everywhere in the window:
the curves are scaled to the unit their top calls for, rather than pyqtgraph's SI prefixes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from loopmon.gui.history import WINDOW_S, FdHistory, HealthHistory
from loopmon.gui.model import units
from loopmon.gui.plot_panel import PlotPanel, fit_y, time_axis

DEEPEST = 5
SELECTED_MAX = 4
_DEEP_COLOURS = ("#e8a33d", "#5fb36b", "#b57edc", "#4fb3bf", "#d96b6b")
_EMPTY = np.zeros(0)


class QueuePlot(PlotPanel):
    title = "Queue depth"

    def __init__(
        self, health: HealthHistory, fds: FdHistory, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.health = health
        self.fds = fds
        self.plot = self.graphics.addPlot(row=0, col=0)
        time_axis(self.plot)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.unit = ""
        self._set_unit("B")
        self.total = self.plot.plot(pen=pg.mkPen("#c8ccd4", width=2))
        self.deep = [self.plot.plot(pen=pg.mkPen(colour, width=1)) for colour in _DEEP_COLOURS]
        self.chosen = [
            self.plot.plot(pen=pg.mkPen("#ffe14d", width=3)) for _ in range(SELECTED_MAX)
        ]
        # The legend sits under the plot (so it never hides a curve) and is made once: one
        # entry per curve slot, relabelled as the deepest connections change, blank if unused.
        self.legend = pg.LegendItem(colCount=7, horSpacing=14, labelTextSize="8pt")
        self.graphics.addItem(self.legend, row=1, col=0)
        self.legend.addItem(self.total, "total")
        self.legend.addItem(self.chosen[0], "selected")
        for item in self.deep:
            self.legend.addItem(item, "")
        self._entries = {id(sample.item): (sample, label) for sample, label in self.legend.items}
        self._texts: dict[int, str] = {}
        self._selected: list[int] = []
        self.shown_deepest: list[int] = []

    def _set_unit(self, unit: str) -> None:
        if unit != self.unit:
            self.unit = unit
            self.plot.setLabel("left", f"queued ({unit})")

    def set_selected(self, fds: Sequence[int]) -> None:
        self._selected = list(fds)[:SELECTED_MAX]
        self.changed()

    def _label(self, item: object, text: str) -> None:
        if self._texts.get(id(item)) == text:
            return
        self._texts[id(item)] = text
        sample, label = self._entries[id(item)]
        label.setText(text)
        sample.setVisible(bool(text))

    def redraw(self) -> None:
        ring = self.health.ring
        total = _EMPTY
        x_total = _EMPTY
        if len(ring):
            t = ring.column("t")
            x_total = t - t[-1]
            first = int(np.searchsorted(x_total, -WINDOW_S))
            total = ring.column("queue")[first:]
            x_total = x_total[first:]
        now = self.fds.now
        x = self.fds.slice_times() + self.fds.slice_s / 2 - now
        live = set(self.fds.live.tolist()) if len(self._selected) else set()
        chosen = [fd for fd in self._selected if fd in live]
        deepest = [fd for fd in self.fds.deepest(DEEPEST + len(chosen)) if fd not in chosen]
        deepest = deepest[:DEEPEST]
        self.shown_deepest = deepest
        series = {
            "chosen": self.fds.queue_series(np.asarray(chosen, dtype=np.int64)),
            "deep": self.fds.queue_series(np.asarray(deepest, dtype=np.int64)),
        }
        top = max((float(np.nanmax(a)) for a in (total, *series.values()) if a.size), default=0.0)
        divisor, unit = units.iec_unit(top)
        self._set_unit(unit)
        self.total.setData(x_total, total / divisor)
        for key, fds, items in (("chosen", chosen, self.chosen), ("deep", deepest, self.deep)):
            for i, item in enumerate(items):
                if i < len(fds):
                    item.setData(x, series[key][:, i] / divisor)
                else:
                    item.setData(_EMPTY, _EMPTY)
        fit_y(self.plot, total / divisor, floor=1024.0 / divisor)
        for i, item in enumerate(self.deep):
            self._label(item, f"fd {deepest[i]}" if i < len(deepest) else "")
        names = ", ".join(f"fd {fd}" for fd in chosen)
        self._label(self.chosen[0], f"selected {names}" if chosen else "")
