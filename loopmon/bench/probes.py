"""The in-process probes a child runs for the bench: the cross-thread wake (loopmon's
``add_callback`` against asyncio's and uvloop's ``call_soon_threadsafe``, the loop idle in its
poll before every sample) and what a telemetry snapshot of many idle connections costs the
loop thread.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loopmon.bench.peers import Peer
from loopmon.fdlimit import raise_fd_limit

if TYPE_CHECKING:  # the probes import loopmon's loop only when they measure it
    from loopmon.ioloop import IOLoop

WAKE_IMPLS: tuple[Peer, ...] = (
    Peer("loopmon", "IOLoop.add_callback", None),
    Peer("asyncio", "loop.call_soon_threadsafe", None),
    Peer("uvloop", "uvloop call_soon_threadsafe", "uvloop"),
)


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})  # Linux: the calling thread only
        except OSError:
            pass


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[index])


class _AsyncioLoop:
    """An asyncio (or uvloop) loop on a thread, with the surface the probe needs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.add_callback: Callable[[Callable[[], None]], object] = loop.call_soon_threadsafe

    def start(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    def close(self) -> None:
        self.loop.close()


def _wake_loop(impl: str) -> Any:
    """A loop of ``impl`` with ``start``, ``stop``, ``close`` and ``add_callback``."""
    if impl == "loopmon":
        from loopmon.ioloop import IOLoop

        return IOLoop(make_current=False)
    if impl == "asyncio":
        return _AsyncioLoop(asyncio.new_event_loop())
    if impl == "uvloop":
        return _AsyncioLoop(importlib.import_module("uvloop").new_event_loop())
    raise ValueError(f"unknown wake implementation {impl!r}")


def measure_wake(
    impl: str,
    samples: int,
    gap_s: float = 0.0003,
    warmup: int = 200,
    loop_cpu: int | None = None,
    caller_cpu: int | None = None,
) -> dict[str, Any]:
    """Time ``samples`` cross-thread wakes of an idle loop; nanoseconds, summarised."""
    runner = _wake_loop(impl)

    def loop_thread() -> None:
        _pin(loop_cpu)
        runner.start()

    thread = threading.Thread(target=loop_thread, name=f"wake-{impl}", daemon=True)
    thread.start()
    _pin(caller_cpu)
    clock = time.perf_counter_ns
    started = [0]
    arrived = threading.Lock()
    arrived.acquire()

    def callback() -> None:
        started[0] = clock()
        arrived.release()

    add_callback = runner.add_callback
    latencies: list[int] = []
    lost = 0
    try:
        time.sleep(0.05)  # the loop is in its poll
        for i in range(warmup + samples):
            t0 = clock()
            add_callback(callback)
            if not arrived.acquire(timeout=2.0):
                lost += 1
                continue
            if i >= warmup:
                latencies.append(started[0] - t0)
            time.sleep(gap_s)  # long enough for the loop to finish its pass and poll again
    finally:
        runner.stop()
        thread.join(5.0)
        runner.close()
    latencies.sort()
    return {
        "impl": impl,
        "samples": len(latencies),
        "lost": lost,
        "p50_us": _quantile(latencies, 0.50) / 1000.0,
        "p99_us": _quantile(latencies, 0.99) / 1000.0,
        "mean_us": (sum(latencies) / len(latencies) / 1000.0) if latencies else float("nan"),
        "max_us": (latencies[-1] / 1000.0) if latencies else float("nan"),
    }


def measure_snapshot(
    connections: int, samples: int = 20, host: str = "127.0.0.1", deadline_s: float = 30.0
) -> dict[str, Any]:
    """Build telemetry snapshots of ``connections`` idle connections (held by a ``loopmon
    load --mode idle`` child, so the fds are split between two processes) on a loopmon loop
    in this process; milliseconds per build, summarised."""

    from loopmon.echo import EchoServer
    from loopmon.ioloop import IOLoop
    from loopmon.mailbox import Mailbox
    from loopmon.telemetry import Telemetry

    raise_fd_limit()
    loop = IOLoop(make_current=False)
    server = EchoServer(loop, max_connections=connections + 64)
    listener = server.start_listener(host, 0)
    mailbox = Mailbox()
    telemetry = Telemetry(loop, server, mailbox, 25.0)
    thread = threading.Thread(target=loop.start, name="snapshot-loop", daemon=True)
    thread.start()

    def build_ms() -> float:
        started = time.perf_counter()
        telemetry.build()
        return (time.perf_counter() - started) * 1000.0

    argv = [sys.executable, "-m", "loopmon", "load", "--mode", "idle", "--host", host]
    argv += ["--port", str(listener.port), "--clients", str(connections)]
    argv += ["--duration", str(deadline_s + samples), "--progress", "none"]
    # No preexec_fn here: the loop thread runs. The bench ends this process's group, which
    # holds the child, and if the bench cannot, the child's --duration ends it.
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times: list[float] = []
    held = 0
    try:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            held = _on_loop(loop, lambda: len(server.connections))
            if held >= connections or child.poll() is not None:
                break
            time.sleep(0.1)
        if held:
            for _ in range(samples + 2):
                times.append(_on_loop(loop, build_ms))
                time.sleep(0.04)
    finally:
        child.terminate()
        child.wait(10.0)
        loop.add_callback(loop.stop)
        thread.join(10.0)
        server.close_all()
        loop.close()
        mailbox.close()
    return _build_times(held, times)


def _on_loop(loop: IOLoop, fn: Callable[[], Any]) -> Any:
    """``fn()`` run on ``loop``'s thread, its result returned here."""
    box: list[Any] = []
    done = threading.Event()

    def run() -> None:
        box.append(fn())
        done.set()

    loop.add_callback(run)
    if not done.wait(10.0):
        raise TimeoutError("the loop did not answer")
    return box[0]


def _build_times(held: int, times: list[float]) -> dict[str, Any]:
    # The first two builds cover every row (all registered, then all busy an interval ago);
    # from the third on, an idle row is reused as it stands.
    steady = sorted(times[2:])
    return {
        "connections": held,
        "samples": len(steady),
        "first_ms": times[0] if times else float("nan"),
        "median_ms": _quantile(steady, 0.5),
        "p90_ms": _quantile(steady, 0.9),
        "max_ms": steady[-1] if steady else float("nan"),
    }
