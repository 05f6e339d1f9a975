"""Real programs, run as subprocesses plainly and under ``loopmon run``: each behaves and
prints the same, and what the instrument measured matches what a real client did."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.instrument.helpers import PROGRAMS, ROOT, Run, load, rows_of, run, wait_for

pytestmark = pytest.mark.slow


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def echo(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def matching_snapshot(dump: Path, peers: set[str]) -> dict[str, Any]:
    """The first snapshot whose connection rows include every one of ``peers`` as open."""

    def found() -> dict[str, Any] | None:
        for snapshot in load(dump):
            open_peers = {
                r["peer"] for r in rows_of(snapshot, "connection") if r["state"] == "open"
            }
            if peers <= open_peers:
                return snapshot
        return None

    return wait_for(found)  # type: ignore[no-any-return]


def drive_lines(port: int, dump: Path | None) -> dict[str, Any]:
    """Three clients echo a line; (under loopmon) the rows are read while they are open;
    one line blocks the loop; one line stops the server."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            assert echo(c, f"hello {i}\n".encode()) == f"hello {i}\n".encode()
        peers = {address(c) for c in clients}
        snapshot = matching_snapshot(dump, peers) if dump is not None else None
        assert echo(clients[0], b"block\n") == b"block\n"
        assert echo(clients[1], b"quit\n") == b"quit\n"
        return {"peers": peers, "snapshot": snapshot}
    finally:
        for c in clients:
            c.close()


def both(argv: list[str], drive: Any, tmp_path: Path, **kw: Any) -> tuple[Run, Run]:
    (tmp_path / "plain").mkdir()
    (tmp_path / "lm").mkdir()
    plain = run(argv, drive, False, tmp_path / "plain", **kw)
    watched = run(argv, drive, True, tmp_path / "lm", **kw)
    return plain, watched


def same_behaviour(plain: Run, watched: Run, first_line_varies: bool = True) -> None:
    assert watched.status == plain.status
    # The first line is the port, which the kernel picks anew each run.
    p_out, w_out = plain.stdout, watched.stdout
    if first_line_varies:
        p_out, w_out = p_out.split(b"\n", 1)[1], w_out.split(b"\n", 1)[1]
    assert w_out == p_out
    assert watched.program_stderr() == plain.program_stderr()


def check_rows(watched: Run, read_events: int = 1) -> None:
    snapshot = watched.driven["snapshot"]
    peers = watched.driven["peers"]
    listeners = rows_of(snapshot, "listener")
    assert len(listeners) == 1
    listener = listeners[0]
    rows = [r for r in rows_of(snapshot, "connection") if r["peer"] in peers]
    assert len(rows) == len(peers)
    local = {r["local"] for r in rows}
    assert local == {listener["local"]}
    for r in rows:
        assert r["mask"] == 1  # READ: idle connections, nothing queued
        assert r["listener_id"] == listener["id"]
        assert r["ready_read"] >= read_events
        assert r["bytes_in"] is None and r["queue_bytes"] is None  # a selector cannot see them
        assert r["loop"] == 1
    ids = [r["id"] for r in snapshot["connections"]]
    assert len(ids) == len(set(ids))


def check_stall(watched: Run) -> None:
    stalls = watched.events("stall")
    assert len(stalls) == 1, stalls
    assert "blocking_handler" in stalls[0]["text"]
    assert "blocking_handler" in stalls[0]["detail"]
    assert "cli/run.py" not in stalls[0]["detail"]  # the program's stack, not loopmon's
    assert any(
        b"blocked" in line and b"blocking_handler" in line for line in watched.stderr.splitlines()
    )


def test_streams_echo_server(tmp_path: Path) -> None:
    plain, watched = both([str(PROGRAMS / "streams_echo.py")], drive_lines, tmp_path)
    same_behaviour(plain, watched)
    assert plain.status == 3
    assert b"factory kept: True" in watched.stdout and b"factory made True" in watched.stdout
    check_rows(watched)
    check_stall(watched)
    tasks = watched.driven["snapshot"]["tasks"]
    coros = sorted(t["coro"] for t in tasks)
    assert coros.count("serve") == 3 and "main" in coros
    assert all(t["state"] == "pending" and t["age_s"] >= 0 for t in tasks)
    assert any("readline" in t["waiting_at"] for t in tasks if t["coro"] == "serve")


