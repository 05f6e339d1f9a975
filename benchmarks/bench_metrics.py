"""What a scrape of /metrics costs the loop, and how fast it is answered, at 10,000 idle
connections (issue 20's targets: at most 5 ms of the loop per scrape, p99 answer within 10 ms
over 100 scrapes; at 1 scrape a second, at most 0.5 % of the loop).

The loop, the echo server, telemetry and the exporter run here, on a LoopRunner's thread, as in
``loopmon serve --metrics``; the 10,000 idle clients live in a child process (each end of a
connection is an fd, and both ends would not fit under one process's usual limit of 20,000).
A scrape's loop cost is the time the loop spent in the endpoint's handlers for it (accepting,
reading the request, rendering, sending), timed around those handlers; the answer time is the
scraper's wall time from connect to the last byte. Telemetry runs at serve's rate (2 snapshots
a second) unless ``--telemetry-hz`` says otherwise, and scrapes come 0.11 s apart; the report
says how many rendered a snapshot no scrape had read yet (the collector sums each snapshot's
rows once, so those are the expensive ones; ``--telemetry-hz 10`` makes most of them so).

    .venv/bin/python benchmarks/bench_metrics.py [--connections 10000] [--scrapes 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

from loopmon.loadgen import raise_fd_limit

from loopmon.echo.listener import bind
from loopmon.metrics.exporter import Exporter
from loopmon.metrics.options import producer
from loopmon.runner import LoopRunner
from loopmon.telemetry import MEASURES

# The child: holds the idle clients, and scrapes when told (one line in, the answer's time and
# the page's first line out), so no scraping thread shares the loop's interpreter lock.
CHILD = textwrap.dedent(
    """
    import socket, sys, time
    echo, metrics, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    socks = [socket.create_connection(("127.0.0.1", echo), timeout=30) for _ in range(n)]
    request = b"GET /metrics HTTP/1.1\\r\\nHost: bench\\r\\nAccept: */*\\r\\n\\r\\n"
    print("ready", flush=True)
    for line in sys.stdin:
        # A plain socket, as a scraper's HTTP client does little more: the time is the server's.
        start = time.perf_counter()
        conn = socket.create_connection(("127.0.0.1", metrics), timeout=10)
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        took = time.perf_counter() - start
        conn.close()
        body = b"".join(chunks).partition(b"\\r\\n\\r\\n")[2]
        connections = [l for l in body.splitlines() if l.startswith(b"loopmon_connections ")]
        print(took, len(body), connections[0].split()[1].decode() if connections else "-",
              flush=True)
    """
)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Child:
    def __init__(self, echo_port: int, metrics_port: int, connections: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(echo_port), str(metrics_port), str(connections)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise SystemExit("the clients could not connect")

    def scrape(self) -> tuple[float, int, float]:
        """(answer time, page size, loopmon_connections) of one scrape."""
        self.stdin.write("scrape\n")
        self.stdin.flush()
        took, size, connections = self.stdout.readline().split()
        return float(took), int(size), float(connections) if connections != "-" else -1.0

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--telemetry-hz", type=float, default=2.0)
    args = parser.parse_args()
    raise_fd_limit(args.connections + 256)

    runner = LoopRunner(
        telemetry_hz=args.telemetry_hz,
        stall_threshold=None,
        server_options={"max_connections": 20_000},
    )
    runner.start()
    # Loop seconds in the endpoint's handlers, added on the loop thread: wall time, and the
    # thread's CPU time (wall time also counts the time the OS ran another process instead,
    # which on a shared machine is not the scrape's doing).
    spent = [0.0, 0.0]
    updates: list[float] = []
    builds: list[float] = []  # telemetry's own snapshot builds, for comparison

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*a: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*a)
            finally:
                spent[0] += time.perf_counter() - start
                spent[1] += time.thread_time() - cpu

        return run

    def setup() -> tuple[int, Exporter]:
        loop, server = runner.loop, runner.server
        assert loop is not None and server is not None
        echo = server.start_listener("127.0.0.1", 0)
        exporter = Exporter(
            loop,
            bind("127.0.0.1", 0),
            producer("serve", "bench", runner.session, loop.backend, MEASURES),
        )
        endpoint = exporter.endpoint
        endpoint._on_accept = timed(endpoint._on_accept)  # type: ignore[method-assign]
        endpoint._on_client = timed(endpoint._on_client)  # type: ignore[method-assign]
        exporter.start()

        def update(snapshot: Any) -> None:
            telemetry = runner._telemetry
            if telemetry is not None:
                builds.append(telemetry.build_seconds)
            start = time.perf_counter()
            exporter.update(snapshot)
            updates.append(time.perf_counter() - start)

        runner.snapshot_observers.append(update)
        return echo.port, exporter

    echo_port, exporter = runner.submit(setup).result(10)
    port = exporter.endpoint.port
    child = Child(echo_port, port, args.connections)
    try:
        deadline = time.monotonic() + 60
        while child.scrape()[2] != args.connections:
            if time.monotonic() > deadline:
                raise SystemExit("the connections never all showed up")
            time.sleep(0.2)
        costs, cpus, answers, fresh_costs = [], [], [], []
        seen = exporter.collector.updates
        for _ in range(args.scrapes):
            time.sleep(0.11)
            fresh = exporter.collector.updates != seen
            seen = exporter.collector.updates
            before, cpu_before = spent
            answer, size, _ = child.scrape()
            # The handlers finish before the last byte can arrive: their time is all in.
            costs.append(spent[0] - before)
            cpus.append(spent[1] - cpu_before)
            if fresh:
                fresh_costs.append(costs[-1])
            answers.append(answer)
    finally:
        child.close()
        runner.stop()

    ms = 1000.0
    cost_p50, cost_p99, cost_max = (
        quantile(costs, 0.5) * ms,
        quantile(costs, 0.99) * ms,
        max(costs) * ms,
    )
    answer_p50, answer_p99 = quantile(answers, 0.5) * ms, quantile(answers, 0.99) * ms
    update_ms = statistics.median(updates[-50:]) * ms if updates else float("nan")
    share = statistics.mean(cpus) / 1.0 * 100
    cpu_p50, cpu_p99 = quantile(cpus, 0.5) * ms, quantile(cpus, 0.99) * ms
    print(
        f"connections: {args.connections:,} idle; scrapes: {args.scrapes} "
        f"({len(fresh_costs)} of a snapshot no scrape had read)"
    )
    print(f"page: {size:,} bytes")
    print(
        f"loop cost per scrape (loop thread CPU): p50 {cpu_p50:.2f} ms, p99 {cpu_p99:.2f} ms, "
        f"max {max(cpus) * ms:.2f} ms (target <= 5 ms): {'ok' if cpu_p99 <= 5 else 'OVER'}"
    )
    print(
        f"loop cost per scrape (wall, preemption included): p50 {cost_p50:.2f} ms, "
        f"p99 {cost_p99:.2f} ms, max {cost_max:.2f} ms"
    )
    print(
        f"answer time: p50 {answer_p50:.2f} ms, p99 {answer_p99:.2f} ms "
        f"(target <= 10 ms): {'ok' if answer_p99 <= 10 else 'OVER'}"
    )
    print(
        f"at 1 scrape/s: {share:.3f} % of the loop (target <= 0.5 %): "
        f"{'ok' if share <= 0.5 else 'OVER'}"
    )
    if fresh_costs:
        print(
            f"  of a fresh snapshot: p50 {quantile(fresh_costs, 0.5) * ms:.2f} ms, "
            f"max {max(fresh_costs) * ms:.2f} ms"
        )
    print(f"collector.update per snapshot (no scrape): median {update_ms:.3f} ms")
    if builds:
        print(
            f"telemetry's snapshot build (for comparison, not the scrape's): median "
            f"{statistics.median(builds[-50:]) * ms:.2f} ms at {args.telemetry_hz:g} Hz"
        )
    print(f"machine load (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
