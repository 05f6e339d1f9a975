"""The event vocabulary shared by every layer.

The bits are epoll's, whatever backend runs: a poller translates its own flags into these,
so a mask means the same thing in the loop, the telemetry and the window.
"""

from __future__ import annotations

from typing import Final

NONE: Final = 0
READ: Final = 0x001  # EPOLLIN
WRITE: Final = 0x004  # EPOLLOUT
# EPOLLERR | EPOLLHUP: both are reported whether asked for or not, so ERROR is always registered.
ERROR: Final = 0x018
ALL: Final = READ | WRITE | ERROR


def mask_names(mask: int) -> str:
    """Render a mask as ``READ|WRITE|ERROR`` (``NONE`` for 0), for logs and tables."""
    parts = [
        name for bit, name in ((READ, "READ"), (WRITE, "WRITE"), (ERROR, "ERROR")) if mask & bit
    ]
    return "|".join(parts) if parts else "NONE"
