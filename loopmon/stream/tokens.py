"""The telemetry port's token: 32 random bytes per run, kept in a file only its user can read.

Every consumer, read-only ones included, must present the token in its hello. A producer
writes it, as hex text, to a file created with ``O_EXCL | O_NOFOLLOW`` and mode 0600, named by
port and pid, in ``$XDG_RUNTIME_DIR/loopmon/`` or else ``/tmp/loopmon-UID/``; either directory
is made 0700 and checked with ``lstat`` (a directory, not a link, owned by this user, open to
no one else) before anything is written to or read from it, so another user cannot plant a file
or a link there. A consumer on the same machine finds the file by the port (stale files of dead
pids are skipped); elsewhere it takes ``--token-file PATH`` or ``LOOPMON_TOKEN``, never a token
on the command line, where ``ps`` would show it.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
from pathlib import Path

TOKEN_BYTES = 32
ENV_VAR = "LOOPMON_TOKEN"


class TokenError(Exception):
    """No usable token: a one-line reason a user can act on."""


def new_token() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES)


def same(presented: bytes, expected: bytes) -> bool:
    """Constant-time comparison, so the time taken tells nothing about the token."""
    return hmac.compare_digest(presented, expected)


def runtime_dir() -> Path:
    """The directory token files live in, made if need be and checked as private."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) / "loopmon" if xdg else Path("/tmp") / f"loopmon-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700, parents=False)
    check_private_dir(base)
    return base


def check_private_dir(path: Path) -> None:
    """``TokenError`` unless ``path`` is a real directory of this user's that no one else may
    enter (lstat: a symlink planted in its place is refused, not followed)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise TokenError(f"cannot use {path} for the token: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise TokenError(f"{path} is not a directory (a link or a file is in its place)")
    if info.st_uid != os.getuid():
        raise TokenError(f"{path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o077:
        raise TokenError(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); it must be 0700"
        )


def token_path(port: int, pid: int | None = None, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"telemetry-{port}-{pid or os.getpid()}.token"


def write_token(token: bytes, port: int, directory: Path | None = None) -> Path:
    """Write ``token`` for this process's telemetry port; the path is the file's."""
    path = token_path(port, directory=directory)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, token.hex().encode("ascii") + b"\n")
    finally:
        os.close(fd)
    return path


def remove_token(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def read_token_file(path: Path | str) -> bytes:
    """The token in a file written by ``write_token`` (hex text), or ``TokenError``."""
    try:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        try:
            data = os.read(fd, 1024)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror}") from None
    return parse_token(data.decode("ascii", "replace"), f"the token file {path}")


def parse_token(text: str, where: str) -> bytes:
    try:
        token = bytes.fromhex(text.strip())
    except ValueError:
        raise TokenError(f"{where} does not hold a loopmon token (64 hex digits)") from None
    if len(token) != TOKEN_BYTES:
        raise TokenError(f"{where} does not hold a loopmon token (64 hex digits)")
    return token


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: alive, but not ours to read anyway
    return True


def find_local_token(port: int, directory: Path | None = None) -> tuple[bytes, Path] | None:
    """The token of a live producer on this machine listening on ``port``, from its file;
    None when there is none (files of dead pids are stale and skipped)."""
    try:
        base = directory or runtime_dir()
    except TokenError:
        return None
    candidates = []
    for path in base.glob(f"telemetry-{port}-*.token"):
        pid_text = path.name.removeprefix(f"telemetry-{port}-").removesuffix(".token")
        if pid_text.isdigit() and _alive(int(pid_text)):
            candidates.append(path)
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return read_token_file(path), path
        except TokenError:
            continue
    return None


def consumer_token(port: int, token_file: str | None, local: bool) -> bytes:
    """What a consumer presents: ``--token-file``, else ``LOOPMON_TOKEN``, else (for a
    producer on this machine) its own file; ``TokenError`` saying which to give."""
    if token_file:
        return read_token_file(token_file)
    env = os.environ.get(ENV_VAR)
    if env:
        return parse_token(env, ENV_VAR)
    if local:
        found = find_local_token(port)
        if found is not None:
            return found[0]
    raise TokenError(
        f"no token for port {port}: give --token-file PATH (the producer prints it) or set "
        f"{ENV_VAR}"
    )
