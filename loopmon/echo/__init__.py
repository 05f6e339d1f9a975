"""The echo server that runs on the IOLoop: the article's demo grown into one you can trust.

``server`` holds the server (listeners, accepting, closing), ``listener`` a listening socket,
``connection`` an accepted one, ``echoing`` the per-event echo and its two strategies.
"""

from loopmon.echo.connection import Connection
from loopmon.echo.echoing import RECV_SIZE, STRATEGIES
from loopmon.echo.listener import FULL_STATE, Listener, ListenerError
from loopmon.echo.server import FD_RESERVE, EchoServer, OnClose, OnEvent

__all__ = [
    "FD_RESERVE",
    "FULL_STATE",
    "RECV_SIZE",
    "STRATEGIES",
    "Connection",
    "EchoServer",
    "Listener",
    "ListenerError",
    "OnClose",
    "OnEvent",
]
