"""The pieces under the window: the bridge, histories, raster colours, load panel, resources.
The Qt-free models' own tests are in tests/gui/model."""

from __future__ import annotations

import configparser
import sys
import threading
from pathlib import Path

import pytest
from fakes import FakeMailbox, event, figures, listeners, snapshot

from loopmon.gui import resources
from loopmon.gui.bridge import Batch, MailboxBridge
from loopmon.gui.history import HealthHistory, SeriesRing
from loopmon.gui.load_panel import LoadPanel
from loopmon.gui.settings import ENV_VAR, open_settings

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent


# -- bridge -------------------------------------------------------------------------------
def test_bridge_emits_one_batch_per_wake_not_per_event(qtbot) -> None:
    mailbox = FakeMailbox()
    bridge = MailboxBridge(mailbox)
    batches: list[Batch] = []
    bridge.batch.connect(batches.append)
    snap = snapshot()

    def producer() -> None:  # the loop thread: many posts before the GUI looks
        for i in range(500):
            mailbox.post(snap if i == 499 else None, [event("connect", fd=i)])

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: bool(batches), timeout=2000)
    assert len(batches) == 1
    assert len(batches[0].events) == 500
    assert batches[0].snapshot is snap
    bridge.close()
    mailbox.close()


def test_bridge_works_with_the_real_mailbox(qtbot) -> None:
    from loopmon.mailbox import Mailbox

    mailbox = Mailbox(log_size=100)
    bridge = MailboxBridge(mailbox)
    batches: list[Batch] = []
    bridge.batch.connect(batches.append)
    snaps = [snapshot(seq=i) for i in range(1, 51)]

    def producer() -> None:
        for snap in snaps:
            mailbox.post(snap, [event("connect", fd=snap.seq)])

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()
    # the last snapshot (the mailbox hands on what the replaced ones carried: a new record)
    qtbot.waitUntil(
        lambda: bool(batches) and getattr(batches[-1].snapshot, "seq", 0) == 50, timeout=2000
    )
    assert sum(len(b.events) for b in batches) == 50  # nothing lost, in few batches
    assert len(batches) <= 2
    bridge.close()
    mailbox.close()


def test_bridge_reports_drops_and_ignores_empty_wakes(qtbot) -> None:
    mailbox = FakeMailbox(log_size=10)
    bridge = MailboxBridge(mailbox)
    batches: list[Batch] = []
    bridge.batch.connect(batches.append)
    mailbox.poke()  # a command finished, nothing to show
    qtbot.waitUntil(lambda: mailbox.takes == 1, timeout=2000)
    assert batches == []
    mailbox.post(None, [event("close", fd=i) for i in range(25)])
    qtbot.waitUntil(lambda: bool(batches), timeout=2000)
    assert (len(batches[0].events), batches[0].dropped) == (10, {"close": 15})
    bridge.close()
    mailbox.close()


def test_bridge_answers_a_command_in_the_gui_thread(qtbot) -> None:
    from concurrent.futures import Future

    mailbox = FakeMailbox()
    bridge = MailboxBridge(mailbox)
    answers: list[tuple[object, object, str]] = []
    ok: Future[int] = Future()
    bad: Future[int] = Future()
    bridge.track(ok, lambda r, e: answers.append((r, e, threading.current_thread().name)))
    bridge.track(bad, lambda r, e: answers.append((r, str(e), threading.current_thread().name)))

    def loop_thread() -> None:
        ok.set_result(7)
        bad.set_exception(OSError("address already in use"))
        mailbox.poke()

    threading.Thread(target=loop_thread).start()
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=2000)
    main = threading.main_thread().name
    assert answers == [(7, None, main), (None, "address already in use", main)]
    assert bridge.pending == 0
    bridge.close()
    mailbox.close()


# -- histories ------------------------------------------------------------------------------
def test_series_ring_keeps_the_newest_in_order() -> None:
    ring = SeriesRing(4, ("t", "v"))
    for i in range(10):
        ring.append((i, i * 10))
    assert ring.column("t").tolist() == [6, 7, 8, 9]
    assert ring.column("v").tolist() == [60, 70, 80, 90]
    assert ring.last("v") == 90


def test_health_rates_come_from_totals_between_received_snapshots() -> None:
    health = HealthHistory()
    health.record(snapshot(seq=1, taken_at=10.0, totals=figures(span_s=10.0, events=100)))
    # seq 2..4 were replaced in the mailbox before the window took them: nothing is lost
    rates = health.record(
        snapshot(
            seq=5, taken_at=12.0, totals=figures(span_s=12.0, events=4100, busy_s=3.0, poll_s=9.0)
        )
    )
    assert rates.events_per_s == pytest.approx(2000.0)
    assert health.ring.column("events")[-1] == pytest.approx(2000.0)


