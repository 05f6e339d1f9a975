"""``loopmon attach --record FILE``: the recording of what attach decoded, read back; the name
taken before connecting; a restarted producer is a hello record."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import subprocess
from pathlib import Path

from processes import ROOT, Attach, Serve, command, env
from stream_helpers import INFO, snapshot
from test_serve_record import comparable, replay_json

from loopmon.cli.attach import AttachRecording
from loopmon.wire.recording import RecordingReader


def test_attach_json_record_replays_as_attach_printed(tmp_path: Path) -> None:
    path = tmp_path / "attached.lmrec"
    server = Serve()
    try:
        watcher = Attach(
            server.telemetry, "--token-file", str(server.token_file), "--record", str(path)
        )
        live = [watcher.next() for _ in range(15)]
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        assert watcher.stop() == 0
    finally:
        server.kill()
    replayed, said = replay_json(path)
    assert said == ""
    by_seq = {obj["seq"]: obj for obj in replayed}
    assert live[0]["seq"] == replayed[0]["seq"]
    for obj in live:
        assert comparable(by_seq[obj["seq"]]) == comparable(obj)


def test_attach_refuses_a_file_that_exists_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "taken.lmrec"
    path.write_text("mine")
    done = subprocess.run(
        command("attach", "--json", "--record", str(path), "127.0.0.1:9"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env(LOOPMON_TOKEN="00" * 32),
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"loopmon attach: {path} exists: choose another name, or --force to replace it"
    ]
    assert path.read_text() == "mine"


def test_a_restarted_producer_is_a_hello_record(tmp_path: Path) -> None:
    path = tmp_path / "two.lmrec"
    recording = AttachRecording(str(path), False, None, "test", io.StringIO())
    second = dataclasses.replace(INFO, session="sess-2", pid=INFO.pid + 1)
    for seq in (1, 2):
        recording.take(snapshot(seq, bump=seq), INFO)
    for seq in (1, 2):
        recording.take(snapshot(seq, session="sess-2", bump=seq), second)
    recording.close()
    with RecordingReader(path) as reader:
        assert [info.session for _, info in reader.hellos] == [INFO.session, "sess-2"]
        got = [item.snapshot for item in reader.snapshots()]
    assert got == [snapshot(1, bump=1), snapshot(2, bump=2)] + [
        snapshot(s, session="sess-2", bump=s) for s in (1, 2)
    ]


def test_nothing_received_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "none.lmrec"
    recording = AttachRecording(str(path), False, None, "test", io.StringIO())
    assert path.exists()
    recording.close()
    assert not path.exists()
