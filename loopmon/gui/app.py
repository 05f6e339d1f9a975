"""The window's entry points: ``loopmon`` with no subcommand (``main``: the window on an
embedded loop) and ``loopmon attach HOST:PORT`` (``run_attached``: the window on a producer's
telemetry stream).

``main`` builds the QApplication, a LoopRunner on the chosen backend and strategy behind an
``InProcessSource``, listeners for ``args.host`` on each of ``args.port``, shows the window
and runs Qt's loop. Closing the window (or Ctrl+Q, or Ctrl+C in the terminal) ends the load
subprocess, the runner and its thread, and returns. ``run_attached`` does the same on a
``RemoteSource``, which reconnects with backoff; closing the window detaches and never stops
the producer.
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
from loopmon.gui.main_window import MainWindow
from loopmon.netaddr import DEFAULT_HOST, DEFAULT_PORT
from loopmon.sources import Source

DEFAULT_HISTORY_MB = 300


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


def build(args: argparse.Namespace, source: Source | None = None) -> MainWindow:
    """The window on a started source (by default an in-process runner, with listeners
    requested for ``args.host`` on each of ``args.port``; results show in the window)."""
    listen = source is None
    if source is None:
        from loopmon.sources.inprocess import InProcessSource

        source = InProcessSource.new(getattr(args, "backend", None), args.strategy)
    source.start()
    window = MainWindow(source, history_mb=getattr(args, "history_mb", None) or DEFAULT_HISTORY_MB)
    if listen:
        host = getattr(args, "host", None) or DEFAULT_HOST
        for port in getattr(args, "port", None) or [DEFAULT_PORT]:
            window.listener_panel.start_listener(host, port)
    return window


def main(args: argparse.Namespace, source_factory: Callable[[], Source] | None = None) -> int:
    app = application()
    try:
        window = build(args, source_factory() if source_factory is not None else None)
    except (ValueError, OSError, RuntimeError) as exc:  # e.g. a backend this OS lacks
        print(f"loopmon: {exc}", file=sys.stderr)
        return 2
    return _run(app, window, "the loop thread did not stop within 2 s")


def attach_address(args: argparse.Namespace) -> tuple[str, int]:
    """``args.address`` (host, port) as ``loopmon attach`` resolved it, else ``args.host``
    and ``args.port``, else ``args.target`` "HOST:PORT" ("[::1]:PORT" for IPv6)."""
    address = getattr(args, "address", None)
    if address is not None:
        host, port = address
        return str(host), int(port)
    host, port = getattr(args, "host", None), getattr(args, "port", None)
    if host is not None and isinstance(port, int):
        return host, port
    target = str(getattr(args, "target", ""))
    head, sep, tail = target.rpartition(":")
    if not sep or not tail.isdigit():
        raise ValueError(f"not HOST:PORT: {target!r}")
    return head.strip("[]") or DEFAULT_HOST, int(tail)


def run_attached(args: argparse.Namespace) -> int:
    """``loopmon attach HOST:PORT``: the window on a producer's stream until it is closed.

    ``args``: ``address`` (host, port) or ``target``; ``token`` (bytes, or where the caller
    finds it: a local producer's file, ``--token-file`` or ``LOOPMON_TOKEN``, asked again
    before each reconnection, as a restarted producer has a new one); optionally
    ``history_mb``, ``backoff`` (first, longest wait between attempts, seconds) and
    ``record_tap`` (called with each snapshot decoded and the producer's hello). The window
    opens at once and says "connecting…" until the producer answers; it reconnects with
    backoff when the link drops, and a restarted producer is a new session on its timeline.
    Closing it detaches; the producer runs on.
    """
    from loopmon.sources.remote import RemoteSource

    try:
        host, port = attach_address(args)
    except ValueError as exc:
        print(f"loopmon attach: {exc}", file=sys.stderr)
        return 2
    token = getattr(args, "token", None)  # bytes, or where to find it before each reconnect
    if not isinstance(token, bytes) and not callable(token):
        print("loopmon attach: no token for the producer", file=sys.stderr)
        return 2
    backoff = getattr(args, "backoff", None) or (0.1, 5.0)
    app = application()
    source = RemoteSource(host, port, token, backoff=backoff)
    tap = getattr(args, "record_tap", None)
    if tap is not None:
        # ``attach --record``: every snapshot the client decodes, on its thread (the window
        # sees only the latest at each wake).
        client = source.client
        client.on_snapshot = lambda snap: tap(snap, client.producer)
    window = build(args, source)
    return _run(app, window, "the telemetry client did not stop within 2 s")


def _run(app: QApplication, window: MainWindow, stuck: str) -> int:
    """Show the window and run Qt's loop until it closes; then stop its source (once)."""
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
        source = window.source
        if stopped and source is not None:
            source.mailbox.close()  # a source's stop() leaves its mailbox open: ours to close
    if not stopped:
        print(f"loopmon: {stuck}", file=sys.stderr)
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
    bar = ReplayBar(source, window.timeline, window, window.status)
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
