"""The load panel: runs ``loopmon load`` as a subprocess (QProcess) against one of the
listeners, shows its progress while it runs and its summary at the end, and stops it.

With ``--json --progress jsonl`` the load command writes one JSON object per line to stderr
about once a second (elapsed_s, round_trips, round_trips_per_s, mb_per_s, errors, mismatches,
open_connections) and one JSON summary line to stdout when it ends; it exits non-zero if any
byte came back wrong or any connection failed. Throughput shows in MiB/s, as every size in the
window is in IEC units.

Past 400 lines and still one job, the load run's panel: choosing the target and the clients,
starting and stopping the process, and reading what it says; greyed with the reason where
nothing can be loaded (a replay).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QProcess, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from loopmon.gui.listener_panel import NOTE_STYLE, message_label, say
from loopmon.gui.model import units
from loopmon.gui.model.validation import MAX_CLIENTS, client_host, client_limit, local_ports
from loopmon.gui.model.wording import plural
from loopmon.netaddr import format_address, split_address
from loopmon.snapshot import ListenerRow

MODES = ("rr", "flood", "slow", "idle", "churn")
MODE_TIPS = {
    "rr": "request and response: one message in flight per client",
    "flood": "pipelined: a bounded number of bytes in flight per client",
    "slow": "reads at a limited rate, to show backpressure",
    "idle": "opens the connections and holds them",
    "churn": "connect, one message, close, again",
}
KILL_AFTER_MS = 2000
MAX_LOG_LINES = 200


def load_command() -> list[str]:
    """How to run ``loopmon load`` with this interpreter."""
    return [sys.executable, "-m", "loopmon", "load"]


class LoadPanel(QGroupBox):
    def __init__(self, program: Sequence[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Load", parent)
        self._program = list(program) if program is not None else load_command()
        self.process: QProcess | None = None
        self._stderr_tail = b""
        self._stdout = b""
        self._last_said = ""  # the load process's last line that is not progress
        self._duration = 0.0
        self._stopping = False
        self.progress: dict[str, Any] = {}
        self.summary: dict[str, Any] | None = None
        self.unavailable = ""  # why nothing can be loaded from this window ("" if it can)

        self.unavailable_message = message_label("loadUnavailable", hide_empty=True)
        self.target_combo = QComboBox()
        # A listener of this window, or any HOST:PORT typed in (``load`` itself refuses
        # another machine, and says so).
        self.target_combo.setEditable(True)
        self.target_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        edit = self.target_combo.lineEdit()
        assert edit is not None  # an editable combo has one
        edit.setPlaceholderText("a listener, or HOST:PORT")
        self.target_combo.setToolTip(
            "Which listener to load: one started here, or any HOST:PORT on this machine"
        )
        # A long address must not widen the panel: the combo is as wide as the panel allows.
        self.target_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.target_combo.setMinimumContentsLength(12)
        self.target_message = message_label("targetMessage", hide_empty=True)
        self._listener_targets: list[str] = []
        self._lost = ""  # the target whose listener stopped, until another is chosen
        self._refused = False  # the result label says why Run did nothing
        self.clients_spin = QSpinBox()
        # The box takes any number typed (a spin box would silently turn 50000 into 5000);
        # past the limit Run is disabled and the reason shows beneath it.
        self.client_limit, self.client_limit_why = client_limit(local_ports())
        self.clients_spin.setRange(1, 10 * MAX_CLIENTS)
        self.clients_spin.setGroupSeparatorShown(True)
        self.clients_spin.setValue(10)
        self.clients_spin.setToolTip(self.client_limit_why)
        self.clients_message = message_label("clientsMessage", hide_empty=True)
        self.clients_spin.valueChanged.connect(self._update_run)
        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 16 * 1024 * 1024)
        self.size_spin.setValue(1024)
        self.size_spin.setSuffix(" B")
        self.mode_combo = QComboBox()
        for i, name in enumerate(MODES):
            self.mode_combo.addItem(name)
            self.mode_combo.setItemData(i, MODE_TIPS[name])
        self.duration_spin = QDoubleSpinBox()
        self.duration_spin.setRange(0.5, 24 * 3600)
        self.duration_spin.setValue(10)
        self.duration_spin.setSuffix(" s")
        self.start_button = QPushButton("Run load")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        self.live_label = message_label("loadProgress")
        self.live_label.setText("not running")
        self.result_label = message_label("loadResult")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setMaximumHeight(70)
        self.log_view.setPlaceholderText("messages from the load process")

        grid = QGridLayout(self)
        grid.addWidget(self.unavailable_message, 0, 0, 1, 4)
        grid.addWidget(QLabel("Target"), 1, 0)
        grid.addWidget(self.target_combo, 1, 1, 1, 3)
        grid.addWidget(self.target_message, 2, 1, 1, 3)
        grid.addWidget(QLabel("Clients"), 3, 0)
        grid.addWidget(self.clients_spin, 3, 1)
        grid.addWidget(QLabel("Size"), 3, 2)
        grid.addWidget(self.size_spin, 3, 3)
        grid.addWidget(self.clients_message, 4, 0, 1, 4)
        grid.addWidget(QLabel("Mode"), 5, 0)
        grid.addWidget(self.mode_combo, 5, 1)
        grid.addWidget(QLabel("Duration"), 5, 2)
        grid.addWidget(self.duration_spin, 5, 3)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        grid.addLayout(buttons, 6, 0, 1, 4)
        grid.addWidget(self.progress_bar, 7, 0, 1, 4)
        grid.addWidget(self.live_label, 8, 0, 1, 4)
        grid.addWidget(self.result_label, 9, 0, 1, 4)
        grid.addWidget(self.log_view, 10, 0, 1, 4)
        self.target_combo.editTextChanged.connect(self._target_edited)
        self._update_run()

    # -- targets -------------------------------------------------------------------------
    def set_targets(self, listeners: Sequence[ListenerRow]) -> None:
        """The listeners this window started. The target never changes by itself: when its
        listener stops, the panel says so and Run waits until another target is chosen."""
        addresses = [
            format_address(client_host(r.host), r.port) for r in listeners if r.state == "listening"
        ]
        if addresses == self._listener_targets:
            return
        chosen = self.target_combo.currentText().strip()
        lost = chosen in self._listener_targets and chosen not in addresses
        self._listener_targets = addresses
        combo = self.target_combo
        if self._lost in addresses:  # the same address listens again (a backend switch)
            chosen, self._lost = self._lost, ""
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(addresses)
        if lost or self._lost or (chosen and chosen not in addresses):
            combo.setCurrentIndex(-1)
            combo.setEditText("" if lost or self._lost else chosen)
        elif chosen:
            combo.setCurrentText(chosen)
        # else: nothing was chosen yet, and the first listener is the obvious target
        combo.blockSignals(False)
        if lost:
            self._lost = chosen
        self._update_run()

    def set_unavailable(self, why: str) -> None:
        """Grey the panel out, saying ``why`` above it ("" to enable it again): a replay has
        no listener to load (the recorded one is gone), as commands are greyed for a source
        that does not take them."""
        if why == self.unavailable:
            return
        self.unavailable = why
        say(self.unavailable_message, why)
        if why:
            self.unavailable_message.setStyleSheet(NOTE_STYLE)  # neither success nor failure
        for widget in self.findChildren(QWidget):  # the fields and their names greyed alike
            if widget is not self.unavailable_message:
                widget.setEnabled(not why)
        self.stop_button.setEnabled(self.running)
        self._update_run()

    def _target_edited(self, _text: str) -> None:
        self._lost = ""  # a target is being chosen
        self._update_run()

    def target(self) -> tuple[str, int]:
        """(host, port) of the target as shown; ValueError saying what is wrong."""
        text = self.target_combo.currentText().strip()
        if not text:
            raise ValueError("no target: start a listener, or type HOST:PORT")
        host, port = split_address(text)
        if port == 0:
            raise ValueError("port 0 is not a listener's port: type the port it listens on")
        return host, port

    def _update_run(self, *_: object) -> None:
        """Run is enabled only with a target to run against and a number of clients it can
        open; the reason shows beside the field."""
        too_many = self.clients_spin.value() > self.client_limit
        say(self.clients_message, self.client_limit_why if too_many else "", error=too_many)
        if self._lost:
            why = f"{self._lost} stopped listening: choose a target"
        else:
            try:
                self.target()
                why = ""
            except ValueError as exc:
                why = str(exc) if self.target_combo.currentText().strip() else ""
        ok = not why and not too_many and bool(self.target_combo.currentText().strip())
        self.start_button.setEnabled(ok and not self.running and not self.unavailable)
        self.start_button.setToolTip(self.unavailable or "Run loopmon load against the target")
        say(self.target_message, why, error=bool(why))
        if ok and self._refused:  # "nothing to load" is no longer so
            self._refused = False
            say(self.result_label, "")

    def arguments(self) -> list[str]:
        host, port = self.target()
        return [
            *self._program[1:],
            "--host", host,
            "--port", str(port),
            "--clients", str(self.clients_spin.value()),
            "--size", str(self.size_spin.value()),
            "--mode", self.mode_combo.currentText(),
            "--duration", f"{self.duration_spin.value():g}",
            "--json",
            "--progress", "jsonl",
        ]  # fmt: skip

    # -- running -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self) -> None:
        if self.running:
            return
        if self.unavailable:
            say(self.result_label, f"nothing to load: {self.unavailable}", error=True)
            return
        try:
            self.target()
        except ValueError as exc:
            say(self.result_label, f"nothing to load: {exc}", error=True)
            self._refused = True
            return
        if self.clients_spin.value() > self.client_limit:
            say(self.result_label, self.client_limit_why, error=True)
            self._refused = True
            return
        process = QProcess(self)
        process.setProgram(self._program[0])
        process.setArguments(self.arguments())
        process.readyReadStandardError.connect(self._on_stderr)
        process.readyReadStandardOutput.connect(self._on_stdout)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self.process = process
        self._stderr_tail = b""
        self._stdout = b""
        self._last_said = ""
        self._duration = self.duration_spin.value()
        self._stopping = False
        self.progress = {}
        self.summary = None
        self.progress_bar.setValue(0)
        self.log_view.clear()
        say(self.result_label, "")
        clients = plural(self.clients_spin.value(), f"{self.mode_combo.currentText()} client")
        self.live_label.setText(f"starting {clients}…")
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        process.start()

    def stop(self) -> None:
        """Ask the load process to end (SIGTERM); kill it if it has not within 2 s."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        self.live_label.setText("stopping…")
        process.terminate()
        QTimer.singleShot(KILL_AFTER_MS, lambda: self._kill_if_running(process))

    def _kill_if_running(self, process: QProcess) -> None:
        if self.process is process and process.state() != QProcess.ProcessState.NotRunning:
            process.kill()

    def shutdown(self, timeout_ms: int = 1000) -> None:
        """End the process now and wait for it (the window is closing)."""
        process = self.process
        if process is None:
            return
        self._stopping = True
        process.terminate()
        if not process.waitForFinished(timeout_ms):
            process.kill()
            process.waitForFinished(timeout_ms)

    # -- what it says ----------------------------------------------------------------------
    def _on_stderr(self) -> None:
        if self.process is None:
            return
        data = self._stderr_tail + bytes(self.process.readAllStandardError().data())
        *lines, self._stderr_tail = data.split(b"\n")
        for raw in lines:
            self._stderr_line(raw.decode("utf-8", "replace").strip())

    def _stderr_line(self, line: str) -> None:
        if not line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and "elapsed_s" in record:
            self._show_progress(record)
        else:
            self.log_view.appendPlainText(line)
            self._last_said = line

    def _show_progress(self, record: dict[str, Any]) -> None:
        self.progress = record
        elapsed = float(record.get("elapsed_s", 0.0))
        if self._duration > 0:
            self.progress_bar.setValue(min(int(elapsed / self._duration * 1000), 1000))
        problems = int(record.get("errors", 0)) + int(record.get("mismatches", 0))
        self.live_label.setText(
            f"{elapsed:.0f}/{self._duration:g} s · "
            f"{float(record.get('round_trips_per_s', 0)):,.0f} round trips/s · "
            f"{units.mib_per_s(record):.1f} MiB/s · "
            f"{record.get('open_connections', 0)} open · "
            f"{record.get('errors', 0)} errors · {record.get('mismatches', 0)} mismatches"
        )
        self.live_label.setStyleSheet("color: #d03030;" if problems else "")

    def _on_stdout(self) -> None:
        if self.process is not None:
            self._stdout += bytes(self.process.readAllStandardOutput().data())

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            say(self.result_label, f"could not start the load process: {self._program[0]}", True)
            self._finish()

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._on_stderr()
        self._on_stdout()
        if self._stderr_tail.strip():
            self._stderr_line(self._stderr_tail.decode("utf-8", "replace").strip())
            self._stderr_tail = b""
        summary = None
        for line in reversed(self._stdout.decode("utf-8", "replace").splitlines()):
            try:
                candidate = json.loads(line)
            except ValueError:
                continue
            if isinstance(candidate, dict):
                summary = candidate
                break
        self.summary = summary
        crashed = status == QProcess.ExitStatus.CrashExit
        if summary is not None:
            self.progress_bar.setValue(1000)
            bad = int(summary.get("mismatches", 0)) > 0 or int(summary.get("errors", 0)) > 0
            say(self.result_label, self.describe_summary(summary), error=bad or code != 0)
        elif self._stopping:
            say(self.result_label, "stopped")
        elif crashed:
            say(self.result_label, "the load process crashed", error=True)
        elif code != 0 and self._last_said:
            say(self.result_label, self._last_said, error=True)  # load's own words: why
        else:
            say(self.result_label, f"the load process exited with status {code}", error=code != 0)
        self.live_label.setText("not running")
        self._finish()

    @staticmethod
    def describe_summary(s: dict[str, Any]) -> str:
        mismatches = plural(int(s.get("mismatches", 0)), "mismatch", "mismatches")
        rate = float(s.get("round_trips_per_s", 0))
        return (
            f"{s.get('mode', '?')} · {plural(int(s.get('clients', 0)), 'client')} x "
            f"{s.get('size', '?')} B for {float(s.get('duration_s', 0)):.1f} s: "
            f"{plural(int(s.get('round_trips', 0)), 'round trip')} ({rate:,.0f}/s), "
            f"{units.mib_per_s(s):.1f} MiB/s; {LoadPanel.describe_latency(s)}; "
            f"{plural(int(s.get('errors', 0)), 'error')}, {mismatches}"
        )

    @staticmethod
    def describe_latency(s: dict[str, Any]) -> str:
        # None: no round trip completed, so there is no latency to show (not a zero).
        p50, p99, top = (s.get(k) for k in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms"))
        if p50 is None or p99 is None or top is None:
            return "latency n/a"
        return f"latency p50 {float(p50):.2f} ms, p99 {float(p99):.2f} ms, max {float(top):.2f} ms"

    def _finish(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.deleteLater()
        self.stop_button.setEnabled(False)
        self._update_run()
