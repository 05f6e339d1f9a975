"""``loopmon bench``: its options, the listing (``--list``), and the report as text or JSON;
the benchmark itself is ``loopmon.bench``.

Exit status: 0, or 1 when a load client saw a byte mismatch; 2 on a usage error or when no
server is left to run; 128 + the signal's number when interrupted (every child stopped).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any, TextIO

from loopmon.bench.planning import MIN_WAKE_SAMPLES_PER_ROUND, plan
from loopmon.bench.report import format_report
from loopmon.bench.session import Interrupted, execute, interruptible
from loopmon.bench.specs import WORKLOAD_NAMES, WORKLOADS, discover_servers
from loopmon.bench.stats import finite
from loopmon.cli.args import count, positive_float, positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Benchmark loopmon's echo server against asyncio (Protocol and streams), a bare "
        "pure-Python epoll loop, and uvloop and Tornado when installed: same load clients, "
        "interleaved rounds, paired ratios. Servers are pinned to one core, clients to another."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="30-40 s on two cores: 2 rounds x 0.75 s, loopmon on its best backend (direct) "
        "against asyncio's Protocol server, the bare loop and uvloop (when installed), every "
        "workload (10,000 idle connections in one round)",
    )
    parser.add_argument("--rounds", type=positive_int, help="interleaved rounds (5; quick 2)")
    parser.add_argument(
        "--duration", type=positive_float, help="seconds per round and server (3; quick 0.75)"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="servers, comma-separated; globs work, 'loopmon' means every loopmon variant "
        "(see --list)",
    )
    parser.add_argument(
        "--workloads",
        metavar="NAMES",
        help=f"comma-separated, from {', '.join(WORKLOAD_NAMES)} ('rr': the three rr ones)",
    )
    parser.add_argument(
        "--idle-connections", type=positive_int, default=10_000, help="for idle-10k (%(default)s)"
    )
    parser.add_argument(
        "--wake-samples",
        type=count,  # zero too: plan() says how many are enough, with the reason
        help=f"per implementation, over up to 5 rounds (20000; quick 3000; at least "
        f"{MIN_WAKE_SAMPLES_PER_ROUND})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--list", action="store_true", help="list servers and workloads, exit")
    parser.add_argument(
        "--bench-host",
        dest="bench_host",
        default="127.0.0.1",
        choices=("127.0.0.1", "::1"),
        help="loopback address the servers listen on (%(default)s)",
    )


def run(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    try:
        settings, specs, notes = plan(args)
    except ValueError as exc:
        print(f"loopmon bench: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "list", False):
        print_listing(out, as_json=getattr(args, "json", False))
        return 0
    if not settings.servers:
        print("loopmon bench: no server to run", file=sys.stderr)
        return 2
    try:
        with interruptible():
            report = execute(settings, specs, notes)
    except KeyboardInterrupt as exc:
        print("\nloopmon bench: interrupted; every server and client stopped", file=sys.stderr)
        return 128 + (exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
    notes.extend(problems(report))
    if args.json:
        json.dump(finite(report), out, indent=2, allow_nan=False)
        out.write("\n")
    else:
        out.write(format_report(report) + "\n")
    out.flush()
    mismatched = any(r.get("mismatches") for block in report["workloads"] for r in block["results"])
    return 1 if mismatched else 0


def print_listing(out: TextIO, *, as_json: bool) -> None:
    """``--list``: the servers that can run here (and why others cannot), and the workloads."""
    every, skipped = discover_servers()
    if as_json:
        listing = {
            "servers": [{"name": x.name, "description": x.description} for x in every],
            "skipped": skipped,
            "workloads": [{"name": w.name, "title": w.title} for w in WORKLOADS],
        }
        json.dump(listing, out, indent=2)
        print(file=out)
        return
    for spec in every:
        print(f"{spec.name:24} {spec.description}", file=out)
    for note in skipped:
        print(f"{'':24} ({note})", file=out)
    print(file=out)
    for w in WORKLOADS:
        print(f"{w.name:24} {w.title}", file=out)


def problems(report: dict[str, Any]) -> list[str]:
    """Every problem and note of every workload and result, named, for the report's notes."""
    found: list[str] = []
    for block in report["workloads"]:
        found.extend(f"{block['name']}: {problem}" for problem in block.get("problems", []))
        for result in block["results"]:
            name = result.get("server") or result.get("impl")
            for problem in result.get("problems", []) + result.get("notes", []):
                found.append(f"{block['name']}: {name}: {problem}")
    return found
