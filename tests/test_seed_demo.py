"""The article's demo (tests/seed_demo.py), unchanged but for its import, echoes 20 concurrent
clients exactly on every backend."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.loop_helpers import BACKENDS

DEMO = Path(__file__).with_name("seed_demo.py")
ROOT = DEMO.parent.parent
PORT = 10000  # the demo's own, hard-coded


def wait_for_port(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("demo never listened")


def client(index: int, results: dict[int, bool]) -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
        ok = True
        for round_ in range(5):
            message = f"client {index} round {round_} ".encode() * (index + 1)
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            ok = ok and got == message
        results[index] = ok


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_seed_demo_echoes_20_concurrent_clients(backend: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", PORT))
        except OSError:
            pytest.skip(f"port {PORT}, which the demo hard-codes, is busy")
    env = dict(os.environ, LOOPMON_BACKEND=backend, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(DEMO)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(proc)
        results: dict[int, bool] = {}
        threads = [threading.Thread(target=client, args=(i, results)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == dict.fromkeys(range(20), True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
