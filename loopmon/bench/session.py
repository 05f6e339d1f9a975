"""A whole bench run: the cores split between servers and clients, signals that stop every
child, every workload's rounds interleaved across servers, and the report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loopmon import __version__
from loopmon.bench.peers import discover
from loopmon.bench.planning import MIN_WAKE_SAMPLES_PER_ROUND
from loopmon.bench.probes import WAKE_IMPLS
from loopmon.bench.processes import Children, Running, start_server
from loopmon.bench.procfs import background_busy
from loopmon.bench.progress import Progress
from loopmon.bench.report import (
    SCHEMA,
    IdleResult,
    RoundResult,
    command_line,
    machine_info,
    summarise_idle,
    summarise_rr,
    summarise_wake,
)
from loopmon.bench.rounds import run_idle_round, run_rr_round, run_snapshot_round, run_wake_round
from loopmon.bench.specs import BASELINE, REFERENCE, WORKLOADS, ServerSpec, Settings, Workload
from loopmon.fdlimit import raise_fd_limit


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


class Interrupted(KeyboardInterrupt):
    """A signal ended the run; the exit status is 128 + its number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
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


def execute(
    settings: Settings,
    specs: Sequence[ServerSpec],
    notes: list[str],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run everything ``settings`` asks for; the report (a JSON-able dict)."""
    started = time.monotonic()
    server_cpus, client_cpus, pinning = cpu_split()
    raise_fd_limit()  # inherited by every server and client
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
                    block = run_rr(
                        children, w, servers, settings, (server_cpus, client_cpus), progress
                    )
                elif w.kind == "idle":
                    block = run_idle(children, w, servers, settings, server_cpus, progress)
                else:
                    block = run_wake(children, w, settings, loop_cpu, caller_cpu, progress)
                report["workloads"].append(block)
        finally:
            children.stop_all()
            progress.close()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def run_rr(
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


def run_idle(
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


def run_wake(
    children: Children,
    w: Workload,
    settings: Settings,
    loop_cpu: int | None,
    caller_cpu: int | None,
    progress: Progress,
) -> dict[str, Any]:
    impls, skipped = discover(WAKE_IMPLS)
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
