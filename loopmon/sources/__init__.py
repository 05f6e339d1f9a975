"""The window's snapshot sources: one interface, whatever makes the snapshots.

A ``Source`` is what the window reads and commands: the in-process runner (``inprocess``),
a producer's telemetry stream (``remote``), or a recording file (``recording``, to come). The
views never know which. Every source has one door out, ``mailbox`` (a ``loopmon.mailbox.Mailbox``
or anything with its reader's side: ``fileno``, ``take_by_kind``, ``poke``, ``close``), which
lives as long as the source, across reconnects: the window's bridge watches its fd. A replaced
unread snapshot's closes are carried into the next (the Mailbox does it), so the window's
Timeline sees every close.

Commands return ``concurrent.futures.Future``s completed on the source's own thread; the source
pokes its mailbox when one completes, so a reader that waits only on the mailbox learns of it.
A command the source does not take (not in ``commands``) fails its future with
``Unsupported`` rather than raising. ``link`` says how the source reaches its producer:

- ``"in-process"``: the loop is in this process (the strip names no producer or link);
- ``"connecting"``, ``"connected"``, ``"reconnecting"``: a stream's link, as it goes;
- ``"lost"``: given up (a wrong token, a newer protocol, stopped); ``link_error`` says why;
- ``"recording"``: snapshots read from a file (``where`` is its path): no link to lose.

A recording source says ``"recording"``, names the recorded producer in ``producer`` (the hello
it recorded), takes no commands (``commands`` empty, ``can_switch_backend`` False: the window
greys every control and says a recording replays), posts its snapshots with their events into
its mailbox in order as it plays them (``Mailbox.post``; a reader that falls behind still gets
every close), and treats ``start``/``stop`` as opening and closing the file.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Final, Protocol

from loopmon.snapshot import ListenerRow, LoopEvent, ProducerInfo, Snapshot
from loopmon.wire.messages import (
    CLOSE_CONNECTION,
    COMMANDS,
    SET_STRATEGY,
    START_LISTENER,
    STOP_LISTENER,
)

IN_PROCESS: Final = "in-process"
CONNECTING: Final = "connecting"
CONNECTED: Final = "connected"
RECONNECTING: Final = "reconnecting"
LOST: Final = "lost"
RECORDING: Final = "recording"
LINKS: Final = (IN_PROCESS, CONNECTING, CONNECTED, RECONNECTING, LOST, RECORDING)

__all__ = [
    "CLOSE_CONNECTION",
    "COMMANDS",
    "CONNECTED",
    "CONNECTING",
    "IN_PROCESS",
    "LINKS",
    "LOST",
    "RECONNECTING",
    "RECORDING",
    "SET_STRATEGY",
    "START_LISTENER",
    "STOP_LISTENER",
    "MailboxDoor",
    "Source",
    "Unsupported",
    "refused",
]


class Unsupported(Exception):
    """A command the source's producer does not take (its hello does not list it)."""


class MailboxDoor(Protocol):
    """The reader's side of ``loopmon.mailbox.Mailbox``."""

    def fileno(self) -> int: ...
    def take_by_kind(self) -> tuple[Snapshot | None, list[LoopEvent], dict[str, int]]: ...
    def poke(self) -> None: ...
    def close(self) -> None: ...


class Source(Protocol):
    """What the window reads and commands (see the module's docstring)."""

    @property
    def mailbox(self) -> MailboxDoor: ...
    @property
    def producer(self) -> ProducerInfo | None:
        """Who makes the snapshots (a stream's hello); None until known."""

    @property
    def where(self) -> str:
        """Where the snapshots come from, for the title and the strip: "" for this process,
        "HOST:PORT" for a stream, a path for a recording."""

    @property
    def link(self) -> str:
        """One of ``LINKS``."""

    @property
    def link_error(self) -> str:
        """One line: why the link is down (or the last reason it went down); "" if none."""

    @property
    def commands(self) -> frozenset[str]:
        """Which of ``COMMANDS`` it takes now (a stream: what the hello lists)."""

    @property
    def can_switch_backend(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def available_backends(self) -> list[str]: ...
    def start(self) -> None: ...
    def stop(self, timeout: float = 2.0) -> bool:
        """Detach (a stream) or stop the loop (in-process); True if it ended in time. A
        stream's producer is never stopped."""

    def start_listener(self, host: str, port: int) -> Future[ListenerRow | None]: ...
    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[Any]: ...
    def close_connection(self, connection_id: int) -> Future[Any]:
        """By the connection's id within the current session, never by fd."""

    def set_strategy(self, name: str) -> Future[Any]: ...
    def restart(self, backend: str) -> Future[Any]: ...


def refused(why: str) -> Future[Any]:
    """A future already failed with ``Unsupported(why)``."""
    future: Future[Any] = Future()
    future.set_exception(Unsupported(why))
    return future
