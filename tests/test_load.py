"""``loopmon load``: every mode against a real EchoServer (on the same loop, in-process), byte
checking that catches a corrupting server, failures counted, the command's outputs and exit
codes. The command as a subprocess against ``loopmon serve`` is in test_serve_cli.py."""

from __future__ import annotations

import argparse
import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loopmon import fdlimit
from loopmon.cli import load as load_command
from loopmon.echo import EchoServer
from loopmon.ioloop import IOLoop
from loopmon.load import generator, patterns
from loopmon.load.generator import LoadGenerator
from loopmon.load.patterns import PATTERN_SIZE, expected_bytes
from loopmon.pollers.select import FD_SETSIZE
from tests.echo_helpers import BACKENDS

SUMMARY_KEYS = {
    "mode",
    "clients",
    "size",
    "duration_s",
    "round_trips",
    "round_trips_per_s",
    "connections_held",
    "bytes_sent",
    "bytes_received",
    "mb_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "errors",
    "mismatches",
    "connect_failures",
}
PROGRESS_KEYS = {
    "elapsed_s",
    "round_trips",
    "round_trips_per_s",
    "mb_per_s",
    "errors",
    "mismatches",
    "open_connections",
}


# -- the stream and the statistics ------------------------------------------------------------


def test_streams_are_deterministic_and_differ_between_connections() -> None:
    assert expected_bytes(3, 100, 5000) == expected_bytes(3, 100, 5000)
    assert expected_bytes(3, 0, 5100)[100:] == expected_bytes(3, 100, 5000)
    assert expected_bytes(3, 0, 4096) != expected_bytes(4, 0, 4096)
    starts = {patterns.stream_start(i) for i in range(10_000)}
    assert len(starts) == 10_000
    # A window longer than the pattern wraps around it.
    long = expected_bytes(1, 10, PATTERN_SIZE + 50)
    assert long[:50] == long[PATTERN_SIZE : PATTERN_SIZE + 50]


# -- every mode against the real server --------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def loop(request: pytest.FixtureRequest) -> Iterator[IOLoop]:
    io_loop = IOLoop(backend=request.param, make_current=False)
    yield io_loop
    io_loop.close()


