"""``loopmon serve --telemetry`` and ``loopmon attach --json`` as real processes on loopback:
the lines serve prints, what attach prints compared with what a real client did, the ways
attach fails (one line each), and bad input on the telemetry port while the echo goes on."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from processes import (
    ROOT,
    Attach,
    Serve,
    attach_once,
    command,
    echo_round,
    env,
    free_port,
    wait_until,
)

from loopmon.netaddr import format_address, split_address
from loopmon.wire import ConsumerHello, encode_message

# RSS and thread counts are read from /proc.
linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc")


@pytest.fixture
def serve() -> Iterator[Serve]:
    server = Serve()
    try:
        yield server
    finally:
        server.kill()


def test_serve_prints_telemetry_then_token_file_and_removes_it_at_exit() -> None:
    server = Serve()
    try:
        host, port = split_address(server.telemetry)
        assert host == "127.0.0.1" and port > 0
        info = os.lstat(server.token_file)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert server.token_file.name == f"telemetry-{port}-{server.proc.pid}.token"
        assert server.stop(signal.SIGINT) == 0
        assert not server.token_file.exists()
    finally:
        server.kill()


def test_an_ipv6_telemetry_address_is_printed_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no ::1 here")
    server = Serve(telemetry="[::1]:0")
    try:
        assert server.telemetry.startswith("[::1]:")
        result = attach_once(server.telemetry, "--count", "1")
        assert result.returncode == 0, result.stderr
    finally:
        server.kill()


def test_a_remote_address_needs_allow_remote() -> None:
    proc = subprocess.run(
        command("serve", "--port", "0", "--telemetry", "0.0.0.0:0"),
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert "--allow-remote" in line and "not encrypted" in line and "SSH" in line


def _by_peer(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["peer"]: c for c in obj["connections"]}


def test_attach_json_is_what_the_client_did(serve: Serve) -> None:
    clients = [socket.create_connection(("127.0.0.1", serve.echo_port)) for _ in range(3)]
    try:
        sent = {}
        for i, sock in enumerate(clients):
            data = bytes([65 + i]) * (1000 * (i + 1))
            assert echo_round(sock, data) == data
            sent[format_address(*sock.getsockname()[:2])] = len(data)
        result = attach_once(serve.telemetry, "--count", "5")
        assert result.returncode == 0, result.stderr
        objects = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(objects) == 5
        last = objects[-1]
        [listener] = last["listeners"]
        assert listener["address"] == f"127.0.0.1:{serve.echo_port}"
        assert listener["state"] == "listening" and listener["open"] == 3
        assert listener["accepted"] == 3
        rows = _by_peer(last)
        assert set(rows) == set(sent)
        ids = {row["id"] for row in rows.values()}
        assert len(ids) == 3
        for peer, row in rows.items():
            assert row["listener"] == listener["id"]
            assert row["mask"] == "R"  # reading, nothing queued: not writing
            assert row["bytes_in"] == row["bytes_out"] == sent[peer]
            assert row["queue_bytes"] == 0 and row["error_seen"] is False
            assert isinstance(row["fd"], int)
            assert 0.0 <= row["read_fraction"] <= 1.0 and row["write_fraction"] == 0.0
        for obj in objects:
            assert obj["session"] == last["session"] and obj["dropped_frames"] == 0
            assert set(obj["loop"]) >= {
                "iterations", "events", "utilization", "lag_p50_s", "lag_p99_s"
            }  # fmt: skip
        assert [o["t"] for o in objects] == sorted(o["t"] for o in objects)
    finally:
        for sock in clients:
            sock.close()


def test_a_close_between_objects_is_in_closed_with_its_reason(serve: Serve) -> None:
    keep = socket.create_connection(("127.0.0.1", serve.echo_port))
    gone = socket.create_connection(("127.0.0.1", serve.echo_port))
    attach = Attach(serve.telemetry)
    try:
        assert echo_round(gone, b"x" * 777) == b"x" * 777
        peer = format_address(*gone.getsockname()[:2])
        seen = attach.until(lambda o: _by_peer(o).get(peer, {}).get("bytes_in") == 777)
        conn_id = _by_peer(seen)[peer]["id"]
        gone.close()
        obj = attach.until(lambda o: any(c["id"] == conn_id for c in o["closed"]))
        [closed] = [c for c in obj["closed"] if c["id"] == conn_id]
        assert closed["peer"] == peer and closed["bytes_in"] == 777
        assert closed["reason"] and closed["closed_at"] <= obj["t"]
        assert any(e["kind"] == "close" and e["id"] == conn_id for e in obj["events"])
        assert peer not in _by_peer(obj)
        assert attach.stop() == 0  # Ctrl-C
        assert "Traceback" not in "\n".join(attach.err.rest(5.0))
    finally:
        keep.close()
        attach.proc.kill()


def test_attach_follows_a_restarted_producer_and_its_new_token() -> None:
    """Each run has a token of its own: attach finds the new one when it reconnects."""
    first = Serve()
    attach = Attach(first.telemetry)
    second = None
    try:
        session = attach.next()["session"]
        first.stop()
        assert not first.token_file.exists()
        second = Serve(telemetry=first.telemetry)
        assert second.token != first.token
        obj = attach.until(lambda o: o["session"] != session)
        assert obj["listeners"][0]["address"] == f"127.0.0.1:{second.echo_port}"
        assert attach.stop() == 0
        assert attach.err.rest(1.0) == []
    finally:
        attach.stop()
        first.kill()
        if second is not None:
            second.kill()


def test_a_wrong_token_is_one_line(serve: Serve) -> None:
    result = attach_once(serve.telemetry, environ=env(LOOPMON_TOKEN="00" * 32))
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "token" in line


def test_no_producer_is_one_line_within_wait() -> None:
    start = time.monotonic()
    result = attach_once(
        f"127.0.0.1:{free_port()}", "--wait", "1", environ=env(LOOPMON_TOKEN="00" * 32)
    )
    assert time.monotonic() - start < 8.0
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "cannot connect" in line


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a loopmon telemetry stream"),
        (struct.pack(">IB", 10, 0x02) + b"LMON\x02hello", "protocol version 2"),
    ],
)
def test_a_producer_it_cannot_read_is_one_line(sent: bytes, said: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def fake() -> None:
        conn, _ = listener.accept()
        conn.sendall(sent)
        conn.recv(1000)
        conn.close()

    threading.Thread(target=fake, daemon=True).start()
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        result = attach_once(address, environ=env(LOOPMON_TOKEN="00" * 32))
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        assert said in line
    finally:
        listener.close()


def test_head_1_exits_0_without_a_traceback(serve: Serve) -> None:
    argv = " ".join(command("attach", "--json", serve.telemetry))
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {argv} | head -1"],
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("{") and len(result.stdout.splitlines()) == 1
    assert result.stderr == ""


# -- bad input on the telemetry port while the echo goes on ---------------------------------


class EchoChecker:
    """A client echoing random chunks, checking every byte, until stopped."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(10)
        self.rounds = 0
        self.failure = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = random.Random(17)
        while not self._stop.is_set():
            data = rng.randbytes(rng.randint(1, 20000))
            try:
                got = echo_round(self.sock, data)
            except OSError as exc:
                self.failure = f"echo failed: {exc}"
                return
            if got != data:
                self.failure = f"echo differs after {self.rounds} rounds"
                return
            self.rounds += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self.sock.close()


