"""The window on a RemoteSource, against a real producer on loopback (an echo server,
telemetry and a publisher on an IOLoop thread, as serve runs them): the strip names the
producer and the link, the backend switch is greyed out, commands go by connection id, a
producer that takes none gets no controls, and closing the window never stops the producer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from producers import TOKEN, Producer
from PySide6.QtCore import Qt

from loopmon.gui.main_window import MainWindow
from loopmon.gui.settings import open_settings
from loopmon.sources.remote import RemoteSource
from loopmon.wire.messages import CloseConnection

pytestmark = pytest.mark.gui


def attach(qtbot: Any, producer: Producer, tmp_path: Path) -> MainWindow:
    source = RemoteSource("127.0.0.1", producer.port, TOKEN, backoff=(0.02, 0.1))
    source.start()
    win = MainWindow(source, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.0)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.latest is not None, timeout=5000)
    return win


@pytest.fixture
def producer() -> Iterator[Producer]:
    p = Producer().start()
    yield p
    p.stop()


@pytest.fixture
def window(qtbot: Any, producer: Producer, tmp_path: Path) -> Iterator[MainWindow]:
    win = attach(qtbot, producer, tmp_path)
    yield win
    win.close()
    assert win.source is not None
    win.source.mailbox.close()


def test_the_strip_names_the_producer_and_the_link(
    qtbot: Any, window: MainWindow, producer: Producer
) -> None:
    labels = window.status.labels
    qtbot.waitUntil(lambda: labels["link"].text() == "connected", timeout=2000)
    assert labels["producer"].isVisible() and labels["link"].isVisible()
    assert labels["producer"].text().startswith("loopmon serve · pid ")
    assert labels["producer"].text().endswith(" · serve")
    assert "session s1" in labels["producer"].toolTip()
    assert f"loopmon serve at 127.0.0.1:{producer.port} — " in window.windowTitle()


def test_the_backend_switch_is_greyed_out_and_says_why(qtbot: Any, window: MainWindow) -> None:
    combo = window.loop_panel.backend_combo
    qtbot.waitUntil(lambda: not combo.isEnabled(), timeout=2000)
    assert "loopmon serve (serve) does not switch backends" in combo.toolTip()
    assert window.loop_panel.strategy_combo.isEnabled()  # serve's hello lists set_strategy
    assert window.listener_panel.start_button.isEnabled()


def test_start_a_listener_and_close_a_connection_by_id_from_the_window(
    qtbot: Any, window: MainWindow, producer: Producer
) -> None:
    panel = window.listener_panel
    panel.set_host_port("127.0.0.1", "0")
    qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "listening on" in panel.start_message.text(), timeout=5000)
    qtbot.waitUntil(lambda: bool(panel.model.rows), timeout=2000)
    port = panel.model.rows[0].port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"hi")
        assert client.recv(2) == b"hi"
        model = window.table.model
        qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=2000)
        fd, key = model.fd_at(0), model.key_at(0)
        window.table.select_keys([key])
        qtbot.mouseClick(window.table.close_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: window.table.message.text() == f"closed fd {fd}", timeout=5000)
        assert client.recv(1) == b""  # EOF
    assert CloseConnection(key[1]) in producer.calls  # the id went over the wire, not the fd
    qtbot.waitUntil(lambda: model.rowCount() == 1 and model.ghost_at(0) is not None, timeout=2000)
    button = panel.buttons[panel.model.rows[0].id]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "stopped" in panel.stop_message.text(), timeout=5000)


def test_a_producer_that_takes_no_commands_gets_no_controls(qtbot: Any, tmp_path: Path) -> None:
    producer = Producer(kind="run", program="app.py", commands=()).start()
    win = attach(qtbot, producer, tmp_path)
    try:
        panel = win.listener_panel
        qtbot.waitUntil(lambda: not panel.start_button.isEnabled(), timeout=2000)
        assert "app.py (run) takes no commands" in panel.start_button.toolTip()
        assert "takes no commands" in panel.start_message.text()  # said, not only hovered
        assert not win.loop_panel.strategy_combo.isEnabled()
        assert "takes no commands" in win.loop_panel.strategy_combo.toolTip()
        assert not win.table.close_button.isEnabled()
        assert "takes no commands" in win.table.close_button.toolTip()
        assert win.status.labels["producer"].text().endswith(" · run")
    finally:
        win.close()
        assert win.source is not None
        win.source.mailbox.close()
        producer.stop()


def test_a_restart_shows_reconnecting_then_a_new_session(qtbot: Any, tmp_path: Path) -> None:
    first = Producer(session="s1").start()
    win = attach(qtbot, first, tmp_path)
    link = win.status.labels["link"]
    try:
        first.stop()
        qtbot.waitUntil(lambda: link.text() == "reconnecting…", timeout=5000)
        assert not win.listener_panel.start_button.isEnabled()  # nothing to send it to
        assert "not connected" in win.listener_panel.start_button.toolTip()
        second = Producer(port=first.port, session="s2").start()
        try:
            qtbot.waitUntil(lambda: win.timeline.session == "s2", timeout=5000)
            qtbot.waitUntil(lambda: link.text() == "connected", timeout=2000)
            assert [m.session for m in win.timeline.sessions] == ["s1", "s2"]
            assert win.listener_panel.start_button.isEnabled()
            assert win.listener_panel.start_message.text() == ""  # the old session's went
        finally:
            second.stop()
    finally:
        win.close()
        assert win.source is not None
        win.source.mailbox.close()


def test_a_command_in_flight_when_the_link_drops_says_link_lost(qtbot: Any, tmp_path: Path) -> None:
    def dies(_server: Any, publisher: Any) -> Any:
        return lambda _call: publisher.close("the producer died mid-command")

    producer = Producer(handler=dies).start()
    win = attach(qtbot, producer, tmp_path)
    try:
        panel = win.listener_panel
        qtbot.waitUntil(panel.start_button.isEnabled, timeout=2000)
        panel.set_host_port("127.0.0.1", "0")
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(
            lambda: panel.start_message.text() == "link lost, outcome unknown", timeout=5000
        )
    finally:
        win.close()
        assert win.source is not None
        win.source.mailbox.close()
        producer.stop()


def test_closing_the_window_never_stops_the_producer(
    qtbot: Any, producer: Producer, tmp_path: Path
) -> None:
    win = attach(qtbot, producer, tmp_path)
    win.close()
    assert win.source is not None
    win.source.mailbox.close()
    assert producer.alive
    again = RemoteSource("127.0.0.1", producer.port, TOKEN)
    again.start()
    try:
        assert again.wait_connected(5)
    finally:
        again.stop()
        again.mailbox.close()


def test_a_recording_source_gets_no_controls_and_says_so(qtbot: Any, tmp_path: Path) -> None:
    """What sources/recording.py will give the window: link "recording", no commands."""
    from fakes import FakeRunner, connection

    from loopmon.snapshot import ProducerInfo

    fake = FakeRunner()
    fake.link = "recording"
    fake.where = "/tmp/run.lmrec"
    fake.commands = frozenset()
    fake.can_switch_backend = False
    fake.producer = ProducerInfo("serve", "loopmon serve", 42, "epoll", fake.session, 0.0)
    fake.start()
    win = MainWindow(fake, settings=open_settings(tmp_path / "s.ini"), view_interval_s=0.0)
    qtbot.addWidget(win)
    try:
        fake.connections = [connection(7)]
        fake.publish()
        qtbot.waitUntil(lambda: win.latest is not None, timeout=2000)
        assert win.status.labels["link"].text() == "from a recording"
        assert win.status.labels["producer"].text() == "loopmon serve · pid 42 · serve"
        why = "a recording takes no commands"
        assert why in win.listener_panel.start_button.toolTip()
        assert why in win.loop_panel.backend_combo.toolTip()
        assert why in win.table.close_button.toolTip()
        assert "loopmon serve at /tmp/run.lmrec" in win.windowTitle()
    finally:
        win.close()
        fake.mailbox.close()