@pytest.fixture
def make_server(loop: IOLoop) -> Iterator[Callable[..., EchoServer]]:
    """EchoServers on ``loop``, closed (sockets and all) before the loop is."""
    servers: list[EchoServer] = []

    def make(**options: Any) -> EchoServer:
        server = EchoServer(loop, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close_all()


def drive(
    loop: IOLoop, server: EchoServer, mode: str, duration: float = 0.3, **options: object
) -> LoadGenerator:
    listener = server.start_listener("127.0.0.1", 0)
    gen = LoadGenerator(
        loop,
        socket.AF_INET,
        ("127.0.0.1", listener.port),
        mode=mode,
        duration=duration,
        **options,  # type: ignore[arg-type]
    )
    gen.start()
    loop.start()
    return gen


@pytest.mark.parametrize("strategy", ["direct", "seed"])
def test_rr_round_trips_are_checked_and_counted(
    loop: IOLoop, make_server: Callable[..., EchoServer], strategy: str
) -> None:
    server = make_server(strategy=strategy)
    gen = drive(loop, server, "rr", clients=5, size=3000)
    s = gen.summary()
    assert set(s) >= SUMMARY_KEYS
    assert (s["errors"], s["mismatches"], s["connect_failures"]) == (0, 0, 0)
    assert s["round_trips"] > 50
    # One message in flight per client: what was sent but not received is at most that.
    assert 0 <= s["bytes_sent"] - s["bytes_received"] <= 5 * 3000
    assert s["bytes_received"] == s["round_trips"] * 3000
    assert 0 < s["latency_p50_ms"] <= s["latency_p99_ms"] <= s["latency_max_ms"]
    # Every round trip (the fast path's and the general one's) is in the one histogram.
    assert gen.latency.total == s["round_trips"] == sum(gen.latency.counts)
    assert server.bytes_in >= s["bytes_received"]
    assert not gen._by_fd  # every connection closed at the end


def test_flood_keeps_bytes_in_flight_bounded(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server()
    gen = drive(loop, server, "flood", clients=4, size=1000, inflight=20_000)
    s = gen.summary()
    assert (s["errors"], s["mismatches"]) == (0, 0)
    assert s["round_trips"] > 100
    assert 0 <= s["bytes_sent"] - s["bytes_received"] <= 4 * 20_000


def test_large_messages_beyond_the_pattern_size(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server()
    gen = drive(loop, server, "rr", duration=0.5, clients=1, size=PATTERN_SIZE + 12345)
    s = gen.summary()
    assert (s["errors"], s["mismatches"]) == (0, 0)
    assert s["round_trips"] >= 1


def test_slow_readers_make_the_server_pause(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server(high_water=64 << 10, low_water=16 << 10)
    paused: list[int] = []

    def watch() -> None:
        paused.append(sum(1 for c in server.connections.values() if c.state == "paused"))
        loop.call_later(0.02, watch)

    loop.add_callback(watch)
    gen = drive(loop, server, "slow", duration=0.5, clients=2, read_rate=100_000)
    s = gen.summary()
    assert (s["errors"], s["mismatches"]) == (0, 0)
    assert max(paused) >= 1
    assert s["bytes_sent"] > s["bytes_received"] > 0
    # Reads were rationed: about read_rate per client per second.
    assert s["bytes_received"] <= 2 * 100_000 * 0.5 * 1.5 + 2 * 65536


def test_idle_holds_its_connections(loop: IOLoop, make_server: Callable[..., EchoServer]) -> None:
    server = make_server()
    seen: list[int] = []
    listener = server.start_listener("127.0.0.1", 0)
    gen = LoadGenerator(
        loop, socket.AF_INET, ("127.0.0.1", listener.port), mode="idle", clients=7, duration=0.2
    )
    loop.call_later(0.15, lambda: seen.append(gen.open_connections))
    loop.call_later(0.15, lambda: seen.append(len(server.connections)))
    gen.start()
    loop.start()
    assert seen == [7, 7]
    s = gen.summary()
    assert (s["round_trips"], s["bytes_sent"], s["errors"], s["mismatches"]) == (0, 0, 0, 0)


def test_churn_connects_again_and_again(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server()
    gen = drive(loop, server, "churn", clients=3, size=500)
    s = gen.summary()
    assert (s["errors"], s["mismatches"], s["connect_failures"]) == (0, 0, 0)
    assert s["round_trips"] > 10
    assert server.listener_rows()[0].accepted >= s["round_trips"]


def test_a_server_that_closes_connections_is_counted_as_errors(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server(max_connections=1)  # the second client is closed at once
    gen = drive(loop, server, "rr", clients=2, size=100, duration=0.35)
    s = gen.summary()
    assert s["errors"] >= 2  # and replaced, after a pause, again and again
    assert s["mismatches"] == 0
    assert s["round_trips"] > 0
    assert "closed by server" in gen.reasons


# -- catching a bad echo ------------------------------------------------------------------------


class CorruptingServer:
    """A blocking echo server on a thread that flips one bit at byte ``at`` of each stream."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.accepting = threading.Thread(target=self._accept, daemon=True)
        self.accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _echo(self, conn: socket.socket) -> None:
        offset = 0
        with conn:
            try:
                while data := conn.recv(65536):
                    if self.at < 0:
                        data = self.garble(data)
                    elif offset <= self.at < offset + len(data):
                        i = self.at - offset
                        data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
                    conn.sendall(data)
                    offset += len(data)
            except OSError:
                pass

    @staticmethod
    def garble(data: bytes) -> bytes:
        """``at`` < 0: every chunk comes back with its first byte flipped and one byte more."""
        return bytes([data[0] ^ 0xFF]) + data[1:] + b"!"

    def close(self) -> None:
        self.sock.close()


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    load_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def run_load(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = load_command.run(args_for(*argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _serve_on_a_thread(
    host: str = "127.0.0.1", **kwargs: Any
) -> tuple[IOLoop, EchoServer, int, threading.Thread]:
    """An echo server on its own loop on a thread; (loop, server, port, thread)."""
    loop = IOLoop(make_current=False)
    server = EchoServer(loop, **kwargs)
    try:
        listener = server.start_listener(host, 0)
    except Exception:
        loop.close()
        raise
    thread = threading.Thread(target=loop.start)
    thread.start()
    return loop, server, listener.port, thread


def _stop(loop: IOLoop, server: EchoServer, thread: threading.Thread) -> None:
    loop.add_callback(loop.stop)
    thread.join(5)
    server.close_all()
    loop.close()


def load_a_corrupting_server(at: int, clients: int, size: int) -> tuple[int, dict[str, Any], str]:
    """(exit status, JSON summary, stderr) of a short run against ``CorruptingServer(at)``."""
    bad = CorruptingServer(at)
    try:
        code, out, err = run_load(
            "--port", str(bad.port), "--clients", str(clients), "--size", str(size),
            "--duration", "0.3", "--json", "--progress", "none",
        )  # fmt: skip
    finally:
        bad.close()
    return code, json.loads(out), err


def test_a_flipped_bit_is_a_mismatch_and_exit_status_1() -> None:
    code, summary, err = load_a_corrupting_server(at=5000, clients=2, size=1000)
    assert summary["mismatches"] == 2  # one per connection
    assert code == 1
    assert "MISMATCH" in err and "byte 5000" in err


def test_wrong_bytes_are_not_round_trips_and_the_first_wrong_byte_is_named() -> None:
    # Every reply is wrong at its first byte and one byte too long. It used to count them as
    # round trips, as MB/s echoed, and to report "1 bytes never sent" instead of byte 0.
    code, summary, err = load_a_corrupting_server(at=-1, clients=1, size=100)
    assert code == 1
    assert summary["mismatches"] >= 1 and summary["bytes_received"] > 0
    assert summary["round_trips"] == 0 and summary["mb_per_s"] == 0.0
    assert summary["latency_p50_ms"] is None
    assert "MISMATCH: connection 0 (client 0): byte 0: expected" in err


def test_bytes_beyond_what_was_sent_are_named_as_such(
    loop: IOLoop, make_server: Callable[..., EchoServer]
) -> None:
    server = make_server()
    listener = server.start_listener("127.0.0.1", 0)
    gen = LoadGenerator(
        loop, socket.AF_INET, ("127.0.0.1", listener.port), clients=1, size=10, duration=5
    )
    gen.start()
    client = next(iter(gen._by_fd.values()))
    client.sent = client.received = 0  # nothing sent yet, as far as the check knows
    assert gen._received(client, b"xyz") == 3
    assert gen.mismatches == 1
    assert gen.first_mismatch.endswith("3 bytes never sent")
    gen.finish()


def test_a_bracketed_ipv6_host_is_accepted() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        loop, server, port, thread = _serve_on_a_thread(host="::1")
    except Exception:
        pytest.skip("::1 is not available here")
    try:
        code, out, err = run_load(
            "--host", "[::1]", "--port", str(port), "--clients", "2",
            "--duration", "0.3", "--json", "--progress", "none",
        )  # fmt: skip
    finally:
        _stop(loop, server, thread)
    assert code == 0, err
    assert json.loads(out)["round_trips"] > 0


def test_json_summary_and_jsonl_progress() -> None:
    loop, server, port, thread = _serve_on_a_thread()
    try:
        code, out, err = run_load(
            "--port", str(port), "--clients", "3", "--duration", "1.3",
            "--json", "--progress", "jsonl",
        )  # fmt: skip
    finally:
        _stop(loop, server, thread)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert set(summary) >= SUMMARY_KEYS
    assert summary["mode"] == "rr" and summary["clients"] == 3 and summary["size"] == 1024
    assert 1.25 <= summary["duration_s"] < 2.0
    progress = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert progress, err
    assert set(progress[0]) == PROGRESS_KEYS
    assert progress[0]["open_connections"] == 3
    assert progress[0]["round_trips"] > 0


def test_human_summary() -> None:
    loop, server, port, thread = _serve_on_a_thread()
    try:
        code, out, err = run_load("--port", str(port), "--duration", "0.2")
    finally:
        _stop(loop, server, thread)
    assert code == 0, err
    assert "round trips" in out and "latency p50" in out and "0 mismatches" in out
    assert err == ""  # not a terminal: no progress line


def test_cannot_connect_is_exit_status_2_with_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    code, out, err = run_load("--port", str(port), "--duration", "5", "--progress", "none")
    assert code == 2
    assert err.strip() == f"loopmon load: 127.0.0.1:{port}: connection refused"
    assert out == ""


def test_another_machine_is_refused_without_allow_remote() -> None:
    code, _, err = run_load("--host", "192.0.2.1", "--port", "9", "--duration", "0.1")
    assert code == 2
    assert "--allow-remote" in err
    assert len(err.strip().splitlines()) == 1


def test_more_clients_than_descriptors_is_refused_before_any_connect() -> None:
    # It used to open what it could, then die starting its loop (EMFILE on the signal pipe).
    resource = pytest.importorskip("resource")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no descriptor limit here")
    code, out, err = run_load("--port", "9", "--clients", str(hard), "--duration", "0.1")
    assert code == 2
    assert f"--clients {hard} needs about" in err and "open files" in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_usage_errors_exit_2() -> None:
    too_big = str(generator.MAX_SIZE + 1)
    for argv in (
        ["--clients", "0"],
        ["--size", "-1"],
        ["--size", too_big],
        ["--size", "99999999999999999999999999"],
        ["--duration", "0"],
        ["--mode", "x"],
    ):
        with pytest.raises(SystemExit) as info:
            args_for(*argv)
        assert info.value.code == 2
    assert args_for("--size", str(generator.MAX_SIZE)).size == generator.MAX_SIZE


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--inflight", "100"], "--inflight applies to --mode flood only"),
        (["--mode", "slow", "--inflight", "100"], "--inflight applies to --mode flood only"),
        (["--read-rate", "100"], "--read-rate applies to --mode slow only"),
        (["--mode", "flood", "--read-rate", "100"], "--read-rate applies to --mode slow only"),
    ],
)
def test_an_option_for_another_mode_is_refused_not_ignored(argv: list[str], says: str) -> None:
    code, out, err = run_load("--port", "9", "--duration", "0.1", *argv)
    assert (code, out, err.strip()) == (2, "", f"loopmon load: {says}")


def test_select_refuses_more_clients_than_it_can_watch_in_one_line() -> None:
    # It used to connect them all, then die with a traceback when the loop's own signal pipe
    # got an fd beyond FD_SETSIZE.
    clients = FD_SETSIZE - fdlimit.FD_HEADROOM + 1
    code, out, err = run_load(
        "--port", "9", "--backend", "select", "--clients", str(clients), "--duration", "0.1"
    )
    assert code == 2 and out == ""
    assert err.strip() == (
        f"loopmon load: --backend select watches fds below {FD_SETSIZE} only: at most "
        f"{clients - 1} clients (use epoll, kqueue or poll for more)"
    )


def test_a_run_that_lost_connections_exits_1_and_says_why() -> None:
    loop, server, port, thread = _serve_on_a_thread(max_connections=0)  # closes every one
    try:
        code, out, err = run_load(
            "--port", str(port), "--clients", "2", "--duration", "0.3", "--json",
            "--progress", "none",
        )  # fmt: skip
    finally:
        _stop(loop, server, thread)
    summary = json.loads(out)
    assert summary["errors"] >= 2 and summary["round_trips"] == 0
    assert code == 1
    assert f"loopmon load: failed: {summary['errors']:,} errors, 0 connect failures" in err


def test_nothing_measured_is_null_not_zero_and_idle_says_what_it_held() -> None:
    loop, server, port, thread = _serve_on_a_thread()
    try:
        code, out, err = run_load(
            "--port", str(port), "--mode", "idle", "--clients", "5", "--duration", "0.3",
            "--json", "--progress", "none",
        )  # fmt: skip
        code2, text, _ = run_load(
            "--port", str(port), "--mode", "idle", "--clients", "5", "--duration", "0.3"
        )
    finally:
        _stop(loop, server, thread)
    assert code == 0 and code2 == 0, err
    summary = json.loads(out)
    assert summary["round_trips"] == 0
    assert summary["latency_p50_ms"] is None and summary["latency_p99_ms"] is None
    assert summary["latency_max_ms"] is None
    assert summary["connections_held"] == 5
    assert "latency n/a (no round trip completed)" in text
    assert "5 of 5 connections open at the end" in text
    assert "0.000 ms" not in text


def test_port_0_is_no_target() -> None:
    # One port type for every command (0-65535: a listener may ask for any free port); a
    # client has nothing to connect to at port 0, and says so.
    code, _, err = run_load("--port", "0")
    assert code == 2
    assert "--port 0 names no server" in err


def test_the_summary_counts_one_in_the_singular() -> None:
    # "rr: 1 clients x 1,024 B", "1 errors": a new user's run with --clients 1.
    from loopmon.cli.load import format_summary

    summary = dict(
        mode="rr", clients=1, size=1024, duration_s=1.0, backend="epoll", round_trips=1,
        round_trips_per_s=1.0, mb_per_s=0.001, latency_p50_ms=None, latency_p99_ms=None,
        latency_max_ms=None, connections_held=1, bytes_sent=1024, bytes_received=1024,
        errors=1, mismatches=1, connect_failures=1,
    )  # fmt: skip
    text = format_summary(summary)
    assert "rr: 1 client x 1,024 B" in text
    assert "1 round trip," in text
    assert "1 error, 1 mismatch, 1 connect failure" in text
    assert "1 of 1 connection open" in text
    text = format_summary(dict(summary, clients=2, errors=0, mismatches=2, connect_failures=0))
    assert "2 clients x" in text and "0 errors, 2 mismatches, 0 connect failures" in text
