"""The remote source: a producer's telemetry stream, through ``loopmon.stream.client.Client``.

The client runs on a thread of its own and posts every decoded snapshot (with its events) into
the source's one ``Mailbox``, which lives across reconnects: the window's bridge watches it as
it watches the in-process runner's. A snapshot the window had not taken yet hands its closes on
to the next (the Mailbox's carry-over; across a producer's restart the old session's last one is
held and taken first), so no close is lost between the wire and the Timeline. Commands go out
as requests whose replies complete the futures returned here; one in flight when the link drops
fails with ``LinkLost("link lost, outcome unknown")``. Stopping the source detaches from the
producer, never stops it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Final

from loopmon.mailbox import Mailbox
from loopmon.snapshot import ListenerRow, ProducerInfo
from loopmon.sources import (
    CLOSE_CONNECTION,
    COMMANDS,
    CONNECTED,
    CONNECTING,
    LOST,
    RECONNECTING,
    SET_STRATEGY,
    START_LISTENER,
    STOP_LISTENER,
    MailboxDoor,
    refused,
)
from loopmon.stream import client as stream_client
from loopmon.stream.client import Client, TokenSource

# The client's statuses as the window's words for the link.
_LINKS: Final = {
    stream_client.CONNECTING: CONNECTING,
    stream_client.CONNECTED: CONNECTED,
    stream_client.RECONNECTING: RECONNECTING,
    stream_client.FAILED: LOST,
    stream_client.STOPPED: LOST,
}


class RemoteSource:
    def __init__(
        self,
        host: str,
        port: int,
        token: bytes | TokenSource,
        *,
        client_name: str = "loopmon attach",
        event_log_size: int = 10_000,
        reconnect: bool = True,
        connect_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self._mailbox = Mailbox(event_log_size)
        self.client = Client(
            host,
            port,
            token,
            mailbox=self._mailbox,
            client=client_name,
            reconnect=reconnect,
            connect_timeout=connect_timeout,
            backoff=backoff,
        )
        self._started = False

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def where(self) -> str:
        return self.client.address

    # -- what the window names ---------------------------------------------------------------
    @property
    def mailbox(self) -> MailboxDoor:
        return self._mailbox

    @property
    def producer(self) -> ProducerInfo | None:
        return self.client.producer

    @property
    def link(self) -> str:
        return _LINKS.get(self.client.status, LOST)

    @property
    def link_error(self) -> str:
        return self.client.error

    @property
    def commands(self) -> frozenset[str]:
        """What the producer's hello lists, while the link is up (none while it is down)."""
        producer = self.client.producer
        if producer is None or self.client.status != stream_client.CONNECTED:
            return frozenset()
        return frozenset(producer.commands) & frozenset(COMMANDS)

    @property
    def can_switch_backend(self) -> bool:
        return False  # no producer's protocol has a backend switch

    @property
    def backend(self) -> str:
        producer = self.client.producer
        return producer.backend if producer is not None else ""

    @property
    def strategy(self) -> str:
        return "direct"  # until a snapshot says (the window follows the snapshots)

    @property
    def available_backends(self) -> list[str]:
        backend = self.backend
        return [backend] if backend else []

    @property
    def dropped_frames(self) -> int:
        return self.client.dropped_frames

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if not self._started:
            self._started = True
            self.client.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Detach: the producer runs on. The mailbox stays open (its reader closes it)."""
        if self._started:
            self.client.stop(timeout)
        return True

    def wait_connected(self, timeout: float) -> bool:
        return self.client.wait_connected(timeout)

    # -- commands ----------------------------------------------------------------------------
    def _refuse(self, command: str) -> Future[Any] | None:
        """A future failed at once if the producer does not take ``command`` (None if it
        does, or if the link is down: the client then answers that it is not connected)."""
        producer = self.client.producer
        if producer is None or self.client.status != stream_client.CONNECTED:
            return None
        if command in producer.commands:
            return None
        return refused(f"{producer.program} does not take {command.replace('_', ' ')}")

    def start_listener(self, host: str, port: int) -> Future[ListenerRow | None]:
        return self._refuse(START_LISTENER) or self.client.start_listener(host, port)

    def stop_listener(self, listener_id: int, close_connections: bool = False) -> Future[Any]:
        return self._refuse(STOP_LISTENER) or self.client.stop_listener(
            listener_id, close_connections
        )

    def close_connection(self, connection_id: int) -> Future[Any]:
        return self._refuse(CLOSE_CONNECTION) or self.client.close_connection(connection_id)

    def set_strategy(self, name: str) -> Future[Any]:
        return self._refuse(SET_STRATEGY) or self.client.set_strategy(name)

    def restart(self, backend: str) -> Future[Any]:
        producer = self.client.producer
        who = producer.program if producer is not None else "the producer"
        return refused(f"{who} does not switch backends")
