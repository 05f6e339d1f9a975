"""The window on the real LoopRunner, with real sockets. Skipped until loopmon.runner (and the
echo server and pollers under it) can be imported."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

runner_module = pytest.importorskip("loopmon.runner", reason="loopmon.runner is not importable yet")
pollers = pytest.importorskip("loopmon.pollers")
if not pollers.available():
    pytest.skip("no poller backend works here yet", allow_module_level=True)

from PySide6.QtCore import Qt  # noqa: E402

from loopmon.gui.main_window import MainWindow  # noqa: E402
from loopmon.gui.settings import open_settings  # noqa: E402
from loopmon.sources.inprocess import InProcessSource  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(qtbot, tmp_path: Path) -> Iterator[MainWindow]:
    runner = runner_module.LoopRunner()
    source = InProcessSource(runner)
    source.start()
    win = MainWindow(source, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.0)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    assert win.runner is not None
    runner.mailbox.close()


def listen(qtbot, win: MainWindow) -> int:  # type: ignore[no-untyped-def]
    panel = win.listener_panel
    panel.set_host_port("127.0.0.1", "0")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(panel.model.rows), timeout=2000)
    port = panel.model.rows[0].port
    assert port != 0
    return port


def row_for(win: MainWindow, client: socket.socket, ghost: bool = False) -> int | None:
    """The fd of the client's open row (``ghost``: of its closed row, kept dimmed)."""
    host, port = client.getsockname()[:2]
    peer = f"{host}:{port}"
    model = win.table.model
    for i, row in enumerate(model.rows):
        if row.peer == peer and (model.ghost_at(i) is not None) == ghost:
            return row.fd
    return None


