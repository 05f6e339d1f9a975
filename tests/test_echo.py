"""The echo server on every backend and strategy: exact echo, half-close, reset, backpressure,
listeners (start, stop, failures), max_connections, strategy switching, what the monitor reads."""

from __future__ import annotations

import errno
import itertools
import os
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopmon import echo as echo_module
from loopmon.echo import RECV_SIZE, EchoServer, ListenerError, echoing
from loopmon.events import READ, WRITE
from loopmon.ioloop import IOLoop
from loopmon.snapshot import KINDS, ListenerRow
from tests.echo_helpers import (
    BACKENDS,
    STRATEGIES,
    TIMEOUT,
    Harness,
    connect,
    payload,
    recv_exactly,
    recv_until_eof,
    reset,
    send_all_then_eof,
)


@pytest.fixture(scope="module", params=BACKENDS)
def shared(request: pytest.FixtureRequest) -> Iterator[tuple[Harness, int]]:
    """One server per backend, reused by the hypothesis examples."""
    harness = Harness(request.param)
    port = harness.listen()
    yield harness, port
    harness.close()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(request.param)
    yield h
    h.close()


def closes(h: Harness) -> list[str]:
    return [text for kind, text, _ in h.events if kind == "close"]


# -- exact echo ------------------------------------------------------------------------------


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    size=st.one_of(st.integers(1, 4096), st.integers(4097, 300_000)),
    lockstep=st.booleans(),
)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_echo_for_any_size_and_split(
    shared: tuple[Harness, int], strategy: str, data: st.DataObject, size: int, lockstep: bool
) -> None:
    harness, port = shared
    harness.call(harness.server.set_strategy, strategy)
    cuts = data.draw(st.lists(st.integers(0, size), max_size=8).map(sorted))
    message = payload(size, seed=size ^ len(cuts))
    bounds = [0, *cuts, size]
    pieces = [message[a:b] for a, b in itertools.pairwise(bounds)]
    with connect(port) as sock:
        if lockstep:
            for piece in pieces:
                sock.sendall(piece)
                assert recv_exactly(sock, len(piece)) == piece
            sock.shutdown(socket.SHUT_WR)
            assert recv_until_eof(sock) == b""
        else:
            # Send everything, then half-close: every byte comes back, then EOF.
            received: list[bytes] = []
            reader = threading.Thread(target=lambda: received.append(recv_until_eof(sock)))
            reader.start()
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
            reader.join(TIMEOUT)
            assert received and received[0] == message


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_many_clients_at_once_each_get_their_own_bytes(harness: Harness, strategy: str) -> None:
    harness.call(harness.server.set_strategy, strategy)
    port = harness.listen()
    socks = [connect(port) for _ in range(20)]
    try:
        for rnd in range(5):
            for i, sock in enumerate(socks):
                sock.sendall(payload(1000 + i, seed=i * 100 + rnd))
            for i, sock in enumerate(socks):
                assert recv_exactly(sock, 1000 + i) == payload(1000 + i, seed=i * 100 + rnd)
    finally:
        for sock in socks:
            sock.close()


# -- half-close, reset -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_half_close_gets_every_byte_then_eof(harness: Harness, strategy: str) -> None:
    harness.server.high_water, harness.server.low_water = 256 << 10, 64 << 10
    harness.call(harness.server.set_strategy, strategy)
    port = harness.listen()
    message = payload(3 << 20, seed=7)  # well past the high watermark: reads pause on the way
    with connect(port) as sock:
        assert send_all_then_eof(sock, message) == message
    harness.wait_for(lambda: not harness.server.connections)
    assert closes(harness)[-1].endswith("closed: closed by peer")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reset_closes_that_connection_only(harness: Harness, strategy: str) -> None:
    harness.call(harness.server.set_strategy, strategy)
    port = harness.listen()
    steady = connect(port)
    doomed = connect(port)
    doomed_peer = f"127.0.0.1:{doomed.getsockname()[1]}"
    try:
        steady.sendall(b"before")
        assert recv_exactly(steady, 6) == b"before"
        doomed.sendall(payload(200_000))  # echoed into a socket that will never read it
        harness.wait_for(lambda: sum(c.bytes_in for c in harness.server.connections.values()) > 6)
        reset(doomed)
        harness.wait_for(lambda: len(harness.server.connections) == 1)
        steady.sendall(b"after")
        assert recv_exactly(steady, 5) == b"after"
        (reason,) = closes(harness)
    finally:
        steady.close()
    peer, _, why = reason.partition(" closed: ")
    assert peer == doomed_peer
    assert why in ("connection reset by peer", "broken pipe")


