"""Stands in for ``loopmon load --json --progress jsonl`` in the load panel's tests.

It accepts the same options, writes a JSON progress line to stderr every ``--tick`` seconds
(a fast cadence so tests stay quick), a summary line to stdout at the end, and exits 1 if the
environment asks for mismatches. SIGTERM ends it at once with status 143, like a real client.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--clients", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--mode")
    p.add_argument("--duration", type=float)
    p.add_argument("--json", action="store_true")
    p.add_argument("--progress")
    p.add_argument("--tick", type=float, default=0.05)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    mismatches = int(os.environ.get("FAKE_LOAD_MISMATCHES", "0"))
    print("fake load: starting", file=sys.stderr, flush=True)  # not JSON: goes to the log
    start = time.monotonic()
    trips = 0
    while (elapsed := time.monotonic() - start) < args.duration:
        trips += 100
        line = {
            "elapsed_s": round(elapsed, 3),
            "round_trips": trips,
            "round_trips_per_s": 2000.0,
            "mb_per_s": 1.5,
            "errors": 0,
            "mismatches": mismatches,
            "open_connections": args.clients,
        }
        print(json.dumps(line), file=sys.stderr, flush=True)
        time.sleep(args.tick)
    summary = {
        "mode": args.mode,
        "clients": args.clients,
        "size": args.size,
        "duration_s": args.duration,
        "round_trips": trips,
        "round_trips_per_s": 2000.0,
        "bytes_sent": trips * args.size,
        "bytes_received": trips * args.size,
        "mb_per_s": 1.5,
        "latency_p50_ms": 0.21,
        "latency_p99_ms": 0.9,
        "latency_max_ms": 3.2,
        "errors": 0,
        "mismatches": mismatches,
        "target": f"{args.host}:{args.port}",
    }
    print(json.dumps(summary), flush=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