# -- load panel -----------------------------------------------------------------------------
def fake_load_panel(qtbot) -> LoadPanel:  # type: ignore[no-untyped-def]
    panel = LoadPanel(program=[sys.executable, str(HERE / "fake_load.py")])
    qtbot.addWidget(panel)
    panel.set_targets(listeners(10000))
    return panel


def test_load_panel_builds_the_command(qtbot) -> None:
    panel = fake_load_panel(qtbot)
    panel.clients_spin.setValue(50)
    panel.size_spin.setValue(4096)
    panel.mode_combo.setCurrentText("churn")
    panel.duration_spin.setValue(2.5)
    args = panel.arguments()
    assert args[1:] == [
        "--host", "127.0.0.1", "--port", "10000", "--clients", "50", "--size", "4096",
        "--mode", "churn", "--duration", "2.5", "--json", "--progress", "jsonl",
    ]  # fmt: skip


def test_load_panel_default_command_is_loopmon_load() -> None:
    from loopmon.gui.load_panel import load_command

    assert load_command() == [sys.executable, "-m", "loopmon", "load"]


def test_load_panel_shows_progress_and_summary(qtbot) -> None:
    panel = fake_load_panel(qtbot)
    panel.duration_spin.setValue(0.5)
    panel.start()
    assert panel.running and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: "round trips/s" in panel.live_label.text(), timeout=5000)
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert panel.summary is not None and panel.summary["mismatches"] == 0
    assert "round trips" in panel.result_label.text()
    assert "0 mismatches" in panel.result_label.text()
    assert "d03030" not in panel.result_label.styleSheet()
    assert "fake load: starting" in panel.log_view.toPlainText()  # non-JSON stderr
    assert panel.start_button.isEnabled()


def test_load_panel_marks_mismatches(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LOAD_MISMATCHES", "3")
    panel = fake_load_panel(qtbot)
    panel.duration_spin.setValue(0.5)
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=10000)
    assert "3 mismatches" in panel.result_label.text()
    assert "d03030" in panel.result_label.styleSheet()


def test_load_panel_stop_ends_the_process(qtbot) -> None:
    panel = fake_load_panel(qtbot)
    panel.duration_spin.setValue(600)
    panel.start()
    qtbot.waitUntil(lambda: bool(panel.progress), timeout=5000)
    panel.stop()
    qtbot.waitUntil(lambda: not panel.running, timeout=5000)
    assert panel.result_label.text() == "stopped"


def test_load_panel_without_a_target_refuses(qtbot) -> None:
    panel = LoadPanel(program=[sys.executable, str(HERE / "fake_load.py")])
    qtbot.addWidget(panel)
    panel.start()
    assert not panel.running
    assert "no target: start a listener" in panel.result_label.text()
    assert not panel.start_button.isEnabled()


def test_load_target_that_stops_is_said_and_run_waits_for_a_choice(qtbot) -> None:
    panel = fake_load_panel(qtbot)
    panel.set_targets(listeners(10000, 10001))
    panel.target_combo.setCurrentText("127.0.0.1:10001")
    assert panel.start_button.isEnabled()
    panel.set_targets(listeners(10000))  # 10001 stopped: never retarget to 10000 silently
    assert panel.target_combo.currentText() == ""
    assert not panel.start_button.isEnabled()
    assert panel.target_message.text() == "127.0.0.1:10001 stopped listening: choose a target"
    assert panel.target_message.isVisibleTo(panel)
    panel.start()
    assert not panel.running
    panel.set_targets(listeners(10000, 10002))  # a new listener is not chosen for the user
    assert panel.target_combo.currentText() == ""
    assert not panel.start_button.isEnabled()
    panel.target_combo.setCurrentIndex(1)  # the user chooses
    assert panel.target_combo.currentText() == "127.0.0.1:10002"
    assert panel.start_button.isEnabled()
    assert panel.target_message.text() == ""
    assert not panel.target_message.isVisibleTo(panel)  # no empty row while all is well


def test_a_lost_target_whose_address_listens_again_is_the_target_again(qtbot) -> None:
    # A backend switch stops the listeners and reopens them on the same addresses.
    panel = fake_load_panel(qtbot)
    panel.set_targets(listeners(10000, 10001))
    panel.target_combo.setCurrentText("127.0.0.1:10001")
    panel.set_targets(())
    assert not panel.start_button.isEnabled()
    panel.set_targets(listeners(10000, 10001))
    assert panel.target_combo.currentText() == "127.0.0.1:10001"
    assert panel.start_button.isEnabled()
    assert panel.target_message.text() == ""


