"""``loopmon run --telemetry`` on a real asyncio streams server: the port opens before the
program starts, ``attach --json`` shows its rows (kind, local, loop) and tasks, the hello says
run takes no commands, and the program's output and exit status are its own."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import ROOT, TELEMETRY, TOKEN_FILE, Attach, Lines, command, echo_round, env

from loopmon.netaddr import format_address, split_address
from loopmon.stream.client import Client
from loopmon.stream.tokens import read_token_file

PROGRAM = str(ROOT / "tests" / "instrument" / "programs" / "streams_echo.py")


def check_the_hello(address: str, token_file: str) -> None:
    """The hello: kind run, no commands, the instrument's figures only."""
    host, port = split_address(address)
    consumer = Client(host, port, read_token_file(token_file), reconnect=False)
    consumer.start()
    try:
        assert consumer.wait_connected(10)
        info = consumer.producer
        assert info is not None and info.kind == "run" and info.commands == ()
        assert "bytes_in" not in info.measures and "mask" in info.measures
    finally:
        consumer.stop()


def test_run_telemetry_streams_an_asyncio_server() -> None:
    proc = subprocess.Popen(
        command("run", "--telemetry", PROGRAM),  # bare: the default address
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    attach = None
    try:
        first, second = err.next(), err.next()
        assert first is not None and second is not None
        telemetry, token_file = TELEMETRY.match(first), TOKEN_FILE.match(second)
        assert telemetry and token_file, (first, second)
        assert first.startswith("loopmon: ") and telemetry[1].startswith("127.0.0.1:")
        port_line = out.next()
        assert port_line is not None and port_line.startswith("port ")
        echo_port = int(port_line.split()[1])
        client = socket.create_connection(("127.0.0.1", echo_port))
        assert echo_round(client, b"hello\n") == b"hello\n"
        peer = format_address(*client.getsockname()[:2])

        check_the_hello(telemetry[1], token_file[1])

        attach = Attach(telemetry[1], "--count", "50")
        obj = attach.until(lambda o: any(c["peer"] == peer for c in o["connections"]))
        rows = {c["peer"]: c for c in obj["connections"]}
        row = rows[peer]
        assert row["kind"] == "connection" and row["local"] == f"127.0.0.1:{echo_port}"
        assert isinstance(row["loop"], int) and row["mask"] == "R"
        assert row["bytes_in"] is None and row["bytes_out"] is None  # a selector sees no bytes
        listeners = [c for c in obj["connections"] if c["kind"] == "listener"]
        assert [c["local"] for c in listeners] == [f"127.0.0.1:{echo_port}"]
        assert isinstance(obj["tasks"], list) and obj["tasks"]
        assert {"id", "name", "coro", "state", "age_s", "waiting_at"} <= set(obj["tasks"][0])
        assert attach.stop() == 0

        client.sendall(b"quit\n")
        client.recv(100)
        client.close()
        assert proc.wait(timeout=20) == 3  # the program's own status
        assert out.rest() == [
            "factory kept: True", "tasks: ['main']", "factory made True"
        ]  # fmt: skip
        assert [line for line in err.rest() if not line.startswith("loopmon:")] == ["bye"]
        time.sleep(0.1)
        assert not Path(token_file[1]).exists()
    finally:
        if attach is not None:
            attach.proc.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


FORKS = """
import glob, os, sys
mine = glob.glob(os.path.join(sys.argv[1], f"telemetry-*-{os.getpid()}.token"))
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the child ends through loopmon's own exit path
os.waitpid(pid, 0)
print("kept" if all(os.path.exists(p) for p in mine) and mine else "lost")
"""


def test_a_forked_child_leaves_its_parents_token_file(tmp_path: Path) -> None:
    from loopmon.stream.tokens import runtime_dir

    program = tmp_path / "forks.py"
    program.write_text(FORKS)
    result = subprocess.run(
        command("run", "--telemetry", "127.0.0.1:0", str(program), str(runtime_dir())),
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kept\n"
    # The child closes nothing of its parent's (it once tried to close the parent's
    # running loop, a traceback on the program's stderr).
    assert [line for line in result.stderr.splitlines() if not line.startswith("loopmon:")] == []


FORK_WITH_THREADS = """
import os, sys, threading
held = threading.Event()
for _ in range(int(sys.argv[1])):  # threads of the program's own
    threading.Thread(target=held.wait, daemon=True).start()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
held.set()
print("forked")
"""


@pytest.mark.parametrize("threads", [0, 1])
def test_forking_warns_as_it_would_without_loopmon(tmp_path: Path, threads: int) -> None:
    # From 3.12 os.fork warns of a multi-threaded process: the publisher's thread must not
    # make a single-threaded program warn, nor hide the warning from one with threads of its
    # own (the same on every version: 3.11 never warns, plainly or under loopmon).
    program = tmp_path / "forks.py"
    program.write_text(FORK_WITH_THREADS)
    argv = [str(program), str(threads)]
    plain = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env=env(), timeout=60
    )
    watched = subprocess.run(
        command("run", "--telemetry", "127.0.0.1:0", *argv),
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip

    def program_stderr(text: str) -> str:
        kept = [line for line in text.splitlines() if not line.startswith("loopmon:")]
        return re.sub(r"pid=\d+", "pid=N", "\n".join(kept))

    assert (
        (watched.returncode, watched.stdout) == (plain.returncode, plain.stdout) == (0, "forked\n")
    )
    assert program_stderr(watched.stderr) == program_stderr(plain.stderr)
    assert ("multi-threaded" in plain.stderr) == (threads > 0 and sys.version_info >= (3, 12))


FORK_IN_THE_LOOP = """
import asyncio, os, threading
async def main():
    await asyncio.sleep(0.05)
    pid = os.fork()  # while the loop runs, its SIGALRM stall watch armed
    if pid == 0:
        print("child threads:", threading.active_count(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent threads:", threading.active_count(), flush=True)  # the stream has no thread
asyncio.run(main())
"""


THREADS = """
import asyncio, threading
async def main():
    await asyncio.sleep(0.3)  # several of the instrument's ticks, each pumping the stream
    print(threading.active_count(), [t.name for t in threading.enumerate()])
asyncio.run(main())
"""


def test_a_child_forked_in_the_loop_starts_no_watch(tmp_path: Path) -> None:
    # The child put the parent's SIGALRM handler back through signal.signal, which the
    # instrument wraps: it took that for the program taking SIGALRM, said so on the shared
    # stderr and started a watch thread in the child.
    program = tmp_path / "forks.py"
    program.write_text(FORK_IN_THE_LOOP)
    watched = subprocess.run(
        command("run", "--telemetry", "127.0.0.1:0", str(program)),
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout == "child threads: 1\nparent threads: 1\n"
    assert "SIGALRM" not in watched.stderr


def test_the_stream_makes_no_thread(tmp_path: Path) -> None:
    # stream.pump: a second thread, even asleep, costs a single-threaded program ~2 % of a
    # round trip (glibc's and CPython's multi-threaded paths); the stream is pumped from the
    # program's loop at the ticks instead.
    program = tmp_path / "threads.py"
    program.write_text(THREADS)
    result = subprocess.run(
        command("run", "--telemetry", "127.0.0.1:0", str(program)),
        cwd=ROOT, capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 ['MainThread']\n"
