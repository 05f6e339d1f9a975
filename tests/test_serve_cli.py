"""``loopmon serve`` and ``loopmon load`` as the user runs them: subprocesses of
``python -m loopmon``, checked by their output, their exit status and a plain socket client."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from unittest import mock

import pytest

from tests.echo_helpers import BACKENDS, STRATEGIES, connect, payload, recv_exactly

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"^listening on (\S+):(\d+) \(backend (\w+)\)$")
STATUS = re.compile(r"^\d+ conns \| [\d,]+ events/s \| in .* out .* \| queued .* \| busy \d+% \|")

pytestmark = pytest.mark.slow


class Lines:
    """A subprocess's stream, read line by line on a thread so a test can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout: float = 10.0) -> str | None:
        line = self.lines.get(timeout=timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Every line up to EOF."""
        out = []
        while (line := self.next(timeout)) is not None:
            out.append(line)
        return out


def loopmon(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loopmon", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class Served:
    def __init__(self, *argv: str) -> None:
        self.proc = loopmon("serve", *argv)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        self.addresses: list[tuple[str, int, str]] = []

    def wait_listening(self, count: int = 1) -> list[tuple[str, int, str]]:
        while len(self.addresses) < count:
            line = self.out.next()
            assert line is not None, f"serve exited: {self.err.rest()}"
            match = LISTENING.match(line)
            assert match, f"unexpected line {line!r}"
            self.addresses.append((match[1], int(match[2]), match[3]))
        return self.addresses

    @property
    def port(self) -> int:
        return self.wait_listening()[0][1]

    def stop(self, sig: int = signal.SIGTERM, within: float = 1.0) -> int:
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        took = time.monotonic() - start
        assert took < within, f"took {took:.2f} s to exit"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        s.kill()


def serve(started: list[Served], *argv: str) -> Served:
    s = Served(*argv)
    started.append(s)
    return s


# -- serve --------------------------------------------------------------------------------------


def test_serve_echoes_prints_status_and_exits_0_on_sigterm(served: list[Served]) -> None:
    s = serve(served, "--port", "0")
    ((host, port, backend),) = s.wait_listening()
    assert (host, backend) == ("127.0.0.1", BACKENDS[0])
    with connect(port) as sock:
        message = payload(100_000, seed=1)
        sock.sendall(message)
        assert recv_exactly(sock, len(message)) == message
        status = s.out.next(timeout=5)
        assert status is not None and STATUS.match(status), status
        assert "1 conns" in status
        # The status line is read on the loop thread and stalls are watched by SIGALRM:
        # the process is one thread, which saves every syscall glibc's and CPython's
        # multi-threaded paths (about 5 % of a round trip, measured).
        tasks = Path(f"/proc/{s.proc.pid}/task")
        if tasks.is_dir():
            assert len(list(tasks.iterdir())) == 1
    assert s.stop(signal.SIGTERM) == 0
    assert "Traceback" not in "\n".join(s.err.rest())


def test_serve_sigint_exits_0_and_quiet_prints_no_status(served: list[Served]) -> None:
    s = serve(served, "--port", "0", "--quiet", "--strategy", "seed")
    with connect(s.port) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 5) == b"hello"
        time.sleep(1.3)  # long enough for a status line, were there one
        assert s.stop(signal.SIGINT) == 0
        assert sock.recv(10) == b""  # its connections were closed
    assert s.out.rest() == []
    assert "Traceback" not in "\n".join(s.err.rest())


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_serve_without_a_usable_stdout_serves_and_exits_0(stdout: str) -> None:
    # It used to print a traceback (None has no flush; ENOSPC from flush) on its first line.
    if stdout == "/dev/full" and not Path(stdout).exists():
        pytest.skip("no /dev/full here")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = subprocess.DEVNULL if stdout == "closed" else open(stdout, "w")  # noqa: SIM115
    close_fds = stdout == "closed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopmon", "serve", "--port", str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=target,
        stderr=subprocess.PIPE,
        text=True,
        # Close fd 1 in the child for the "closed" case, as ``>&-`` does.
        preexec_fn=(lambda: os.close(1)) if close_fds else None,  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with connect(port) as sock:
                    sock.sendall(b"still echoing")
                    assert recv_exactly(sock, 13) == b"still echoing"
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "serve never listened"
                time.sleep(0.05)
        time.sleep(1.3)  # a status line's worth
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if target is not subprocess.DEVNULL:
            target.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    if stdout == "/dev/full":
        assert "cannot write to stdout" in err and "serving silently" in err


def test_serve_several_ports(served: list[Served]) -> None:
    s = serve(served, "--port", "0", "--port", "0", "--quiet", "--backend", BACKENDS[-1])
    addresses = s.wait_listening(2)
    assert len({port for _, port, _ in addresses}) == 2
    assert {backend for _, _, backend in addresses} == {BACKENDS[-1]}
    for _, port, _ in addresses:
        with connect(port) as sock:
            sock.sendall(b"abc")
            assert recv_exactly(sock, 3) == b"abc"
    assert s.stop() == 0


def test_serve_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = loopmon("serve", "--port", str(port), "--quiet")
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert out == ""
    assert err.strip() == f"loopmon serve: 127.0.0.1:{port}: address already in use"


def test_serve_usage_errors_exit_2() -> None:
    proc = loopmon("serve", "--port", "0", "--high-water", "1k", "--low-water", "2k")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2
    assert "--low-water" in err and "Traceback" not in err
    proc = loopmon("serve", "--port", "70000")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "port out of range" in err
    for bad in ("-1", "nan", "inf"):
        proc = loopmon("serve", "--port", "0", "--quiet", "--telemetry-hz", bad)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 2 and "--telemetry-hz must be" in err, bad


def test_serve_builds_only_the_snapshots_someone_reads() -> None:
    from loopmon.cli import serve

    seen: list[float] = []

    class Runner:
        def __init__(self, **kwargs: object) -> None:
            seen.append(kwargs["telemetry_hz"])  # type: ignore[arg-type]
            raise ValueError("stop here")

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    for argv, hz in (
        (["--quiet"], 0.0),
        ([], serve.STATUS_HZ),
        (["--quiet", "--telemetry-hz", "25"], 25.0),
    ):
        args = parser.parse_args(["--port", "0", *argv])
        with mock.patch.object(serve, "LoopRunner", Runner):
            assert serve.run(args, io.StringIO(), io.StringIO()) == 2
        assert seen[-1] == hz


# -- load against serve --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_load_against_serve_every_backend_and_strategy(
    served: list[Served], backend: str, strategy: str
) -> None:
    s = serve(served, "--port", "0", "--quiet", "--backend", backend, "--strategy", strategy)
    load = loopmon(
        "load", "--port", str(s.port), "--clients", "8", "--size", "4000",
        "--duration", "0.5", "--backend", backend, "--json",
    )  # fmt: skip
    out, err = load.communicate(timeout=30)
    assert load.returncode == 0, err
    summary = json.loads(out)
    assert (summary["errors"], summary["mismatches"], summary["connect_failures"]) == (0, 0, 0)
    assert summary["round_trips"] > 0
    assert summary["backend"] == backend
    assert s.stop() == 0


def test_load_sigint_stops_early_and_still_prints_the_summary(served: list[Served]) -> None:
    s = serve(served, "--port", "0", "--quiet")
    load = loopmon(
        "load", "--port", str(s.port), "--mode", "flood", "--duration", "60",
        "--json", "--progress", "jsonl",
    )  # fmt: skip
    assert load.stdout is not None and load.stderr is not None
    progress = Lines(load.stderr)
    try:
        first = progress.next(timeout=10)
        assert first is not None
        record = json.loads(first)
        assert record["open_connections"] == 10 and record["round_trips"] > 0
        start = time.monotonic()
        load.send_signal(signal.SIGINT)
        code = load.wait(timeout=10)
        assert time.monotonic() - start < 1.0
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    assert code == 0
    summary = json.loads(load.stdout.read())
    assert summary["mode"] == "flood" and summary["duration_s"] < 10
    assert summary["mismatches"] == 0
    assert s.stop() == 0


def test_load_sigterm_also_prints_the_summary(served: list[Served]) -> None:
    s = serve(served, "--port", "0", "--quiet")
    load = loopmon(
        "load", "--port", str(s.port), "--duration", "60", "--json", "--progress", "jsonl"
    )
    assert load.stderr is not None
    Lines(load.stderr).next(timeout=10)
    load.send_signal(signal.SIGTERM)
    out, _ = load.communicate(timeout=10)
    assert load.returncode == 0
    assert json.loads(out)["round_trips"] > 0


def test_load_cannot_connect_exits_2_with_one_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    load = loopmon("load", "--port", str(port))
    out, err = load.communicate(timeout=10)
    assert load.returncode == 2
    assert out == ""
    assert err.strip() == f"loopmon load: 127.0.0.1:{port}: connection refused"


# -- the status line, from figures alone ------------------------------------------------------


def test_status_line_from_loop_figures() -> None:
    from loopmon.cli.serve import status_line
    from loopmon.snapshot import LagWindow, LoopFigures

    interval = LoopFigures(span_s=2.0, events=50_000, busy_s=0.5, poll_s=1.5)
    lag = LagWindow(p50_s=0.0004, p99_s=0.00137, max_s=0.002, window_s=9.8, samples=98)
    line = status_line(interval, 12, 2_500_000, 4_000_000, 3_000_000, lag=lag)
    assert line == (
        "12 conns | 25,000 events/s | in 1.9 MiB/s out 1.4 MiB/s | queued 2.4 MiB | busy 25% | "
        "lag p99 1.37 ms (last 10 s)"
    )
    assert STATUS.match(line)
    turned = status_line(interval, 12, 0, 0, 0, turned_away=1500, lag=lag)
    assert turned.endswith("(last 10 s) | 1,500 turned away") and STATUS.match(turned)
    assert status_line(interval, 1, 0, 0, 0).endswith("lag p99 n/a")


def test_serve_says_when_it_turns_connections_away(served: list[Served]) -> None:
    # Connections over --max-connections were closed without a word anywhere.
    s = serve(served, "--port", "0", "--max-connections", "1")
    port = s.port
    with connect(port) as kept, connect(port) as second, connect(port) as third:
        kept.sendall(b"x")
        assert recv_exactly(kept, 1) == b"x"
        for sock in (second, third):
            sock.settimeout(5)
            assert sock.recv(10) == b""  # closed at once
        line = ""
        deadline = time.monotonic() + 10
        while "turned away" not in line and time.monotonic() < deadline:
            line = s.out.next(timeout=5) or ""
        assert line.endswith("| 2 turned away"), s.out.seen
    assert s.stop(signal.SIGINT) == 0
    err = "\n".join(s.err.rest())
    assert "1 connection closed at once: 1 open is the most allowed" in err


def _above_fd_setsize(fd: int) -> int:
    """A duplicate of ``fd`` numbered past select()'s FD_SETSIZE (the original is closed)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        if hard != resource.RLIM_INFINITY and hard < 1100:
            pytest.skip("RLIMIT_NOFILE is too low for an fd past 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    high = next(n for n in range(1030, 1100) if not _is_open(n))
    os.dup2(fd, high)
    os.close(fd)
    return high


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("where", ["low fd", "fd past FD_SETSIZE"])
def test_a_full_stdout_skips_status_lines_instead_of_blocking_the_loop(where: str) -> None:
    from loopmon.cli.serve import StatusPrinter
    from loopmon.events import READ
    from loopmon.snapshot import LoopFigures, Snapshot

    def snap(t: float, bytes_in: int) -> Snapshot:
        return Snapshot(
            seq=int(t),
            taken_at=t,
            backend="epoll",
            strategy="direct",
            totals=LoopFigures(span_s=t),
            bytes_in=bytes_in,
            bytes_out=bytes_in,
        )

    class Box:
        def __init__(self) -> None:
            self.posted = [snap(0.0, 0), snap(1.0, 1000), snap(2.0, 4000)]

        def take(self) -> tuple[Snapshot, list[object], int]:
            return self.posted.pop(0), [], 0

    r, w = os.pipe()
    if where != "low fd":
        w = _above_fd_setsize(w)
    os.set_blocking(w, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(w, b"x" * 65536)
    with os.fdopen(w, "w") as out, os.fdopen(r, "rb") as reader:
        printer = StatusPrinter(Box(), out)  # type: ignore[arg-type]
        printer._on_mail(-1, READ)  # the baseline
        printer._on_mail(-1, READ)  # a second later, the pipe is full: returns, skipped
        assert printer.skipped == 1
        os.set_blocking(r, False)
        with contextlib.suppress(BlockingIOError):
            while reader.read(1 << 20):
                pass
        printer._on_mail(-1, READ)
        line = os.read(reader.fileno(), 65536).decode()
    # The line that got out covers both seconds since the baseline: 4000 B over 2 s.
    assert printer.skipped == 1
    assert STATUS.match(line), line
    assert "in 2.0 KiB/s out 2.0 KiB/s" in line
