"""Who may scrape: loopback by default; any other address only when asked for with
``--allow-remote``, and then only with a bearer token read from ``--token-file``.

The token file must be a regular file of this user's that no one else may read (the same rule
as the telemetry token's directory): a token others can read protects nothing. Prometheus
reads the same file through ``authorization: {credentials_file: ...}`` in its scrape config;
both sides strip surrounding whitespace.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from loopmon.metrics import MetricsError
from loopmon.netaddr import format_address, is_loopback

MAX_TOKEN_BYTES: Final = 4096


def check_bind(host: str, port: int, *, allow_remote: bool, token_file: Path | None) -> None:
    """``MetricsError`` unless binding ``host`` is allowed with these options."""
    if is_loopback(host):
        return
    address = format_address(host, port)
    if not allow_remote:
        raise MetricsError(
            f"--metrics {address} is not a loopback address: add --allow-remote and "
            "--token-file to let other machines scrape it"
        )
    if token_file is None:
        raise MetricsError(
            f"--metrics {address} with --allow-remote needs --token-file: a bearer token "
            "that scrapers must present"
        )


def read_token(path: Path) -> bytes:
    """The token in ``path`` (whitespace stripped), or ``MetricsError`` saying what is wrong."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MetricsError(f"cannot read the token file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MetricsError(f"the token file {path} is not a regular file")
        if info.st_uid != os.getuid():
            raise MetricsError(f"the token file {path} belongs to another user")
        if info.st_mode & 0o077:
            raise MetricsError(
                f"the token file {path} is open to other users (mode "
                f"{stat.S_IMODE(info.st_mode):o}); chmod 600 it"
            )
        data = os.read(fd, MAX_TOKEN_BYTES + 1)
    finally:
        os.close(fd)
    token = data.strip()
    if len(data) > MAX_TOKEN_BYTES:
        raise MetricsError(f"the token file {path} is over {MAX_TOKEN_BYTES} bytes")
    if not token:
        raise MetricsError(f"the token file {path} is empty")
    if any(c < 0x21 or c > 0x7E for c in token):
        raise MetricsError(f"the token in {path} must be printable ASCII without spaces")
    return token
