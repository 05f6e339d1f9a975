"""LoopRunner: a loop thread with an echo server, commands in, snapshots out. No Qt."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from loopmon.echo import ListenerError
from loopmon.runner import LoopNotRunning, LoopRunner
from loopmon.snapshot import Snapshot
from tests.loop_helpers import BACKENDS


@pytest.fixture
def runner() -> Iterator[LoopRunner]:
    r = LoopRunner(telemetry_hz=50)
    r.start()
    yield r
    assert r.stop(5.0)
    r.mailbox.close()


def next_snapshot(runner: LoopRunner, predicate: object = None, timeout: float = 5.0) -> Snapshot:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.mailbox.wait(0.2):
            snap, _, _ = runner.mailbox.take()
            if snap is not None and (predicate is None or predicate(snap)):  # type: ignore[operator]
                return snap
    raise AssertionError("no matching snapshot in time")


def echo_once(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_snapshots_arrive_at_the_cadence(runner: LoopRunner) -> None:
    seqs = []
    started = time.monotonic()
    while len(seqs) < 10:
        seqs.append(next_snapshot(runner).seq)
    elapsed = time.monotonic() - started
    assert seqs == sorted(seqs)
    # 50 Hz: ten snapshots take about 0.2 s; generous bounds, this is not a speed test.
    assert 0.05 < elapsed < 5.0


def test_submit_returns_results_and_exceptions(runner: LoopRunner) -> None:
    assert runner.submit(lambda x: x * 2, 21).result(5) == 42
    assert runner.submit(threading.get_ident).result(5) != threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        runner.submit(lambda: 1 / 0).result(5)


def test_listener_commands_and_echo(runner: LoopRunner) -> None:
    row = runner.start_listener("127.0.0.1", 0).result(5)
    assert row.port != 0 and row.state == "listening"
    assert echo_once(row.port, b"hello loop" * 1000) == b"hello loop" * 1000
    snap = next_snapshot(runner, lambda s: any(lr.accepted >= 1 for lr in s.listeners))
    assert snap.bytes_in >= 10000
    with pytest.raises(ListenerError, match="in use"):
        runner.start_listener("127.0.0.1", row.port).result(5)
    runner.stop_listener(row.id).result(5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", row.port), timeout=2)


def test_close_connection_gives_the_client_eof(runner: LoopRunner) -> None:
    row = runner.start_listener("127.0.0.1", 0).result(5)
    with socket.create_connection(("127.0.0.1", row.port), timeout=5) as sock:
        snap = next_snapshot(runner, lambda s: len(s.connections) == 1)
        runner.close_connection(snap.connections[0].fd).result(5)
        assert sock.recv(10) == b""
    kinds: list[str] = []
    deadline = time.monotonic() + 5
    while "close" not in kinds and time.monotonic() < deadline:
        if runner.mailbox.wait(0.2):
            kinds += [e.kind for e in runner.mailbox.take()[1]]
    assert "connect" in kinds or "close" in kinds
    assert "close" in kinds


def test_set_strategy(runner: LoopRunner) -> None:
    runner.set_strategy("seed").result(5)
    assert runner.strategy == "seed"
    snap = next_snapshot(runner, lambda s: s.strategy == "seed")
    assert snap.strategy == "seed"
    row = runner.start_listener("127.0.0.1", 0).result(5)
    assert echo_once(row.port, b"x" * 100_000) == b"x" * 100_000


def test_a_strategy_change_is_in_the_event_log(runner: LoopRunner) -> None:
    runner.set_strategy("seed").result(5)
    runner.set_strategy("seed").result(5)  # no change: nothing logged
    deadline = time.monotonic() + 5
    texts: list[str] = []
    while time.monotonic() < deadline and not texts:
        if runner.mailbox.wait(0.2):
            _, events, _ = runner.mailbox.take()
            texts += [e.text for e in events if e.kind == "loop" and "strategy" in e.text]
    assert texts == ["echo strategy: direct -> seed"]


def test_loop_thread_crash_is_reported_and_restartable() -> None:
    runner = LoopRunner(telemetry_hz=50)
    runner.start()

    def die() -> None:
        raise SystemExit("killed for the test")

    # Straight onto the loop, not through submit() (which hands exceptions to the caller):
    # a BaseException from a callback is the one thing the loop does not survive.
    loop = runner._loop
    assert loop is not None
    loop.add_callback(die)
    snap = next_snapshot(runner, lambda s: not s.alive)
    assert "killed for the test" in snap.error
    assert "killed for the test" in runner.error
    with pytest.raises(LoopNotRunning):
        runner.submit(lambda: 1).result(5)
    runner.start()
    assert runner.submit(lambda: 1).result(5) == 1
    assert next_snapshot(runner).alive
    assert runner.stop(5.0)
    runner.mailbox.close()


def test_stop_under_load_within_the_timeout(runner: LoopRunner) -> None:
    row = runner.start_listener("127.0.0.1", 0).result(5)
    socks = [socket.create_connection(("127.0.0.1", row.port)) for _ in range(50)]
    for s in socks:
        s.setblocking(False)
        s.send(b"y" * 50_000)
    next_snapshot(runner, lambda s: len(s.connections) == 50)
    started = time.monotonic()
    assert runner.stop(2.0)
    assert time.monotonic() - started < 2.0
    for s in socks:
        s.close()
    runner.start()  # the fixture stops it again


@pytest.mark.parametrize("backend", BACKENDS[1:] or BACKENDS)
def test_restart_on_another_backend_keeps_listeners(runner: LoopRunner, backend: str) -> None:
    row = runner.start_listener("127.0.0.1", 0).result(5)
    runner.restart(backend).result(10)
    assert runner.backend == backend
    snap = next_snapshot(runner, lambda s: s.backend == backend and s.listeners)
    assert [(lr.host, lr.port) for lr in snap.listeners] == [("127.0.0.1", row.port)]
    assert echo_once(row.port, b"after restart") == b"after restart"


def test_listener_ids_are_unique_in_the_session_across_a_restart(runner: LoopRunner) -> None:
    # Start, stop, switch backend, start another: the new listener must not reuse the
    # stopped one's id, or a consumer that saw that id stopped hides the new one.
    first = runner.start_listener("127.0.0.1", 0).result(5)
    runner.stop_listener(first.id).result(5)
    session = runner.session
    runner.restart(BACKENDS[-1]).result(10)
    second = runner.start_listener("127.0.0.1", 0).result(5)
    assert second.id != first.id
    assert runner.session == session
    snap = next_snapshot(runner, lambda s: any(lr.id == second.id for lr in s.listeners))
    assert snap.session == session


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="available"):
        LoopRunner(backend="nope")


def ss_established(port: int) -> int | None:
    import shutil
    import subprocess

    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run(
        [ss, "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def test_snapshot_figures_match_the_os_and_the_clients(runner: LoopRunner) -> None:
    row = runner.start_listener("127.0.0.1", 0).result(5)
    clients = [socket.create_connection(("127.0.0.1", row.port), timeout=5) for _ in range(20)]
    sent: dict[int, int] = {}
    try:
        for i, sock in enumerate(clients):
            payload = bytes([i]) * (1000 * (i + 1))
            sock.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += sock.recv(65536)
            assert got == payload
            sent[sock.getsockname()[1]] = len(payload)
        snap = next_snapshot(
            runner,
            lambda s: (
                len(s.connections) == 20
                and sum(c.bytes_out for c in s.connections) == sum(sent.values())
            ),
        )
        by_peer = {int(c.peer.rsplit(":", 1)[1]): c for c in snap.connections}
        for port, n in sent.items():
            assert by_peer[port].bytes_in == n
            assert by_peer[port].bytes_out == n
            assert by_peer[port].messages >= 1
        established = ss_established(row.port)
        if established is not None:
            assert established == len(snap.connections) == 20
        assert snap.listeners[0].accepted == 20
    finally:
        for sock in clients:
            sock.close()


def test_closed_connections_are_reported_once_with_final_figures() -> None:
    # Churn must be visible: a connection that opened and closed within one interval is in
    # no snapshot's rows, so its close record is all there is of it.
    runner = LoopRunner(telemetry_hz=2)
    runner.start()
    try:
        port = runner.start_listener("127.0.0.1", 0).result(5)
        port_no = port.port
        with socket.create_connection(("127.0.0.1", port_no), timeout=5) as kept:
            kept.sendall(b"x")
            assert kept.recv(1) == b"x"
            first = next_snapshot(runner, lambda s: len(s.connections) == 1)
            kept_row = first.connections[0]
            assert kept_row.id > 0 and kept_row.kind == "connection"
            assert kept_row.local == f"127.0.0.1:{port_no}"
            payloads = [b"a" * 10, b"b" * 2000, b"c" * 7]
            for data in payloads:
                assert echo_once(port_no, data) == data
            closed = []
            deadline = time.monotonic() + 5
            while len(closed) < 3 and time.monotonic() < deadline:
                snap = next_snapshot(runner)
                closed.extend(snap.closed)
                assert all(c.row.id not in {r.id for r in snap.connections} for c in snap.closed)
            assert sorted(c.row.bytes_in for c in closed) == sorted(len(p) for p in payloads)
            assert all(c.row.bytes_out == c.row.bytes_in for c in closed)
            assert all(c.reason == "closed by peer" and c.row.state == "closed" for c in closed)
            ids = [c.row.id for c in closed]
            assert len(set(ids)) == 3 and kept_row.id not in ids
            assert all(c.closed_at >= c.row.created_at for c in closed)
            assert all(c.row.ready_read >= 2 for c in closed)  # data, then EOF
    finally:
        assert runner.stop(5.0)
        runner.mailbox.close()


def test_a_churn_beyond_the_bound_is_counted_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopmon import telemetry

    monkeypatch.setattr(telemetry, "CLOSED_PER_FRAME", 2)
    runner = LoopRunner(telemetry_hz=1)
    runner.start()
    try:
        port = runner.start_listener("127.0.0.1", 0).result(5).port
        for _ in range(5):
            assert echo_once(port, b"z") == b"z"
        listed = omitted = 0
        deadline = time.monotonic() + 5
        while listed + omitted < 5 and time.monotonic() < deadline:
            snap = next_snapshot(runner)
            assert len(snap.closed) <= 2
            listed += len(snap.closed)
            omitted += snap.closed_omitted
        assert listed + omitted == 5 and omitted >= 1
        # The closed connections' readiness totals count the unlisted ones too: each read
        # its byte and its EOF, at least.
        assert snap.closed_ready is not None and snap.closed_ready[0] >= 2 * 5
    finally:
        assert runner.stop(5.0)
        runner.mailbox.close()


def test_snapshot_observers_see_every_snapshot_on_the_loop_thread() -> None:
    r = LoopRunner(telemetry_hz=50)
    seen: list[tuple[int, int]] = []
    got_ten = threading.Event()

    def observe(snapshot: Snapshot) -> None:
        seen.append((snapshot.seq, threading.get_ident()))
        if len(seen) >= 10:
            got_ten.set()

    r.snapshot_observers.append(observe)
    r.start()
    try:
        loop_thread = r.submit(threading.get_ident).result(5)
        assert got_ten.wait(5)
    finally:
        assert r.stop(5.0)
        r.mailbox.close()
    seqs = [seq for seq, _ in seen]
    # None skipped, though nobody read the mailbox (which keeps only the latest).
    assert seqs == list(range(1, len(seqs) + 1))
    assert {ident for _, ident in seen} == {loop_thread}