@pytest.mark.parametrize(
    ("typed", "host", "port"),
    [
        ("127.0.0.1:5555", "127.0.0.1", 5555),
        ("[::1]:80", "::1", 80),
        ("localhost:9", "localhost", 9),
    ],
)
def test_load_target_can_be_typed(qtbot, typed: str, host: str, port: int) -> None:
    panel = fake_load_panel(qtbot)
    panel.target_combo.setEditText(typed)
    assert panel.start_button.isEnabled()
    args = panel.arguments()
    assert args[args.index("--host") + 1] == host
    assert args[args.index("--port") + 1] == str(port)
    panel.set_targets(listeners(10000, 10001))  # listeners coming and going leave it alone
    assert panel.target_combo.currentText() == typed


@pytest.mark.parametrize(
    ("typed", "why"),
    [("nonsense", "not HOST:PORT"), ("::1:80", "brackets"), ("127.0.0.1:0", "port 0")],
)
def test_a_bad_typed_target_disables_run_and_says_why(qtbot, typed: str, why: str) -> None:
    panel = fake_load_panel(qtbot)
    panel.target_combo.setEditText(typed)
    assert not panel.start_button.isEnabled()
    assert why in panel.target_message.text()


@pytest.mark.slow
def test_a_non_loopback_target_is_refused_with_loads_own_message(qtbot) -> None:
    panel = LoadPanel()  # the real ``loopmon load``
    qtbot.addWidget(panel)
    panel.target_combo.setEditText("192.0.2.1:9")  # TEST-NET-1: never this machine
    panel.duration_spin.setValue(1)
    panel.start()
    qtbot.waitUntil(lambda: not panel.running, timeout=20000)
    text = panel.result_label.text()
    assert text.startswith("loopmon load: 192.0.2.1") and "refus" in text
    assert "d03030" in panel.result_label.styleSheet()


def test_the_clients_box_says_its_limit_and_never_clamps_silently(qtbot) -> None:
    panel = fake_load_panel(qtbot)
    assert panel.client_limit <= 20_000  # less with a narrow local port range
    spin = panel.clients_spin
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin, "50000")
    assert spin.value() == 50_000  # what was typed, not 5000
    assert not panel.start_button.isEnabled()
    assert panel.clients_message.text().startswith(f"at most {panel.client_limit:,} clients")
    assert "local ports" in panel.clients_message.text()
    assert "at most" in spin.toolTip()
    spin.setValue(panel.client_limit)
    assert panel.start_button.isEnabled()
    assert panel.clients_message.text() == ""


# -- small things --------------------------------------------------------------------------
def test_settings_follow_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.ini"
    monkeypatch.setenv(ENV_VAR, str(path))
    s = open_settings()
    s.setValue("listener/port", "4242")
    s.sync()
    assert path.exists() and "4242" in path.read_text()


def test_resources_are_found_from_the_checkout() -> None:
    icon, desktop = resources.icon_path(), resources.desktop_entry_path()
    assert icon is not None and icon.read_text().lstrip().startswith("<?xml")
    assert desktop is not None
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(desktop)
    section = entry["Desktop Entry"]
    assert section["Type"] == "Application"
    assert section["Exec"] == "loopmon"
    assert section["Icon"] == "loopmon"


def test_resources_are_found_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = tmp_path / "loopmon"
    (installed / "_resources").mkdir(parents=True)
    (installed / "_resources" / "loopmon.svg").write_text("<svg/>")
    monkeypatch.setattr(resources, "_PACKAGE", installed)
    assert resources.icon_path() == installed / "_resources" / "loopmon.svg"
    assert resources.desktop_entry_path() is None  # not in this fake install


def test_the_icon_renders(qtbot) -> None:
    from PySide6.QtGui import QIcon

    path = resources.icon_path()
    assert path is not None
    assert not QIcon(str(path)).pixmap(64, 64).isNull()


def test_dead_code_stays_gone() -> None:
    # Issue 15 item 18: nothing used these; the runner keeps one mailbox across a restart, so
    # the bridge never re-attaches.
    from loopmon.gui.bridge import MailboxBridge
    from loopmon.gui.connection_model import ConnectionModel
    from loopmon.gui.connection_table import ConnectionTable
    from loopmon.gui.listener_panel import ListenerPanel

    assert not hasattr(MailboxBridge, "attach") and not hasattr(MailboxBridge, "detach")
    assert not hasattr(ConnectionModel, "filter_text")
    assert not hasattr(ConnectionTable, "column_titles")
    assert not hasattr(ListenerPanel, "alignment_hint")
