"""What an fd is, asked of the kernel once when a loop starts watching it: its identity (the
inode: the fd number is reused at once), its kind and its addresses."""

from __future__ import annotations

import os
import socket
import stat
from typing import NamedTuple

from loopmon.netaddr import format_address


class FdInfo(NamedTuple):
    inode: int  # (st_dev, st_ino) folded: what tells a reused fd number from the old one
    kind: str  # "listener" | "connection" | "pipe" | "other"
    local: str
    peer: str


def identity(fd: int) -> int | None:
    """The fd's inode, or None when it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return hash((st.st_dev, st.st_ino))


def _address(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return format_address(str(addr[0]), int(addr[1]))
    if isinstance(addr, str):
        return addr  # a Unix socket's path ("" when unnamed)
    return ""  # an abstract Unix name (bytes), or nothing


def describe(fd: int) -> FdInfo | None:
    """The fd's kind and addresses, or None when it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    inode = hash((st.st_dev, st.st_ino))
    if stat.S_ISFIFO(st.st_mode):
        return FdInfo(inode, "pipe", "", "")
    if not stat.S_ISSOCK(st.st_mode):
        return FdInfo(inode, "other", "", "")
    # A socket object over the number, detached again at once: never closes the program's fd.
    sock = socket.socket(fileno=fd)
    try:
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        try:
            local = _address(sock.getsockname())
        except OSError:
            local = ""
        try:
            peer = _address(sock.getpeername())
        except OSError:
            peer = ""
        if listening:
            kind = "listener"
        elif sock.type != socket.SOCK_STREAM:
            kind = "other"
        elif sock.family == socket.AF_UNIX and not local and not peer:
            kind = "pipe"  # a socketpair: an anonymous local channel
        else:
            kind = "connection"
        return FdInfo(inode, kind, local, peer)
    finally:
        sock.detach()


def peer_of(fd: int) -> str:
    """The peer address now (a connect that was in progress at registration may be done)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return ""
    try:
        return _address(sock.getpeername())
    except OSError:
        return ""
    finally:
        sock.detach()
