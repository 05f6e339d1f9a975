#!/usr/bin/env python
"""What ``loopmon run`` costs an asyncio program: an asyncio Protocol echo server run plainly
and under ``loopmon run --build-snapshots --snapshot-hz 25`` (the instrument, the stall watch
and 25 snapshots a second built for a consumer, less a stream's encoding), both up at once,
loaded in turns by loopmon's load generator (``python -m loopmon load``), the server pinned to
one core and the client to the other when there are two.

The figure is the server's CPU per round trip (its threads' schedstat run time over the round
trips the client counted), as a ratio of the instrumented server to the plain one within each
pair of rounds; the order within a pair alternates. Reported: each case's median ratio (the
pairs' spread beside it) and, from the instrumented server itself, the snapshot rate it
delivered and its task rows' share of the time.

    python benchmarks/bench_run.py                  # the three cases, 6 pairs of 3 s rounds
    python benchmarks/bench_run.py --rounds 2 --duration 1    # a quick look
    # what --metrics costs beyond building the snapshots, scraped as Prometheus would at 1 Hz:
    python benchmarks/bench_run.py --only 1k --base-args "--build-snapshots --snapshot-hz 25" \
        --run-args "--metrics 127.0.0.1:0 --snapshot-hz 25" --scrape-hz 1

Cases: 100 clients x 1 KiB (target <= 1.05), 1,000 clients x 128 B, and 100 x 1 KiB with 1,000
tasks waiting in the program (the tasks' cost: target <= 1 % of the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the instrumented server runs under; --run-args replaces it (to take the cost apart).
RUN_ARGS = ["--build-snapshots", "--snapshot-hz", "25"]
# What the baseline runs under: plainly (None), or loopmon run with --base-args (to price one
# option against the rest, e.g. --metrics against --build-snapshots).
BASE_ARGS: list[str] | None = None
SCRAPE_HZ = [0.0]  # scrapes a second of a server's --metrics while it is up (--scrape-hz)


# -- the server (``--serve``): what runs plainly and under loopmon run -----------------------


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def waiter(event: asyncio.Event) -> None:
    await event.wait()


def serve(tasks: int) -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
    never = asyncio.Event()
    held = [loop.create_task(waiter(never)) for _ in range(tasks)]
    # A plain signal handler, not add_signal_handler: no wakeup fd, no extra passes.
    signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(loop.stop))
    started = time.monotonic()
    print("port", server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()
    elapsed = time.monotonic() - started
    stats: dict[str, object] = {"tasks": len(held)}
    try:
        import loopmon.instrument
    except ImportError:
        instrument = None
    else:
        instrument = loopmon.instrument.current()
    if instrument is not None:
        watch = instrument.watches[0] if instrument.watches else None
        table = getattr(watch, "tasks", None)
        stats.update(
            snapshots=instrument.built,
            skipped=instrument.skipped,
            snapshot_hz=round(instrument.built / elapsed, 1),
            task_refreshes=getattr(table, "refreshes", 0),
            task_share=round(getattr(table, "total_seconds", 0.0) / elapsed, 5),
            task_refresh_ms=round(getattr(table, "build_seconds", 0.0) * 1000, 3),
        )
    print(json.dumps(stats), flush=True)


# -- the driver ------------------------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """Time on CPU of every thread of ``pid`` so far (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass
    return total


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


def scrape_forever(port: int, hz: float, stop: threading.Event, counts: list[int]) -> None:
    """GET /metrics ``hz`` times a second until ``stop`` (as Prometheus would: one request a
    connection, the whole page read)."""
    while not stop.wait(1.0 / hz):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            response.read()
            counts[0 if response.status == 200 else 1] += 1
        except OSError:
            counts[1] += 1
        finally:
            conn.close()


class Server:
    def __init__(self, instrumented: bool, tasks: int, core: int | None) -> None:
        here = str(Path(__file__).resolve())
        argv = [sys.executable]
        run_args = RUN_ARGS if instrumented else BASE_ARGS
        if run_args is not None and run_args != ["plain"]:  # plain: an A/A check of the bench
            argv += ["-m", "loopmon.cli.run", *run_args]
        argv += [here, "--serve", "--tasks", str(tasks)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.name = "loopmon run" if instrumented else "plain"
        self.proc = subprocess.Popen(
            pin(core) + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.scrapes = [0, 0]  # answered, failed
        self._stop_scraping = threading.Event()
        if run_args is not None and "--metrics" in run_args and SCRAPE_HZ[0] > 0:
            # loopmon run prints where before the program starts.
            said = self.proc.stderr.readline().decode()
            if not said.startswith("loopmon: metrics on "):
                self.proc.kill()
                raise SystemExit(f"{self.name}: no metrics line: {said!r}")
            port = int(said.rsplit(":", 1)[1])
            threading.Thread(
                target=scrape_forever,
                args=(port, SCRAPE_HZ[0], self._stop_scraping, self.scrapes),
                daemon=True,
            ).start()
        line = self.proc.stdout.readline()
        if not line.startswith(b"port"):
            self.proc.kill()
            raise SystemExit(f"{self.name} server did not start: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.port = int(line.split()[1])

    def stop(self) -> dict[str, object]:
        self._stop_scraping.set()
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        lines = out.decode().strip().splitlines()
        stats: dict[str, object] = (
            json.loads(lines[-1]) if lines else {"stderr": err.decode()[-500:]}
        )
        if any(self.scrapes):
            stats["scrapes"] = self.scrapes[0]
            stats["scrapes_failed"] = self.scrapes[1]
        return stats


def load_round(server: Server, clients: int, size: int, duration: float, core: int | None) -> float:
    """Server CPU microseconds per round trip over one load run."""
    argv = [
        *pin(core),
        sys.executable, "-m", "loopmon", "load", "--port", str(server.port),
        "--clients", str(clients), "--size", str(size), "--duration", str(duration),
        "--mode", "rr", "--json", "--progress", "none",
    ]  # fmt: skip
    before = cpu_ns(server.proc.pid)
    done = subprocess.run(argv, capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    after = cpu_ns(server.proc.pid)
    if done.returncode != 0:
        raise SystemExit(f"load failed: {done.stderr.decode()[-500:]}")
    trips = json.loads(done.stdout.decode().strip().splitlines()[-1])["round_trips"]
    return (after - before) / 1000 / max(trips, 1)


def case(
    name: str, clients: int, size: int, tasks: int, args: argparse.Namespace
) -> dict[str, object]:
    two = (os.cpu_count() or 1) >= 2 and not args.no_pin
    server_core, client_core = (0, 1) if two else (None, None)
    plain = Server(False, tasks, server_core)
    watched = Server(True, tasks, server_core)
    ratios, plain_us, watched_us = [], [], []
    try:
        for s in (plain, watched):  # warm-up, not counted: first connections, caches
            load_round(s, clients, size, min(args.duration, 1.0), client_core)
        for r in range(args.rounds):
            order = (plain, watched) if r % 2 == 0 else (watched, plain)
            got = {s.name: load_round(s, clients, size, args.duration, client_core) for s in order}
            plain_us.append(got["plain"])
            watched_us.append(got["loopmon run"])
            ratios.append(got["loopmon run"] / got["plain"])
            print(
                f"  {name} pair {r + 1}: plain {got['plain']:.2f} us/rt, "
                f"loopmon run {got['loopmon run']:.2f} us/rt, ratio {ratios[-1]:.3f}",
                flush=True,
            )
    finally:
        plain_stats = plain.stop()
        stats = watched.stop()
    result = {
        "case": name,
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "plain_us_per_rt": round(statistics.median(plain_us), 2),
        "loopmon_us_per_rt": round(statistics.median(watched_us), 2),
        "instrument": stats,
        "baseline": plain_stats,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=6, help="pairs of rounds per case (6)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per round (3)")
    parser.add_argument("--only", choices=("1k", "128", "tasks"), help="one case")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--base-args",
        default=None,
        help="the baseline runs under loopmon run with these options (default: plainly)",
    )
    parser.add_argument(
        "--scrape-hz",
        type=float,
        default=0.0,
        help="scrape each server started with --metrics this often while it is up (0: never)",
    )
    parser.add_argument(
        "--run-args",
        default=None,
        help=f"loopmon run's options for the instrumented server (default: {' '.join(RUN_ARGS)})",
    )
    args = parser.parse_args()
    if args.run_args is not None:
        RUN_ARGS[:] = args.run_args.split()
    if args.base_args is not None:
        global BASE_ARGS
        BASE_ARGS = args.base_args.split()
    SCRAPE_HZ[0] = args.scrape_hz
    if args.serve:
        serve(args.tasks)
        return 0
    cases = [("100 x 1 KiB", 100, 1024, 0, "1k"), ("1000 x 128 B", 1000, 128, 0, "128"),
             ("100 x 1 KiB, 1000 tasks", 100, 1024, 1000, "tasks")]  # fmt: skip
    for name, clients, size, tasks, key in cases:
        if args.only in (None, key):
            case(name, clients, size, tasks, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