def _connect(address: str) -> socket.socket:
    host, port = split_address(address)
    return socket.create_connection((host, port), timeout=10)


@linux_only
def test_bad_consumers_never_stop_the_echo_nor_grow_serve(serve: Serve) -> None:
    checker = EchoChecker(serve.echo_port)
    held: list[socket.socket] = []
    try:
        wait_until(lambda: checker.rounds, lambda n: n > 20)
        baseline = serve.rss_kib()
        hello = encode_message(ConsumerHello(serve.token, client="test"))
        for garbage in (
            b"GET / HTTP/1.1\r\n\r\n" * 100,
            struct.pack(">IB", 1 << 30, 0x01) + os.urandom(100_000),  # a gigabyte prefix
            struct.pack(">IB", 30, 0x01) + b"LMON\x09" + b"v9" * 13,  # a newer hello
        ):
            sock = _connect(serve.telemetry)
            sock.sendall(garbage)
            sock.settimeout(10)
            try:
                while sock.recv(65536):
                    pass  # an error frame at most, then the close
            except OSError:
                pass
            sock.close()
        # A consumer that never reads: its socket fills, then it loses frames.
        stuck = _connect(serve.telemetry)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(hello)
        held.append(stuck)
        # 100 consumers at once: 31 more fit (32 is the most), the rest are refused.
        crowd = [_connect(serve.telemetry) for _ in range(100)]
        held.extend(crowd)
        for sock in crowd:
            sock.sendall(hello)
        # Connect and close, over and over.
        for _ in range(200):
            _connect(serve.telemetry).close()
        time.sleep(1.0)  # a second of snapshots to the crowd and the stuck one
        # A real consumer still gets in once the crowd is gone.
        for sock in held:
            sock.close()
        held.clear()
        result = wait_until(
            lambda: attach_once(serve.telemetry, "--count", "1"), lambda r: r.returncode == 0
        )
        assert result.returncode == 0, result.stderr
        assert checker.rounds > 40 and not checker.failure, checker.failure
        grown = serve.rss_kib() - baseline
        assert grown < 40_000, f"serve grew {grown} KiB"
        assert serve.proc.poll() is None
    finally:
        checker.stop()
        for sock in held:
            sock.close()
    assert not checker.failure, checker.failure
    assert serve.stop() == 0
    errors = "\n".join(serve.err.rest(5.0))
    assert "dropped consumer" in errors and "refused consumer" in errors
    assert "Traceback" not in errors


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_hello_lists_serves_commands_and_a_signal_says_goodbye(sig: int) -> None:
    from loopmon import telemetry
    from loopmon.stream.client import Client

    server = Serve()
    host, port = split_address(server.telemetry)
    client = Client(host, port, server.token, reconnect=False)
    client.start()
    try:
        assert client.wait_connected(10)
        info = client.producer
        assert info is not None and info.kind == "serve"
        assert info.commands == (
            "start_listener", "stop_listener", "close_connection", "set_strategy"
        )  # fmt: skip
        assert info.measures == telemetry.MEASURES
        assert server.stop(sig) == 0
        wait_until(lambda: client.status, lambda s: s != "connected", timeout=10)
        assert "goodbye" in client.error, client.error
    finally:
        client.stop()
        server.kill()


@linux_only
def test_serve_publishes_from_its_one_thread(serve: Serve) -> None:
    result = attach_once(serve.telemetry, "--count", "3")  # a consumer attached and served
    assert result.returncode == 0, result.stderr
    threads = os.listdir(f"/proc/{serve.proc.pid}/task")
    assert len(threads) == 1, threads
