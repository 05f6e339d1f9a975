"""The monitor window: controls on the left, connections above, plots and the event log below,
the status strip at the bottom.

It reads nothing but the batches the bridge emits and changes nothing but through ``Commands``,
on a ``Source`` (the in-process runner, a producer's stream, a recording): it never knows which.
It offers only the commands the source takes (a stream: what the producer's hello lists) and
greys out the rest, saying why.
Each snapshot is recorded into the histories (numpy, cheap) whether or not the views are paused,
then applied to the views: the table, and whichever plot is visible (hidden ones catch up when
shown).

Past 400 lines and still one job: it composes the panels, plots and log into one window and
routes batches, commands, exports and settings between them; each view is a module of its own.
"""

from __future__ import annotations

import collections
import dataclasses
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
from loopmon.gui.commands import Commands
from loopmon.gui.connection_table import ConnectionTable
from loopmon.gui.event_log import EventLog
from loopmon.gui.health_plots import HealthPlots
from loopmon.gui.history import HealthHistory
from loopmon.gui.listener_panel import ListenerPanel
from loopmon.gui.load_panel import LoadPanel
from loopmon.gui.loop_panel import LoopPanel
from loopmon.gui.model import units
from loopmon.gui.model.export import write_connections_csv
from loopmon.gui.model.kind_log import KindLog
from loopmon.gui.model.time_axis import PAN_STEP, TimeAxis
from loopmon.gui.model.timeline import DEFAULT_BUDGET_MB, MiB, State, Timeline
from loopmon.gui.model.wording import window_title
from loopmon.gui.plot_panel import PlotPanel
from loopmon.gui.queue_plot import QueuePlot
from loopmon.gui.raster import MaskRaster
from loopmon.gui.record_control import RecordControl
from loopmon.gui.settings import open_settings, read_int, read_str
from loopmon.gui.status_strip import StatusStrip
from loopmon.snapshot import KINDS, LoopEvent, Snapshot
from loopmon.sources import (
    CLOSE_CONNECTION,
    CONNECTED,
    IN_PROCESS,
    RECORDING,
    SET_STRATEGY,
    START_LISTENER,
    STOP_LISTENER,
    Source,
)

