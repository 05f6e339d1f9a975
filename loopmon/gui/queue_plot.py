"""Queue depth over the range the time axis shows: the total queued bytes, the deepest
connections at the cursor, and the selected connections highlighted (deepest per slice: a
thinned spike still shows). Sizes are in IEC units (KiB, MiB), as everywhere in the window:
the curves are scaled to the unit their top calls for, rather than pyqtgraph's SI prefixes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from loopmon.gui.model import units
from loopmon.gui.plot_panel import PlotPanel, fit_y
from loopmon.gui.timeline_columns import ConnectionGrid, GridCache, loop_columns

Key = tuple[str, int]

DEEPEST = 5
SELECTED_MAX = 4
_DEEP_COLOURS = ("#e8a33d", "#5fb36b", "#b57edc", "#4fb3bf", "#d96b6b")
_EMPTY = np.zeros(0)


class QueuePlot(PlotPanel):
    title = "Queue depth"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.graphics.addPlot(row=0, col=0)
        self.add_time_plot(self.plot)
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
        self._cache = GridCache()
        self._selected: list[Key] = []
        self.shown_deepest: list[int] = []  # their fds

    def _set_unit(self, unit: str) -> None:
        if unit != self.unit:
            self.unit = unit
            self.plot.setLabel("left", f"queued ({unit})")

    def set_selected(self, keys: Sequence[Key]) -> None:
        self._selected = list(keys)[:SELECTED_MAX]
        self.changed(force=True)

    def _label(self, item: object, text: str) -> None:
        if self._texts.get(id(item)) == text:
            return
        self._texts[id(item)] = text
        sample, label = self._entries[id(item)]
        label.setText(text)
        sample.setVisible(bool(text))

    def _deepest(self, t1: float, count: int, exclude: set[Key]) -> list[Key]:
        """The connections with the deepest queues in the slice at the cursor."""
        slices = self.timeline.view_slices(t1, t1)
        if not slices:
            return []
        part = slices[-1]
        q = part.qmax
        order = sorted((j for j in range(len(q)) if q[j] > 0), key=lambda j: -q[j])
        keys = [(part.session, part.ids[j]) for j in order[: count + len(exclude)]]
        return [k for k in keys if k not in exclude][:count]

    def redraw(self) -> None:
        t0, t1 = self.shown_range()
        cols = loop_columns(self.timeline, t0, t1)
        x_total, total = cols.x, cols.queue
        chosen = [k for k in self._selected if self.timeline.static(k) is not None]
        deepest = self._deepest(t1, DEEPEST, set(chosen))
        fd_of = {k: getattr(self.timeline.static(k), "fd", -1) for k in chosen + deepest}
        self.shown_deepest = [fd_of[k] for k in deepest]
        grid = ConnectionGrid(self.timeline, chosen + deepest, t0, t1, self._cache)
        x = grid.x
        series: dict[str, np.ndarray] = {
            "chosen": grid.queue[:, : len(chosen)],
            "deep": grid.queue[:, len(chosen) :],
        }
        known = {"chosen": grid.known[:, : len(chosen)], "deep": grid.known[:, len(chosen) :]}
        top = max((float(np.nanmax(a)) for a in (total, *series.values()) if a.size), default=0.0)
        divisor, unit = units.iec_unit(top)
        self._set_unit(unit)
        self.total.setData(x_total, total / divisor)
        for key, keys, items in (("chosen", chosen, self.chosen), ("deep", deepest, self.deep)):
            for i, item in enumerate(items):
                if i < len(keys):
                    y = np.where(known[key][:, i], series[key][:, i] / divisor, np.nan)
                    item.setData(x, y, connect="finite")
                else:
                    item.setData(_EMPTY, _EMPTY)
        fit_y(self.plot, total / divisor, floor=1024.0 / divisor)
        for i, item in enumerate(self.deep):
            self._label(item, f"fd {fd_of[deepest[i]]}" if i < len(deepest) else "")
        names = ", ".join(f"fd {fd_of[k]}" for k in chosen)
        self._label(self.chosen[0], f"selected {names}" if chosen else "")
