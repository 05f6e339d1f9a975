#!/usr/bin/env python
"""What ``loopmon run`` costs an asyncio program: an asyncio Protocol echo server run plainly
and under ``loopmon run`` in two ways, all up at once, loaded in turns by loopmon's load
generator (``python -m loopmon load``), the servers pinned to one core and the client (and the
consumer) to the other when there are two:

- ``stream``: ``loopmon run --telemetry 127.0.0.1:0 --snapshot-hz 25`` with one consumer,
  ``loopmon attach --json``, connected for the whole case: the issue's case ("streaming at
  25 Hz to one consumer"): the instrument, the stall watch, the snapshots, the stream's thread
  and its encoding. The rate the consumer really received during each of its rounds (JSON
  objects counted) is reported beside it: a cost holds only at the rate it names.
- ``build``: ``loopmon run --build-snapshots --snapshot-hz 25``: the same less the stream (no
  thread, no encoding): what the instrument itself costs.

The figure is the server's CPU per round trip (its threads' schedstat run time over the round
trips the client counted), as a ratio of each instrumented server to the plain one within each
round (one round: each server loaded once, the order rotating from round to round). Reported:
each variant's median ratio (the rounds' spread beside it) and, from the instrumented server
itself, the snapshots it built (and skipped) and its task rows' share of the time.

    python benchmarks/bench_run.py                  # the three cases, 6 rounds of 3 s loads
    python benchmarks/bench_run.py --rounds 2 --duration 1    # a quick look
    python benchmarks/bench_run.py --variants stream --only 1k  # the issue's target only
    # what --metrics costs beyond building the snapshots, scraped as Prometheus would at 1 Hz:
    python benchmarks/bench_run.py --only 1k --base-args "--build-snapshots --snapshot-hz 25" \
        --run-args "--metrics 127.0.0.1:0 --snapshot-hz 25" --scrape-hz 1 --variants run

Cases: 100 clients x 1 KiB (target <= 1.05), 1,000 clients x 128 B, and 100 x 1 KiB with 1,000
tasks waiting in the program (the tasks' cost: target <= 1 % of the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The instrumented servers, by name: loopmon run's options, and whether a consumer attaches.
VARIANTS: dict[str, tuple[list[str], bool]] = {
    "stream": (["--telemetry", "127.0.0.1:0", "--snapshot-hz", "25"], True),
    "build": (["--build-snapshots", "--snapshot-hz", "25"], False),
    # the stream with no consumer: its thread woken at each snapshot, nothing encoded
    "unread": (["--telemetry", "127.0.0.1:0", "--snapshot-hz", "25"], False),
    "run": (["--build-snapshots", "--snapshot-hz", "25"], False),  # --run-args replaces it
}
# What the baseline runs under: plainly (None), or loopmon run with --base-args (to price one
# option against the rest, e.g. --metrics against --build-snapshots).
BASE_ARGS: list[str] | None = None
LAYOUT: list[str] = []  # same_layout(), unless --any-layout
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
    gc_s = [0.0, 0.0, 0.0]  # seconds in collections of each generation
    gc_began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            gc_s[info["generation"]] += time.perf_counter() - gc_began[0]

    gc.callbacks.append(on_gc)
    collections_before = [g["collections"] for g in gc.get_stats()]
    started = time.monotonic()
    print("port", server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()
    elapsed = time.monotonic() - started
    stats: dict[str, object] = {"tasks": len(held)}
    stats["gc_collections"] = [
        g["collections"] - b for g, b in zip(gc.get_stats(), collections_before, strict=True)
    ]
    stats["gc_ms"] = [round(x * 1000, 1) for x in gc_s]
    try:
        import loopmon.instrument
    except ImportError:
        instrument = None
    else:
        instrument = loopmon.instrument.current()
    if instrument is not None:
        watch = instrument.watches[0] if instrument.watches else None
        totals = watch.totals(time.monotonic()) if watch is not None else None
        if totals is not None and totals.iterations:
            stats["events_per_pass"] = round(totals.events / totals.iterations, 2)
            stats["passes_per_s"] = round(totals.iterations / elapsed)
        table = getattr(watch, "tasks", None)
        stats.update(
            snapshots=instrument.built,
            skipped=instrument.skipped,
            snapshot_hz=round(instrument.built / elapsed, 1),
            snapshot_ms=round(instrument.build_total_s * 1000 / max(instrument.built, 1), 3),
            snapshot_share=round(instrument.build_total_s / elapsed, 5),
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


def same_layout() -> list[str]:
    """Every server with the same address layout (no ASLR: ``setarch -R``) and, through the
    environment, the same string hashes: two processes of one program otherwise differ by a
    fixed few per cent (cache alignment, dict orders) that no number of rounds averages out,
    and one process of each is all a case has."""
    machine = os.uname().machine
    probe = subprocess.run(["setarch", machine, "-R", "true"], capture_output=True, check=False)
    return ["setarch", machine, "-R"] if probe.returncode == 0 else []


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


def said(err: Path, prefix: str, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """The rest of the first stderr line that starts with ``prefix`` (loopmon run prints its
    addresses before the program starts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in err.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise SystemExit(f"no {prefix!r} line: {err.read_text(errors='replace')[-500:]!r}")


class Server:
    def __init__(
        self,
        name: str,
        run_args: list[str] | None,
        consumer: bool,
        tasks: int,
        cores: tuple[int | None, int | None],
        workdir: Path,
    ) -> None:
        here = str(Path(__file__).resolve())
        argv = [sys.executable]
        if run_args is not None and run_args != ["plain"]:  # plain: an A/A check of the bench
            argv += ["-m", "loopmon.cli.run", *run_args]
        argv += [here, "--serve", "--tasks", str(tasks)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
        self.name = name
        self.err = workdir / f"{name}.err"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                pin(cores[0]) + LAYOUT + argv, stdout=subprocess.PIPE, stderr=err, env=env
            )
        assert self.proc.stdout is not None
        self.scrapes = [0, 0]  # answered, failed
        self.rates: list[float] = []  # round trips a second, each counted round
        self._stop_scraping = threading.Event()
        self.consumer: subprocess.Popen[bytes] | None = None
        self.consumer_out = workdir / f"{name}.consumer.jsonl"
        run_args = run_args or []
        if "--metrics" in run_args and SCRAPE_HZ[0] > 0:
            port = int(said(self.err, "loopmon: metrics on ", self.proc).rsplit(":", 1)[1])
            threading.Thread(
                target=scrape_forever,
                args=(port, SCRAPE_HZ[0], self._stop_scraping, self.scrapes),
                daemon=True,
            ).start()
        if consumer:
            address = said(self.err, "loopmon: telemetry on ", self.proc)
            token_file = said(self.err, "loopmon: token file ", self.proc)
            with self.consumer_out.open("wb") as out:
                self.consumer = subprocess.Popen(
                    [
                        *pin(cores[1]),
                        sys.executable,
                        "-m",
                        "loopmon",
                        "attach",
                        "--json",
                        "--token-file",
                        token_file,
                        address,
                    ],
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    # a line a snapshot, written when read: the rate per round is counted
                    env=dict(env, PYTHONUNBUFFERED="1"),
                )
        line = self.proc.stdout.readline()
        if not line.startswith(b"port"):
            self.proc.kill()
            raise SystemExit(f"{name} server did not start: {self.err.read_text()[-500:]!r}")
        self.port = int(line.split()[1])

    def delivered(self) -> int:
        """JSON objects the consumer printed so far (one a line)."""
        try:
            with self.consumer_out.open("rb") as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    def stop(self) -> dict[str, object]:
        self._stop_scraping.set()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        if self.consumer is not None:
            try:
                self.consumer.wait(timeout=10)  # it exits when the stream says goodbye
            except subprocess.TimeoutExpired:
                self.consumer.kill()
                self.consumer.wait()
        lines = out.decode().strip().splitlines()
        stats: dict[str, object] = (
            json.loads(lines[-1])
            if lines
            else {"stderr": self.err.read_text(errors="replace")[-500:]}
        )
        if any(self.scrapes):
            stats["scrapes"] = self.scrapes[0]
            stats["scrapes_failed"] = self.scrapes[1]
        return stats


def load_round(server: Server, clients: int, size: int, duration: float, core: int | None) -> float:
    """Server CPU microseconds per round trip over one load run (and the round trips a
    second, kept on the server: the client's rate sets how many events a pass batches)."""
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
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    trips = report["round_trips"]
    server.rates.append(report["round_trips_per_s"])
    return (after - before) / 1000 / max(trips, 1)


def case(
    name: str, clients: int, size: int, tasks: int, args: argparse.Namespace
) -> dict[str, object]:
    two = (os.cpu_count() or 1) >= 2 and not args.no_pin
    cores = (0, 1) if two else (None, None)
    us: dict[str, list[float]] = {"plain": []}
    rates: dict[str, list[float]] = {}
    shares: dict[str, list[float]] = {}  # the consumer's CPU, a share of the client's core
    with tempfile.TemporaryDirectory(prefix="loopmon-bench-run-") as tmp:
        servers = [Server("plain", BASE_ARGS, False, tasks, cores, Path(tmp))]
        for v in args.variants:
            run_args, consumer = VARIANTS[v]
            servers.append(Server(v, run_args, consumer, tasks, cores, Path(tmp)))
            us[v] = []
            if consumer:
                rates[v] = []
                shares[v] = []
        try:
            for s in servers:  # warm-up, not counted: first connections, caches
                load_round(s, clients, size, min(args.duration, 1.0), cores[1])
                s.rates.clear()
            for r in range(args.rounds):
                k = r % len(servers)
                order = servers[k:] + servers[:k]
                if r // len(servers) % 2:
                    order.reverse()
                for s in order:
                    before, t0 = s.delivered(), time.monotonic()
                    consumer_cpu = cpu_ns(s.consumer.pid) if s.consumer is not None else 0
                    us[s.name].append(load_round(s, clients, size, args.duration, cores[1]))
                    if s.name in rates:
                        wall = time.monotonic() - t0
                        rates[s.name].append((s.delivered() - before) / wall)
                        assert s.consumer is not None
                        shares[s.name].append((cpu_ns(s.consumer.pid) - consumer_cpu) / 1e9 / wall)
                line = ", ".join(
                    f"{n} {v[-1]:.2f} us/rt"
                    + (f" x{v[-1] / us['plain'][-1]:.3f}" if n != "plain" else "")
                    + (f" {rates[n][-1]:.1f} Hz" if n in rates else "")
                    for n, v in us.items()
                )
                print(f"  {name} round {r + 1}: {line}", flush=True)
        finally:
            stats = {s.name: s.stop() for s in servers}
            by_name = {s.name: s for s in servers}
    result: dict[str, object] = {
        "case": name,
        "plain_us_per_rt": round(statistics.median(us["plain"]), 2),
        "plain_rt_per_s": round(statistics.median(by_name["plain"].rates)),
    }
    for v in args.variants:
        ratios = [w / p for w, p in zip(us[v], us["plain"], strict=True)]
        figures: dict[str, object] = {
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3),
            "us_per_rt": round(statistics.median(us[v]), 2),
            "rt_per_s": round(statistics.median(by_name[v].rates)),
            "instrument": stats[v],
        }
        if v in rates:
            figures["delivered_hz_median"] = round(statistics.median(rates[v]), 1)
            figures["delivered_hz_min"] = round(min(rates[v]), 1)
            # on the client's core: the load client has that much less of it in these rounds
            figures["consumer_cpu_share"] = round(statistics.median(shares[v]), 4)
        result[v] = figures
    result["baseline"] = stats["plain"]
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
        "--variants",
        default="stream,build",
        help="the instrumented servers, of stream, build, unread and run (default: stream,build)",
    )
    parser.add_argument(
        "--run-args",
        default=None,
        help="loopmon run's options for the 'run' variant (default: "
        f"{' '.join(VARIANTS['run'][0])})",
    )
    parser.add_argument(
        "--any-layout",
        action="store_true",
        help="let each server have its own address layout and hash seed (the default: one)",
    )
    args = parser.parse_args()
    if not args.serve and not args.any_layout:
        LAYOUT[:] = same_layout()
    args.variants = [v for v in args.variants.split(",") if v]
    if not args.serve and any(v not in VARIANTS for v in args.variants):
        parser.error(f"--variants: of {', '.join(VARIANTS)}")
    if args.run_args is not None:
        VARIANTS["run"] = (args.run_args.split(), "--telemetry" in args.run_args)
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
