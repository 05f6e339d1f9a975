"""One round of each workload: a load client against a running server (request/response),
idle connections against a fresh server, and the wake and snapshot probes in a child.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loopmon.bench.planning import IDLE_DEADLINE_S
from loopmon.bench.processes import CLIENT_GRACE_S, Children, Running, tail, wait_rusage
from loopmon.bench.procfs import core_busy, cpu_seconds, cpu_times, open_fds, rss_kb
from loopmon.bench.report import IdleResult, RoundResult
from loopmon.bench.specs import Workload
from loopmon.bench.stats import interference, saturation

LOAD_KEYS = ("round_trips", "round_trips_per_s", "mb_per_s", "errors", "mismatches")


def parse_load_json(text: str) -> dict[str, Any] | None:
    """The JSON summary line that ``loopmon load --json`` prints (the last one that parses)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and all(k in data for k in LOAD_KEYS):
            return data
    return None


def load_argv(
    host: str, port: int, mode: str, clients: int, size: int, duration: float
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "loopmon",
        "load",
        "--host",
        host,
        "--port",
        str(port),
        "--mode",
        mode,
        "--clients",
        str(clients),
        "--size",
        str(size),
        "--duration",
        f"{duration:g}",
        "--json",
        "--progress",
        "none",
    ]


def run_rr_round(
    children: Children,
    server: Running,
    workload: Workload,
    duration: float,
    index: int,
    cores: tuple[set[int] | None, set[int] | None] = (None, None),
) -> RoundResult:
    spid = server.proc.pid
    if server.proc.poll() is not None:
        return RoundResult(index, False, problem=f"server exited ({server.proc.returncode})")
    # The last round's connections must be gone (closed by the server) before this one.
    fds0 = server.idle_fds
    settle = time.monotonic() + 2.0
    while (open_fds(spid) or 0) > fds0 and time.monotonic() < settle:
        time.sleep(0.01)
    cpu0 = cpu_seconds(spid)
    t0 = time.monotonic()
    argv = load_argv(server.host, server.port, "rr", workload.clients, workload.size, duration)
    client, out, err = children.spawn(argv, f"load-{server.spec.name}")
    # Who was saturated is read over a window well inside the run: from once the server
    # holds every connection (start-up and connecting excluded) to well before the end.
    t_ready = _when_held(client, spid, fds0 + workload.clients, t0)
    window = (t_ready + 0.1 * duration, t_ready + 0.7 * duration)
    samples, ticks = _sample(window, client, spid)
    code, client_cpu = wait_rusage(client, duration + CLIENT_GRACE_S)
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(spid)
    children.forget(client)
    summary = parse_load_json(out.read_text(errors="replace")) if out.exists() else None
    if summary is None:
        why = "client timed out" if code is None else f"client exit {code}: {tail(err)}"
        return RoundResult(index, False, wall_s=wall, problem=why)
    result = _rr_result(index, summary, wall, err)
    if cpu0 is not None and cpu1 is not None:
        result.server_cpu_s = cpu1 - cpu0
        if result.round_trips:
            result.server_cpu_us_per_rt = result.server_cpu_s / result.round_trips * 1e6
    server_cores, client_cores = cores
    if len(ticks) == 2 and server_cores and client_cores:
        result.server_core_busy = core_busy(ticks[0], ticks[1], server_cores)
        result.client_core_busy = core_busy(ticks[0], ticks[1], client_cores)
    _utilization(result, samples, float(summary.get("duration_s") or 0.0), client_cpu)
    result.saturated = saturation(result.client_util, result.server_util)
    result.note = interference(index, result.server_core_busy, result.server_util)
    return result


_Sample = tuple[float | None, float | None, float]  # client CPU s, server CPU s, wall clock


def _when_held(client: subprocess.Popen[bytes], spid: int, fds: int, t0: float) -> float:
    """When the server first holds ``fds`` descriptors (every connection), within 10 s."""
    t_ready = t0
    deadline = t0 + 10.0
    while time.monotonic() < deadline and client.poll() is None:
        held = open_fds(spid)
        t_ready = time.monotonic()
        if held is None or held >= fds:
            break
        time.sleep(0.01)
    return t_ready


def _sample(
    window: tuple[float, float], client: subprocess.Popen[bytes], spid: int
) -> tuple[list[_Sample], list[dict[int, tuple[int, int]]]]:
    """Both processes' CPU time and every CPU's ticks at each end of ``window`` (fewer when
    the client ended first)."""
    samples: list[_Sample] = []
    ticks: list[dict[int, tuple[int, int]]] = []
    for at in window:
        pause = at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if client.poll() is not None:
            break
        samples.append((cpu_seconds(client.pid), cpu_seconds(spid), time.monotonic()))
        ticks.append(cpu_times())
    return samples, ticks


def _rr_result(index: int, summary: dict[str, Any], wall: float, err: Path) -> RoundResult:
    result = RoundResult(
        index,
        ok=True,
        round_trips=int(summary["round_trips"]),
        round_trips_per_s=float(summary["round_trips_per_s"]),
        mb_per_s=float(summary["mb_per_s"]),
        latency_p50_ms=summary.get("latency_p50_ms"),
        latency_p99_ms=summary.get("latency_p99_ms"),
        errors=int(summary.get("errors", 0)),
        mismatches=int(summary.get("mismatches", 0)),
        connect_failures=int(summary.get("connect_failures", 0)),
        wall_s=wall,
    )
    if result.mismatches:
        result.ok = False
        result.problem = "MISMATCH: bytes echoed wrong"
    elif result.round_trips == 0:
        result.ok = False
        result.problem = f"no round trips: {tail(err)}"
    return result


