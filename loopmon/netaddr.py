"""Addresses and OS errors in the words every layer prints: ``host:port`` with IPv6 in
brackets, a host as typed, loopback or not, an OS error's reason, and the default address."""

from __future__ import annotations

import ipaddress
import os
from typing import Final

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 10000


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::1]:10000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_address(text: str) -> str:
    """A host as typed: ``[::1]`` (as in a URL, and as loopmon prints addresses) is ``::1``."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def split_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); ``ValueError`` naming what is
    wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"not HOST:PORT: {text!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"an IPv6 host goes in brackets, as in [::1]:PORT: {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"not a port number: {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range 0-65535: {port}")
    return host_address(host), port


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def describe_error(exc: BaseException) -> str:
    """An OS error's reason in lower case ("connection reset by peer")."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        text = os.strerror(exc.errno)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
