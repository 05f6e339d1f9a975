"""Interleaved A/B of ``loopmon serve`` from two source trees, with the bench's own rounds.

    .venv/bin/python benchmarks/ab_serve.py BEFORE_TREE [AFTER_TREE] [--rounds 12] [--duration 3]

Each tree (a checkout: the directory holding ``loopmon/``) runs one ``loopmon serve --backend
epoll --strategy direct --quiet`` pinned to the servers' core; the same load client (this
interpreter's ``loopmon load``, on the other core) drives both in alternating order (A B, B A, ...)
on 100 x 1 KiB and 1,000 x 128 B request/response. The figure is the server's CPU time per
round trip (the bench's ``srv us/rt``), which stays true when the Python client is the limit;
the result is the median of the per-round paired ratios after / before, so drift of a shared
machine cancels out. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from loopmon.bench.processes import Children, start_server
from loopmon.bench.rounds import run_rr_round
from loopmon.bench.session import cpu_split
from loopmon.bench.specs import NO_CAP, WORKLOADS, ServerSpec
from loopmon.fdlimit import raise_fd_limit

HERE = Path(__file__).resolve().parent.parent  # the after tree by default: this checkout


def spec(name: str, tree: Path) -> ServerSpec:
    # The tree's own loopmon, whatever this interpreter has installed.
    boot = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); import loopmon, runpy; "
        f"assert loopmon.__file__.startswith({str(tree)!r}), loopmon.__file__; "
        "runpy.run_module('loopmon', run_name='__main__')"
    )
    argv = (sys.executable, "-c", boot, "serve", "--port", "0", "--backend", "epoll")
    argv += ("--strategy", "direct", "--max-connections", str(NO_CAP), "--quiet")
    return ServerSpec(name, argv, f"loopmon serve from {tree}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=HERE)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    server_cpus, client_cpus, pinning = cpu_split()
    raise_fd_limit()
    print(f"{pinning}; {args.rounds} rounds x {args.duration:g} s", file=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory(prefix="loopmon-ab-") as tmp:
        children = Children(Path(tmp))
        try:
            for w in (w for w in WORKLOADS if w.name in ("rr-1k", "rr-128")):
                running = {
                    n: start_server(children, spec(n, t), server_cpus, "127.0.0.1")
                    for n, t in trees.items()
                }
                us: dict[str, list[float]] = {n: [] for n in trees}
                for i in range(args.rounds):
                    for n in list(trees) if i % 2 == 0 else list(reversed(trees)):
                        r = run_rr_round(
                            children, running[n], w, args.duration, i, (server_cpus, client_cpus)
                        )
                        if not r.ok or r.server_cpu_us_per_rt is None:
                            raise SystemExit(f"{w.name} round {i} {n}: {r.problem}")
                        us[n].append(r.server_cpu_us_per_rt)
                    print(w.name, i, {n: round(v[-1], 3) for n, v in us.items()}, file=sys.stderr)
                for server in running.values():
                    children.stop(server.proc)
                ratios = [a / b for a, b in zip(us["after"], us["before"], strict=True)]
                results[w.name] = {
                    "before_us_per_rt": statistics.median(us["before"]),
                    "after_us_per_rt": statistics.median(us["after"]),
                    "paired_ratio_median": statistics.median(ratios),
                    "ratios": [round(x, 4) for x in ratios],
                }
        finally:
            children.stop_all()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
