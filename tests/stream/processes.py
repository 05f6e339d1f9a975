"""``loopmon serve --telemetry``, ``loopmon run --telemetry`` and ``loopmon attach`` as real
subprocesses, with their lines read on threads so a test waits with a timeout."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.process_lines import LISTENING, ROOT, TIMEOUT, Lines
from tests.process_lines import loopmon_command as command

TELEMETRY = re.compile(r"^(?:loopmon: )?telemetry on (\S+)$")
TOKEN_FILE = re.compile(r"^(?:loopmon: )?token file (\S+)$")

_T = TypeVar("_T")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "LOOPMON_TOKEN"}
    return {**base, "PYTHONUNBUFFERED": "1", **extra}


class Serve:
    """``loopmon serve --port 0 --telemetry ADDR --quiet``, read up to its token file line."""

    def __init__(self, *extra: str, telemetry: str = "127.0.0.1:0") -> None:
        self.proc = subprocess.Popen(
            command("serve", "--port", "0", "--telemetry", telemetry, "--quiet", *extra),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        # listening, telemetry, token file, and ``recording to FILE`` with --record.
        self.lines = [self._line() for _ in range(3 + ("--record" in extra))]
        listening = LISTENING.match(self.lines[0])
        telemetry_line = TELEMETRY.match(self.lines[1])
        token = TOKEN_FILE.match(self.lines[2])
        assert listening and telemetry_line and token, self.lines
        self.echo_port = int(listening[2])
        self.telemetry = telemetry_line[1]
        self.token_file = Path(token[1])
        self.token = bytes.fromhex(self.token_file.read_text().strip())

    def _line(self) -> str:
        line = self.out.next()
        assert line is not None, f"serve exited: {self.err.rest(2.0)}"
        return line

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Attach:
    """``loopmon attach --json ...`` running, its objects parsed as they come."""

    def __init__(self, address: str, *extra: str, environ: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            command("attach", "--json", *extra, address),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environ or env(),
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)

    def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        line = self.out.next(timeout)
        assert line is not None, f"attach exited: {self.err.rest(2.0)}"
        obj: dict[str, Any] = json.loads(line)
        return obj

    def until(
        self, ok: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            obj = self.next(max(end - time.monotonic(), 0.01))
            if ok(obj):
                return obj
        raise AssertionError("no such object in time")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=10)


def attach_once(address: str, *extra: str, environ: dict[str, str] | None = None,
                timeout: float = 30.0) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        command("attach", "--json", *extra, address),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environ or env(),
        timeout=timeout,
    )


def wait_until(probe: Callable[[], _T], ok: Callable[[_T], bool], timeout: float = TIMEOUT) -> _T:
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value) or time.monotonic() > end:
            return value
        time.sleep(0.02)


def echo_round(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` and read back as many bytes."""
    sock.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
