"""A producer shaped as serve runs one: an echo server, telemetry and a telemetry publisher on
one IOLoop thread, on loopback. Its hello, session and command handler are the test's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from loopmon.echo import EchoServer
from loopmon.ioloop import IOLoop, PeriodicCallback
from loopmon.mailbox import Mailbox
from loopmon.snapshot import ProducerInfo
from loopmon.stream.publisher import Publisher, echo_commands
from loopmon.stream.reactor import IOLoopReactor
from loopmon.telemetry import Telemetry
from loopmon.wire.messages import COMMANDS

TOKEN = bytes(range(32))

# (the echo server, the publisher) -> the publisher's command handler
CommandsFactory = Callable[[EchoServer, Publisher], Callable[[Any], Any]]


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    # Polls a condition another thread makes true; the deadline is a failure, not a sleep.
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.005)


class Producer:
    def __init__(
        self,
        port: int = 0,
        session: str = "s1",
        *,
        kind: str = "serve",
        program: str = "loopmon serve",
        commands: tuple[str, ...] = COMMANDS,
        handler: CommandsFactory | None = None,
        interval_ms: float = 20,
    ) -> None:
        self.port = port
        self.session = session
        self.kind = kind
        self.program = program
        self.commands = commands
        self.handler = handler
        self.interval_ms = interval_ms
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True, name="test-producer")
        self.loop: IOLoop | None = None
        self.publisher: Publisher | None = None
        self.calls: list[Any] = []  # the commands that reached it

    def _main(self) -> None:
        loop = self.loop = IOLoop(make_current=False)
        server = EchoServer(loop)
        telemetry = Telemetry(loop, server, Mailbox(), session=self.session)
        server.on_close = telemetry.connection_closed
        info = ProducerInfo(
            self.kind, self.program, os.getpid(), loop.backend, self.session, time.time(),
            self.commands,
        )  # fmt: skip
        self.publisher = Publisher(IOLoopReactor(loop), info, TOKEN, port=self.port)
        run = (self.handler or (lambda s, _p: echo_commands(s)))(server, self.publisher)

        def commands(call: Any) -> Any:
            self.calls.append(call)
            return run(call)

        self.publisher.commands = commands
        self.publisher.start()
        self.port = self.publisher.address[1]
        publisher = self.publisher
        PeriodicCallback(
            lambda: publisher.publish(telemetry.build()), self.interval_ms, io_loop=loop
        ).start()
        self.ready.set()
        loop.start()
        server.close_all()
        loop.close(all_fds=False)

    def start(self) -> Producer:
        self.thread.start()
        self.ready.wait(5)
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        if self.loop is None or self.publisher is None or not self.thread.is_alive():
            return
        self.loop.add_callback(self.publisher.close)
        self.loop.add_callback(self.loop.stop)
        self.thread.join(5)
