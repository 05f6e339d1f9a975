"""The entry point of the bench's child processes, one per peer server or probe:

    python -m loopmon.bench.children NAME [--host H] [--port P] [--backlog B]
    python -m loopmon.bench.children wake IMPL [--samples N] [--gap-us US] [--loop-cpu C]
    python -m loopmon.bench.children snapshot [CONNECTIONS] [--samples N]

A peer (``bench.peers``) prints ``listening on HOST:PORT (peer NAME)`` and serves until SIGTERM
or SIGINT; a probe (``bench.probes``) prints one JSON line and exits. The bench starts these
itself; they are documented so a figure can be reproduced by hand. Its options are an internal
protocol between the bench and its children, which is why this is the one argparse in ``bench/``.
"""

from __future__ import annotations

import argparse
import json
import sys

from loopmon.bench.peers import BACKLOG, PEER_NAMES, serve
from loopmon.bench.probes import WAKE_IMPLS, measure_snapshot, measure_wake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loopmon.bench.children",
        description="Peer echo servers and the cross-thread wake probe for `loopmon bench`.",
    )
    parser.add_argument("name", help=f"one of {', '.join(PEER_NAMES)}, 'wake' or 'snapshot'")
    parser.add_argument(
        "impl", nargs="?", help="for wake: loopmon, asyncio or uvloop; for snapshot: connections"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port (printed)")
    parser.add_argument("--backlog", type=int, default=BACKLOG)
    parser.add_argument("--samples", type=int, default=None, help="wake: 20000; snapshot: 20")
    parser.add_argument("--gap-us", type=float, default=300.0, help="idle time between wakes")
    parser.add_argument("--loop-cpu", type=int, default=None)
    parser.add_argument("--caller-cpu", type=int, default=None)
    args = parser.parse_args(argv)
    if args.name == "snapshot":
        connections = int(args.impl or 10_000)
        print(json.dumps(measure_snapshot(connections, args.samples or 20)), flush=True)
        return 0
    if args.name == "wake":
        impls = [p.name for p in WAKE_IMPLS]
        if args.impl not in impls:
            parser.error(f"wake needs one of {', '.join(impls)}")
        result = measure_wake(
            args.impl,
            args.samples or 20000,
            gap_s=args.gap_us / 1e6,
            loop_cpu=args.loop_cpu,
            caller_cpu=args.caller_cpu,
        )
        print(json.dumps(result), flush=True)
        return 0
    return serve(args.name, args.host, args.port, args.backlog)


if __name__ == "__main__":
    sys.exit(main())
