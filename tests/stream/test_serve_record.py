"""``loopmon serve --record FILE`` as a real process: what ``replay --json`` prints of the file
is what ``attach --json`` saw live; a name taken is one line and nothing served; ``--force``;
``--record-max`` stops the recording, never the echo; the snapshot rate it implies."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from processes import ROOT, Attach, Serve, command, echo_round, env, free_port

from loopmon.cli import build_parser
from loopmon.cli.serve import Refused, telemetry_hz


def replay_json(path: Path) -> tuple[list[dict[str, Any]], str]:
    done = subprocess.run(
        command("replay", "--json", str(path)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    # What a consumer was told it lost is the consumer's own, not the producer's.
    return {k: v for k, v in obj.items() if k != "dropped_frames"}


def test_replay_json_of_the_recording_is_what_attach_json_saw(tmp_path: Path) -> None:
    path = tmp_path / "session.lmrec"
    server = Serve("--record", str(path))
    try:
        assert server.lines[3] == f"recording to {path}"
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        watcher = Attach(server.telemetry, "--token-file", str(server.token_file))
        watcher.until(lambda o: True)
        live: list[dict[str, Any]] = []
        socks = [socket.create_connection(("127.0.0.1", server.echo_port)) for _ in range(3)]
        for i in range(20):
            for sock in socks:
                assert echo_round(sock, bytes([i]) * 1000) == bytes([i]) * 1000
        socks.pop().close()  # a close, with its reason, in some object's "closed"
        live.append(watcher.until(lambda o: bool(o["closed"])))
        for sock in socks:
            echo_round(sock, b"x" * 100)
        live.append(
            watcher.until(lambda o: o["connections"] and o["connections"][0]["bytes_in"] > 20_000)
        )
        for _ in range(10):
            live.append(watcher.next())
        watcher.stop()
        for sock in socks:
            sock.close()
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    replayed, said = replay_json(path)
    assert said == ""  # a clean close: an index, nothing damaged
    by_seq = {obj["seq"]: obj for obj in replayed}
    assert [o["seq"] for o in replayed] == sorted(by_seq)  # every one, in order
    assert len(replayed) == replayed[-1]["seq"] - replayed[0]["seq"] + 1
    for obj in live:
        assert comparable(by_seq[obj["seq"]]) == comparable(obj)
    assert any(obj["closed"] for obj in replayed)


def test_a_file_that_exists_is_one_line_exit_2_and_nothing_served(tmp_path: Path) -> None:
    path = tmp_path / "taken.lmrec"
    path.write_bytes(b"someone else's")
    port = free_port()
    done = subprocess.run(
        command("serve", "--port", str(port), "--quiet", "--record", str(path)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env(),
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"loopmon serve: {path} exists: choose another name, or --force to replace it"
    ]
    assert path.read_bytes() == b"someone else's"
    with socket.socket() as probe:  # nothing listened: the port is still free
        probe.bind(("127.0.0.1", port))


def test_force_replaces_the_file_and_makes_it_0600(tmp_path: Path) -> None:
    path = tmp_path / "old.lmrec"
    path.write_bytes(b"x" * 100_000)
    path.chmod(0o644)
    server = Serve("--record", str(path), "--force")
    try:
        watcher = Attach(server.telemetry, "--token-file", str(server.token_file), "--count", "3")
        seqs = [watcher.next()["seq"] for _ in range(3)]
        assert watcher.proc.wait(timeout=10) == 0
        assert server.stop(signal.SIGINT) == 0
    finally:
        server.kill()
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    replayed, said = replay_json(path)
    assert said == ""
    assert set(seqs) <= {obj["seq"] for obj in replayed}


def test_record_max_stops_the_recording_with_its_message_and_the_echo_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "small.lmrec"
    server = Serve("--record", str(path), "--record-max", "3K")
    try:
        with socket.create_connection(("127.0.0.1", server.echo_port)) as sock:
            line = server.err.next()
            while line is not None and "recording stopped" not in line:
                line = server.err.next()
            assert line is not None
            assert line.startswith(
                "loopmon serve: recording stopped at its size limit (3,072 bytes)"
            )
            for i in range(5):
                assert echo_round(sock, bytes([i]) * 5000) == bytes([i]) * 5000
        assert server.stop(signal.SIGTERM) == 0
    finally:
        server.kill()
    size = path.stat().st_size
    assert size <= 3072 + 4096  # the records, then the index on top
    replayed, said = replay_json(path)
    assert replayed
    assert said == ""


def test_force_and_record_max_need_record() -> None:
    for extra in (["--force"], ["--record-max", "1M"], ["--record-hz", "5"]):
        args = build_parser().parse_args(["serve", *extra])
        with pytest.raises(Refused, match="needs --record FILE"):
            telemetry_hz(args)


@pytest.mark.parametrize(
    ("extra", "hz"),
    [
        (["--record", "f", "--quiet"], 25.0),
        (["--record", "f"], 25.0),
        (["--record", "f", "--record-hz", "5"], 5.0),
        (["--record", "f", "--telemetry-hz", "10"], 10.0),
        (["--record", "f", "--telemetry", "127.0.0.1:0", "--record-hz", "5"], 5.0),
        ([], 2.0),
    ],
)
def test_recording_takes_snapshots_at_25_hz_unless_told(extra: list[str], hz: float) -> None:
    assert telemetry_hz(build_parser().parse_args(["serve", *extra])) == hz


def test_record_hz_and_telemetry_hz_together_are_refused() -> None:
    args = build_parser().parse_args(
        ["serve", "--record", "f", "--record-hz", "5", "--telemetry-hz", "10"]
    )
    with pytest.raises(Refused, match="not both"):
        telemetry_hz(args)