def test_reset_while_paused_is_noticed(harness: Harness) -> None:
    # READ is not registered while paused: the reset must still close the connection.
    harness.server.high_water, harness.server.low_water = 64 << 10, 16 << 10
    port = harness.listen()
    sock = connect(port)
    sock.setblocking(False)
    blob = payload(1 << 20)

    def paused() -> bool:
        return any(c.paused for c in harness.server.connections.values())

    deadline = time.monotonic() + TIMEOUT
    while not harness.call(paused):
        assert time.monotonic() < deadline, "never paused"
        try:
            sock.send(blob)  # the bytes' order does not matter here
        except BlockingIOError:
            time.sleep(0.001)
    reset(sock)
    harness.wait_for(lambda: not harness.server.connections)


# -- backpressure -----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_client_that_never_reads_costs_bounded_memory(harness: Harness, strategy: str) -> None:
    high, low = 256 << 10, 64 << 10
    server = harness.server
    server.high_water, server.low_water = high, low
    harness.call(server.set_strategy, strategy)
    port = harness.listen()
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.setblocking(False)
    blob = payload(64 << 10, seed=3)
    double = blob + blob
    sent = 0
    peak = 0

    def figures() -> tuple[int, int, str, int]:
        (conn,) = server.connections.values()
        return conn.queue_bytes, conn.queue_chunks, conn.state, conn.mask

    # Push until the client cannot send any more, watching the server's queue all along.
    blocked_rounds = 0
    for _ in range(5000):
        off = sent % len(blob)
        try:
            sent += sock.send(double[off : off + len(blob)])
            blocked_rounds = 0
        except BlockingIOError:
            blocked_rounds += 1
        queued, chunks, state, mask = harness.call(figures)
        peak = max(peak, queued)
        assert queued <= high + RECV_SIZE, f"queue grew to {queued}"
        assert chunks <= queued
        if blocked_rounds > 20 and state == "paused":
            break
    queued, _, state, mask = harness.call(figures)
    if strategy == "direct":
        assert state == "paused" and not mask & READ and mask & WRITE
        assert peak >= high
    # Now read: the queue drains, reading resumes, and every byte sent comes back in order.
    sock.setblocking(True)
    sock.settimeout(TIMEOUT)
    expected = sent
    got = 0
    while got < expected:
        chunk = sock.recv(1 << 20)
        assert chunk
        for i in range(0, len(chunk), 4096):
            off = (got + i) % len(blob)
            piece = chunk[i : i + 4096]
            want = double[off : off + len(piece)]
            assert piece == want
        got += len(chunk)
    harness.wait_for(lambda: figures()[2] == "open" and figures()[0] == 0)
    sock.close()


def test_watermarks_pause_and_resume_reading_in_the_state() -> None:
    loop = IOLoop(make_current=False)
    try:
        with pytest.raises(ValueError):
            EchoServer(loop, high_water=10, low_water=20)
        with pytest.raises(ValueError):
            EchoServer(loop, strategy="bogus")
    finally:
        loop.close()


# -- strategies -------------------------------------------------------------------------------


def ready_write_of_connections(h: Harness) -> int:
    total = 0
    for fd in h.server.connections:
        stat = h.loop.fd_stat(fd)
        assert stat is not None
        total += stat.ready_counts()[1]
    return total


def test_direct_never_registers_write_for_small_messages(harness: Harness) -> None:
    port = harness.listen()
    with connect(port) as sock:
        for i in range(50):
            sock.sendall(b"x" * (i + 1))
            assert recv_exactly(sock, i + 1) == b"x" * (i + 1)
        assert harness.call(ready_write_of_connections, harness) == 0


