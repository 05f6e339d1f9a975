"""Checking what a user types into the listener fields, before anything is sent to the loop."""

from __future__ import annotations

import ipaddress


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
