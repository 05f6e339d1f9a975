"""The descriptor limit: one raiser for every process loopmon starts (serve, load, the window,
the bench and its child servers), and the headroom a process needs beyond its connections.

Layer 0, not ``cli/``: the bench's child processes (layer 7) raise their own limit when run by
hand, and may not import the command layer above them.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FD_HEADROOM", "raise_fd_limit"]

# Descriptors a process needs beyond one per connection: the loop's poller, waker and signal
# pipe, the telemetry mailbox, the standard streams, a log file.
FD_HEADROOM: Final = 64
# Where the hard limit is unlimited, the soft limit is raised this far (Linux's nr_open default).
_UNLIMITED_TARGET: Final = 1 << 20


def raise_fd_limit(wanted: int | None = None) -> int | None:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (None: as far as the hard limit allows);
    the soft limit then, None where there is none to read or it is unlimited. Children inherit
    it."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == infinity:
        return None
    if wanted is None:
        target = hard if hard != infinity else max(soft, _UNLIMITED_TARGET)
    else:
        target = wanted if hard == infinity else min(wanted, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft)