@pytest.mark.parametrize("write_fd", [True, False], ids=["os.write", "socket.send"])
def test_direct_sends_with_the_platforms_call_and_echoes_exactly(
    monkeypatch: pytest.MonkeyPatch, write_fd: bool
) -> None:
    # POSIX sends with os.write on the fd; elsewhere (Windows) socket.send. Both must give the
    # same bytes and the same reason when the peer resets. (Queued output is flushed with
    # socket.send on either path, so only the direct send is told apart here.)
    monkeypatch.setattr(echoing, "_WRITE_FD", write_fd)
    written: list[int] = []
    sent: list[int] = []
    real_write, real_send = os.write, socket.socket.send

    def counting_write(fd: int, data: Any) -> int:
        written.append(fd)
        return real_write(fd, data)

    def counting_send(self: socket.socket, data: Any, *flags: int) -> int:
        sent.append(self.fileno())
        return real_send(self, data, *flags)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(socket.socket, "send", counting_send)
    harness = Harness(BACKENDS[0])
    try:
        port = harness.listen()
        message = payload(600_000, seed=7)
        with connect(port) as sock:
            assert send_all_then_eof(sock, message) == message
        doomed = connect(port)
        doomed.sendall(payload(300_000))  # echoed into a socket that never reads
        conns = harness.server.connections
        harness.wait_for(lambda: len(conns) == 1 and next(iter(conns.values())).bytes_in > 0)
        (fd,) = harness.call(lambda: list(conns))
        reset(doomed)
        harness.wait_for(lambda: not conns)
        assert closes(harness)[-1].endswith(("connection reset by peer", "broken pipe"))
    finally:
        harness.close()
    if write_fd:
        assert fd in written
    else:
        assert fd in sent and fd not in written


def test_seed_flips_the_mask_for_every_message(harness: Harness) -> None:
    harness.call(harness.server.set_strategy, "seed")
    port = harness.listen()
    with connect(port) as sock:
        for _ in range(20):
            sock.sendall(b"y" * 100)
            assert recv_exactly(sock, 100) == b"y" * 100
        # Every message was sent from a WRITE event.
        harness.wait_for(lambda: ready_write_of_connections(harness) >= 20)
        (mask,) = harness.call(lambda: [c.mask for c in harness.server.connections.values()])
        assert mask == READ  # back to reading once the queue drained


def test_strategy_changes_while_connections_run(harness: Harness) -> None:
    port = harness.listen()
    with connect(port) as sock:
        for i in range(40):
            harness.call(harness.server.set_strategy, STRATEGIES[i % 2])
            message = payload(5000 + i, seed=i)
            sock.sendall(message)
            assert recv_exactly(sock, len(message)) == message
    with pytest.raises(ValueError):
        harness.call(harness.server.set_strategy, "bogus")


# -- listeners --------------------------------------------------------------------------------


def test_listener_has_its_real_address_and_unique_ids(harness: Harness) -> None:
    first = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    second = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    assert first.port > 0 and second.port > 0 and first.port != second.port
    assert first.host == "127.0.0.1"
    harness.call(harness.server.stop_listener, first.id)
    third = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    assert len({first.id, second.id, third.id}) == 3
    assert set(harness.call(lambda: list(harness.server.listeners))) == {second.id, third.id}
    kinds = [kind for kind, _, _ in harness.events]
    assert kinds.count("listener_started") == 3 and kinds.count("listener_stopped") == 1


def test_ipv6_listener(harness: Harness) -> None:
    try:
        socket.socket(socket.AF_INET6).close()
        listener = harness.call(harness.server.start_listener, "::1", 0)
    except (OSError, ListenerError) as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    assert listener.address == f"[::1]:{listener.port}"
    with connect(listener.port, "::1") as sock:
        sock.sendall(b"six")
        assert recv_exactly(sock, 3) == b"six"


def test_port_in_use_is_a_listener_error_and_leaves_nothing(harness: Harness) -> None:
    port = harness.listen()
    before = harness.call(lambda: dict(harness.server.listeners))
    with pytest.raises(ListenerError) as info:
        harness.call(harness.server.start_listener, "127.0.0.1", port)
    error = info.value
    assert isinstance(error, OSError)
    assert error.errno == errno.EADDRINUSE
    assert str(error) == f"127.0.0.1:{port}: address already in use"
    assert "\n" not in str(error)
    assert harness.call(lambda: dict(harness.server.listeners)) == before
    assert harness.events[-1][0] == "listener_failed"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.errno == error.errno


