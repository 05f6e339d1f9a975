"""The window's only way to change the loop: its source's commands, answered in the GUI thread.

Each method sends one command and arranges for ``then(result, error)`` to run in the GUI thread
when it completes. A runner that refuses at once (stopped, or the call itself raised) is
answered the same way, so a control shows every outcome in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from loopmon.gui.bridge import Done, MailboxBridge
from loopmon.sources import Source

# The window reads a Source (in-process runner, remote stream, recording): the name it had when
# the runner was the only one stays for readers of older code.
RunnerLike = Source


def _ignore(_result: Any, _error: BaseException | None) -> None:
    pass


class Commands:
    def __init__(self, source: Source, bridge: MailboxBridge) -> None:
        self.source = source
        self.bridge = bridge

    def _send(self, call: Callable[[], Future[Any]], then: Done) -> None:
        try:
            future = call()
        except Exception as exc:  # refused before it reached the loop
            then(None, exc)
            return
        self.bridge.track(future, then)

    def start_listener(self, host: str, port: int, then: Done = _ignore) -> None:
        self._send(lambda: self.source.start_listener(host, port), then)

    def stop_listener(
        self, listener_id: int, close_connections: bool, then: Done = _ignore
    ) -> None:
        self._send(lambda: self.source.stop_listener(listener_id, close_connections), then)

    def close_connection(self, connection_id: int, then: Done = _ignore) -> None:
        """By the connection's id (the fd may be another's by the time it arrives)."""
        self._send(lambda: self.source.close_connection(connection_id), then)

    def set_strategy(self, name: str, then: Done = _ignore) -> None:
        self._send(lambda: self.source.set_strategy(name), then)

    def restart(self, backend: str, then: Done = _ignore) -> None:
        # A source keeps its mailbox across a restart: the bridge goes on watching it.
        self._send(lambda: self.source.restart(backend), then)


def describe(error: BaseException) -> str:
    """One line for a label: the exception's own text (ListenerError's is already human)."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return first or type(error).__name__
