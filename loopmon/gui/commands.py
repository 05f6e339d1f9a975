"""The window's only way to change the loop: runner commands, answered in the GUI thread.

Each method sends one command and arranges for ``then(result, error)`` to run in the GUI thread
when it completes. A runner that refuses at once (stopped, or the call itself raised) is
answered the same way, so a control shows every outcome in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from loopmon.gui.bridge import Done, MailboxBridge
from loopmon.snapshot import ListenerRow


class RunnerLike(Protocol):
    """The part of ``loopmon.runner.LoopRunner`` the window uses."""

    mailbox: Any

    @property
    def backend(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def available_backends(self) -> list[str]: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 2.0) -> bool: ...
    def start_listener(self, host: str, port: int) -> Future[ListenerRow]: ...
    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[None]: ...
    def close_connection(self, fd: int) -> Future[None]: ...
    def set_strategy(self, name: str) -> Future[None]: ...
    def restart(self, backend: str) -> Future[None]: ...


def _ignore(_result: Any, _error: BaseException | None) -> None:
    pass


class Commands:
    def __init__(self, runner: RunnerLike, bridge: MailboxBridge) -> None:
        self.runner = runner
        self.bridge = bridge

    def _send(self, call: Callable[[], Future[Any]], then: Done) -> None:
        try:
            future = call()
        except Exception as exc:  # refused before it reached the loop
            then(None, exc)
            return
        self.bridge.track(future, then)

    def start_listener(self, host: str, port: int, then: Done = _ignore) -> None:
        self._send(lambda: self.runner.start_listener(host, port), then)

    def stop_listener(
        self, listener_id: int, close_connections: bool, then: Done = _ignore
    ) -> None:
        self._send(lambda: self.runner.stop_listener(listener_id, close_connections), then)

    def close_connection(self, fd: int, then: Done = _ignore) -> None:
        self._send(lambda: self.runner.close_connection(fd), then)

    def set_strategy(self, name: str, then: Done = _ignore) -> None:
        self._send(lambda: self.runner.set_strategy(name), then)

    def restart(self, backend: str, then: Done = _ignore) -> None:
        # The runner keeps its mailbox across a restart: the bridge goes on watching it.
        self._send(lambda: self.runner.restart(backend), then)


def describe(error: BaseException) -> str:
    """One line for a label: the exception's own text (ListenerError's is already human)."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return first or type(error).__name__