def test_unknown_host_and_bad_port_are_listener_errors(harness: Harness) -> None:
    with pytest.raises(ListenerError, match="unknown host"):
        harness.call(harness.server.start_listener, "no-such-host.invalid", 0)
    with pytest.raises(ListenerError, match="port out of range"):
        harness.call(harness.server.start_listener, "127.0.0.1", 70000)
    with pytest.raises(ListenerError, match="cannot assign requested address"):
        harness.call(harness.server.start_listener, "192.0.2.1", 0)  # not ours (TEST-NET-1)
    assert harness.call(lambda: len(harness.server.listeners)) == 0


def test_stop_listener_leaves_its_connections_running(harness: Harness) -> None:
    listener = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    with connect(listener.port) as sock:
        sock.sendall(b"one")
        assert recv_exactly(sock, 3) == b"one"
        harness.call(harness.server.stop_listener, listener.id, False)
        with pytest.raises(ConnectionRefusedError):
            connect(listener.port)
        sock.sendall(b"two")
        assert recv_exactly(sock, 3) == b"two"
    rows = harness.call(harness.server.listener_rows)
    assert [(r.id, r.state) for r in rows] == [(listener.id, "stopped")]
    with pytest.raises(KeyError):
        harness.call(harness.server.stop_listener, listener.id)


def test_stop_listener_can_close_its_connections(harness: Harness) -> None:
    keep = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    drop = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    kept, dropped = connect(keep.port), connect(drop.port)
    dropped_port = dropped.getsockname()[1]
    try:
        for sock in (kept, dropped):
            sock.sendall(b"hi")
            assert recv_exactly(sock, 2) == b"hi"
        harness.call(harness.server.stop_listener, drop.id, True)
        assert recv_until_eof(dropped) == b""
        kept.sendall(b"still")
        assert recv_exactly(kept, 5) == b"still"
    finally:
        kept.close()
        dropped.close()
    stopped = [text for text in closes(harness) if text.endswith("closed: listener stopped")]
    assert stopped == [f"127.0.0.1:{dropped_port} closed: listener stopped"]
    (stop_text,) = [text for kind, text, _ in harness.events if kind == "listener_stopped"]
    assert stop_text == f"stopped listening on 127.0.0.1:{drop.port}, closed 1 connection"


def test_close_connection_by_id_never_by_a_reused_fd(harness: Harness) -> None:
    port = harness.listen()
    with connect(port) as first:
        first.sendall(b"1")
        assert recv_exactly(first, 1) == b"1"
        (old,) = harness.call(lambda: list(harness.server.connections.values()))
        old_id = old.id
    harness.wait_for(lambda: not harness.server.connections)
    with connect(port) as second:  # the fd is reused at once
        second.sendall(b"2")
        assert recv_exactly(second, 1) == b"2"
        (new,) = harness.call(lambda: list(harness.server.connections.values()))
        assert new.id != old_id
        with pytest.raises(KeyError, match=f"id {old_id}"):
            harness.call(harness.server.close_connection_id, old_id)
        assert harness.connection_count() == 1  # a stale id closes nothing
        harness.call(harness.server.close_connection_id, new.id)
        assert recv_until_eof(second) == b""


def test_close_connection_by_fd(harness: Harness) -> None:
    port = harness.listen()
    with connect(port) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        (fd,) = harness.call(lambda: list(harness.server.connections))
        harness.call(harness.server.close_connection, fd)
        assert recv_until_eof(sock) == b""
    assert closes(harness)[-1].endswith("closed: closed by user")
    with pytest.raises(KeyError):
        harness.call(harness.server.close_connection, fd)


def test_max_connections_refuses_the_rest() -> None:
    harness = Harness(BACKENDS[0], max_connections=2)
    try:
        port = harness.listen()
        socks = [connect(port) for _ in range(4)]
        harness.wait_for(lambda: harness.server.listener_rows()[0].refused == 2)
        # The backlog is first in, first out: the first two are served, the last two were
        # accepted and closed at once.
        for sock in socks[:2]:
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        for sock in socks[2:]:
            try:
                assert sock.recv(10) == b""
            except ConnectionResetError:
                pass
        row = harness.call(harness.server.listener_rows)[0]
        assert (row.accepted, row.refused, row.connections) == (2, 2, 2)
        for sock in socks:
            sock.close()
    finally:
        harness.close()


