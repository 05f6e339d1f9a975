"""From options to a plan: the settings, the servers and the notes for one bench run,
refusing what cannot work (too few wake samples, a descriptor limit below the idle
connections) before anything starts.
"""

from __future__ import annotations

from typing import Any

from loopmon import pollers
from loopmon.bench.peers import PEER_NAMES
from loopmon.bench.specs import (
    ServerSpec,
    Settings,
    discover_servers,
    loopmon_specs,
    parse_workloads,
    quick_servers,
    select_servers,
)
from loopmon.fdlimit import FD_HEADROOM, raise_fd_limit

# Fewer wake samples than this per round make a p99 of a handful of points.
MIN_WAKE_SAMPLES_PER_ROUND = 100


IDLE_DEADLINE_S = 25.0  # for all idle connections to be accepted (SYN retries: 1, 3, 7 s)


def plan(args: Any) -> tuple[Settings, list[ServerSpec], list[str]]:
    """Settings, servers and notes from the command line's options (attributes of ``args``;
    missing ones take their defaults); ``ValueError`` for bad names."""
    quick = bool(getattr(args, "quick", False))
    specs, notes = discover_servers()
    known = [s.name for s in loopmon_specs(pollers.BACKENDS)] + list(PEER_NAMES)
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
