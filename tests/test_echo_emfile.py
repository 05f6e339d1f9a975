"""Out of file descriptors: the server stops accepting for a back-off instead of spinning on a
backlog it cannot accept, counts it, and resumes once descriptors are free again.

The server runs in a subprocess with RLIMIT_NOFILE lowered to a few more than it already uses;
this process connects more clients than that. The subprocess measures its own CPU time over a
second while it is refusing: a level-triggered listener left registered would burn the whole
second.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.echo_helpers import BACKENDS, TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 40

SERVER = r"""
import json, os, resource, sys
from loopmon.echo import EchoServer
from loopmon.ioloop import IOLoop

loop = IOLoop(backend=sys.argv[1], make_current=False)
server = EchoServer(loop)
listener = server.start_listener("127.0.0.1", 0)
probe = os.dup(0)
os.close(probe)
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (probe + 8, hard))
print(listener.port, flush=True)

def run_for(seconds):
    loop.call_later(seconds, loop.stop)
    loop.start()

def run_until(predicate, limit):
    deadline = loop.time() + limit
    def check():
        if predicate() or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_later(0.01, check)
    loop.add_callback(check)
    loop.start()

run_until(lambda: listener.errors > 0, 10.0)
errors_before = listener.errors
accepted_before = listener.accepted
cpu = sum(os.times()[:2])
run_for(1.0)
cpu = sum(os.times()[:2]) - cpu
errors_during = listener.errors - errors_before
for fd in list(server.connections):
    server.close_connection(fd)
run_until(lambda: listener.accepted > accepted_before, 5.0)
print(json.dumps({
    "errors_before": errors_before,
    "errors_during": errors_during,
    "accepted_before": accepted_before,
    "accepted_after": listener.accepted,
    "cpu_s": cpu,
    "error": listener.error,
}), flush=True)
server.close_all()
loop.close()
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_emfile_backs_off_without_spinning_and_resumes(backend: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, backend],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(CLIENTS):
            # The kernel completes the handshake from the backlog whether or not the server
            # can accept() it.
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        out, err = proc.communicate(timeout=30)
    finally:
        for sock in clients:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors_before"] >= 1
    assert result["error"] == "too many open files"
    # About one retry per back-off period, not a spin: ~10 in the second.
    assert 1 <= result["errors_during"] <= 30
    assert result["cpu_s"] < 0.3, f"{result['cpu_s']:.3f} s of CPU in 1 s while refusing"
    assert result["accepted_after"] > result["accepted_before"]
    # The warning is logged once per burst, not per retry.
    assert err.count("too many open files") <= 2, err
