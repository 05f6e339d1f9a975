"""``loopmon run --metrics`` on real asyncio programs loaded by real clients: where it says it
serves (before the program starts), what it exports (what the instrument measures, nothing
else), a ``loop`` label only for several loops, the program's output and status unchanged, a
real Prometheus's count of open connections, and the install line without the extra."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.echo_helpers import connect, payload, recv_exactly
from tests.metrics.processes import ROOT, Prometheus, get, scrape, wait_until

pytestmark = pytest.mark.slow

METRICS_LINE = re.compile(rb"^loopmon: metrics on (\S+):(\d+)$")
TIMEOUT = 30.0

# An asyncio streams echo server. It waits for a line on stdin before making its loop (so a
# test can scrape before the program starts), prints its port(s), echoes, and ends when a client
# sends b"quit\n": it prints what it served and exits 3. With "two", two loops on two threads
# named alpha and beta, each with a server of its own.
ECHO = """\
import asyncio, sys, threading

served = []
say = threading.Lock()

async def serve(name, ready):
    stop = asyncio.Event()

    async def handle(reader, writer):
        served.append(name)
        while data := await reader.read(65536):
            if data == b"quit\\n":
                stop.set()
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with say:  # two threads: one line each, whole
        print(f"port {name} {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()

sys.stdin.readline()
if sys.argv[1:] == ["two"]:
    threads = [threading.Thread(target=asyncio.run, args=(serve(n, None),), name=n)
               for n in ("alpha", "beta")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
else:
    asyncio.run(serve("main", None))
print("served", sorted(served), flush=True)
sys.exit(3)
"""


@dataclass
class Program:
    proc: subprocess.Popen[bytes]
    metrics_port: int | None

    def go(self) -> dict[str, int]:
        """Let the program start; its echo ports by server name."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        ports = {}
        wanted = 2 if self.proc.args[-1] == "two" else 1  # type: ignore[index]
        while len(ports) < wanted:
            line = self.proc.stdout.readline()
            assert line.startswith(b"port "), line
            _, name, port = line.split()
            ports[name.decode()] = int(port)
        return ports

    def finish(self, port: int) -> tuple[int, bytes, bytes]:
        with connect(port) as quit_client:
            quit_client.sendall(b"quit\n")
            out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err


def start(tmp_path: Path, *args: str, metrics: bool, env: dict[str, str] | None = None) -> Program:
    script = tmp_path / "echo_program.py"
    script.write_text(ECHO)
    prefix = [sys.executable]
    if metrics:
        prefix += ["-m", "loopmon", "run", "--metrics", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*prefix, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env or dict(os.environ, PYTHONPATH=str(ROOT)),
        bufsize=0,
    )
    port = None
    if metrics:
        assert proc.stderr is not None
        first = proc.stderr.readline().rstrip(b"\n")
        match = METRICS_LINE.match(first)
        if match is None:
            proc.kill()
            raise AssertionError(f"not the metrics line: {first!r} {proc.communicate()}")
        port = int(match.group(2))
    return Program(proc, port)


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in started:
        if program.proc.poll() is None:
            program.proc.kill()
            program.proc.communicate()


def without_port_lines(out: bytes) -> bytes:
    return re.sub(rb"^(port \w+) \d+$", rb"\1 N", out, flags=re.M)


def echo_clients(port: int, n: int) -> list[socket.socket]:
    message = payload(300)
    clients = []
    for _ in range(n):
        client = connect(port)
        client.sendall(message)
        assert recv_exactly(client, len(message)) == message
        clients.append(client)
    return clients


def promtool_check(body: bytes) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: apt-get install -y prometheus (.ci/run does)")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def names(body: bytes) -> set[str]:
    """The sample names the page holds."""
    return {
        sample.name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_run_serves_the_programs_figures_and_changes_nothing_else(
    tmp_path: Path, programs: list[Program]
) -> None:
    plain = start(tmp_path, metrics=False)
    programs.append(plain)
    plain_ports = plain.go()
    for client in echo_clients(plain_ports["main"], 3):
        client.close()
    plain_result = plain.finish(plain_ports["main"])

    watched = start(tmp_path, metrics=True)
    programs.append(watched)
    assert watched.metrics_port is not None
    # Served before the program has made a loop: the producer only.
    status, _, early = get(watched.metrics_port)
    assert status == 200
    assert names(early) == {"loopmon_info"}
    ports = watched.go()
    clients = echo_clients(ports["main"], 3)
    try:
        samples = wait_until(
            lambda: scrape(watched.metrics_port),  # type: ignore[arg-type]
            lambda s: s.get("loopmon_connections{}") == 3 and s.get("loopmon_tasks{}") == 4,
        )
        # Three connections, and a task for each (their handlers) besides the main one.
        assert samples["loopmon_connections{}"] == 3
        assert samples["loopmon_tasks{}"] == 4
        assert samples["loopmon_events_total{kind=read}"] >= 3
        assert samples["loopmon_loop_iterations_total{}"] > 0
        _, headers, body = get(watched.metrics_port)
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        promtool_check(body)
        # What a selector cannot see is left out, never exported as 0; no loop label.
        exported = names(body)
        for absent in (
            "loopmon_received_bytes_total",
            "loopmon_sent_bytes_total",
            "loopmon_queued_bytes",
            "loopmon_connections_accepted_total",
            "loopmon_connections_refused_total",
        ):
            assert absent not in exported
        assert {"loopmon_connections", "loopmon_tasks", "loopmon_stalls_total"} <= exported
        assert b'loop="' not in body
        assert b'producer="run"' in body
        assert get(watched.metrics_port, method="HEAD")[2] == b""
        assert get(watched.metrics_port, "/other")[0] == 404
        # The metrics thread takes no signal the program could have been sent.
        for task in Path(f"/proc/{watched.proc.pid}/task").iterdir():
            if int(task.name) == watched.proc.pid:
                continue
            blocked = _status_field(task / "status", "SigBlk")
            assert blocked & (1 << (signal.SIGINT - 1)), task
            assert blocked & (1 << (signal.SIGTERM - 1)), task
    finally:
        for client in clients:
            client.close()
    after = wait_until(
        lambda: scrape(watched.metrics_port),  # type: ignore[arg-type]
        lambda s: s.get("loopmon_connections{}") == 0,
    )
    assert after["loopmon_connections{}"] == 0
    # The closed connections' readiness stays counted.
    assert after["loopmon_events_total{kind=read}"] >= samples["loopmon_events_total{kind=read}"]
    status, out, err = watched.finish(ports["main"])
    assert status == plain_result[0] == 3
    assert without_port_lines(out) == without_port_lines(plain_result[1])
    assert plain_result[2] == b""
    assert all(line.startswith(b"loopmon:") for line in err.splitlines()), err
    # The port closed with the program.
    with pytest.raises(OSError):
        get(watched.metrics_port)


def _status_field(path: Path, name: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {name} in {path}")


def test_several_loops_have_a_loop_label(tmp_path: Path, programs: list[Program]) -> None:
    watched = start(tmp_path, "two", metrics=True)
    programs.append(watched)
    ports = watched.go()
    clients = echo_clients(ports["alpha"], 2) + echo_clients(ports["beta"], 1)
    try:
        samples = wait_until(
            lambda: scrape(watched.metrics_port),  # type: ignore[arg-type]
            lambda s: (
                s.get("loopmon_connections{loop=alpha}") == 2
                and s.get("loopmon_connections{loop=beta}") == 1
            ),
        )
        assert samples["loopmon_connections{loop=alpha}"] == 2
        assert samples["loopmon_connections{loop=beta}"] == 1
        for loop in ("alpha", "beta"):
            assert samples[f"loopmon_loop_iterations_total{{loop={loop}}}"] > 0
            assert f"loopmon_tasks{{loop={loop}}}" in samples
        assert "loopmon_connections{}" not in samples
        _, _, body = get(watched.metrics_port)  # type: ignore[arg-type]
        promtool_check(body)
    finally:
        for client in clients:
            client.close()
    # The first loop's quit ends it; the second's ends the program.
    with connect(ports["alpha"]) as quit_alpha:
        quit_alpha.sendall(b"quit\n")
        assert quit_alpha.recv(1) == b""
    status, out, err = watched.finish(ports["beta"])
    assert status == 3 and out.endswith(b"\n") and b"served" in out, (out, err)


def test_a_forked_child_does_not_hold_the_metrics_port(
    tmp_path: Path, programs: list[Program]
) -> None:
    script = tmp_path / "forks.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "asyncio.run(asyncio.sleep(0.2))\n"  # a loop, so the instrument has run
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.stdin.readline(); os._exit(0)\n"
        "print('child', pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.waitpid(pid, 0)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopmon", "run", "--metrics", "127.0.0.1:0", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        bufsize=0,
    )
    programs.append(Program(proc, None))
    assert proc.stderr is not None and proc.stdout is not None and proc.stdin is not None
    match = METRICS_LINE.match(proc.stderr.readline().rstrip(b"\n"))
    assert match
    port = int(match.group(2))
    child = int(proc.stdout.readline().split()[1])
    inode = _listening_inode(port)
    assert inode in _socket_inodes(proc.pid)
    assert inode not in _socket_inodes(child)
    assert get(port)[0] == 200  # the parent still serves
    proc.stdin.write(b"done\ndone\n")
    proc.stdin.close()
    assert proc.wait(TIMEOUT) == 0


def _listening_inode(port: int) -> int:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(inode)
    raise AssertionError(f"nothing listens on {port}")


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


# A sitecustomize that hides the metrics extra: prometheus_client looks uninstalled.
_HIDE_METRICS = """
import importlib.abc, sys

class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prometheus_client":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
"""


def test_without_prometheus_client_one_line_exit_2_and_the_program_not_started(
    tmp_path: Path,
) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE_METRICS)
    env = dict(os.environ, PYTHONPATH=f"{hide}{os.pathsep}{ROOT}")
    check = subprocess.run([sys.executable, "-c", "import prometheus_client"], env=env)
    assert check.returncode != 0, "the blocker did not hide prometheus_client"
    marker = tmp_path / "started"
    script = tmp_path / "p.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\nprint('started')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "loopmon", "run", "--metrics", "127.0.0.1:0", str(script)],
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert not marker.exists()
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("loopmon: ")
    assert "pip install 'loopmon[metrics]'" in lines[0]


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="the prometheus binary is missing: apt-get install -y prometheus (.ci/run does)",
)
def test_a_real_prometheus_counts_the_run_programs_connections(
    tmp_path: Path, programs: list[Program]
) -> None:
    watched = start(tmp_path, metrics=True)
    programs.append(watched)
    ports = watched.go()
    target = f"127.0.0.1:{watched.metrics_port}"
    prometheus = Prometheus(
        tmp_path, [{"job_name": "run", "static_configs": [{"targets": [target]}]}]
    )

    def one(expr: str) -> float | None:
        values = prometheus.values(expr)
        return values[0][1] if len(values) == 1 else None

    clients: list[socket.socket] = []
    try:
        clients = echo_clients(ports["main"], 5)
        expr = f'loopmon_connections{{job="run", instance="{target}"}}'
        assert wait_until(lambda: one(expr), lambda v: v == 5, timeout=TIMEOUT) == 5
        assert one(f'up{{job="run", instance="{target}"}}') == 1
        assert wait_until(lambda: one('loopmon_tasks{job="run"}'), lambda v: v == 6) == 6
        assert prometheus.values('loopmon_received_bytes_total{job="run"}') == []
        assert one('loopmon_info{job="run", producer="run"}') == 1
        for client in clients[:2]:
            client.close()
        assert wait_until(lambda: one(expr), lambda v: v == 3, timeout=TIMEOUT) == 3
    finally:
        for client in clients:
            client.close()
        prometheus.stop()
    assert watched.finish(ports["main"])[0] == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--metrics", "0.0.0.0:0"), "--allow-remote"),
        (("--metrics", "0.0.0.0:0", "--allow-remote"), "--token-file"),
        (("--allow-remote",), "goes with --metrics"),
        (("--metrics", "127.0.0.1:{busy}"), "in use"),
    ],
)
def test_what_run_refuses_is_one_line_before_the_program_starts(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    marker = tmp_path / "started"
    script = tmp_path / "p.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "loopmon",
                "run",
                *(a.format(busy=port) for a in args),
                str(script),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=TIMEOUT,
        )
    assert proc.returncode == 2
    assert proc.stdout == "" and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loopmon: ") and words in lines[0], lines


