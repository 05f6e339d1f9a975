"""``loopmon serve --metrics`` as a user runs it: the line it prints, what it answers, what it
refuses, and bad input on the metrics port while the echo goes on."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.echo_helpers import connect, payload, recv_exactly
from tests.metrics.processes import ROOT, Serve, get, loopmon_command, scrape, wait_until

pytestmark = pytest.mark.slow


def run_serve(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = (
        [sys.executable, "-c", code, "serve", *args]
        if code is not None
        else loopmon_command("serve", *args)
    )
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_serve_prints_where_and_the_figures_are_the_echos() -> None:
    serve = Serve()
    clients = []
    try:
        assert serve.out.next() is not None  # a status line follows: the feed is on
        status, headers, body = get(serve.metrics_port)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b"loopmon_info{" in body
        message = payload(1000)
        for _ in range(5):
            client = connect(serve.echo_port)
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message
            clients.append(client)
        samples = wait_until(
            lambda: scrape(serve.metrics_port),
            lambda s: s["loopmon_connections{}"] == 5 and s["loopmon_sent_bytes_total{}"] == 5000,
        )
        assert samples["loopmon_connections{}"] == 5
        assert samples["loopmon_received_bytes_total{}"] == 5000
        assert samples["loopmon_sent_bytes_total{}"] == 5000
        address = f"127.0.0.1:{serve.echo_port}"
        assert samples[f"loopmon_connections_accepted_total{{listener={address}}}"] == 5
        assert samples["loopmon_events_total{kind=read}"] >= 5
        # Closed connections' counts stay in the totals.
        for client in clients:
            client.close()
        clients.clear()
        after = wait_until(
            lambda: scrape(serve.metrics_port), lambda s: s["loopmon_connections{}"] == 0
        )
        assert after["loopmon_connections{}"] == 0
        assert (
            after["loopmon_events_total{kind=read}"] >= samples["loopmon_events_total{kind=read}"]
        )
        assert after["loopmon_received_bytes_total{}"] == 5000
        assert get(serve.metrics_port, method="HEAD")[2] == b""
        assert get(serve.metrics_port, "/")[0] == 404
    finally:
        for client in clients:
            client.close()
        assert serve.stop() == 0


def test_quiet_serve_still_feeds_the_metrics() -> None:
    serve = Serve("--quiet")
    try:
        first = scrape(serve.metrics_port)
        later = wait_until(
            lambda: scrape(serve.metrics_port),
            lambda s: (
                s.get("loopmon_loop_iterations_total{}", 0)
                > first.get("loopmon_loop_iterations_total{}", 0)
            ),
        )
        assert later["loopmon_loop_iterations_total{}"] > 0
    finally:
        assert serve.stop() == 0
    assert serve.out.rest() == []  # no status line


def test_without_prometheus_client_one_line_and_exit_2() -> None:
    hide = (
        "import sys; sys.modules['prometheus_client'] = None; "
        "from loopmon.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = run_serve("--port", "0", "--metrics", "127.0.0.1:0", code=hide)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "pip install 'loopmon[metrics]'" in lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--metrics", "0.0.0.0:0"), "--allow-remote"),
        (("--metrics", "0.0.0.0:0", "--allow-remote"), "--token-file"),
        (("--allow-remote",), "goes with --metrics"),
        (("--metrics", "127.0.0.1:0", "--quiet", "--telemetry-hz", "0"), "needs telemetry"),
    ],
)
def test_what_serve_refuses_before_it_starts(args: tuple[str, ...], words: str) -> None:
    proc = run_serve("--port", "0", *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_token_file_open_to_others_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    token.chmod(0o644)
    proc = run_serve("--port", "0", "--metrics", "127.0.0.1:0", "--token-file", str(token))
    assert proc.returncode == 2
    assert "chmod 600" in proc.stderr


def test_a_metrics_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_serve("--port", "0", "--metrics", f"127.0.0.1:{port}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"loopmon serve: metrics 127.0.0.1:{port}: address already in use"


def test_a_token_is_required_when_given(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("loopmon-test-token\n")
    token.chmod(0o600)
    serve = Serve("--quiet", "--token-file", str(token))
    try:
        assert get(serve.metrics_port)[0] == 401
        assert get(serve.metrics_port, headers={"Authorization": "Bearer nope"})[0] == 401
        ok = get(serve.metrics_port, headers={"Authorization": "Bearer loopmon-test-token"})
        assert ok[0] == 200 and b"loopmon_info" in ok[2]
    finally:
        assert serve.stop() == 0


class EchoProbe:
    """Round trips on one echo connection, on a thread, bounded in count and time."""

    def __init__(self, port: int, rounds: int = 100_000, seconds: float = 30.0) -> None:
        self.sock = connect(port)
        self.rounds = 0
        self.worst = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._limit = (rounds, seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        message = payload(64, seed=7)
        deadline = time.monotonic() + self._limit[1]
        while not self._stop.is_set() and self.rounds < self._limit[0]:
            if time.monotonic() > deadline:
                break
            start = time.perf_counter()
            try:
                self.sock.sendall(message)
                if recv_exactly(self.sock, len(message)) != message:
                    self.errors.append("wrong bytes back")
                    return
            except (OSError, AssertionError) as exc:
                self.errors.append(repr(exc))
                return
            self.worst = max(self.worst, time.perf_counter() - start)
            self.rounds += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


def test_bad_input_on_the_metrics_port_leaves_the_echo_unaffected() -> None:
    serve = Serve("--quiet")
    probe = EchoProbe(serve.echo_port)
    try:
        rss_before = serve.rss_kib()
        port = serve.metrics_port
        # Garbage, a TLS hello, a huge head, a request with a body: each answered and closed.
        for junk in (
            b"\x00\xff" * 100 + b"\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (64 << 10) + b"\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
                try:
                    bad.sendall(junk)
                    answer = bad.recv(4096)
                except ConnectionResetError:
                    answer = b""  # closed with the rest of our junk unread: also refused
                assert answer == b"" or answer.split(b" ")[1] in (b"400", b"405", b"431")
        # A slow client holds one slot and no more; 100 at once: 32 kept, the rest refused.
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"G")
        crowd = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(100)]
        # The refused ones are answered at once; the kept ones wait for their request.
        answered: set[socket.socket] = set()
        deadline = time.monotonic() + 5.0
        while len(answered) < 69 and time.monotonic() < deadline:
            readable, _, _ = select.select([s for s in crowd if s not in answered], [], [], 0.5)
            answered.update(readable)
        for sock in answered:
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 503 "), data
        refused = len(answered)
        assert refused == 100 - 31  # the slow one holds the 32nd slot
        for sock in crowd:
            sock.close()

        # Slots free again (once the loop has seen the closes): a proper scrape is answered
        # while the slow client still waits.
        def answered_scrape() -> dict[str, float]:
            return scrape(port) if get(port, method="HEAD")[0] == 200 else {}

        samples = wait_until(answered_scrape, lambda s: "loopmon_connections{}" in s)
        assert samples["loopmon_connections{}"] == 1  # the echo probe's connection
        slow.close()
        assert not probe.errors
        assert probe.rounds > 0
        assert serve.rss_kib() - rss_before < 8 * 1024  # memory bounded: a few MB at most
    finally:
        probe.stop()
        assert serve.stop() == 0
    log = "\n".join(serve.err.rest())
    assert "refused, 32 connections already open" in log
    assert "request head over 8192 bytes" in log
    assert not probe.errors