def fd_past_free(count: int) -> int:
    """The fd just past the lowest ``count`` free ones. The kernel hands out the lowest free
    fd, and earlier tests in the process (the GUI's) can leave holes below fds still open: a
    limit of "the next free fd + count" would then lie under fds already taken."""
    fd = free = 0
    while free < count:
        try:
            os.fstat(fd)
        except OSError:
            free += 1
        fd += 1
    return fd


@pytest.mark.skipif("select" not in BACKENDS, reason="select() is not available here")
def test_under_an_fd_limit_the_listener_pauses_full_instead_of_dropping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With --backend select past FD_SETSIZE, connections were accepted and dropped by the
    # hundred thousand while the listener read "listening". A limit a few fds above the next
    # free one stands in for FD_SETSIZE here, so a handful of clients reaches it.
    from loopmon.pollers.select import SelectPoller

    room = 12  # fds below the accept limit, for the loop, the listener and the clients
    below = fd_past_free(room)
    monkeypatch.setattr(SelectPoller, "fd_limit", below + echo_module.FD_RESERVE)
    harness = Harness("select")
    socks: list[socket.socket] = []
    try:
        port = harness.listen()
        rows = harness.server.listener_rows
        while harness.call(lambda: rows()[0].state) != echo_module.FULL_STATE:
            assert len(socks) < room, "the listener never said it was full"
            socks.append(connect(port))
            harness.wait_for(
                lambda: (
                    rows()[0].state == echo_module.FULL_STATE or rows()[0].accepted == len(socks)
                )
            )
        socks.extend(connect(port) for _ in range(3))  # these wait in the backlog
        served = harness.call(lambda: sorted(harness.server.connections))
        assert served and max(served) < below
        row = harness.call(rows)[0]
        assert (row.refused, row.errors) == (0, 0)
        waiting = socks[row.accepted :]
        assert len(waiting) >= 3
        for sock in waiting:  # not accepted and dropped: no EOF, no reset
            sock.settimeout(0.05)
            with pytest.raises(TimeoutError):
                sock.recv(1)
            sock.settimeout(TIMEOUT)
        assert [k for k, _, _ in harness.events].count("listener_full") == 1
        text = next(t for k, t, _ in harness.events if k == "listener_full")
        assert "FD_SETSIZE" in text and "backlog" in text
        # One closes: the first one waiting is accepted, and echoes.
        socks.pop(0).close()
        first_waiting = waiting[0]
        first_waiting.sendall(b"now")
        assert recv_exactly(first_waiting, 3) == b"now"
        assert harness.call(lambda: max(harness.server.connections)) < below
    finally:
        for sock in socks:
            sock.close()
        harness.close()


# -- what the monitor reads --------------------------------------------------------------------


def test_rows_counters_and_events(harness: Harness) -> None:
    listener = harness.call(harness.server.start_listener, "127.0.0.1", 0)
    rows = harness.call(harness.server.listener_rows)
    assert rows == (ListenerRow(listener.id, "127.0.0.1", listener.port, "listening"),)
    assert harness.call(harness.server.listener_rows) is rows  # unchanged: the same tuple
    with connect(listener.port) as sock:
        for _ in range(3):
            sock.sendall(b"12345")
            assert recv_exactly(sock, 5) == b"12345"

        def conn_figures() -> tuple[object, ...]:
            (conn,) = harness.server.connections.values()
            return (
                conn.peer,
                conn.listener_id,
                conn.state,
                conn.queue_bytes,
                conn.queue_chunks,
                conn.bytes_in,
                conn.bytes_out,
                conn.messages,
                conn.created <= harness.loop.time(),
            )

        peer = f"127.0.0.1:{sock.getsockname()[1]}"
        harness.wait_for(lambda: conn_figures()[5] == 15)
        assert harness.call(conn_figures) == (peer, listener.id, "open", 0, 0, 15, 15, 3, True)
        row = harness.call(harness.server.listener_rows)[0]
        assert (row.accepted, row.connections) == (1, 1)
    harness.wait_for(lambda: not harness.server.connections)
    assert harness.call(lambda: (harness.server.bytes_in, harness.server.bytes_out)) == (15, 15)
    assert harness.call(harness.server.listener_rows)[0].connections == 0
    kinds = [kind for kind, _, _ in harness.events]
    assert kinds == ["listener_started", "connect", "close"]
    assert set(kinds) <= set(KINDS)
    assert harness.events[1][1] == f"{peer} connected to 127.0.0.1:{listener.port}"


