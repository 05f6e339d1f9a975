"""The benchmark behind ``loopmon bench``: loopmon's echo server side by side with what a user
would pick instead.

Every server runs in its own process, pinned to one core, and every load is the same
``loopmon load`` client (a subprocess, on the other core), so the servers differ and nothing
else does. The rounds are interleaved (A B C, A B C, ...) and every ratio is the median of
per-round paired ratios against asyncio's Protocol server, so drift of the machine during the
run cancels out.

A Python client can run out of CPU before a fast server does; then round trips per second say
more about the client than the server. So each round also reports which side was saturated
(CPU time over a window inside the round, from ``/proc/PID/task/*/schedstat``) and the
server's own CPU time per round trip: the figure that stays true when the client is the limit.
It covers the whole round, connection set-up and tear-down included.

Workloads (``--workloads``):

- ``rr-1k``: 100 connections x 1 KiB request/response (one message in flight each);
- ``rr-64k``: 10 x 64 KiB;
- ``rr-128``: 1,000 x 128 B;
- ``idle-10k``: 10,000 idle connections: the server's RSS holding them and the connect rate
  (a fresh server each round, counted from its open descriptors). The client opens all of
  them at once: a server that accepts more slowly than that burst overflows its backlog
  (1,024) and the rest arrive on the kernel's SYN-ACK retries (1, 2, 4, 8 s apart), so
  connect/s falls from tens of thousands to a few thousand: it measures burst absorption.
  With a loopmon server in the run, also what a telemetry snapshot of that many idle
  connections costs the loop thread (``benchpeers snapshot``: built in-process, the clients
  in a child, since one process cannot hold both ends of 10,000 connections here);
- ``wake``: in one process, from another thread, ``IOLoop.add_callback(cb)`` to the start of
  ``cb`` against asyncio's (and uvloop's) ``call_soon_threadsafe``, the loop idle in its poll
  before every sample.

Speed is reported here, never asserted by a test.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from loopmon import __version__, benchpeers, pollers
from loopmon.fdlimit import FD_HEADROOM, raise_fd_limit

BASELINE = "asyncio-protocol"
REFERENCE = "bare-epoll"
SATURATED = 0.85  # CPU share of one core above which a side counts as the limit
READY_TIMEOUT_S = 15.0
CLIENT_GRACE_S = 30.0  # beyond --duration, before a load client is killed
STOP_GRACE_S = 2.0  # SIGTERM, then SIGKILL
# loopmon serve's --max-connections in the bench: the descriptor limit is the only bound wanted.
NO_CAP = 1 << 24
# Fewer wake samples than this per round make a p99 of a handful of points.
MIN_WAKE_SAMPLES_PER_ROUND = 100
# Other work taking more than this share of the servers' core in a round is reported.
INTERFERENCE_SHARE = 0.25
SELECT_MAX_FDS = 1024 - 16  # select()'s FD_SETSIZE, less the server's own descriptors
IDLE_DEADLINE_S = 25.0  # for all idle connections to be accepted (SYN retries: 1, 3, 7 s)
SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    title: str
    kind: str  # "rr" | "idle" | "wake"
    clients: int = 0
    size: int = 0


WORKLOADS: tuple[Workload, ...] = (
    Workload("rr-1k", "100 connections x 1 KiB request/response", "rr", 100, 1024),
    Workload("rr-64k", "10 connections x 64 KiB request/response", "rr", 10, 65536),
    Workload("rr-128", "1,000 connections x 128 B request/response", "rr", 1000, 128),
    Workload("idle-10k", "10,000 idle connections", "idle", 10_000, 1),
    Workload("wake", "cross-thread wake: another thread's add_callback to callback start", "wake"),
)
WORKLOAD_NAMES = tuple(w.name for w in WORKLOADS)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    argv: tuple[str, ...]
    description: str
    max_clients: int | None = None  # e.g. select(): FD_SETSIZE


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    duration_s: float
    idle_rounds: int
    idle_connections: int
    idle_deadline_s: float
    wake_samples: int
    servers: tuple[str, ...]
    workloads: tuple[str, ...]
    quick: bool
    host: str


# -- pure helpers: statistics, parsing ----------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (and not NaN); None if there are none."""
    clean = [float(v) for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def paired_ratios(
    values: Sequence[float | None], baseline: Sequence[float | None]
) -> list[float | None]:
    """Round by round ``values[i] / baseline[i]``; None where either is missing or the
    baseline is zero."""
    out: list[float | None] = []
    for v, b in zip(values, baseline, strict=False):
        out.append(v / b if v is not None and b is not None and b > 0 else None)
    return out


def saturation(client_util: float | None, server_util: float | None) -> str:
    """Which side ran out of CPU: "client", "server", "both", "neither" or "?"."""
    if client_util is None or server_util is None:
        return "?"
    client = client_util >= SATURATED
    server = server_util >= SATURATED
    if client and server:
        return "both"
    if client:
        return "client"
    if server:
        return "server"
    return "neither"


_LISTENING = re.compile(r"listening on (?:\[(?P<host6>[^\]]+)\]|(?P<host>[^\s:]+)):(?P<port>\d+)")


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (a figure nothing was measured for) as None, so
    ``--json`` is JSON that every parser takes, not Python's NaN extension."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def interference(index: int, core_busy: float | None, server_util: float | None) -> str:
    """A note when something besides the server kept the servers' core busy in a round (the
    core's busy share, softirq included, less the server process's own): its figures are
    then noisier than the interleaving can cancel. Empty when not, or not known."""
    if core_busy is None or server_util is None:
        return ""
    other = core_busy - server_util
    if other <= INTERFERENCE_SHARE:
        return ""
    return (
        f"round {index + 1}: other work took {other:.0%} of the servers' core "
        "(that round's figures are noisier)"
    )


def parse_listening(line: str) -> tuple[str, int] | None:
    """(host, port) from ``listening on HOST:PORT (...)``, the line every server prints."""
    match = _LISTENING.search(line)
    if match is None:
        return None
    return match.group("host6") or match.group("host"), int(match.group("port"))


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


def parse_stat_cpu(text: str, ticks_per_s: float) -> float:
    """utime + stime in seconds from the text of ``/proc/PID/stat``."""
    fields = text.rpartition(")")[2].split()
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parse_cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """{cpu: (busy ticks, total ticks)} from the text of ``/proc/stat``; busy counts
    everything but idle and iowait, so softirq work (loopback traffic) shows too."""
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu = int(name[3:])
            ticks = [int(x) for x in rest.split()]
        except ValueError:
            continue
        total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        out[cpu] = (total - idle, total)
    return out


def core_busy(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: set[int]
) -> float | None:
    """The busy share of ``cpus`` between two ``parse_cpu_times`` readings."""
    busy = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    return busy / total if total > 0 else None


def parse_vmrss_kb(text: str) -> int | None:
    """VmRSS in kB from the text of ``/proc/PID/status``."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


# -- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """CPU time a live process has used: the sum of its threads' schedstat run time, the
    figure the kernel splits into rusage's utime and stime, here to the nanosecond where
    rusage (and /proc's utime + stime, the fallback) counts clock ticks; None once it is gone."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        if total > 0:
            return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat_cpu(f.read(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def cpu_times() -> dict[int, tuple[int, int]]:
    try:
        with open("/proc/stat") as f:
            return parse_cpu_times(f.read())
    except OSError:
        return {}


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_vmrss_kb(f.read())
    except OSError:
        return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


# -- what to run ---------------------------------------------------------------------------


def loopmon_specs(backends: Sequence[str]) -> list[ServerSpec]:
    specs = []
    for backend in backends:
        for strategy in ("direct", "seed"):
            argv = (
                sys.executable,
                "-m",
                "loopmon",
                "serve",
                "--port",
                "0",
                "--backend",
                backend,
                "--strategy",
                strategy,
                "--max-connections",
                str(NO_CAP),
                "--quiet",
            )
            specs.append(
                ServerSpec(
                    f"loopmon-{backend}-{strategy}",
                    argv,
                    f"loopmon serve, {backend}, {strategy}",
                    SELECT_MAX_FDS if backend == "select" else None,
                )
            )
    return specs


def peer_specs(names: Sequence[str]) -> list[ServerSpec]:
    by_name = {p.name: p for p in benchpeers.PEERS}
    return [
        ServerSpec(
            name,
            (sys.executable, "-m", "loopmon.benchpeers", name, "--port", "0"),
            by_name[name].description,
        )
        for name in names
    ]


def discover_servers(
    backends: Sequence[str] | None = None,
    has: Callable[[str], bool] = benchpeers.installed,
) -> tuple[list[ServerSpec], list[str]]:
    """Every server that can run here, and a note for each that cannot."""
    if backends is None:
        backends = pollers.available()
    peers, notes = benchpeers.discover(has=has)
    missing = [b for b in pollers.BACKENDS if b not in backends]
    if missing:
        notes.insert(0, f"loopmon backends not available here: {', '.join(missing)}")
    return loopmon_specs(backends) + peer_specs(peers), notes


# --quick compares loopmon with what its targets name: asyncio's Protocol server (the
# baseline), the bare loop (the pure-Python reference) and uvloop. asyncio's streams and Tornado
# are each several times slower than those and would add a third to the run, which then no
# longer fits in a minute with every peer installed (67 s measured here with them).
QUICK_PEERS: Final = ("asyncio-protocol", "bare-epoll", "uvloop")


def quick_servers(specs: Sequence[ServerSpec]) -> list[str]:
    """--quick: loopmon on its best backend with the default strategy, and the peers its
    targets compare it with (``QUICK_PEERS``)."""
    names = [s.name for s in specs]
    loopmon = [n for n in names if n.startswith("loopmon-")]
    best = loopmon[0] if loopmon else ""
    return [n for n in names if n == best or n in QUICK_PEERS]


def select_servers(
    specs: Sequence[ServerSpec], only: str | None, known: Sequence[str] = ()
) -> tuple[list[ServerSpec], list[str]]:
    """Filter by ``--only`` (comma-separated names, globs, or ``loopmon`` for all of loopmon).
    ``ValueError`` for a name that matches nothing known. The baseline is always kept."""
    notes: list[str] = []
    if not only:
        chosen = list(specs)
    else:
        names = [s.name for s in specs]
        everything = set(names) | set(known)
        wanted: set[str] = set()
        for token in (t.strip() for t in only.split(",")):
            if not token:
                continue
            pattern = "loopmon-*" if token == "loopmon" else token
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                if any(fnmatch.fnmatchcase(n, pattern) for n in everything):
                    notes.append(f"{token}: not available here, skipped")
                    continue
                raise ValueError(
                    f"no server matches {token!r}; servers: {', '.join(sorted(everything))}"
                )
            wanted.update(hits)
        chosen = [s for s in specs if s.name in wanted]
        if not chosen:
            why = "; ".join(notes) or f"--only {only!r} names no server"
            raise ValueError(f"no server to run: {why}")
    if chosen and all(s.name != BASELINE for s in chosen):
        base = [s for s in specs if s.name == BASELINE]
        if base:
            chosen = base + chosen
            notes.append(f"{BASELINE} added: every ratio is taken against it")
    return chosen, notes


def parse_workloads(text: str | None) -> list[str]:
    if text is None:
        return list(WORKLOAD_NAMES)
    if not text.replace(",", "").strip():
        raise ValueError(f"no workload named; workloads: {', '.join(WORKLOAD_NAMES)}")
    out: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if token == "rr":
            out.extend(w.name for w in WORKLOADS if w.kind == "rr")
            continue
        if token not in WORKLOAD_NAMES:
            raise ValueError(f"unknown workload {token!r}; workloads: {', '.join(WORKLOAD_NAMES)}")
        out.append(token)
    return [w for w in WORKLOAD_NAMES if w in out]


# -- the report: summaries, table, JSON ---------------------------------------------------


@dataclass(slots=True)
class RoundResult:
    round: int
    ok: bool
    round_trips: int = 0
    round_trips_per_s: float | None = None
    mb_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    errors: int = 0
    mismatches: int = 0
    connect_failures: int = 0
    server_cpu_s: float | None = None
    server_cpu_us_per_rt: float | None = None
    server_util: float | None = None
    client_util: float | None = None
    server_core_busy: float | None = None  # the whole core, softirq included
    client_core_busy: float | None = None
    saturated: str = "?"
    wall_s: float = 0.0
    problem: str = ""
    note: str = ""  # not a failure: something that makes the round's figures less sure


@dataclass(slots=True)
class IdleResult:
    round: int
    ok: bool
    connected: int = 0
    connect_per_s: float | None = None
    rss_before_mb: float | None = None
    rss_mb: float | None = None
    kib_per_connection: float | None = None
    server_cpu_us_per_connection: float | None = None
    errors: int = 0
    connect_failures: int = 0
    problem: str = ""


def summarise_rr(
    rounds: dict[str, list[RoundResult]], baseline: str = BASELINE, reference: str = REFERENCE
) -> list[dict[str, Any]]:
    """One summary per server: medians over its good rounds, and the medians of the paired
    per-round ratios against ``baseline`` (round trips/s; server CPU per round trip) and
    ``reference`` (server CPU per round trip). ``rounds`` lists every server's rounds in
    round order."""

    def series(name: str, key: str) -> list[float | None]:
        return [getattr(r, key) if r.ok else None for r in rounds.get(name, [])]

    out = []
    for name, results in rounds.items():
        good = [r for r in results if r.ok]
        rt = paired_ratios(series(name, "round_trips_per_s"), series(baseline, "round_trips_per_s"))
        cpu_base = paired_ratios(
            series(name, "server_cpu_us_per_rt"), series(baseline, "server_cpu_us_per_rt")
        )
        cpu_ref = paired_ratios(
            series(name, "server_cpu_us_per_rt"), series(reference, "server_cpu_us_per_rt")
        )
        client_util = median([r.client_util for r in good])
        server_util = median([r.server_util for r in good])
        out.append(
            {
                "server": name,
                "rounds_ok": len(good),
                "rounds_failed": len(results) - len(good),
                "round_trips_per_s": median([r.round_trips_per_s for r in good]),
                "mb_per_s": median([r.mb_per_s for r in good]),
                "latency_p50_ms": median([r.latency_p50_ms for r in good]),
                "latency_p99_ms": median([r.latency_p99_ms for r in good]),
                "server_cpu_us_per_rt": median([r.server_cpu_us_per_rt for r in good]),
                "client_util": client_util,
                "server_util": server_util,
                "server_core_busy": median([r.server_core_busy for r in good]),
                "client_core_busy": median([r.client_core_busy for r in good]),
                "saturated": saturation(client_util, server_util),
                "ratio_to_baseline": median(rt) if name in rounds and baseline in rounds else None,
                "ratio_rounds": rt,
                "cpu_ratio_to_baseline": median(cpu_base) if baseline in rounds else None,
                "cpu_ratio_to_reference": median(cpu_ref) if reference in rounds else None,
                "errors": sum(r.errors for r in results),
                "mismatches": sum(r.mismatches for r in results),
                "connect_failures": sum(r.connect_failures for r in results),
                "problems": sorted({r.problem for r in results if r.problem}),
                "notes": [r.note for r in results if r.note],
                "rounds": [asdict(r) for r in results],
            }
        )
    return out


def summarise_idle(rounds: dict[str, list[IdleResult]]) -> list[dict[str, Any]]:
    """Medians over the rounds that held any connection (a round that did not get them all
    counts as failed, and still shows what it held)."""
    out = []
    for name, results in rounds.items():
        good = [r for r in results if r.connected > 0]
        out.append(
            {
                "server": name,
                "rounds_ok": sum(1 for r in results if r.ok),
                "rounds_failed": sum(1 for r in results if not r.ok),
                "connected": median([r.connected for r in good]),
                "connect_per_s": median([r.connect_per_s for r in good]),
                "rss_before_mb": median([r.rss_before_mb for r in good]),
                "rss_mb": median([r.rss_mb for r in good]),
                "kib_per_connection": median([r.kib_per_connection for r in good]),
                "server_cpu_us_per_connection": median(
                    [r.server_cpu_us_per_connection for r in good]
                ),
                "errors": sum(r.errors for r in results),
                "connect_failures": sum(r.connect_failures for r in results),
                "problems": sorted({r.problem for r in results if r.problem}),
                "rounds": [asdict(r) for r in results],
            }
        )
    return out


def summarise_wake(
    rounds: dict[str, list[dict[str, Any]]], baseline: str = "asyncio"
) -> list[dict[str, Any]]:
    def series(name: str, key: str) -> list[float | None]:
        return [r.get(key) for r in rounds.get(name, [])]

    out: list[dict[str, Any]] = []
    for name, results in rounds.items():
        p50 = paired_ratios(series(name, "p50_us"), series(baseline, "p50_us"))
        p99 = paired_ratios(series(name, "p99_us"), series(baseline, "p99_us"))
        out.append(
            {
                "impl": name,
                "samples": sum(int(r.get("samples") or 0) for r in results),
                "lost": sum(int(r.get("lost") or 0) for r in results),
                "p50_us": median(series(name, "p50_us")),
                "p99_us": median(series(name, "p99_us")),
                "p50_ratio_to_asyncio": median(p50) if baseline in rounds else None,
                "p99_ratio_to_asyncio": median(p99) if baseline in rounds else None,
                "problems": sorted({str(r["problem"]) for r in results if r.get("problem")}),
                "rounds": results,
            }
        )
    return out


LEGEND = (
    "rt/s: round trips per second (the client's count); MB/s: payload echoed, one way;",
    "  srv us/rt: the server process's CPU time (user + system, as its rusage counts it) per",
    "  round trip, from the client's start to its exit; x asyncio: median of the per-round",
    "  ratios of rt/s (each round's is in --json); cpu x: the same for srv us/rt (lower is",
    "  leaner); cpu srv/cli: each process's share of its core inside the round;",
    f"  saturated: the side above {SATURATED:.0%}; errors: errors/mismatches (connect failures "
    "for idle).",
)


def _fmt(value: Any, spec: str = ",.0f", scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value * scale, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = []
    for cells in (header, *rows):
        left = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        lines.append(f"{left}  {rest}".rstrip())
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The human table: one block per workload."""
    settings = report["settings"]
    machine = report["machine"]
    kinds = {block["kind"] for block in report["workloads"]}
    # Say what was run: the rounds' length means nothing to a run without rr workloads.
    if "rr" in kinds:
        what = f"{settings['rounds']} interleaved rounds x {settings['duration_s']:g} s per server"
    else:
        what = ", ".join(block["name"] for block in report["workloads"]) or "nothing run"
    out = [
        f"loopmon {report['loopmon']} bench: {what}, Python {machine['python']}, "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['pinning']}",
    ]
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    for block in report["workloads"]:
        out.append("")
        kind = block["kind"]
        if kind == "rr":
            out.append(
                f"{block['title']}  (ratios: median of per-round ratios to {report['baseline']})"
            )
            header = (
                "server",
                "rt/s",
                "MB/s",
                "p50 ms",
                "p99 ms",
                "srv us/rt",
                "x asyncio",
                "cpu x asyncio",
                f"cpu x {report['reference']}",
                "cpu srv/cli",
                "saturated",
                "errors",
            )
            rows = [
                (
                    r["server"],
                    _fmt(r["round_trips_per_s"]),
                    _fmt(r["mb_per_s"], ".1f"),
                    _fmt(r["latency_p50_ms"], ".2f"),
                    _fmt(r["latency_p99_ms"], ".2f"),
                    _fmt(r["server_cpu_us_per_rt"], ".1f"),
                    _fmt(r["ratio_to_baseline"], ".2f"),
                    _fmt(r["cpu_ratio_to_baseline"], ".2f"),
                    _fmt(r["cpu_ratio_to_reference"], ".2f"),
                    f"{_fmt(r['server_util'], '.0%')}/{_fmt(r['client_util'], '.0%')}",
                    r["saturated"],
                    f"{r['errors']:,}/{r['mismatches']:,}"
                    + (f" ({r['rounds_failed']} failed)" if r["rounds_failed"] else ""),
                )
                for r in block["results"]
            ]
            if all(r["cpu_ratio_to_reference"] is None for r in block["results"]):
                # The reference was not in the run: a column of dashes says nothing.
                drop = header.index(f"cpu x {report['reference']}")
                header = header[:drop] + header[drop + 1 :]
                rows = [row[:drop] + row[drop + 1 :] for row in rows]
            out.extend(_table(header, rows))
        elif kind == "idle":
            out.append(block["title"])
            header = (
                "server",
                "held",
                "connect/s",
                "RSS MB",
                "RSS before",
                "KiB/conn",
                "srv us/conn",
                "errors",
            )
            rows = [
                (
                    r["server"],
                    _fmt(r["connected"]),
                    _fmt(r["connect_per_s"]),
                    _fmt(r["rss_mb"], ".1f"),
                    _fmt(r["rss_before_mb"], ".1f"),
                    _fmt(r["kib_per_connection"], ".2f"),
                    _fmt(r["server_cpu_us_per_connection"], ".1f"),
                    f"{r['errors']}/{r['connect_failures']}"
                    + (f" ({r['rounds_failed']} failed)" if r["rounds_failed"] else ""),
                )
                for r in block["results"]
            ]
            out.extend(_table(header, rows))
            snap = block.get("snapshot")
            if snap and snap.get("samples"):
                out.append(
                    f"loopmon telemetry snapshot of {snap['connections']:,} idle connections: "
                    f"median {snap['median_ms']:.2f} ms, p90 {snap['p90_ms']:.2f} ms, "
                    f"max {snap['max_ms']:.2f} ms (first, every row built: "
                    f"{snap['first_ms']:.1f} ms)"
                )
        elif kind == "wake":
            out.append(f"{block['title']} (idle loop, microseconds)")
            header = ("impl", "samples", "p50 us", "p99 us", "p50 x asyncio", "p99 x asyncio")
            rows = [
                (
                    r["impl"],
                    _fmt(r["samples"]),
                    _fmt(r["p50_us"], ".1f"),
                    _fmt(r["p99_us"], ".1f"),
                    _fmt(r["p50_ratio_to_asyncio"], ".2f"),
                    _fmt(r["p99_ratio_to_asyncio"], ".2f"),
                )
                for r in block["results"]
            ]
            out.extend(_table(header, rows))
    out.append("")
    if kinds & {"rr", "idle"}:
        out.extend(LEGEND)
    for note in report["notes"]:
        out.append(f"note: {note}")
    out.append(f"elapsed {report['elapsed_s']:.0f} s")
    return "\n".join(out)


def command_line(argv: Sequence[str] | None = None) -> str:
    """``loopmon bench ...`` as it was run (what reproduces the table)."""
    argv = list(sys.argv if argv is None else argv)
    rest = argv[argv.index("bench") + 1 :] if "bench" in argv else []
    return " ".join(["loopmon", "bench", *rest])


def machine_info(pinning: str) -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "pinning": pinning,
    }


# -- processes -----------------------------------------------------------------------------


class Children:
    """Every process the bench starts, each in its own session (process group), so all of
    them, and anything they start, can be ended whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._n = 0
        # Signals reach the bench's own cleanup; a SIGKILL does not, so every child also
        # dies with the bench on Linux.
        self._preexec = benchpeers.die_with_parent()

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


def _tail(path: Path, lines: int = 3) -> str:
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
    raise RuntimeError(f"{spec.name} did not start: {_tail(err) or 'no listening line'}")


def load_argv(host: str, port: int, mode: str, clients: int, size: int, duration: float) -> list:
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
    t_ready = t0
    deadline = t0 + 10.0
    while time.monotonic() < deadline and client.poll() is None:
        held = open_fds(spid)
        t_ready = time.monotonic()
        if held is None or held - fds0 >= workload.clients:
            break
        time.sleep(0.01)
    window = (t_ready + 0.1 * duration, t_ready + 0.7 * duration)
    samples: list[tuple[float | None, float | None, float]] = []
    ticks: list[dict[int, tuple[int, int]]] = []
    code: int | None = None
    client_cpu: float | None = None
    for at in window:
        pause = at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if client.poll() is not None:
            break
        samples.append((cpu_seconds(client.pid), cpu_seconds(spid), time.monotonic()))
        ticks.append(cpu_times())
    code, client_cpu = wait_rusage(client, duration + CLIENT_GRACE_S)
    wall = time.monotonic() - t0
    cpu1 = cpu_seconds(spid)
    children.forget(client)
    summary = parse_load_json(out.read_text(errors="replace")) if out.exists() else None
    if summary is None:
        why = "client timed out" if code is None else f"client exit {code}: {_tail(err)}"
        return RoundResult(index, False, wall_s=wall, problem=why)
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
        result.problem = f"no round trips: {_tail(err)}"
    if cpu0 is not None and cpu1 is not None:
        result.server_cpu_s = cpu1 - cpu0
        if result.round_trips:
            result.server_cpu_us_per_rt = result.server_cpu_s / result.round_trips * 1e6
    server_cores, client_cores = cores
    if len(ticks) == 2 and server_cores and client_cores:
        result.server_core_busy = core_busy(ticks[0], ticks[1], server_cores)
        result.client_core_busy = core_busy(ticks[0], ticks[1], client_cores)
    if len(samples) == 2 and None not in samples[0][:2] and None not in samples[1][:2]:
        (c0, s0, w0), (c1, s1, w1) = samples
        span = w1 - w0
        if span > 0:
            result.client_util = (c1 - c0) / span  # type: ignore[operator]
            result.server_util = (s1 - s0) / span  # type: ignore[operator]
    else:
        # The client ended early: fall back to the whole round.
        busy = float(summary.get("duration_s") or 0.0)
        if client_cpu is not None and wall > 0:
            result.client_util = client_cpu / wall
        if result.server_cpu_s is not None and busy > 0:
            result.server_util = result.server_cpu_s / busy
    result.saturated = saturation(result.client_util, result.server_util)
    result.note = interference(index, result.server_core_busy, result.server_util)
    return result


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
    t_first: float | None = None
    t_last: float | None = None  # when the count last rose
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
            why += f"; client exit {code}: {_tail(err)}"
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


def run_wake_round(
    children: Children,
    impl: str,
    samples: int,
    loop_cpu: int | None,
    caller_cpu: int | None,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "loopmon.benchpeers", "wake", impl, "--samples", str(samples)]
    if loop_cpu is not None and caller_cpu is not None:
        argv += ["--loop-cpu", str(loop_cpu), "--caller-cpu", str(caller_cpu)]
    data, problem = _probe(children, argv, f"wake-{impl}", 30.0 + samples * 0.005, "p50_us")
    return data if data is not None else {"impl": impl, "samples": 0, "problem": problem}


def run_snapshot_round(children: Children, connections: int, deadline_s: float) -> dict[str, Any]:
    """What one telemetry snapshot of ``connections`` idle connections costs the loop thread
    (built in-process by ``benchpeers snapshot``, the clients in a child of its own)."""
    argv = [sys.executable, "-m", "loopmon.benchpeers", "snapshot", str(connections)]
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
    """Run a ``benchpeers`` probe to the end: the last JSON object it printed that has
    ``key``, or None and why not."""
    proc, out, err = children.spawn(argv, name)
    code, _ = wait_rusage(proc, timeout_s)
    children.forget(proc)
    for line in reversed(out.read_text(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and key in data:
                return data, ""
    return None, f"exit {code}: {_tail(err)}"


# -- progress ------------------------------------------------------------------------------


class Progress:
    """One line on stderr, rewritten in place on a terminal, else one line per step."""

    def __init__(self, total: float, stream: TextIO | None = None) -> None:
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = False

    def show(self, text: str, weight: float = 0.0) -> None:
        elapsed = time.monotonic() - self.started
        fraction = min(self.done / self.total, 1.0)
        eta = f", ~{elapsed / fraction * (1 - fraction):.0f} s left" if fraction > 0.02 else ""
        line = f"bench {fraction:4.0%} {elapsed:4.0f} s{eta}: {text}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:160])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True
        self.done += weight

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# -- the command ---------------------------------------------------------------------------


def plan(args: Any) -> tuple[Settings, list[ServerSpec], list[str]]:
    """Settings, servers and notes from the command line's options (attributes of ``args``;
    missing ones take their defaults); ``ValueError`` for bad names."""
    quick = bool(getattr(args, "quick", False))
    specs, notes = discover_servers()
    known = [s.name for s in loopmon_specs(pollers.BACKENDS)] + list(benchpeers.PEER_NAMES)
    only = getattr(args, "only", None)
    if quick and not only:
        keep = set(quick_servers(specs))
        left = [s.name for s in specs if s.name not in keep and not s.name.startswith("loopmon-")]
        specs = [s for s in specs if s.name in keep]
        if left:
            notes.append(f"--quick leaves out {', '.join(left)} (name them with --only)")
    chosen, more = select_servers(specs, only, known)
    notes.extend(more)
    workloads = parse_workloads(getattr(args, "workloads", None))
    rounds = args.rounds or (2 if quick else 5)
    duration = args.duration or (0.75 if quick else 3.0)
    wake_samples = args.wake_samples
    if wake_samples is None:
        wake_samples = 3000 if quick else 20_000
    if "wake" in workloads and wake_samples < MIN_WAKE_SAMPLES_PER_ROUND:
        raise ValueError(
            f"--wake-samples {wake_samples}: at least {MIN_WAKE_SAMPLES_PER_ROUND}, "
            "or its p99 is a handful of points"
        )
    idle_connections = getattr(args, "idle_connections", 10_000)
    if "idle-10k" in workloads and not getattr(args, "list", False):
        try:
            check_fd_limit(idle_connections)
        except ValueError as exc:
            if getattr(args, "workloads", None) is not None:
                raise  # asked for by name: refuse
            workloads = [w for w in workloads if w != "idle-10k"]
            notes.append(f"idle-10k skipped: {exc}")
    settings = Settings(
        rounds=rounds,
        duration_s=duration,
        idle_rounds=1 if quick else min(rounds, 2),
        idle_connections=idle_connections,
        idle_deadline_s=10.0 if quick else IDLE_DEADLINE_S,
        wake_samples=wake_samples,
        servers=tuple(s.name for s in chosen),
        workloads=tuple(workloads),
        quick=quick,
        host=getattr(args, "bench_host", "127.0.0.1"),
    )
    return settings, chosen, notes


def check_fd_limit(connections: int) -> None:
    """``ValueError`` unless one process may hold ``connections`` sockets (each server, the
    idle client and the snapshot probe do): better said before the run than found in a
    client's traceback half-way through it."""
    limit = raise_fd_limit()  # the soft limit, lifted to the hard one
    need = connections + FD_HEADROOM
    if limit is not None and need > limit:
        raise ValueError(
            f"--idle-connections {connections} needs about {need:,} open files per process; "
            f"this system allows {limit:,} (ulimit -Hn); ask for at most "
            f"{max(limit - FD_HEADROOM, 0):,}"
        )


def cpu_split() -> tuple[set[int] | None, set[int] | None, str]:
    """(server cpus, client cpus, a description): one core for servers, the rest for
    clients, where the machine has two and allows it."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None, "no pinning (sched_setaffinity not available)"
    if len(cpus) < 2:
        return None, None, f"no pinning (only CPU {cpus} available)"
    server, client = {cpus[0]}, set(cpus[1:])
    try:
        os.sched_setaffinity(0, client)  # the bench, and by inheritance every client
    except OSError as exc:
        return None, None, f"no pinning ({exc.strerror})"
    return (
        server,
        client,
        f"servers on CPU {cpus[0]}, clients on CPU {','.join(map(str, cpus[1:]))}",
    )


def _raise_nofile() -> None:
    raise_fd_limit()  # inherited by every server and client


class Interrupted(KeyboardInterrupt):
    """A signal ended the run; the exit status is 128 + its number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) raise KeyboardInterrupt, so the
    ``finally`` that ends every child runs: even where SIGINT came in ignored (a background
    job of a script)."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    old: dict[signal.Signals, Any] = {}
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # under nohup, it stays ignored
        signals.append(signal.SIGHUP)
    try:
        for sig in signals:
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: the caller handles signals
        pass
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def background_busy(seconds: float = 0.5) -> float | None:
    """How busy the machine's CPUs are before the bench starts anything: other work on the
    machine makes every figure noisier (the interleaving cancels its drift, not its noise)."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    return core_busy(before, after, set(before))


def execute(
    settings: Settings,
    specs: Sequence[ServerSpec],
    notes: list[str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run everything ``settings`` asks for; the report (a JSON-able dict)."""
    started = time.monotonic()
    server_cpus, client_cpus, pinning = cpu_split()
    _raise_nofile()
    busy = background_busy()
    if busy is not None and busy > 0.1:
        notes.append(
            f"the CPUs were {busy:.0%} busy with other work before the run: figures are noisy"
        )
    by_name = {s.name: s for s in specs}
    wanted = [by_name[n] for n in settings.servers if n in by_name]
    workloads = [w for w in WORKLOADS if w.name in settings.workloads]

    # Progress weights: seconds, roughly.
    def applicable(w: Workload) -> list[ServerSpec]:
        return [s for s in wanted if s.max_clients is None or w.clients <= s.max_clients]

    total = 0.0
    for w in workloads:
        if w.kind == "rr":
            total += len(applicable(w)) * settings.rounds * (settings.duration_s + 0.4)
        elif w.kind == "idle":
            total += len(applicable(w)) * settings.idle_rounds * 3.0
        elif w.kind == "wake":
            total += 3 * settings.wake_samples * 0.0005
    progress = progress or Progress(total)
    progress.total = max(total, 1e-9)

    report: dict[str, Any] = {
        "schema": SCHEMA,
        "loopmon": __version__,
        "command": command_line(),
        "machine": machine_info(pinning) | {"background_busy": busy},
        "settings": asdict(settings),
        "baseline": BASELINE,
        "reference": REFERENCE,
        "notes": notes,
        "workloads": [],
        "elapsed_s": 0.0,
    }
    loop_cpu = min(server_cpus) if server_cpus else None
    caller_cpu = min(client_cpus) if client_cpus else None
    with tempfile.TemporaryDirectory(prefix="loopmon-bench-") as tmp:
        children = Children(Path(tmp))
        try:
            for w in workloads:
                servers = applicable(w)
                for s in wanted:
                    if s not in servers:
                        notes.append(f"{w.name}: {s.name} skipped (select() watches fds < 1024)")
                if w.kind == "rr":
                    block = _run_rr(
                        children, w, servers, settings, (server_cpus, client_cpus), progress
                    )
                elif w.kind == "idle":
                    block = _run_idle(children, w, servers, settings, server_cpus, progress)
                else:
                    block = _run_wake(children, w, settings, loop_cpu, caller_cpu, progress)
                report["workloads"].append(block)
        finally:
            children.stop_all()
            progress.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def _run_rr(
    children: Children,
    w: Workload,
    servers: Sequence[ServerSpec],
    settings: Settings,
    cores: tuple[set[int] | None, set[int] | None],
    progress: Progress,
) -> dict[str, Any]:
    cpus = cores[0]
    rounds: dict[str, list[RoundResult]] = {s.name: [] for s in servers}
    running: list[Running] = []
    problems: list[str] = []
    try:
        for spec in servers:
            progress.show(f"{w.name}: starting {spec.name}")
            try:
                running.append(start_server(children, spec, cpus, settings.host))
            except RuntimeError as exc:
                problems.append(str(exc))
                rounds.pop(spec.name)
        for index in range(settings.rounds):
            for server in running:
                progress.show(
                    f"{w.name} round {index + 1}/{settings.rounds}: {server.spec.name}",
                    settings.duration_s + 0.4,
                )
                rounds[server.spec.name].append(
                    run_rr_round(children, server, w, settings.duration_s, index, cores)
                )
    finally:
        for server in running:
            children.stop(server.proc)
    return {
        "name": w.name,
        "title": w.title,
        "kind": w.kind,
        "clients": w.clients,
        "size": w.size,
        "problems": problems,
        "results": summarise_rr(rounds),
    }


def _run_idle(
    children: Children,
    w: Workload,
    servers: Sequence[ServerSpec],
    settings: Settings,
    cpus: set[int] | None,
    progress: Progress,
) -> dict[str, Any]:
    n = settings.idle_connections
    rounds: dict[str, list[IdleResult]] = {s.name: [] for s in servers}
    problems: list[str] = []
    hold = settings.idle_deadline_s + 5.0  # the client ends by itself; SIGTERM comes sooner
    for index in range(settings.idle_rounds):
        for spec in servers:
            progress.show(f"{w.name} round {index + 1}/{settings.idle_rounds}: {spec.name}", 3.0)
            try:
                server = start_server(children, spec, cpus, settings.host)
            except RuntimeError as exc:
                problems.append(str(exc))
                continue
            try:
                rounds[spec.name].append(
                    run_idle_round(children, server, n, hold, index, settings.idle_deadline_s)
                )
            finally:
                children.stop(server.proc)
    title = w.title if n == 10_000 else f"{n:,} idle connections"
    snapshot = None
    if any(spec.name.startswith("loopmon-") for spec in servers):
        progress.show(f"{w.name}: loopmon's snapshot of {n:,} idle connections", 3.0)
        snapshot = run_snapshot_round(children, n, settings.idle_deadline_s)
        if "problem" in snapshot:
            problems.append(f"snapshot: {snapshot['problem']}")
    return {
        "name": w.name,
        "title": title,
        "kind": w.kind,
        "clients": n,
        "size": 0,
        "problems": problems,
        "results": summarise_idle({k: v for k, v in rounds.items() if v}),
        "snapshot": snapshot,
    }


def _run_wake(
    children: Children,
    w: Workload,
    settings: Settings,
    loop_cpu: int | None,
    caller_cpu: int | None,
    progress: Progress,
) -> dict[str, Any]:
    impls, skipped = benchpeers.discover(benchpeers.WAKE_IMPLS)
    # Up to five rounds, none smaller than MIN_WAKE_SAMPLES_PER_ROUND (plan() checked there is
    # one): the samples taken are the samples asked for, give or take a rounding.
    rounds_n = max(1, min(settings.rounds, 5, settings.wake_samples // MIN_WAKE_SAMPLES_PER_ROUND))
    per_round = settings.wake_samples // rounds_n
    rounds: dict[str, list[dict[str, Any]]] = {i: [] for i in impls}
    for index in range(rounds_n):
        for impl in impls:
            progress.show(f"wake round {index + 1}/{rounds_n}: {impl}", per_round * 0.0005)
            rounds[impl].append(run_wake_round(children, impl, per_round, loop_cpu, caller_cpu))
    return {
        "name": w.name,
        "title": w.title,
        "kind": w.kind,
        "clients": 0,
        "size": 0,
        "problems": skipped,
        "results": summarise_wake(rounds),
    }
