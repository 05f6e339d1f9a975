"""The in-process source: a ``LoopRunner`` in this process (plain ``loopmon``).

It adds to the runner only what the window's ``Source`` asks beyond it: a producer that is
this process, a link that cannot drop, every command, and closing by connection id. The
mailbox is the runner's own (it survives a backend switch: one session across it).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import Future
from typing import Any

from loopmon.runner import LoopRunner
from loopmon.snapshot import ListenerRow, ProducerInfo
from loopmon.sources import COMMANDS, IN_PROCESS, MailboxDoor


class InProcessSource:
    def __init__(self, runner: LoopRunner) -> None:
        self.runner = runner
        self._started_at = time.time()

    @classmethod
    def new(cls, backend: str | None = None, strategy: str = "direct") -> InProcessSource:
        """On a new LoopRunner (not started): the window never imports the runner itself."""
        return cls(LoopRunner(backend=backend, strategy=strategy))

    # -- what the window names ---------------------------------------------------------------
    @property
    def mailbox(self) -> MailboxDoor:
        return self.runner.mailbox

    @property
    def producer(self) -> ProducerInfo:
        return ProducerInfo(
            kind="window",
            program=os.path.basename(sys.argv[0]) or "loopmon",
            pid=os.getpid(),
            backend=self.runner.backend,
            session=self.runner.session,
            started_at=self._started_at,
            commands=COMMANDS,
        )

    @property
    def where(self) -> str:
        return ""

    @property
    def link(self) -> str:
        return IN_PROCESS

    @property
    def link_error(self) -> str:
        return self.runner.error.splitlines()[-1] if self.runner.error else ""

    @property
    def commands(self) -> frozenset[str]:
        return frozenset(COMMANDS)

    @property
    def can_switch_backend(self) -> bool:
        return True

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def strategy(self) -> str:
        return self.runner.strategy

    @property
    def available_backends(self) -> list[str]:
        return self.runner.available_backends

    # -- lifecycle and commands: the runner's ------------------------------------------------
    def start(self) -> None:
        self.runner.start()

    def stop(self, timeout: float = 2.0) -> bool:
        return self.runner.stop(timeout)

    def start_listener(self, host: str, port: int) -> Future[ListenerRow | None]:
        future: Future[Any] = self.runner.start_listener(host, port)
        return future

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[Any]:
        return self.runner.stop_listener(listener_id, close_connections)

    def close_connection(self, connection_id: int) -> Future[Any]:
        return self.runner.close_connection_id(connection_id)

    def set_strategy(self, name: str) -> Future[Any]:
        return self.runner.set_strategy(name)

    def restart(self, backend: str) -> Future[Any]:
        return self.runner.restart(backend)
