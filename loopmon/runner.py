"""LoopRunner: an IOLoop and an EchoServer on a thread of their own.

Two doors, no others. In: ``submit(fn, *args)`` runs ``fn`` on the loop thread through
``add_callback`` and hands back a ``concurrent.futures.Future``. Out: the ``Mailbox``, which
telemetry fills with snapshots and events. Every finished command pokes the mailbox, so a reader
that waits only on the mailbox's fd (the window) also learns when its commands complete.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import secrets
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from loopmon import pollers
from loopmon.echo import EchoServer, Listener
from loopmon.ioloop import IOLoop
from loopmon.mailbox import Mailbox
from loopmon.snapshot import ListenerRow, LoopEvent, Snapshot
from loopmon.telemetry import Telemetry

log = logging.getLogger("loopmon")

_T = TypeVar("_T")


class LoopNotRunning(RuntimeError):
    """A command was sent to a loop that is not running (never started, stopped or dead)."""


class LoopRunner:
    def __init__(
        self,
        backend: str | None = None,
        strategy: str = "direct",
        telemetry_hz: float = 25.0,
        event_log_size: int = 10_000,
        *,
        stall_threshold: float | None = 0.1,
        server_options: dict[str, Any] | None = None,
    ) -> None:
        self._available = pollers.available()
        if backend is not None and backend not in self._available:
            available = ", ".join(self._available)
            raise ValueError(f"backend {backend!r} is not available here; available: {available}")
        self._backend = backend or self._available[0]
        self._strategy = strategy
        self.telemetry_hz = telemetry_hz
        self.stall_threshold = stall_threshold
        self.server_options = dict(server_options or {})
        self.mailbox = Mailbox(event_log_size)
        # One session across backend switches: ids keep counting, so a listener started on the
        # new loop is never mistaken for one stopped on the old (shared/DESIGN.md, "Identity").
        self.session = secrets.token_hex(8)
        self._listener_ids = itertools.count(1)
        self._connection_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: IOLoop | None = None
        self._server: EchoServer | None = None
        self._telemetry: Telemetry | None = None
        self._pending: set[Future[Any]] = set()
        self.error = ""  # why the loop thread died, if it did
        self.stuck_threads: list[threading.Thread] = []
        # Called on the loop thread with every snapshot telemetry posts (see Telemetry).
        self.snapshot_observers: list[Callable[[Snapshot], None]] = []

    # -- properties the window reads ------------------------------------------------------

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def strategy(self) -> str:
        return self._strategy

    @property
    def available_backends(self) -> list[str]:
        return list(self._available)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._loop is not None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop thread; returns once the loop is about to run. Raises whatever
        setting it up raised."""
        if self.running:
            raise RuntimeError("the loop is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._main,
            args=(ready, failure),
            name=f"loopmon-loop-{self._backend}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]

    def run(self, on_ready: Callable[[LoopRunner], None] | None = None) -> None:
        """Run the loop on the calling thread (``loopmon serve``: signals reach the main
        thread only) until ``stop_from_loop`` or a signal handler stops it."""
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.current_thread()
        self._main(ready, failure, on_ready, on_calling_thread=True)
        if failure:
            raise failure[0]

    def _main(
        self,
        ready: threading.Event,
        failure: list[BaseException],
        on_ready: Callable[[LoopRunner], None] | None = None,
        on_calling_thread: bool = False,
    ) -> None:
        try:
            loop = IOLoop(backend=self._backend, make_current=False)
            server = EchoServer(
                loop,
                strategy=self._strategy,
                on_event=self._on_server_event,
                listener_ids=self._listener_ids,
                connection_ids=self._connection_ids,
                on_close=self._on_close,
                **self.server_options,
            )
            telemetry = (
                Telemetry(
                    loop,
                    server,
                    self.mailbox,
                    self.telemetry_hz,
                    session=self.session,
                    observers=self.snapshot_observers,
                )
                if self.telemetry_hz > 0
                else None
            )
            if self.stall_threshold:
                # Run on the caller's (main) thread, the loop may be the process's only
                # thread: keep it so, watching for stalls with SIGALRM rather than a thread.
                loop.set_blocking_log_threshold(self.stall_threshold, use_signal=on_calling_thread)
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        with self._lock:
            self._loop, self._server, self._telemetry = loop, server, telemetry
            self.error = ""
        if telemetry is not None:
            telemetry.start()
            telemetry.record("loop", f"loop started on {loop.backend}")
        ready.set()
        if on_ready is not None:
            loop.add_callback(on_ready, self)
        try:
            loop.start()
        except BaseException as exc:
            self.error = "".join(traceback.format_exception(exc)).strip()
            log.error("the loop thread died: %s", exc, exc_info=True)
        finally:
            self._finish(loop, server, telemetry)

    def _finish(self, loop: IOLoop, server: EchoServer, telemetry: Telemetry | None) -> None:
        if telemetry is not None:
            telemetry.stop()
        try:
            server.close_all()
        except Exception:
            log.exception("closing the echo server failed")
        last: Snapshot | None = None
        if telemetry is not None:
            try:
                last = telemetry.build()
            except Exception:
                last = telemetry.last
        with self._lock:
            self._loop = self._server = self._telemetry = None
            pending, self._pending = self._pending, set()
        for future in pending:
            if not future.done():
                future.set_exception(LoopNotRunning("the loop stopped before running this"))
        try:
            loop.close(all_fds=False)
        except Exception:
            log.exception("closing the loop failed")
        if self.error:
            event = LoopEvent(
                last.taken_at if last else 0.0, "loop", "the loop thread died", -1, self.error
            )
            if last is not None:
                last = dataclasses.replace(last, alive=False, error=self.error)
            self.mailbox.post(last, [event])
        else:
            event = LoopEvent(last.taken_at if last else 0.0, "loop", "loop stopped")
            self.mailbox.post(
                dataclasses.replace(last, alive=False) if last is not None else None, [event]
            )

    def stop(self, timeout: float = 2.0) -> bool:
        """Close listeners and connections, stop the loop and join its thread. Never hangs:
        returns False (and keeps the thread in ``stuck_threads``) if it did not exit."""
        thread = self._thread
        loop = self._loop
        if loop is not None:
            loop.add_callback(loop.stop)
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.error("the loop thread did not exit within %.1f s", timeout)
            self.stuck_threads.append(thread)
            return False
        self._thread = None
        return True

    @property
    def loop(self) -> IOLoop | None:
        """The running loop (touch it on the loop thread only)."""
        return self._loop

    @property
    def server(self) -> EchoServer | None:
        """The running echo server (loop thread only)."""
        return self._server

    def stop_from_signal(self) -> None:
        """Stop from a signal handler: only appends to the loop's queue, no locks."""
        loop = self._loop
        if loop is not None:
            loop.add_callback_from_signal(loop.stop)

    def stop_from_loop(self) -> None:
        """Stop, called on the loop thread itself (or from a signal handler via
        ``add_callback_from_signal``)."""
        if self._loop is not None:
            self._loop.stop()

    # -- commands -------------------------------------------------------------------------

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """Run ``fn(*args)`` on the loop thread; the future holds its result or exception."""
        future: Future[_T] = Future()
        with self._lock:
            loop = self._loop
            if loop is None:
                future.set_exception(LoopNotRunning("the loop is not running"))
                return future
            self._pending.add(future)

        def run() -> None:
            with self._lock:
                self._pending.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self.mailbox.poke()

        loop.add_callback(run)
        return future

    def _with_server(self, method: str, *args: Any) -> Future[Any]:
        def call() -> Any:
            server = self._server
            if server is None:
                raise LoopNotRunning("the loop is not running")
            return getattr(server, method)(*args)

        return self.submit(call)

    def start_listener(self, host: str, port: int) -> Future[ListenerRow]:
        def start() -> ListenerRow:
            server = self._server
            if server is None:
                raise LoopNotRunning("the loop is not running")
            listener: Listener = server.start_listener(host, port)
            rows = {row.id: row for row in server.listener_rows()}
            return rows[listener.id]

        return self.submit(start)

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[None]:
        return self._with_server("stop_listener", listener_id, close_connections)

    def close_connection(self, fd: int) -> Future[None]:
        """By fd, for code on this process's own loop; a command from a window names the
        connection's id (``close_connection_id``): by the time it runs the fd may be another's."""
        return self._with_server("close_connection", fd)

    def close_connection_id(self, connection_id: int) -> Future[None]:
        return self._with_server("close_connection_id", connection_id)

    def set_strategy(self, name: str) -> Future[None]:
        def change() -> None:
            server = self._server
            if server is None:
                raise LoopNotRunning("the loop is not running")
            before = self._strategy
            server.set_strategy(name)
            self._strategy = name
            telemetry = self._telemetry
            if telemetry is not None and name != before:  # in the event log, as a loop change
                telemetry.record("loop", f"echo strategy: {before} -> {name}")

        return self.submit(change)

    def restart(self, backend: str) -> Future[None]:
        """Move to a new loop on ``backend``, reopening the listeners on the same addresses.
        Connections do not survive it. Done on a helper thread: the caller is not blocked."""
        result: Future[None] = Future()
        if backend not in self._available:
            result.set_exception(
                ValueError(f"backend {backend!r} is not available; available: {self._available}")
            )
            return result

        def addresses() -> list[tuple[str, int]]:
            server = self._server
            if server is None:
                return []
            return [(r.host, r.port) for r in server.listener_rows() if r.state == "listening"]

        def work() -> None:
            try:
                try:
                    listening = self.submit(addresses).result(5.0)
                except LoopNotRunning:
                    listening = []
                if not self.stop():
                    raise RuntimeError("the old loop did not stop; not restarting")
                self._backend = backend
                self.start()
                failures = []
                for host, port in listening:
                    try:
                        self.start_listener(host, port).result(5.0)
                    except OSError as exc:
                        failures.append(str(exc))
                if failures:
                    raise OSError("; ".join(failures))
                result.set_result(None)
            except BaseException as exc:
                result.set_exception(exc)
            finally:
                self.mailbox.poke()

        threading.Thread(target=work, name="loopmon-restart", daemon=True).start()
        return result

    # -- events from the server -----------------------------------------------------------

    def _on_server_event(self, kind: str, text: str, fd: int, subject: int | None) -> None:
        telemetry = self._telemetry
        if telemetry is not None:
            telemetry.record(kind, text, fd, subject=subject)

    def _on_close(self, conn: Any, stat: Any) -> None:
        telemetry = self._telemetry
        if telemetry is not None:
            telemetry.connection_closed(conn, stat)
