"""The telemetry options a producer command takes (``--telemetry HOST:PORT``,
``--max-consumers``), and what checking them leaves ready: the bound port, the run's token and
its file, so a command fails with one line before its loop starts, never after.

``--allow-remote`` is one flag for every port a command opens (defined with the metrics
options, which serve and run both take): it is read here, not defined again.
"""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path

from loopmon.echo.listener import ListenerError, bind
from loopmon.netaddr import format_address, is_loopback, split_address
from loopmon.stream import tokens
from loopmon.stream.publisher import MAX_CONSUMERS

__all__ = [
    "MAX_CONSUMERS",
    "Plan",
    "TelemetryError",
    "add_arguments",
    "address",
    "prepare",
    "remote_warning",
]


class TelemetryError(Exception):
    """Options the stream cannot start with: one line, and the command does not run."""


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port) (argparse type)."""
    try:
        return split_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser, *, with_address: bool = True) -> None:
    """``--telemetry HOST:PORT`` (unless the command defines its own) and ``--max-consumers``."""
    group = parser.add_argument_group("the telemetry stream (loopmon attach)")
    if with_address:
        group.add_argument(
            "--telemetry",
            type=address,
            metavar="HOST:PORT",
            default=None,
            help="stream snapshots here, from the loop itself; port 0 picks one (loopback "
            "unless --allow-remote); the token file is printed after it",
        )
    group.add_argument(
        "--max-consumers",
        type=int,
        default=MAX_CONSUMERS,
        metavar="N",
        help="consumers the stream takes at once; more are refused (%(default)s)",
    )


def remote_warning(host: str, port: int) -> str:
    return (
        f"telemetry on {format_address(host, port)} is reachable from other machines and not "
        "encrypted (the token only keeps strangers out): prefer loopback and an SSH tunnel "
        "(ssh -L PORT:127.0.0.1:PORT host)"
    )


@dataclass(slots=True)
class Plan:
    """A checked ``--telemetry``: the port bound, the token written to its file."""

    sock: socket.socket
    token: bytes
    token_file: Path
    max_consumers: int

    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        return str(name[0]), int(name[1])

    @property
    def address_text(self) -> str:
        return format_address(*self.address)

    def close(self) -> None:
        """Remove the token file and close the port (if the publisher has not already)."""
        tokens.remove_token(self.token_file)
        self.sock.close()


def prepare(
    host_port: tuple[str, int] | None, *, allow_remote: bool, max_consumers: int
) -> Plan | None:
    """None without an address; else a ``Plan``, or ``TelemetryError`` with the reason. A
    non-loopback address needs ``allow_remote``."""
    if host_port is None:
        return None
    host, port = host_port
    if not 0 <= max_consumers <= 10_000:
        raise TelemetryError(f"--max-consumers must be 0 to 10000: {max_consumers}")
    if not is_loopback(host) and not allow_remote:
        raise TelemetryError(
            f"--telemetry {format_address(host, port)} is not a loopback address: add "
            "--allow-remote to let other machines attach (the stream is not encrypted; an "
            "SSH tunnel to a loopback port is safer)"
        )
    try:
        sock = bind(host, port)
    except ListenerError as exc:
        raise TelemetryError(f"telemetry {exc}") from None
    token = tokens.new_token()
    try:
        path = tokens.write_token(token, int(sock.getsockname()[1]))
    except (OSError, tokens.TokenError) as exc:
        sock.close()
        raise TelemetryError(f"cannot write the telemetry token file: {exc}") from None
    return Plan(sock, token, path, max_consumers)
