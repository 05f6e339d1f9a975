"""The metrics options every producer command shares (``--metrics HOST:PORT``,
``--allow-remote``, ``--token-file``), and what checking them leaves ready: the bound port and
the token, so a command fails with one line before its loop starts, never after."""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopmon import __version__
from loopmon.echo.listener import ListenerError, bind
from loopmon.ioloop import IOLoop
from loopmon.metrics import MetricsError, require

__all__ = ["MetricsError", "Plan", "add_arguments", "prepare", "producer"]
from loopmon.metrics.access import check_bind, read_token
from loopmon.metrics.endpoint import Limits
from loopmon.netaddr import split_address
from loopmon.snapshot import ProducerInfo

if TYPE_CHECKING:
    from loopmon.metrics.exporter import Exporter
    from loopmon.metrics.thread import ExporterThread


def metrics_address(text: str) -> tuple[str, int]:
    try:
        return split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Prometheus metrics (the metrics extra)")
    group.add_argument(
        "--metrics",
        type=metrics_address,
        metavar="HOST:PORT",
        default=None,
        help="serve GET /metrics here, from the loop itself (loopback unless --allow-remote)",
    )
    group.add_argument(
        "--allow-remote",
        action="store_true",
        help="let --metrics and --telemetry bind an address other machines can reach: neither "
        "port is encrypted (an SSH tunnel to loopback is safer); --metrics then needs "
        "--token-file",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        default=None,
        help="a bearer token (mode 0600) that scrapers of --metrics must present",
    )


@dataclass(slots=True)
class Plan:
    """A checked ``--metrics``: the port is bound, the token read; ``start`` on the loop."""

    sock: socket.socket
    token: bytes | None
    limits: Limits = field(default_factory=Limits)

    def start(self, loop: IOLoop, producer: ProducerInfo) -> Exporter:
        """Serve on ``loop`` (its thread); feed the exporter's ``update`` every snapshot."""
        from loopmon.metrics.exporter import Exporter

        exporter = Exporter(loop, self.sock, producer, token=self.token, limits=self.limits)
        exporter.start()
        return exporter

    def start_thread(
        self,
        producer: ProducerInfo,
        *,
        note: Callable[[str], None],
        own: Callable[[Any], None],
        disown: Callable[[Any], None],
        own_loop: Callable[[IOLoop], None],
    ) -> ExporterThread:
        """Serve from a loop on a thread of its own (``run``: see ``metrics.thread``); feed
        its ``update`` every snapshot, from any one thread."""
        from loopmon.metrics.thread import ExporterThread

        thread = ExporterThread(
            self.sock,
            producer,
            token=self.token,
            limits=self.limits,
            note=note,
            own=own,
            disown=disown,
            own_loop=own_loop,
        )
        thread.start()
        return thread

    def close(self) -> None:
        """The command ended before ``start``."""
        self.sock.close()


def prepare(args: argparse.Namespace) -> Plan | None:
    """None without ``--metrics``; else a ``Plan``, or ``MetricsError`` with the reason."""
    address: tuple[str, int] | None = getattr(args, "metrics", None)
    token_file: Path | None = getattr(args, "token_file", None)
    allow_remote: bool = getattr(args, "allow_remote", False)
    if address is None:
        if token_file is not None:
            raise MetricsError("--token-file goes with --metrics HOST:PORT")
        if allow_remote and getattr(args, "telemetry", None) is None:
            raise MetricsError("--allow-remote goes with --metrics or --telemetry HOST:PORT")
        return None
    require()
    host, port = address
    check_bind(host, port, allow_remote=allow_remote, token_file=token_file)
    token = read_token(token_file) if token_file is not None else None
    try:
        sock = bind(host, port)
    except ListenerError as exc:
        raise MetricsError(f"metrics {exc}") from None
    return Plan(sock, token)


def producer(
    kind: str, program: str, session: str, backend: str, measures: tuple[str, ...]
) -> ProducerInfo:
    """This process as a producer, as of now."""
    return ProducerInfo(
        kind=kind,
        program=program,
        pid=os.getpid(),
        backend=backend,
        session=session,
        started_at=time.time(),
        measures=measures,
        version=__version__,
    )