def test_a_client_appears_within_a_second_and_closing_it_gives_eof(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    port = listen(qtbot, window)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        qtbot.waitUntil(lambda: row_for(window, client) is not None, timeout=1000)
        client.sendall(b"hello")
        assert client.recv(5) == b"hello"
        fd = row_for(window, client)
        assert fd is not None
        window.table.select_fds([fd])
        qtbot.mouseClick(window.table.close_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.table.message.text() == f"closed fd {fd}", timeout=2000)
        client.settimeout(2)
        assert client.recv(1) == b""  # EOF
        qtbot.waitUntil(lambda: row_for(window, client) is None, timeout=2000)
        assert row_for(window, client, ghost=True) == fd  # a ghost now, with why it closed
        (i,) = [i for i in range(window.table.model.rowCount()) if window.table.model.ghost_at(i)]
        assert "closed" in window.table.model.ghost_at(i).reason  # type: ignore[union-attr]


def test_port_in_use_shows_beside_start(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        panel = window.listener_panel
        panel.set_host_port("127.0.0.1", str(port))
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: "in use" in panel.start_message.text(), timeout=2000)
        assert "d03030" in panel.start_message.styleSheet()


def test_stop_removes_a_real_listener(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    port = listen(qtbot, window)
    panel = window.listener_panel
    listener_id = panel.model.rows[0].id
    qtbot.mouseClick(panel.buttons[listener_id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_closing_the_window_under_load_stops_the_loop(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    port = listen(qtbot, window)
    stop = threading.Event()
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]

    def flood(sock: socket.socket) -> None:
        payload = b"x" * 4096
        try:
            while not stop.is_set():
                sock.sendall(payload)
                sock.recv(65536)
        except OSError:
            pass

    threads = [threading.Thread(target=flood, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    qtbot.waitUntil(lambda: len(window.table.model.rows) == 20, timeout=2000)
    runner = window.runner
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 < 2.0
    loop_threads = [t for t in threading.enumerate() if t.name.startswith("loopmon-loop")]
    assert loop_threads == []
    assert runner is not None
    stop.set()
    for c in clients:
        c.close()
    for t in threads:
        t.join(2)


def test_backend_restart_and_strategy_from_the_window(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    port = listen(qtbot, window)
    panel = window.loop_panel
    others = [b for b in window.runner.available_backends if b != window.runner.backend]
    if not others:
        pytest.skip("only one backend works here")
    panel.confirm = lambda _question: True
    panel.choose_backend(others[0])
    qtbot.waitUntil(lambda: panel.backend_message.text() == f"running on {others[0]}", timeout=5000)
    qtbot.waitUntil(
        lambda: window.status.labels["backend"].text().startswith(others[0]), timeout=2000
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:  # reopened
        client.sendall(b"again")
        assert client.recv(5) == b"again"
    panel.choose_strategy("seed")
    qtbot.waitUntil(lambda: window.status.labels["backend"].text().endswith("seed"), timeout=2000)


def test_a_listener_started_after_a_backend_switch_shows_and_stops(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    # start, stop, switch backend, start another: the issue 15 item 7 sequence
    panel = window.listener_panel
    listen(qtbot, window)
    qtbot.mouseClick(panel.buttons[panel.model.rows[0].id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)
    others = [b for b in window.runner.available_backends if b != window.runner.backend]
    if not others:
        pytest.skip("only one backend works here")
    window.loop_panel.confirm = lambda _question: True
    window.loop_panel.choose_backend(others[0])
    qtbot.waitUntil(
        lambda: window.loop_panel.backend_message.text() == f"running on {others[0]}",
        timeout=5000,
    )
    port = listen(qtbot, window)
    qtbot.waitUntil(
        lambda: window.latest is not None and bool(window.latest.listeners), timeout=2000
    )
    assert [r.port for r in panel.model.rows] == [port]
    combo = window.load_panel.target_combo
    assert [combo.itemText(i) for i in range(combo.count())] == [f"127.0.0.1:{port}"]
    qtbot.mouseClick(panel.buttons[panel.model.rows[0].id], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.model.rows == [], timeout=2000)


@pytest.mark.slow
def test_the_load_panel_runs_loopmon_load(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    listen(qtbot, window)
    load = window.load_panel
    load.clients_spin.setValue(5)
    load.duration_spin.setValue(2.5)
    load.mode_combo.setCurrentText("rr")
    load.start()
    qtbot.waitUntil(lambda: not load.running, timeout=15000)
    assert load.progress.get("round_trips", 0) > 0  # at least one progress line came
    assert load.summary is not None, load.log_view.toPlainText()
    assert load.summary["round_trips"] > 0
    assert load.summary["mismatches"] == 0
    assert "0 mismatches" in load.result_label.text()


CHILD = textwrap.dedent(
    """
    import argparse, os, sys, threading, time
    from loopmon.gui import app as gui_app

    def sockets():
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        return n

    qapp = gui_app.application()
    from PySide6.QtCore import QTimer
    before = sockets()
    held = {}
    build = gui_app.build

    def spy(args, source=None):
        held["w"] = w = build(args, source)
        return w

    gui_app.build = spy

    def watch():
        w = held.get("w")
        if w is None:
            return
        rows = w.listener_panel.model.rows
        if rows and "port" not in held:
            held["port"] = rows[0].port
            print("PORT", rows[0].port, flush=True)
        if w.latest is not None and len(w.latest.connections) >= 10 and "closing" not in held:
            held["closing"] = time.monotonic()
            w.close()

    timer = QTimer()
    timer.timeout.connect(watch)
    timer.start(20)
    args = argparse.Namespace(host="127.0.0.1", port=[0], backend=None, strategy="direct")
    code = gui_app.main(args)
    timer.stop()
    took = time.monotonic() - held["closing"]
    names = sorted(t.name for t in threading.enumerate())
    print("EXIT", code, f"{took:.3f}", sockets() - before, ",".join(names), flush=True)
    """
)


@pytest.mark.slow
def test_the_app_exits_within_two_seconds_under_load_leaving_nothing(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOPMON_SETTINGS=str(tmp_path / "s.ini"))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("PORT"), line + (child.stderr.read() if child.stderr else "")
        port = int(line.split()[1])
        stop = threading.Event()

        def flood() -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    while not stop.is_set():
                        s.sendall(b"y" * 8192)
                        if not s.recv(65536):
                            return
            except OSError:
                pass

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(12)]
        for t in threads:
            t.start()
        out, err = child.communicate(timeout=30)
        stop.set()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    exit_line = next(x for x in out.splitlines() if x.startswith("EXIT"))
    _, code, took, sockets_left, threads_left = exit_line.split()
    assert code == "0"
    assert float(took) < 2.0
    assert int(sockets_left) == 0
    assert threads_left == "MainThread"
