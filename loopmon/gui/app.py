"""``loopmon`` with no subcommand: the window on an embedded loop.

Builds the QApplication, a LoopRunner on the chosen backend and strategy, listeners for
``args.host`` on each of ``args.port``, shows the window and runs Qt's loop. Closing the window
(or Ctrl+Q, or Ctrl+C in the terminal) ends the load subprocess, the runner and its thread, and
returns.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from types import FrameType

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from loopmon.gui import resources, settings
from loopmon.gui.commands import RunnerLike
from loopmon.gui.main_window import MainWindow
from loopmon.netaddr import DEFAULT_HOST, DEFAULT_PORT


def application() -> QApplication:
    """The process's QApplication, made once and named (QSettings and the desktop use it)."""
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(settings.ORGANIZATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName("loopmon")
    app.setDesktopFileName("loopmon")
    icon = resources.icon_path()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))
    return app


def build(args: argparse.Namespace, runner: RunnerLike | None = None) -> MainWindow:
    """The window on a started runner, with listeners requested (results show in the window)."""
    if runner is None:
        from loopmon.runner import LoopRunner

        runner = LoopRunner(backend=getattr(args, "backend", None), strategy=args.strategy)
    runner.start()
    window = MainWindow(runner, history_mb=getattr(args, "history_mb", None) or 300)
    host = getattr(args, "host", None) or DEFAULT_HOST
    for port in getattr(args, "port", None) or [DEFAULT_PORT]:
        window.listener_panel.start_listener(host, port)
    return window


def main(args: argparse.Namespace, runner_factory: Callable[[], RunnerLike] | None = None) -> int:
    app = application()
    try:
        window = build(args, runner_factory() if runner_factory is not None else None)
    except (ValueError, OSError, RuntimeError) as exc:  # e.g. a backend this OS lacks
        print(f"loopmon: {exc}", file=sys.stderr)
        return 2
    window.show()

    # Ctrl+C in the terminal closes the window like Ctrl+Q. Python runs signal handlers only
    # between bytecodes; the mailbox wakes the GUI thread 25 times a second, and a slow timer
    # covers a loop that has gone quiet.
    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        QTimer.singleShot(0, window.close)

    previous = signal.signal(signal.SIGINT, interrupted)
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)
    try:
        code = app.exec()
    finally:
        heartbeat.stop()
        signal.signal(signal.SIGINT, previous)
        stopped = window.shutdown()
        window.deleteLater()
        app.processEvents()
        mailbox = getattr(window.runner, "mailbox", None)
        if stopped and mailbox is not None and hasattr(mailbox, "close"):
            mailbox.close()  # the runner's stop() leaves its mailbox open: ours to close
    if not stopped:
        print("loopmon: the loop thread did not stop within 2 s", file=sys.stderr)
        return code or 1
    return code


def run_replay(args: argparse.Namespace) -> int:
    """``loopmon replay FILE``: the window on a recording, with the replay's toolbar."""
    from PySide6.QtCore import Qt

    from loopmon.gui.replay_bar import ReplayBar
    from loopmon.sources.recording import RecordingSource
    from loopmon.wire.recording import RecordingError

    app = application()
    try:
        source = RecordingSource(args.file)
    except RecordingError as exc:
        print(f"loopmon replay: {args.file}: {exc}", file=sys.stderr)
        return 1
    window = MainWindow(source, history_mb=getattr(args, "history_mb", None) or 300)
    window.setWindowTitle(f"loopmon replay: {args.file}")
    bar = ReplayBar(source, window.timeline, window)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
    window.replay_bar = bar  # type: ignore[attr-defined]
    source.start()
    start = getattr(args, "start", 0.0) or 0.0
    if start:
        bar.seek(start)
    bar.play_action.setChecked(True)
    window.show()
    previous = signal.signal(signal.SIGINT, lambda _s, _f: QTimer.singleShot(0, window.close))
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)
    try:
        code = app.exec()
    finally:
        heartbeat.stop()
        signal.signal(signal.SIGINT, previous)
        window.shutdown()
        window.deleteLater()
        app.processEvents()
        source.mailbox.close()
    for problem in source.reader.problems:
        print(f"loopmon replay: {args.file}: {problem}", file=sys.stderr)
    return code