def _utilization(
    result: RoundResult, samples: list[_Sample], busy: float, client_cpu: float | None
) -> None:
    """Each side's share of its core: over the window, or over the whole round when the
    client ended before the window did."""
    if len(samples) == 2 and None not in samples[0][:2] and None not in samples[1][:2]:
        (c0, s0, w0), (c1, s1, w1) = samples
        span = w1 - w0
        if span > 0:
            result.client_util = (c1 - c0) / span  # type: ignore[operator]
            result.server_util = (s1 - s0) / span  # type: ignore[operator]
        return
    if client_cpu is not None and result.wall_s > 0:
        result.client_util = client_cpu / result.wall_s
    if result.server_cpu_s is not None and busy > 0:
        result.server_util = result.server_cpu_s / busy


def run_idle_round(
    children: Children,
    server: Running,
    connections: int,
    hold_s: float,
    index: int,
    deadline_s: float = IDLE_DEADLINE_S,
) -> IdleResult:
    """Open ``connections`` idle connections to a fresh server and hold them: its RSS, and
    how fast it took them (from its own count of open descriptors, every 20 ms). A server
    that has not accepted them all within ``deadline_s`` is reported with what it held."""
    spid = server.proc.pid
    time.sleep(0.1)
    fds0 = open_fds(spid) or 0
    rss0 = rss_kb(spid)
    cpu0 = cpu_seconds(spid)
    argv = load_argv(server.host, server.port, "idle", connections, 1, hold_s)
    client, out, err = children.spawn(argv, f"idle-{server.spec.name}")
    held, t_first, t_last = _watch_accepts(client, spid, fds0, connections, deadline_s)
    time.sleep(0.2)  # let the server settle what it allocates per connection
    rss1 = rss_kb(spid)
    cpu1 = cpu_seconds(spid)
    held = max(held, (open_fds(spid) or fds0) - fds0)
    with contextlib.suppress(ProcessLookupError):
        client.send_signal(signal.SIGTERM)  # it prints its summary and exits
    code, _ = wait_rusage(client, 15.0)
    children.forget(client)
    summary = parse_load_json(out.read_text(errors="replace")) if out.exists() else None
    result = IdleResult(index, ok=held >= connections, connected=held)
    if summary is not None:
        result.errors = int(summary.get("errors", 0))
        result.connect_failures = int(summary.get("connect_failures", 0))
    if not result.ok:
        why = f"held {held} of {connections}"
        if code not in (0, None):
            why += f"; client exit {code}: {tail(err)}"
        result.problem = why
    if t_first is not None and t_last is not None and held:
        # Sampled every 20 ms: the first sample already holds some connections.
        result.connect_per_s = held / max(t_last - t_first, 0.02)
    if rss0 is not None:
        result.rss_before_mb = rss0 / 1024
    if rss1 is not None:
        result.rss_mb = rss1 / 1024
        if rss0 is not None and held:
            result.kib_per_connection = (rss1 - rss0) / held
    if cpu0 is not None and cpu1 is not None and held:
        result.server_cpu_us_per_connection = (cpu1 - cpu0) / held * 1e6
    return result


def _watch_accepts(
    client: subprocess.Popen[bytes], spid: int, fds0: int, connections: int, deadline_s: float
) -> tuple[int, float | None, float | None]:
    """(most held, when the first was seen, when the count last rose): the server's open
    descriptors above ``fds0``, every 20 ms, until it holds ``connections`` or time is up."""
    t_first: float | None = None
    t_last: float | None = None
    held = 0
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and client.poll() is None:
        n = (open_fds(spid) or fds0) - fds0
        now = time.monotonic()
        if n > 0 and t_first is None:
            t_first = now
        if n > held:
            held = n
            t_last = now
        if n >= connections:
            break
        time.sleep(0.02)
    return held, t_first, t_last


def run_wake_round(
    children: Children,
    impl: str,
    samples: int,
    loop_cpu: int | None,
    caller_cpu: int | None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "loopmon.bench.children", "wake", impl, "--samples", str(samples)]
    if loop_cpu is not None and caller_cpu is not None:
        argv += ["--loop-cpu", str(loop_cpu), "--caller-cpu", str(caller_cpu)]
    data, problem = _probe(children, argv, f"wake-{impl}", 30.0 + samples * 0.005, "p50_us")
    return data if data is not None else {"impl": impl, "samples": 0, "problem": problem}


def run_snapshot_round(children: Children, connections: int, deadline_s: float) -> dict[str, Any]:
    """What one telemetry snapshot of ``connections`` idle connections costs the loop thread
    (built in-process by the ``snapshot`` probe, the clients in a child of its own)."""
    argv = [sys.executable, "-m", "loopmon.bench.children", "snapshot", str(connections)]
    data, problem = _probe(children, argv, "snapshot", deadline_s + 60.0, "median_ms")
    if data is None:
        return {"connections": 0, "problem": problem}
    held = int(data.get("connections") or 0)
    if not data.get("samples"):
        data["problem"] = f"no snapshot taken: the probe held {held:,} of {connections:,}"
    elif held < connections:
        data["problem"] = f"the probe held only {held:,} of {connections:,} connections"
    return data


def _probe(
    children: Children, argv: list[str], name: str, timeout_s: float, key: str
) -> tuple[dict[str, Any] | None, str]:
    """Run a probe (``bench.children``) to the end: the last JSON object it printed that has
    ``key``, or None and why not."""
    proc, out, err = children.spawn(argv, name)
    code, _ = wait_rusage(proc, timeout_s)
    children.forget(proc)
    for line in reversed(out.read_text(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and key in data:
                return data, ""
    return None, f"exit {code}: {tail(err)}"