def test_protocol_echo_server_as_module(tmp_path: Path) -> None:
    plain, watched = both(["-m", "tests.instrument.programs.protocol_echo"], drive_lines, tmp_path)
    same_behaviour(plain, watched)
    assert plain.status == 0
    check_rows(watched)
    check_stall(watched)
    last = watched.snapshots[-1]
    assert [loop["alive"] for loop in last["loops"]] == [False]  # closed by the program


def drive_http(port: int, dump: Path | None) -> dict[str, Any]:
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(2)]
    try:
        for c in conns:
            c.request("GET", "/")
            assert c.getresponse().read() == b"hello\n"
        peers = {address(c.sock) for c in conns}  # type: ignore[arg-type]
        snapshot = matching_snapshot(dump, peers) if dump is not None else None
        conns[0].request("GET", "/block")
        assert conns[0].getresponse().read() == b"blocked\n"
        conns[1].request("GET", "/quit")
        assert conns[1].getresponse().read() == b"bye\n"
        return {"peers": peers, "snapshot": snapshot}
    finally:
        for c in conns:
            c.close()


def test_tornado_app(tmp_path: Path) -> None:
    pytest.importorskip("tornado")
    plain, watched = both([str(PROGRAMS / "tornado_app.py")], drive_http, tmp_path)
    same_behaviour(plain, watched)
    # Tornado reads a new connection's first request inline, before any readiness: the
    # rows may rightly count no read event yet.
    check_rows(watched, read_events=0)
    check_stall(watched)


SEED = ROOT / "tests" / "seed_demo.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_seed_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The article's demo, on a port of its own (its hard-coded 10000 may be taken on a
    shared machine): the one change to its text."""
    port = free_port()
    text = SEED.read_text()
    assert '("localhost", 10000)' in text
    demo = tmp_path / "seed_demo.py"
    demo.write_text(text.replace('("localhost", 10000)', f'("localhost", {port})'))

    def wait_port(proc: subprocess.Popen[bytes], first: list[bytes]) -> int:
        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_for(up)
        first.append(b"")
        return port

    def drive(_: int, dump: Path | None) -> dict[str, Any]:
        # One client at a time, so the demo's prints come in one order in both runs.
        for i in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(f"seed {i}".encode())
                assert c.recv(1024) == f"seed {i}".encode()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            peers = {address(c) for c in clients}
            snapshot = matching_snapshot(dump, peers) if dump is not None else None
            return {"peers": peers, "snapshot": snapshot}
        finally:
            for c in clients:
                c.close()

    def stop(proc: subprocess.Popen[bytes]) -> None:
        # The demo has no way out but a signal; wait until it printed both closes first.
        proc.send_signal(signal.SIGTERM)

    from tests.instrument import helpers

    monkeypatch.setattr(helpers, "read_port", wait_port)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # it dies of SIGTERM: nothing is flushed
    plain, watched = both([str(demo)], drive, tmp_path, stop=stop)
    assert plain.status == watched.status == -signal.SIGTERM
    assert watched.program_stderr() == plain.program_stderr()
    assert b"received" in plain.stdout

    # The demo prints as it goes, and a probe's close may print before or after the next
    # client's connect; what the sequential clients sent and got back is in one order.
    def echoes(out: bytes) -> list[bytes]:
        return [line for line in out.splitlines() if b"received" in line or b"sending" in line]

    assert len(echoes(plain.stdout)) == 6
    assert echoes(watched.stdout) == echoes(plain.stdout)
    snapshot = watched.driven["snapshot"]
    rows = [r for r in rows_of(snapshot, "connection") if r["peer"] in watched.driven["peers"]]
    assert len(rows) == 2
    assert {r["local"] for r in rows} == {f"127.0.0.1:{port}"}
    assert all(r["mask"] & 1 for r in rows)
    assert [r["kind"] for r in rows_of(snapshot, "listener")] == ["listener"]
    assert snapshot["loops"][0]["backend"] in ("epoll", "poll", "select", "kqueue")
