"""What a narrow window does to the status strip, the plots' labels and the raster's legend:
nothing is cut at 1,070 px, and nothing overlaps at 800 x 600."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeRunner
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QApplication, QWidget

from loopmon.gui.health_plots import HealthPlots
from loopmon.gui.history import HealthHistory
from loopmon.gui.main_window import MainWindow
from loopmon.gui.raster import MaskRaster, legend_columns
from loopmon.gui.settings import open_settings
from loopmon.sources import CONNECTED

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent

# What an attached window's strip says with 1,000 busy connections (the texts that were cut).
TEXTS = {
    "backend": "epoll · direct",
    "uptime": "up 1h02m",
    "connections": "1,000 connections",
    "events": "86.5k ev/s",
    "utilization": "util 97%",
    "lag": "lag p50 432 µs / p99 14.3 ms (last 10 s)",
    "producer": "loopmon serve · pid 123456 · serve",
    "link": "connected",
    "age": "live",
    "history": "history 273.5 MiB of 300.0 MiB",
    "paused": "PAUSED at 17:35:54.152 (2m07s ago)",
}


def settle(win: QWidget) -> None:
    for _ in range(4):
        QApplication.processEvents()
    layout = win.layout()
    if layout is not None:
        layout.activate()
    QApplication.processEvents()


def inside(widget: QWidget, top: QWidget) -> QRect:
    return widget.rect().translated(widget.mapTo(top, widget.rect().topLeft()))


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Any:
    runner = FakeRunner()
    runner.start()
    win = MainWindow(
        runner,
        settings=open_settings(tmp_path / "settings.ini"),
        load_program=[sys.executable, str(HERE / "fake_load.py")],
        view_interval_s=0.0,
    )
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.shutdown()
    runner.stop()
    runner.mailbox.close()


@pytest.mark.parametrize("size", [(1070, 700), (800, 600)])
def test_the_status_strip_cuts_no_figure_and_overlaps_nothing(
    qtbot: Any, window: MainWindow, size: tuple[int, int]
) -> None:
    strip = window.status
    strip.show_source(None, CONNECTED, address="127.0.0.1:9999")  # producer and link shown
    for name, text in TEXTS.items():
        strip.labels[name].setText(text)
    window.resize(*size)
    settle(window)
    qtbot.waitUntil(lambda: strip.height() >= strip.flow.heightForWidth(strip.width()))
    assert window.width() == size[0]
    area = inside(strip, window)
    shown = [label for label in strip.labels.values() if label.isVisible()]
    assert len(shown) == len(TEXTS)
    rects = []
    for label in shown:
        rect = inside(label, window)
        assert area.contains(rect), (label.objectName(), rect, area)
        assert label.width() >= label.sizeHint().width(), label.objectName()  # not cut
        rects.append(rect)
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not a.intersects(b)
    # The strip sits above the window's bottom edge and below the views.
    assert inside(window.statusBar(), window).bottom() <= window.height()
    assert not inside(window.tabs, window).intersects(inside(window.statusBar(), window))


def test_the_strip_takes_one_line_again_when_widened(qtbot: Any, window: MainWindow) -> None:
    strip = window.status
    for name, text in TEXTS.items():
        strip.labels[name].setText(text)
    window.resize(700, 600)
    settle(window)
    qtbot.waitUntil(lambda: strip.height() > 2 * strip.labels["age"].sizeHint().height())
    window.resize(2400, 700)
    settle(window)
    qtbot.waitUntil(lambda: strip.height() < 2 * strip.labels["age"].sizeHint().height())


def test_the_legend_takes_as_many_columns_as_fit() -> None:
    assert legend_columns([100, 100, 100, 100, 100], 1000, 10) == 5
    assert legend_columns([100, 100, 100, 100, 100], 320, 10) == 3
    assert legend_columns([100, 300, 100], 300, 10) == 1


def test_a_narrow_raster_keeps_its_plot_within_the_view(qtbot: Any) -> None:
    raster = MaskRaster()
    qtbot.addWidget(raster)
    raster.resize(640, 400)
    raster.show()
    qtbot.waitExposed(raster)
    settle(raster)
    scene_width = raster.graphics.ci.geometry().width()
    assert scene_width <= raster.graphics.viewport().width() + 1, scene_width
    assert raster.legend.columnCount < 5


def test_short_health_plots_label_their_y_axis_without_crowding(qtbot: Any) -> None:
    plots = HealthPlots(HealthHistory())
    qtbot.addWidget(plots)
    plots.resize(640, 300)  # four plots in 300 px: each about 40 px of data
    plots.show()
    qtbot.waitExposed(plots)
    settle(plots)
    from loopmon.gui.plot_panel import fit_y

    fit_y(plots.events_plot, np.array([0.0, 61234.0]), fmt=str)
    ticks = plots.events_plot.getAxis("left")._tickLevels[0]
    height = plots.events_plot.getViewBox().height()
    assert 2 <= len(ticks) <= max(height // 28 + 1, 2), (len(ticks), height)
    values = [v for v, _ in ticks]
    assert all(b - a >= 1 for a, b in itertools.pairwise(values))
