"""The monitor window: controls on the left, connections above, plots and the event log below,
the status strip at the bottom.

It reads nothing but the batches the bridge emits and changes nothing but through ``Commands``.
Each snapshot is recorded into the histories (numpy, cheap) whether or not the views are paused,
then applied to the views: the table, and whichever plot is visible (hidden ones catch up when
shown).

Past 400 lines and still one job: it composes the panels, plots and log into one window and
routes batches, commands, exports and settings between them; each view is a module of its own.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Mapping, Sequence

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from loopmon.gui import resources
from loopmon.gui.bridge import Batch, MailboxBridge
from loopmon.gui.commands import Commands, RunnerLike
from loopmon.gui.connection_table import ConnectionTable
from loopmon.gui.event_log import EventLog
from loopmon.gui.health_plots import HealthPlots
from loopmon.gui.history import ConnectionColumns, FdHistory, HealthHistory
from loopmon.gui.listener_panel import ListenerPanel
from loopmon.gui.load_panel import LoadPanel
from loopmon.gui.loop_panel import LoopPanel
from loopmon.gui.model.export import write_connections_csv
from loopmon.gui.model.kind_log import KindLog
from loopmon.gui.model.wording import window_title
from loopmon.gui.plot_panel import PlotPanel
from loopmon.gui.queue_plot import QueuePlot
from loopmon.gui.raster import MaskRaster
from loopmon.gui.settings import open_settings, read_int, read_str
from loopmon.gui.status_strip import StatusStrip
from loopmon.snapshot import KINDS, LoopEvent, Snapshot

EVENT_LOG_SIZE = 5000
DEFAULT_SIZE = QSize(1400, 900)  # when nothing was saved, and the screen has room
CONTROLS_WIDTH = 420  # the controls dock: the listeners table's columns fit
# Views refresh at most this often. Histories and the status strip take every snapshot
# (25 a second); repainting plots and the table that often costs the loop thread GIL time
# and shows nothing a reader could follow.
VIEW_INTERVAL_S = 0.2  # views redraw at 5 Hz: pyqtgraph paints axes in Python, under the GIL


def _kind_of(event: LoopEvent) -> str:
    return event.kind


class MainWindow(QMainWindow):
    closed = Signal()

    def __init__(
        self,
        runner: RunnerLike | None,
        settings: QSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        load_program: Sequence[str] | None = None,
        view_interval_s: float = VIEW_INTERVAL_S,
    ) -> None:
        super().__init__()
        self.runner = runner
        self.settings = settings if settings is not None else open_settings()
        self.bridge: MailboxBridge | None = None
        self.commands: Commands | None = None
        if runner is not None:
            self.bridge = MailboxBridge(runner.mailbox, self)
            self.commands = Commands(runner, self.bridge)
            self.bridge.batch.connect(self.on_batch)
        self.health = HealthHistory()
        self.fd_history = FdHistory()
        self.latest: Snapshot | None = None
        self.paused = False
        # What the views have not shown yet: the latest snapshot and the events since.
        self._due_snapshot: Snapshot | None = None
        # Per kind, as the log itself keeps them: a churn between two frames (or while paused)
        # never pushes out a rare event on its way to the log.
        self._due_events: KindLog[LoopEvent] = KindLog(EVENT_LOG_SIZE, _kind_of)
        self._due_dropped: collections.Counter[str] = collections.Counter()
        self.view_interval_s = view_interval_s
        self._last_frame = -1e9
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._frame)
        self.frames = 0
        self._shut_down = False
        self._fitted = False

        self.setWindowTitle(window_title([], QApplication.applicationDisplayName()))
        icon = resources.icon_path()
        if icon is not None:
            self.setWindowIcon(QIcon(str(icon)))

        # -- views ------------------------------------------------------------------------
        self.table = ConnectionTable(self.commands)
        self.raster = MaskRaster(self.fd_history, clock=clock)
        self.queue_plot = QueuePlot(self.health, self.fd_history)
        self.health_plots = HealthPlots(self.health)
        self.event_log = EventLog(EVENT_LOG_SIZE)
        self.plots: dict[str, PlotPanel] = {
            "masks": self.raster,
            "queues": self.queue_plot,
            "health": self.health_plots,
        }
        self.tabs = QTabWidget()
        self.tabs.addTab(self.raster, "Event masks")
        self.tabs.addTab(self.queue_plot, "Queue depth")
        self.tabs.addTab(self.health_plots, "Loop health")
        self.tabs.addTab(self.event_log, "Event log")
        self.table.selection_changed.connect(self._selection_changed)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

        # -- controls -----------------------------------------------------------------------
        backends = runner.available_backends if runner is not None else []
        self.listener_panel = ListenerPanel(self.commands)
        self.loop_panel = LoopPanel(
            self.commands,
            backends,
            runner.backend if runner is not None else "",
            runner.strategy if runner is not None else "direct",
        )
        self.load_panel = LoadPanel(load_program)
        controls = QWidget()
        column = QVBoxLayout(controls)
        column.addWidget(self.listener_panel)
        column.addWidget(self.loop_panel)
        column.addWidget(self.load_panel)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(controls)
        scroll.setWidgetResizable(True)
        # Room for the listeners table's columns, and at least what the controls need (their
        # messages wrap, so that is fixed) plus the vertical scroll bar: never a horizontal one.
        scroll.setMinimumWidth(
            max(
                CONTROLS_WIDTH,
                controls.minimumSizeHint().width()
                + scroll.verticalScrollBar().sizeHint().width()
                + 2 * scroll.frameWidth(),
            )
        )
        self.controls_scroll = scroll
        self.controls_dock = QDockWidget("Controls", self)
        self.controls_dock.setObjectName("controlsDock")
        self.controls_dock.setWidget(scroll)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.controls_dock)
        self.listener_panel.model.modelReset.connect(self._listeners_changed)
        self.listener_panel.model.dataChanged.connect(self._listeners_changed)

        self.status = StatusStrip(clock)
        self.statusBar().addPermanentWidget(self.status, 1)
        self._build_actions()
        self.restore_settings()

    # -- menus and shortcuts ---------------------------------------------------------------
    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.export_csv_action = QAction("Export connections as &CSV…", self)
        self.export_csv_action.setShortcut(QKeySequence("Ctrl+E"))
        self.export_csv_action.setToolTip("Save the rows the table shows (filter applied)")
        self.export_csv_action.triggered.connect(self._ask_export_csv)
        file_menu.addAction(self.export_csv_action)
        png_menu = file_menu.addMenu("Export plot as &PNG")
        for key, panel in self.plots.items():
            action = QAction(f"{panel.title}…", self)
            action.triggered.connect(lambda _=False, k=key: self._ask_export_png(k))
            png_menu.addAction(action)
        file_menu.addSeparator()
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        self.quit_action.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
        self.quit_action.triggered.connect(self.close)
        file_menu.addAction(self.quit_action)
        self.addAction(self.quit_action)

        view_menu = menu.addMenu("&View")
        self.pause_action = QAction("&Pause views", self)
        self.pause_action.setCheckable(True)
        self.pause_action.setShortcut(QKeySequence("Ctrl+P"))
        self.pause_action.setToolTip("Freeze the table, plots and log; the loop runs on")
        self.pause_action.toggled.connect(self.set_paused)
        view_menu.addAction(self.pause_action)
        view_menu.addAction(self.controls_dock.toggleViewAction())
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.addAction(self.pause_action)
        toolbar.addAction(self.export_csv_action)

    # -- data in ---------------------------------------------------------------------------
    def on_batch(self, batch: Batch) -> None:
        """Every batch is recorded at once (histories, status, controls); the views are
        refreshed at most once per ``view_interval_s``, with the latest snapshot."""
        snapshot = batch.snapshot
        if snapshot is not None:
            self.record(snapshot)
            self._due_snapshot = snapshot
        self._due_dropped.update(e.kind for e in self._due_events.extend(batch.events))
        self._due_dropped.update(batch.dropped)
        if not self.paused:
            self._request_frame()

    def _request_frame(self) -> None:
        if self._frame_timer.isActive():
            return
        wait = self._last_frame + self.view_interval_s - time.monotonic()
        if wait <= 0:
            self._frame()
        else:
            self._frame_timer.start(max(1, round(wait * 1000)))

    def _frame(self) -> None:
        if self.paused:
            return
        self._last_frame = time.monotonic()
        snapshot, self._due_snapshot = self._due_snapshot, None
        events = list(self._due_events)
        self._due_events.clear()
        dropped, self._due_dropped = self._due_dropped, collections.Counter()
        if snapshot is not None or events or dropped:
            self.frames += 1
            self.apply_views(snapshot, events, dropped)

    def record(self, snapshot: Snapshot) -> None:
        """What happens to every snapshot, paused or not: histories, status, controls."""
        backend_changed = self.latest is None or self.latest.backend != snapshot.backend
        self.latest = snapshot
        rates = self.health.record(snapshot)
        self.fd_history.record(snapshot, ConnectionColumns(snapshot))
        self.status.show_snapshot(snapshot, rates)
        self.listener_panel.set_listeners(snapshot.listeners, snapshot.session)
        self.loop_panel.show_snapshot(snapshot)
        if backend_changed:  # the title names it
            self._show_title()

    def apply_views(
        self,
        snapshot: Snapshot | None,
        events: Sequence[LoopEvent] = (),
        dropped: Mapping[str, int] | None = None,
        every_plot: bool = False,
    ) -> None:
        """Show a snapshot in the table and plots (``every_plot``: hidden ones too)."""
        if snapshot is not None:
            self.table.set_snapshot(snapshot)
            for panel in self.plots.values():
                if every_plot:
                    panel.refresh()
                else:
                    panel.changed()
        if events or dropped:
            self.event_log.add(list(events), dropped)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)
        self.status.set_paused(paused)
        for panel in self.plots.values():
            panel.set_frozen(paused)
        if not paused:
            self._frame()

    def _selection_changed(self, fds: list[int]) -> None:
        self.raster.set_selected(fds)
        self.queue_plot.set_selected(fds)

    def _listeners_changed(self, *_: object) -> None:
        self.load_panel.set_targets(self.listener_panel.model.rows)
        self._show_title()

    def _show_title(self) -> None:
        rows = self.listener_panel.model.rows
        backend = self.latest.backend if self.latest is not None else ""
        addresses = ", ".join(r.address for r in rows if r.state == "listening")
        self.setWindowTitle(
            window_title([backend, addresses], QApplication.applicationDisplayName())
        )

    # -- export ------------------------------------------------------------------------------
    def export_connections(self, path: str) -> int:
        model = self.table.model
        return write_connections_csv(path, model.rows, model.taken_at, model.listener_address)

    def export_plot(self, key: str, path: str) -> None:
        self.plots[key].export_png(path)

    def _export_path(self, name: str) -> str:
        """Where a Save dialog opens: the folder last saved to, else the working directory."""
        last = read_str(self.settings, "export/dir", "")
        folder = last if last and os.path.isdir(last) else os.getcwd()
        return os.path.join(folder, name)

    def _ask_export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export connections", self._export_path("connections.csv"), "CSV (*.csv)"
        )
        if path:
            count = self.export_connections(path)
            self.settings.setValue("export/dir", os.path.dirname(os.path.abspath(path)))
            self.statusBar().showMessage(f"wrote {count} connections to {path}", 5000)

    def _ask_export_png(self, key: str) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export {self.plots[key].title}", self._export_path(f"{key}.png"), "PNG (*.png)"
        )
        if path:
            self.export_plot(key, path)
            self.settings.setValue("export/dir", os.path.dirname(os.path.abspath(path)))
            self.statusBar().showMessage(f"wrote {path}", 5000)

    # -- settings ----------------------------------------------------------------------------
    def restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
            # Qt shrinks a geometry saved on another screen to two thirds of this one (553 x 400
            # on 800 x 600), and the next run saves that: take the size the user left, and let
            # _fit_screen bound it to this screen.
            size = s.value("window/size")
            if isinstance(size, QSize) and size.isValid() and not self.isMaximized():
                self.resize(size)
        else:
            self.resize(DEFAULT_SIZE)
        self._fit_screen()
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        self.tabs.setCurrentIndex(read_int(s, "window/tab", 0))
        lp = self.listener_panel
        lp.set_host_port(
            read_str(s, "listener/host", "127.0.0.1"), read_str(s, "listener/port", "0")
        )
        lp.close_check.setChecked(read_str(s, "listener/close_connections", "false") == "true")
        load = self.load_panel
        load.clients_spin.setValue(read_int(s, "load/clients", load.clients_spin.value()))
        load.size_spin.setValue(read_int(s, "load/size", load.size_spin.value()))
        load.mode_combo.setCurrentText(read_str(s, "load/mode", load.mode_combo.currentText()))
        load.duration_spin.setValue(float(read_int(s, "load/duration", 10)))
        kinds = read_str(s, "events/kinds", ",".join(KINDS))
        self.event_log.set_kinds({k for k in kinds.split(",") if k})

    def _fit_screen(self) -> None:
        """No larger than the screen's free area (a 1,280 x 720 laptop, a saved geometry from a
        bigger monitor): a window past the screen's edge hides its own controls."""
        free = self.screen().availableGeometry().size()
        frame = self.frameGeometry().size() - self.geometry().size()  # title bar, borders
        fits = self.size().boundedTo(free - frame)
        if fits != self.size():
            self.resize(fits)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/size", self.size())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        lp = self.listener_panel
        s.setValue("listener/host", lp.host_edit.text())
        s.setValue("listener/port", lp.port_edit.text())
        s.setValue("listener/close_connections", "true" if lp.close_check.isChecked() else "false")
        load = self.load_panel
        s.setValue("load/clients", load.clients_spin.value())
        s.setValue("load/size", load.size_spin.value())
        s.setValue("load/mode", load.mode_combo.currentText())
        s.setValue("load/duration", round(load.duration_spin.value()))
        s.setValue("events/kinds", ",".join(sorted(self.event_log.model.kinds)))
        s.sync()

    # -- closing -----------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """End the load process, stop watching the mailbox, stop the runner (once).
        True if the loop thread exited in time."""
        if self._shut_down:
            return True
        self._shut_down = True
        self.status.timer.stop()
        self._frame_timer.stop()
        self.load_panel.shutdown()
        if self.bridge is not None:
            self.bridge.close()
        stopped = True
        if self.runner is not None:
            stopped = self.runner.stop(timeout=2.0)
        return stopped

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._fitted:  # the frame's size is known once the window is shown
            self._fitted = True
            self._fit_screen()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()