def test_bad_input_on_runs_metrics_port_is_dropped_in_loopmon_lines(
    tmp_path: Path, programs: list[Program]
) -> None:
    # The same endpoint as serve's, on its own thread: garbage and a flood over the connection
    # limit are refused, the program's echo goes on, and the drops are loopmon: lines (never
    # a record through the program's logging, which would print them bare).
    watched = start(tmp_path, metrics=True)
    programs.append(watched)
    ports = watched.go()
    assert watched.metrics_port is not None
    (echo,) = echo_clients(ports["main"], 1)
    flood: list[socket.socket] = []
    try:
        with socket.create_connection(("127.0.0.1", watched.metrics_port), timeout=5) as bad:
            bad.sendall(b"\x00\xffnot http\r\n\r\n")
            assert bad.recv(100).startswith(b"HTTP/1.1 400 ")
        for _ in range(40):  # past the limit of 32, each sending nothing yet
            flood.append(socket.create_connection(("127.0.0.1", watched.metrics_port), timeout=5))
        refused = 0
        for sock in flood[32:]:
            if sock.recv(100).startswith(b"HTTP/1.1 503 "):
                refused += 1
        assert refused == 8
        message = payload(200)
        echo.sendall(message)
        assert recv_exactly(echo, len(message)) == message
    finally:
        for sock in flood:
            sock.close()
        echo.close()
    # The flood gone, scrapes are answered again.
    assert wait_until(lambda: _status(watched.metrics_port), lambda s: s == 200) == 200
    status, _, err = watched.finish(ports["main"])
    assert status == 3
    lines = err.decode().splitlines()
    assert all(line.startswith("loopmon: ") for line in lines), lines
    assert any("not an HTTP request line" in line for line in lines), lines
    assert any("refused" in line for line in lines), lines


def _status(port: int | None) -> int:
    assert port is not None
    try:
        return get(port)[0]
    except OSError:
        return 0
