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


def test_short_health_plots_draw_their_labels_at_zero_and_the_top(qtbot: Any) -> None:
    """Ticks set are not labels drawn: with the grid on, pyqtgraph drops a label that sticks
    out of the plot at all, and at a range of exactly 0 .. top the labels at both ends did,
    so the 44 px health plots showed no label, or only the top one."""
    from PySide6.QtGui import QImage, QPainter

    from loopmon.gui.plot_panel import fit_y, label_y

    plots = HealthPlots(HealthHistory())
    qtbot.addWidget(plots)
    plots.resize(640, 300)
    plots.show()
    qtbot.waitExposed(plots)
    settle(plots)
    fit_y(plots.events_plot, np.array([0.0, 11000.0]), fmt=lambda v: f"{v:g}")
    label_y(plots.util_plot, 100.0, lambda v: f"{v:g}")
    settle(plots)
    for plot in (plots.events_plot, plots.util_plot):
        axis = plot.getAxis("left")
        image = QImage(100, 100, QImage.Format.Format_ARGB32)
        painter = QPainter(image)
        drawn = [text for _, _, text in axis.generateDrawSpecs(painter)[2]]
        painter.end()
        set_ticks = [text for _, text in axis._tickLevels[0]]
        assert len(set_ticks) >= 2 and drawn == set_ticks, (drawn, set_ticks)


def test_the_time_keys_work_as_soon_as_the_window_opens(qtbot: Any, window: MainWindow) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None)
    focused = QApplication.focusWidget()
    assert focused is window.table.view, type(focused).__name__  # not a text field
    QTest.keyClick(focused, Qt.Key.Key_Space)
    assert window.paused
    QTest.keyClick(focused, Qt.Key.Key_End)
    assert not window.paused
    QTest.keyClick(focused, Qt.Key.Key_Left)
    assert window.paused and window.axis.cursor is not None


def test_a_cursor_move_restyles_nothing_and_lays_out_only_the_strip(
    qtbot: Any, window: MainWindow
) -> None:
    """At every move the PAUSED label's text changes; its style sheet was set again (a
    restyle) and the strip's layout set the strip's minimum size, so the status bar and the
    window were laid out anew, at every move and every snapshot."""
    from PySide6.QtCore import QEvent, QObject

    strip = window.status
    strip.show_time(12.0, "12:00:00.000")
    settle(window)
    seen: list[tuple[str, str]] = []

    class Watch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() in (QEvent.Type.StyleChange, QEvent.Type.LayoutRequest):
                seen.append((event.type().name, type(watched).__name__))
            return False

    watch = Watch()
    for widget in (strip.labels["paused"], window.statusBar(), window):
        widget.installEventFilter(watch)
    for i in range(5):
        strip.show_time(12.0 + i * 7, f"12:00:{i:02d}.1{i}0 and longer" * (i % 2 + 1))
        settle(window)
    assert ("StyleChange", "QLabel") not in seen
    assert not [w for kind, w in seen if w in ("QStatusBar", "MainWindow")], seen


def test_y_labels_are_set_again_only_when_they_change(qtbot: Any) -> None:
    """New ticks make pyqtgraph redraw the axis in Python: a scrub must not pay that on each
    of the four health plots when the labels stay the same."""
    from loopmon.gui.plot_panel import label_y

    plots = HealthPlots(HealthHistory())
    qtbot.addWidget(plots)
    axis = plots.events_plot.getAxis("left")
    calls: list[object] = []
    original = axis.setTicks
    axis.setTicks = lambda ticks: (calls.append(ticks), original(ticks))  # type: ignore[method-assign]
    label_y(plots.events_plot, 61234.0, str)
    label_y(plots.events_plot, 61300.0, str)  # the same round values
    assert len(calls) == 1
    label_y(plots.events_plot, 261234.0, str)
    assert len(calls) == 2


def test_the_table_count_never_widens_an_800_px_window(qtbot: Any, window: MainWindow) -> None:
    from fakes import connection

    from loopmon.gui.model.timeline import Ghost, State

    window.resize(800, 600)
    settle(window)
    rows = tuple(connection(10 + i, id=i + 1) for i in range(1000))
    ghosts = tuple(Ghost("s", 1.0, "peer closed", connection(5000 + i, id=5000 + i))
                   for i in range(5000))  # fmt: skip
    table = window.table
    table.set_state(State(2.0, "s", rows, ghosts, None, 2.0, 2.0), ())
    table.set_ghosts_not_shown(14_647)
    settle(window)
    assert table.count_label.text().endswith("listed)")
    assert window.minimumSizeHint().width() <= 800
    assert window.width() == 800
