"""``run_attached``, the window ``loopmon attach`` opens, run whole in a child process beside a
producer of its own (an echo server, telemetry and a publisher on an IOLoop thread): it
connects, names the producer, and closing the window detaches, leaving the producer running."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loopmon.gui.app import attach_address

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import argparse, sys, time
    sys.path.insert(0, {tests!r})
    from producers import TOKEN, Producer
    from loopmon.gui import app as gui_app
    from PySide6.QtCore import QTimer

    producer = Producer().start()
    qapp = gui_app.application()
    held = {{}}
    build = gui_app.build

    def spy(args, source=None):
        held["w"] = w = build(args, source)
        return w

    gui_app.build = spy

    def watch():
        w = held.get("w")
        if w is None or "closing" in held:
            return
        if w.latest is not None and w.status.labels["link"].text() == "connected":
            held["producer"] = w.status.labels["producer"].text()
            held["closing"] = time.monotonic()
            w.close()

    timer = QTimer()
    timer.timeout.connect(watch)
    timer.start(20)
    args = argparse.Namespace(address=("127.0.0.1", producer.port), token=TOKEN)
    {before}
    code = gui_app.run_attached(args)
    took = time.monotonic() - held["closing"]
    print("EXIT", code, f"{{took:.3f}}", producer.alive, held["producer"], flush=True)
    {after}
    producer.stop()
    """
)
# attach --record: what attach.run passes (the recording made before the window opens).
RECORDING_BEFORE = (
    "from loopmon.cli.attach import AttachRecording; "
    "rec = AttachRecording({path!r}, False, None, 'test'); args.record_tap = rec.take"
)
RECORDING_AFTER = (
    "rec.close(); from loopmon.wire.recording import RecordingReader; "
    "r = RecordingReader({path!r}); "
    "print('FRAMES', len(list(r.snapshots())), r.indexed, r.producer.program, flush=True)"
)


@pytest.mark.slow
def test_run_attached_connects_and_closing_detaches(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOPMON_SETTINGS=str(tmp_path / "s.ini"))
    child = subprocess.run(
        [sys.executable, "-c", CHILD.format(tests=str(ROOT / "tests"), before="", after="")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    [line] = [ln for ln in child.stdout.splitlines() if ln.startswith("EXIT")]
    _, code, took, alive, producer = line.split(" ", 4)
    assert code == "0" and alive == "True"  # detached: the producer runs on
    assert producer.startswith("loopmon serve · pid ")
    assert float(took) < 2.0, line  # the client's thread is woken, not waited out


@pytest.mark.slow
def test_attach_record_in_the_window_records_what_the_client_decoded(tmp_path: Path) -> None:
    path = str(tmp_path / "window.lmrec")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LOOPMON_SETTINGS=str(tmp_path / "s.ini"))
    script = CHILD.format(
        tests=str(ROOT / "tests"),
        before=RECORDING_BEFORE.format(path=path),
        after=RECORDING_AFTER.format(path=path),
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    [line] = [ln for ln in child.stdout.splitlines() if ln.startswith("FRAMES")]
    _, frames, indexed, program = line.split(" ", 3)
    assert int(frames) >= 1 and indexed == "True"
    assert program == "loopmon serve"


@pytest.mark.parametrize(
    ("given", "address"),
    [
        ({"address": ("127.0.0.1", 9)}, ("127.0.0.1", 9)),
        ({"target": "127.0.0.1:8765"}, ("127.0.0.1", 8765)),
        ({"target": "[::1]:8765"}, ("::1", 8765)),
        ({"host": "::1", "port": 7}, ("::1", 7)),
    ],
)
def test_the_address_attach_passes(given: dict[str, object], address: tuple[str, int]) -> None:
    assert attach_address(argparse.Namespace(**given)) == address


def test_a_target_that_is_not_host_port_is_refused() -> None:
    with pytest.raises(ValueError, match="not HOST:PORT"):
        attach_address(argparse.Namespace(target="localhost"))
