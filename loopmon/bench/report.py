"""The bench's report: the records of one round, the summaries across rounds (medians and
paired ratios), the text table and the machine it ran on; JSON keeps the raw numbers.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loopmon.bench.specs import BASELINE, REFERENCE
from loopmon.bench.stats import SATURATED, median, paired_ratios, saturation
from loopmon.units import MIB

SCHEMA = 1


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
    "rt/s: round trips per second (the client's count); MiB/s: payload echoed, one way;",
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
    blocks = {"rr": _rr_block, "idle": _idle_block, "wake": _wake_block}
    for block in report["workloads"]:
        out.append("")
        out.extend(blocks[block["kind"]](block, report))
    out.append("")
    if kinds & {"rr", "idle"}:
        out.extend(LEGEND)
    for note in report["notes"]:
        out.append(f"note: {note}")
    out.append(f"elapsed {report['elapsed_s']:.0f} s")
    return "\n".join(out)


def _rr_block(block: dict[str, Any], report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    out.append(f"{block['title']}  (ratios: median of per-round ratios to {report['baseline']})")
    header = (
        "server",
        "rt/s",
        "MiB/s",
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
            _fmt(r["mb_per_s"], ".1f", 1e6 / MIB),
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
    return out


def _idle_block(block: dict[str, Any], report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    out.append(block["title"])
    header = (
        "server",
        "held",
        "connect/s",
        "RSS MiB",
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
    return out


def _wake_block(block: dict[str, Any], report: dict[str, Any]) -> list[str]:
    out: list[str] = []
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
    return out


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
