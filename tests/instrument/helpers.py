"""Run a real program plainly and under ``loopmon run``, drive both the same way, and read what
the instrument measured (``--dump-snapshots``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).with_name("programs")


@dataclass
class Run:
    status: int
    stdout: bytes
    stderr: bytes
    driven: Any = None
    dump: Path | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)

    def program_stderr(self) -> bytes:
        """stderr without loopmon's own lines."""
        return b"".join(
            line
            for line in self.stderr.splitlines(keepends=True)
            if not line.startswith(b"loopmon:")
        )

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for s in self.snapshots for e in s["events"] if e["kind"] == kind]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def start(
    argv: list[str],
    under_loopmon: bool,
    dump: Path | None,
    cwd: Path | None = None,
    extra: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    prefix = [sys.executable]
    if under_loopmon:
        prefix += ["-m", "loopmon.cli.run", "--snapshot-hz", "20"]
        if dump is not None:
            prefix += ["--dump-snapshots", str(dump)]
        prefix += extra or []
    return subprocess.Popen(
        prefix + argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        cwd=cwd or ROOT,
        bufsize=0,  # read_port reads a line and communicate() the fd: no buffer between
    )


def read_port(proc: subprocess.Popen[bytes], first: list[bytes]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    first.append(line)
    if not line.startswith(b"port"):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"no port line: {line!r} {err.decode(errors='replace')}")
    return int(line.split()[1])


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written
    return out


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def run(
    argv: list[str],
    drive: Callable[[int, Path | None], Any],
    under_loopmon: bool,
    tmp: Path,
    extra: list[str] | None = None,
    stop: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Run:
    dump = tmp / "snapshots.jsonl" if under_loopmon else None
    proc = start(argv, under_loopmon, dump, extra=extra)
    first: list[bytes] = []
    try:
        port = read_port(proc, first)
        driven = drive(port, dump)
        if stop is not None:
            stop(proc)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(proc.returncode, first[0] + out, err, driven, dump, load(dump) if dump else [])


def rows_of(snapshot: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [r for r in snapshot["connections"] if kind is None or r["kind"] == kind]
