"""What the bench can run: the workloads, the servers (loopmon's backends and strategies, and
the peers installed here), and the choice among them by name or glob.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from loopmon import pollers
from loopmon.bench.peers import PEERS, discover, installed

BASELINE = "asyncio-protocol"


REFERENCE = "bare-epoll"


# loopmon serve's --max-connections in the bench: the descriptor limit is the only bound wanted.
NO_CAP = 1 << 24


SELECT_MAX_FDS = 1024 - 16  # select()'s FD_SETSIZE, less the server's own descriptors


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
    by_name = {p.name: p for p in PEERS}
    return [
        ServerSpec(
            name,
            (sys.executable, "-m", "loopmon.bench.children", name, "--port", "0"),
            by_name[name].description,
        )
        for name in names
    ]


def discover_servers(
    backends: Sequence[str] | None = None,
    has: Callable[[str], bool] = installed,
) -> tuple[list[ServerSpec], list[str]]:
    """Every server that can run here, and a note for each that cannot."""
    if backends is None:
        backends = pollers.available()
    peers, notes = discover(has=has)
    missing = [b for b in pollers.BACKENDS if b not in backends]
    if missing:
        notes.insert(0, f"loopmon backends not available here: {', '.join(missing)}")
    return loopmon_specs(backends) + peer_specs(peers), notes


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