EVENT_LOG_SIZE = 5000
# The table lists at most this many closed connections (the newest; the raster and the
# timeline keep the rest): sorting and filtering stay quick under a churn of closes.
TABLE_GHOSTS = 5000
NO_LOAD_IN_REPLAY = (
    "a replay has nothing to load: the listeners it shows were recorded, and are gone"
)
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
        source: Source | None,
        settings: QSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        load_program: Sequence[str] | None = None,
        view_interval_s: float = VIEW_INTERVAL_S,
        history_mb: int = DEFAULT_BUDGET_MB,
    ) -> None:
        super().__init__()
        # Every snapshot goes into the timeline (the mailbox carries a replaced snapshot's
        # closes over); the views show it at the axis's cursor.
        self.timeline = Timeline(history_mb * MiB)
        self.axis = TimeAxis()
        self.state: State | None = None
        self.source = source
        self.settings = settings if settings is not None else open_settings()
        self.bridge: MailboxBridge | None = None
        self.commands: Commands | None = None
        if source is not None:
            self.bridge = MailboxBridge(source.mailbox, self)
            self.commands = Commands(source, self.bridge)
            self.bridge.batch.connect(self.on_batch)
        self._allowed: tuple[str, ...] | None = None  # the reasons last applied
        self.health = HealthHistory()
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
        self.time_actions: dict[str, QAction] = {}
        self._log_scrubbed = False  # the event log shows the cursor's moment, not everything
        # Per session of a recording: wall = loop time + offset, from its producer's start
        # (its loop clock is another process's, maybe of another boot).
        self._wall_offsets: dict[str, float] = {}

        self.setWindowTitle(window_title([], QApplication.applicationDisplayName()))
        icon = resources.icon_path()
        if icon is not None:
            self.setWindowIcon(QIcon(str(icon)))

        # -- views ------------------------------------------------------------------------
        self.table = ConnectionTable(self.commands)
        self.raster = MaskRaster(clock=clock)
        self.queue_plot = QueuePlot()
        self.health_plots = HealthPlots(self.health)
        self.event_log = EventLog(EVENT_LOG_SIZE)
        self.plots: dict[str, PlotPanel] = {
            "masks": self.raster,
            "queues": self.queue_plot,
            "health": self.health_plots,
        }
        for panel in self.plots.values():
            panel.attach(self.timeline, self.axis)
            panel.zoom_requested.connect(self.zoom)
            panel.pan_requested.connect(self.move_cursor)
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
        backends = source.available_backends if source is not None else []
        self.listener_panel = ListenerPanel(self.commands)
        self.loop_panel = LoopPanel(
            self.commands,
            backends,
            source.backend if source is not None else "",
            source.strategy if source is not None else "direct",
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
        # The link changes with no snapshot to say so: checked with the snapshot age.
        self.status.timer.timeout.connect(self.show_source)
        self.recording = RecordControl(
            self, self.settings, lambda: self.source.producer if self.source else None
        )
        self.statusBar().addPermanentWidget(self.recording.label)
        self.show_source()
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
        self.pause_action.setShortcuts([QKeySequence(Qt.Key.Key_Space), QKeySequence("Ctrl+P")])
        self.pause_action.setToolTip(
            "Hold the views at a time cursor (Space); the loop runs on. End: back to live"
        )
        self.pause_action.toggled.connect(self.set_paused)
        view_menu.addAction(self.pause_action)
        self.live_action = QAction("Back to &live", self)
        self.live_action.setShortcut(QKeySequence(Qt.Key.Key_End))
        self.live_action.triggered.connect(self.go_live)
        view_menu.addAction(self.live_action)
        for text, keys, slot in (
            ("Zoom &in", ("+", "="), lambda: self.zoom(1)),
            ("Zoom &out", ("-",), lambda: self.zoom(-1)),
            ("&Earlier", ("Left",), lambda: self.move_cursor(-PAN_STEP)),
            ("&Later", ("Right",), lambda: self.move_cursor(PAN_STEP)),
        ):
            action = QAction(text, self)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.triggered.connect(slot)
            view_menu.addAction(action)
            self.addAction(action)
            self.time_actions[text.replace("&", "")] = action
        view_menu.addAction(self.controls_dock.toggleViewAction())
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.addAction(self.pause_action)
        toolbar.addAction(self.export_csv_action)
        toolbar.addAction(self.recording.action)
        file_menu.insertAction(self.quit_action, self.recording.action)

    # -- data in ---------------------------------------------------------------------------
    def on_batch(self, batch: Batch) -> None:
        """Every batch is recorded at once (histories, status, controls); the views are
        refreshed at most once per ``view_interval_s``, with the latest snapshot."""
        snapshot = batch.snapshot
        if snapshot is not None:
            self.timeline.add(snapshot, batch.events, received_at=time.monotonic())
            self.recording.take(snapshot)
            self.record(snapshot)
            self._due_snapshot = snapshot
        elif batch.events:
            self.timeline.add_events(batch.events)
        self._due_dropped.update(e.kind for e in self._due_events.extend(batch.events))
        self._due_dropped.update(batch.dropped)
        if not self.paused:
            self._request_frame()
        elif snapshot is not None:
            self.show_time()  # the loop runs on: the cursor falls further behind

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
        if self.latest is None or self.latest.session != snapshot.session:
            self.show_source()  # a restarted producer: name the new one at once
            backend_changed = True  # and in the title
        self.latest = snapshot
        if snapshot.session not in self._wall_offsets:
            self._learn_wall_offset(snapshot)
        rates = self.health.record(snapshot)
        self.status.show_snapshot(snapshot, rates)
        self.status.show_history(self.timeline.nbytes, self.timeline.budget_bytes)
        self.listener_panel.set_listeners(snapshot.listeners, snapshot.session)
        self.loop_panel.show_snapshot(snapshot)
        if backend_changed:  # the title names it
            self._show_title()

    def _learn_wall_offset(self, snapshot: Snapshot) -> None:
        """A recording's clock: its producer's wall start plus the snapshot's uptime."""
        source = self.source
        producer = source.producer if source is not None else None
        if source is None or source.link != RECORDING or producer is None:
            return
        if producer.session == snapshot.session:
            offset = producer.started_at + snapshot.uptime_s - snapshot.taken_at
            self._wall_offsets[snapshot.session] = offset
            self.event_log.model.wall_offset = offset

    def apply_views(
        self,
        snapshot: Snapshot | None,
        events: Sequence[LoopEvent] = (),
        dropped: Mapping[str, int] | None = None,
        every_plot: bool = False,
    ) -> None:
        """Show a snapshot in the table and plots (``every_plot``: hidden ones too)."""
        if snapshot is not None:
            self.show_table()
            for panel in self.plots.values():
                if every_plot:
                    panel.refresh()
                else:
                    panel.changed()
        if events or dropped:
            self.event_log.add(list(events), dropped)

    def show_table(self) -> None:
        """The table at the cursor: the connections open then, and the ghosts."""
        state = self.state = self.timeline.state_at(self.axis.cursor)
        latest = self.latest
        shown = state
        if len(state.ghosts) > TABLE_GHOSTS:  # a churn's thousands: the newest, and a count
            shown = dataclasses.replace(state, ghosts=state.ghosts[-TABLE_GHOSTS:])
        self.table.live_session = self.timeline.session
        self.table.set_state(shown, latest.listeners if latest is not None else ())
        self.table.set_ghosts_not_shown(len(state.ghosts) - len(shown.ghosts))
        for panel in self.plots.values():
            panel.state = state

    def show_cursor(self) -> None:
        """Every view at the cursor, now (a scrub redraws at once: no frame interval)."""
        self.show_table()
        self.show_time()
        for panel in self.plots.values():
            panel.changed(force=True)
        if not self.axis.live:  # the log as of the cursor: what had happened by then
            self._log_scrubbed = True
            at = self.axis.at(self.timeline.now)
            events_until = self.timeline.events_until
            self.event_log.show_at(lambda: [e.event for e in events_until(at)])

    def show_time(self) -> None:
        """The status strip says what moment the views show (and how far behind now)."""
        tl = self.timeline
        if self.axis.live:
            self.status.show_time(None)
        else:
            at = self.axis.at(tl.now)
            mark = tl.session_at(at)
            session = tl.sessions.index(mark) + 1 if mark is not None else 1
            clock = (
                units.clock_time(at - mark.offset, self._wall_offsets.get(mark.session))
                if mark is not None
                else ""
            )
            self.status.show_time(tl.now - at, clock, session)

    def move_cursor(self, widths: float) -> None:
        """Pan: the cursor moves by ``widths`` of the shown width (pausing if live)."""
        self.set_paused(True)
        self.axis.pan(widths, self.timeline.start, self.timeline.now)
        self.show_cursor()

    def zoom(self, steps: float) -> None:
        self.axis.zoom(steps, self.timeline.start, self.timeline.now)
        self.show_cursor()

    def go_live(self) -> None:
        self.set_paused(False)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self.axis.pause(self.timeline.now)
        else:
            self.axis.go_live()
            if self._log_scrubbed:  # back to everything, from the timeline (kept per kind)
                self._log_scrubbed = False
                self._due_events.clear()
                self.event_log.show_events([e.event for e in self.timeline.events_until(1e300)])
        if self.pause_action.isChecked() != paused:
            self.pause_action.setChecked(paused)
        self.status.set_paused(paused)
        for panel in self.plots.values():
            panel.set_frozen(paused)
        if not paused:
            self._frame()
        self.show_cursor()

    @property
    def runner(self) -> Source | None:
        """The source (its name from when the in-process runner was the only one)."""
        return self.source

    def _selection_changed(self, keys: list[tuple[str, int]]) -> None:
        """The table selects connections by (session, id); the plots take the same keys."""
        self.raster.set_selected(list(keys))
        self.queue_plot.set_selected(list(keys))

    # -- the source: who the producer is, the link, what it takes --------------------------
    def show_source(self) -> None:
        source = self.source
        if source is None:
            return
        self.status.show_source(source.producer, source.link, source.link_error, source.where)
        self.load_panel.set_unavailable(NO_LOAD_IN_REPLAY if source.link == RECORDING else "")
        allowed = (
            self._why_not(START_LISTENER),
            self._why_not(STOP_LISTENER),
            self._why_not(CLOSE_CONNECTION),
            self._why_not(SET_STRATEGY),
            self._why_not_backend(),
        )
        if allowed == self._allowed:
            return
        self._allowed = allowed
        start, stop, close, strategy, backend = allowed
        self.listener_panel.set_allowed(start, stop)
        self.table.set_can_close(not close, close)
        self.loop_panel.set_backends(source.available_backends)
        self.loop_panel.set_allowed(backend, strategy)

    def _why_not(self, command: str) -> str:
        """Why the source does not take ``command`` now ("" if it does)."""
        source = self.source
        assert source is not None
        if source.link == RECORDING:
            return "a recording takes no commands: it replays what the producer did"
        if source.link not in (IN_PROCESS, CONNECTED):
            return f"not connected to the producer ({source.link})"
        if command in source.commands:
            return ""
        producer = source.producer
        who = f"{producer.program} ({producer.kind})" if producer is not None else "this source"
        if producer is not None and not producer.commands:
            return f"{who} takes no commands: it watches a loop that is not loopmon's echo server"
        return f"{who} does not take {command.replace('_', ' ')}"

    def _why_not_backend(self) -> str:
        source = self.source
        assert source is not None
        if source.can_switch_backend:
            return ""
        if source.link == RECORDING:
            return "a recording takes no commands: it replays what the producer did"
        producer = source.producer
        who = f"{producer.program} ({producer.kind})" if producer is not None else "this source"
        return f"{who} does not switch backends: its loop runs in another process"

    def _listeners_changed(self, *_: object) -> None:
        self.load_panel.set_targets(self.listener_panel.model.rows)
        self._show_title()

    def _show_title(self) -> None:
        rows = self.listener_panel.model.rows
        backend = self.latest.backend if self.latest is not None else ""
        addresses = ", ".join(r.address for r in rows if r.state == "listening")
        producer = self.source.producer if self.source is not None else None
        where = self.source.where if self.source is not None else ""
        attached = f"{producer.program} at {where}" if producer and where else where
        self.setWindowTitle(
            window_title([attached, backend, addresses], QApplication.applicationDisplayName())
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
        """End the load process, stop watching the mailbox, stop the source (once): a
        stream's source detaches, the producer runs on.
        True if the loop thread exited in time."""
        if self._shut_down:
            return True
        self._shut_down = True
        self.recording.stop()  # its index written
        self.status.timer.stop()
        self._frame_timer.stop()
        self.load_panel.shutdown()
        if self.bridge is not None:
            self.bridge.close()
        stopped = True
        if self.source is not None:
            stopped = self.source.stop(timeout=2.0)
        return stopped

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._fitted:  # the frame's size is known once the window is shown
            self._fitted = True
            self._fit_screen()
            # The keys the time axis takes (Space, End, the arrows) work from the start: Qt
            # would focus the first text field (the listener's host), which keeps them, and
            # Space typed a blank into it instead of pausing.
            self.table.view.setFocus(Qt.FocusReason.OtherFocusReason)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)
        self.closed.emit()
