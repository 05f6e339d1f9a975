"""``loopmon serve --metrics`` and a real Prometheus as subprocesses, and plain HTTP clients."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from tests.process_lines import LISTENING, ROOT, TIMEOUT, Lines, loopmon_command

METRICS = re.compile(r"^metrics on (\S+):(\d+)$")


_T = TypeVar("_T")


class Serve:
    """``loopmon serve --port 0 --metrics 127.0.0.1:0 ...``, up and printing."""

    def __init__(self, *extra: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            loopmon_command("serve", "--port", "0", "--metrics", "127.0.0.1:0", *extra),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        first = self.out.next()
        match = LISTENING.match(first or "")
        assert match, f"{first!r}; stderr: {self.err.seen}"
        self.echo_port = int(match.group(2))
        second = self.out.next()
        match = METRICS.match(second or "")
        assert match, f"{second!r} is not 'metrics on HOST:PORT'"
        self.metrics_port = int(match.group(2))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def get(
    port: int, path: str = "/metrics", headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def scrape(port: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    status, _, body = get(port, headers=headers)
    assert status == 200, status
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def wait_until(probe: Callable[[], _T], ok: Callable[[_T], bool], timeout: float = TIMEOUT) -> _T:
    """Poll ``probe`` until ``ok`` of its value (the last value is returned either way)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    """The real server, from its binary, on loopback, with its data in ``directory``."""

    def __init__(self, directory: Path, scrape_configs: Sequence[dict[str, Any]]) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": list(scrape_configs),
        }
        path = directory / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.log = (directory / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        ready = wait_until(self._ready, bool, timeout=60.0)
        assert ready, (directory / "prometheus.log").read_text()[-2000:]

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            return True  # exited: let the caller see the log
        try:
            return get(self.port, "/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        status, _, body = get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer: dict[str, Any] = json.loads(body)
        answer["http_status"] = status
        return answer

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        answer = self.query(expr)
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