def test_output_dropped_at_close_is_counted_in_not_out(harness: Harness) -> None:
    # bytes_out is derived (read = sent + queued + dropped); a connection closed with output
    # still queued must not count that output as sent, before or after the close.
    server = harness.server
    port = harness.listen()
    sock = connect(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
    sock.setblocking(False)
    blob = payload(64 << 10, seed=9)
    sent = 0
    for _ in range(400):
        try:
            sent += sock.send(blob)
        except BlockingIOError:
            time.sleep(0.002)
        if harness.call(lambda: sum(c.queue_bytes for c in server.connections.values())) > 0:
            break
    harness.wait_for(lambda: next(iter(server.connections.values())).bytes_in == sent)

    def figures() -> tuple[int, int, int, int, int]:
        (conn,) = server.connections.values()
        return conn.bytes_in, conn.bytes_out, conn.queue_bytes, server.bytes_in, server.bytes_out

    bytes_in, bytes_out, queued, total_in, total_out = harness.call(figures)
    assert queued > 0 and bytes_in == sent
    assert bytes_out == bytes_in - queued
    assert (total_in, total_out) == (bytes_in, bytes_out)
    (conn,) = harness.call(lambda: list(server.connections.values()))
    harness.call(server.close_connection, conn.fd)
    assert harness.call(lambda: (conn.bytes_in, conn.bytes_out, conn.queue_bytes)) == (
        bytes_in,
        bytes_out,
        0,
    )
    assert harness.call(lambda: (server.bytes_in, server.bytes_out)) == (bytes_in, bytes_out)
    sock.close()


def test_a_closed_connection_keeps_its_counts_and_the_next_on_its_fd_starts_at_zero(
    harness: Harness,
) -> None:
    server = harness.server
    port = harness.listen()
    with connect(port) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        harness.wait_for(lambda: len(server.connections) == 1)
        (first,) = harness.call(lambda: list(server.connections.values()))
    harness.wait_for(lambda: not server.connections)
    with connect(port) as sock:
        sock.sendall(b"abc")
        assert recv_exactly(sock, 3) == b"abc"
        (second,) = harness.call(lambda: list(server.connections.values()))
        assert second.fd == first.fd  # the lowest free number, reused
        assert harness.call(lambda: (second.bytes_in, second.messages)) == (3, 1)
        assert harness.call(lambda: (first.bytes_in, first.bytes_out, first.messages)) == (5, 5, 1)
        assert harness.call(lambda: (server.bytes_in, server.bytes_out)) == (8, 8)


def test_close_all_closes_everything(harness: Harness) -> None:
    port = harness.listen()
    socks = [connect(port) for _ in range(3)]
    peers = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in socks]
    harness.wait_for(lambda: len(harness.server.connections) == 3)
    harness.call(harness.server.close_all)
    for sock in socks:
        assert recv_until_eof(sock) == b""
        sock.close()
    figures = harness.call(lambda: (len(harness.server.listeners), len(harness.server.connections)))
    assert figures == (0, 0)
    assert sorted(closes(harness)) == sorted(f"{p} closed: server closing" for p in peers)


def test_on_event_failure_does_not_break_the_server() -> None:
    def broken(kind: str, text: str, fd: int, subject: int | None) -> None:
        raise RuntimeError("monitor bug")

    harness = Harness(BACKENDS[0])
    harness.server.on_event = broken
    try:
        port = harness.listen()
        with connect(port) as sock:
            sock.sendall(b"fine")
            assert recv_exactly(sock, 4) == b"fine"
    finally:
        harness.close()


def test_a_non_loopback_listener_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    loop = IOLoop(make_current=False)
    server = EchoServer(loop)
    try:
        with caplog.at_level("WARNING", logger="loopmon"):
            listener = server.start_listener("0.0.0.0", 0)
            server.start_listener("127.0.0.1", 0)
        warnings = [r.getMessage() for r in caplog.records]
        assert warnings == [
            f"listening on 0.0.0.0:{listener.port}, which is not a loopback address: "
            "other machines can connect"
        ]
    finally:
        server.close_all()
        loop.close()
