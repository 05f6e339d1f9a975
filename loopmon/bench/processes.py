"""The bench's child processes seen from the parent: spawning with logs in a work directory,
dying with the parent (Linux's PDEATHSIG), pinning to a core, stopping (SIGTERM, then
SIGKILL), reaping with rusage, and a server started and listening.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from loopmon.bench.procfs import open_fds
from loopmon.bench.specs import ServerSpec

READY_TIMEOUT_S = 15.0


CLIENT_GRACE_S = 30.0  # beyond --duration, before a load client is killed


STOP_GRACE_S = 2.0  # SIGTERM, then SIGKILL


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies, however
    it dies (SIGKILL included), so no server or client the bench started outlives it; None
    elsewhere. (The snapshot probe's own client, a grandchild, is not covered: after a SIGKILL
    of the bench it runs out its --duration.)"""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Children:
    """Every process the bench starts, each in its own session (process group), so all of
    them, and anything they start, can be ended whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._n = 0
        # Signals reach the bench's own cleanup; a SIGKILL does not, so every child also
        # dies with the bench on Linux.
        self._preexec = die_with_parent()

    def spawn(self, argv: Sequence[str], tag: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        self._n += 1
        out = self.workdir / f"{self._n:04d}-{tag}.out"
        err = self.workdir / f"{self._n:04d}-{tag}.err"
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fout,
                stderr=ferr,
                start_new_session=True,
                # Only while this is the one thread: a fork beside others can find a lock
                # held forever by a thread that is not there to release it.
                preexec_fn=self._preexec if threading.active_count() == 1 else None,  # noqa: PLW1509
            )
        self.procs.append(proc)
        return proc, out, err

    def stop(self, proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_S) -> None:
        if proc.returncode is None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
        # Anything the child itself started is in its group too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.forget(proc)

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` has ended and been reaped."""
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc, grace=1.0)


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of ``pid`` (threads started later inherit it)."""
    if not cpus:
        return
    try:
        tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tasks = [pid]
    for tid in tasks:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def wait_rusage(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int | None, float | None]:
    """Wait up to ``timeout`` for ``proc``; (exit code or None if it had to be killed,
    its CPU seconds from wait4's rusage)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return proc.poll(), None
        if pid:
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            return code, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None, None
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


@dataclass(slots=True)
class Running:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    err: Path
    idle_fds: int = 0  # open descriptors with no connection


_LISTENING = re.compile(r"listening on (?:\[(?P<host6>[^\]]+)\]|(?P<host>[^\s:]+)):(?P<port>\d+)")


def parse_listening(line: str) -> tuple[str, int] | None:
    """(host, port) from ``listening on HOST:PORT (...)``, the line every server prints."""
    match = _LISTENING.search(line)
    if match is None:
        return None
    return match.group("host6") or match.group("host"), int(match.group("port"))


def start_server(children: Children, spec: ServerSpec, cpus: set[int] | None, host: str) -> Running:
    argv = list(spec.argv)
    argv[argv.index("--port") : argv.index("--port")] = ["--host", host]
    proc, out, err = children.spawn(argv, spec.name)
    pin(proc.pid, cpus)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for line in out.read_text(errors="replace").splitlines():
                found = parse_listening(line)
                if found is not None:
                    pin(proc.pid, cpus)
                    return Running(spec, proc, found[0], found[1], err, open_fds(proc.pid) or 0)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    children.stop(proc)
    raise RuntimeError(f"{spec.name} did not start: {tail(err) or 'no listening line'}")
