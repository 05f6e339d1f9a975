"""The servers ``loopmon bench`` measures loopmon against, and its cross-thread wake probe.

Each peer is an echo server that a user might pick instead of loopmon, written the way its own
documentation teaches, run in its own process:

    python -m loopmon.benchpeers NAME [--host H] [--port P] [--backlog B]

prints ``listening on HOST:PORT (peer NAME)`` once it accepts connections and runs until SIGTERM
or SIGINT. Every peer sets TCP_NODELAY on its connections (asyncio and uvloop do it by
themselves) and listens with the same backlog, so none is helped or hurt by its defaults, and
starts with its allocator in a long-running server's state (``settle_allocator``).

- ``asyncio-protocol``: ``asyncio.Protocol``, ``transport.write(data)`` in ``data_received``:
  the baseline every ratio is taken against.
- ``asyncio-streams``: ``asyncio.start_server`` with ``read`` / ``write`` / ``await drain()``.
- ``bare-epoll``: the pure-Python limit, one page: level-triggered epoll, ``recv`` then ``send``
  straight back, WRITE registered only while the kernel's buffer is full. No instrumentation,
  no queue objects, no callbacks: the reference for "server CPU per round trip".
- ``uvloop``: the asyncio Protocol server on uvloop (only when uvloop is installed).
- ``tornado``: Tornado's ``TCPServer`` with ``read_bytes(partial=True)`` / ``await write``
  (only when Tornado is installed).

The wake probe, ``python -m loopmon.benchpeers wake IMPL --samples N``, times, from another
thread, ``add_callback(cb)`` (loopmon) or ``call_soon_threadsafe(cb)`` (asyncio, uvloop) to the
moment ``cb`` starts, with the loop idle in its poll before every sample, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from loopmon.fdlimit import raise_fd_limit

BACKLOG = 1024  # the same as loopmon.echo.listener.BACKLOG (tests check it)
_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    description: str
    requires: str | None  # an optional module it needs; None: the standard library suffices


PEERS: tuple[Peer, ...] = (
    Peer("asyncio-protocol", "asyncio Protocol echo (the baseline)", None),
    Peer("asyncio-streams", "asyncio streams echo (read/write/drain)", None),
    Peer("bare-epoll", "bare pure-Python epoll loop (the reference)", None),
    Peer("uvloop", "asyncio Protocol echo on uvloop", "uvloop"),
    Peer("tornado", "Tornado TCPServer / IOStream echo", "tornado"),
)
PEER_NAMES = tuple(p.name for p in PEERS)
WAKE_IMPLS: tuple[Peer, ...] = (
    Peer("loopmon", "IOLoop.add_callback", None),
    Peer("asyncio", "loop.call_soon_threadsafe", None),
    Peer("uvloop", "uvloop call_soon_threadsafe", "uvloop"),
)


def installed(module: str) -> bool:
    """True when ``module`` can be imported here (found, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def discover(
    peers: tuple[Peer, ...] = PEERS, has: Callable[[str], bool] = installed
) -> tuple[list[str], list[str]]:
    """(names of the peers that can run here, a note for each that cannot)."""
    names: list[str] = []
    notes: list[str] = []
    for peer in peers:
        if peer.requires is not None and not has(peer.requires):
            notes.append(f"{peer.name}: skipped, {peer.requires} is not installed")
            continue
        if peer.name == "bare-epoll" and not hasattr(select, "epoll"):
            notes.append(f"{peer.name}: skipped, epoll does not exist on {sys.platform}")
            continue
        names.append(peer.name)
    return names, notes


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send the child SIGTERM when this process dies, however
    it dies (SIGKILL included), so no server or client the bench started outlives it; None
    elsewhere. (The snapshot probe's own client, a grandchild, is not covered: after a SIGKILL
    of the bench it runs out its --duration.)"""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took hold
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _listen_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _announce(name: str, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{port} (peer {name})", flush=True)


# -- the bare epoll loop: the pure-Python reference ----------------------------------------


def serve_bare_epoll(sock: socket.socket) -> None:
    epoll = select.epoll()
    lfd = sock.fileno()
    epoll.register(lfd, select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    pending: dict[int, memoryview] = {}
    IN, OUT = select.EPOLLIN, select.EPOLLOUT  # noqa: N806 (the kernel's names)

    def close(fd: int) -> None:
        epoll.unregister(fd)
        pending.pop(fd, None)
        conns.pop(fd).close()

    while True:
        for fd, _events in epoll.poll():
            if fd == lfd:
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    except OSError:  # EMFILE and friends: try again on the next event
                        break
                    conn.setblocking(False)
                    _nodelay(conn)
                    conns[conn.fileno()] = conn
                    epoll.register(conn.fileno(), IN)
                continue
            conn = conns[fd]
            if fd in pending:  # registered for OUT: the kernel has room again
                try:
                    n = conn.send(pending[fd])
                except BlockingIOError:
                    continue
                except OSError:
                    close(fd)
                    continue
                rest = pending[fd][n:]
                if rest:
                    pending[fd] = rest
                else:
                    del pending[fd]
                    epoll.modify(fd, IN)
                continue
            try:
                data = conn.recv(_CHUNK)
            except BlockingIOError:
                continue
            except OSError:
                close(fd)
                continue
            if not data:
                close(fd)
                continue
            try:
                n = conn.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                close(fd)
                continue
            if n < len(data):
                pending[fd] = memoryview(data)[n:]
                epoll.modify(fd, OUT)


# -- asyncio, uvloop -----------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once what was written is flushed


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve_asyncio(name: str, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.Server
    if name == "asyncio-streams":
        server = await asyncio.start_server(_echo_stream, sock=sock, backlog=BACKLOG)
    else:
        server = await loop.create_server(EchoProtocol, sock=sock, backlog=BACKLOG)
    _announce(name, sock)
    async with server:
        await server.serve_forever()


def serve_tornado(sock: socket.socket) -> None:
    tcpserver = importlib.import_module("tornado.tcpserver")
    iostream = importlib.import_module("tornado.iostream")
    ioloop = importlib.import_module("tornado.ioloop")

    async def handle_stream(stream: Any, address: Any) -> None:
        stream.set_nodelay(True)
        try:
            while True:
                data = await stream.read_bytes(_CHUNK, partial=True)
                await stream.write(data)
        except iostream.StreamClosedError:
            pass

    server = tcpserver.TCPServer()
    server.handle_stream = handle_stream
    server.add_sockets([sock])
    _announce("tornado", sock)
    ioloop.IOLoop.current().start()


def settle_allocator() -> None:
    """Put the process's malloc where a long-running server's is.

    glibc serves a block above its mmap threshold (128 KiB at start) with its own mmap(), and
    raises the threshold to the size of such a block when one is freed. asyncio reads with
    ``recv(256 KiB)`` and CPython shrinks the result in place, which for an mmapped block is an
    mremap() to one page, so the block freed is small and the threshold never moves: every read
    costs mmap + a page fault + mremap + munmap, and the server 3-4x the CPU per round trip of
    the same server after its first full 256 KiB read, when the threshold has moved and reads
    come from the heap. Which of the two states a bench met depended on what ran before (a
    64 KiB workload can move it); freeing one large block at start puts every peer in the
    steady state, the one a server that has run for a while is in. Peers that never allocate
    that much per read are unaffected."""
    bytes(1 << 20)  # allocated with mmap, freed with munmap: the threshold becomes 1 MiB


def serve(name: str, host: str, port: int, backlog: int) -> int:
    if name not in PEER_NAMES:
        print(f"unknown peer {name!r}; peers: {', '.join(PEER_NAMES)}", file=sys.stderr)
        return 2
    available, notes = discover()
    if name not in available:
        print(next(n for n in notes if n.startswith(name + ":")), file=sys.stderr)
        return 3
    raise_fd_limit()
    settle_allocator()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        sock = _listen_socket(host, port, backlog)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        if name == "bare-epoll":
            _announce(name, sock)
            serve_bare_epoll(sock)
        elif name == "tornado":
            serve_tornado(sock)
        elif name == "uvloop":
            uvloop = importlib.import_module("uvloop")
            loop = uvloop.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(_serve_asyncio(name, sock))
        else:
            asyncio.run(_serve_asyncio(name, sock))
    except KeyboardInterrupt:
        pass
    return 0


# -- cross-thread wake -----------------------------------------------------------------------


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


def measure_wake(
    impl: str,
    samples: int,
    gap_s: float = 0.0003,
    warmup: int = 200,
    loop_cpu: int | None = None,
    caller_cpu: int | None = None,
) -> dict[str, Any]:
    """Time ``samples`` cross-thread wakes of an idle loop; nanoseconds, summarised."""
    runner: Any
    if impl == "loopmon":
        from loopmon.ioloop import IOLoop

        runner = IOLoop(make_current=False)
    elif impl == "asyncio":
        runner = _AsyncioLoop(asyncio.new_event_loop())
    elif impl == "uvloop":
        runner = _AsyncioLoop(importlib.import_module("uvloop").new_event_loop())
    else:
        raise ValueError(f"unknown wake implementation {impl!r}")

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


# -- the snapshot of many idle connections ---------------------------------------------------


def measure_snapshot(
    connections: int, samples: int = 20, host: str = "127.0.0.1", deadline_s: float = 30.0
) -> dict[str, Any]:
    """Build telemetry snapshots of ``connections`` idle connections (held by a ``loopmon
    load --mode idle`` child, so the fds are split between two processes) on a loopmon loop
    in this process; milliseconds per build, summarised."""
    import subprocess

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

    def on_loop(fn: Callable[[], Any]) -> Any:
        box: list[Any] = []
        done = threading.Event()

        def run() -> None:
            box.append(fn())
            done.set()

        loop.add_callback(run)
        if not done.wait(10.0):
            raise TimeoutError("the loop did not answer")
        return box[0]

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
            held = on_loop(lambda: len(server.connections))
            if held >= connections or child.poll() is not None:
                break
            time.sleep(0.1)
        if held:
            for _ in range(samples + 2):
                times.append(on_loop(build_ms))
                time.sleep(0.04)
    finally:
        child.terminate()
        child.wait(10.0)
        loop.add_callback(loop.stop)
        thread.join(10.0)
        server.close_all()
        loop.close()
        mailbox.close()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loopmon.benchpeers",
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
