"""Checking what a user types into the listener fields, before anything is sent to the loop."""

from __future__ import annotations

import ipaddress
from pathlib import Path

# The load panel's Clients box: what it allows and why (shown beside it, never a silent clamp).
MAX_CLIENTS = 20_000
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def parse_port(text: str) -> tuple[int | None, str]:
    """(port, '') when ``text`` is a port number 0-65535 (0: any free port), else (None, why)."""
    text = text.strip()
    if not text:
        return None, "enter a port (0 picks a free one)"
    if not text.isdecimal():
        return None, f"not a port number: {text!r}"
    port = int(text)
    if not 0 <= port <= 65535:
        return None, f"port out of range 0-65535: {port}"
    return port, ""


def parse_host(text: str) -> tuple[str | None, str]:
    """(host, '') for an IPv4 or IPv6 address or 'localhost', else (None, why).

    Brackets around an IPv6 address are accepted and removed. Other names are refused rather
    than resolved: resolving would block the window, and the loop binds addresses, not names.
    """
    text = text.strip()
    if not text:
        return None, "enter an address, e.g. 127.0.0.1 or ::1"
    if text.lower() == "localhost":
        return "localhost", ""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None, f"not an IPv4/IPv6 address or 'localhost': {text!r}"
    return str(address), ""


def client_host(listen_host: str) -> str:
    """Where a client should connect to reach a listener bound to ``listen_host``."""
    if listen_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if listen_host == "::":
        return "::1"
    return listen_host


def local_ports(path: Path = PORT_RANGE) -> int | None:
    """How many local ports a client's connection can come from (Linux's
    ip_local_port_range); None where that cannot be read."""
    try:
        low, high = (int(word) for word in path.read_text().split())
    except (OSError, ValueError):
        return None
    return max(high - low + 1, 0)


def client_limit(ports: int | None) -> tuple[int, str]:
    """(most clients one load run may open, why): each client is a connection from this
    machine to the one target, so each takes one of the local ports a connection to that
    address can come from, and a descriptor at both ends."""
    limit = MAX_CLIENTS if ports is None else max(min(MAX_CLIENTS, ports - 1000), 1)
    source = (
        f"one of this machine's {ports:,} local ports (ip_local_port_range)"
        if ports is not None
        else "one of this machine's local ports"
    )
    why = (
        f"at most {limit:,} clients: each is a connection to the one target from {source}, "
        "and holds a descriptor in load and one in the server; the rest stay for everything "
        "else on the machine"
    )
    return limit, why
