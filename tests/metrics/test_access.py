"""Who may scrape: loopback by default, elsewhere only with --allow-remote and a token file
that only its owner can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loopmon.metrics import MetricsError
from loopmon.metrics.access import check_bind, read_token


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "::1", "localhost"])
def test_loopback_needs_nothing(host: str) -> None:
    check_bind(host, 9100, allow_remote=False, token_file=None)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "192.0.2.1", "::", "example.org"])
def test_elsewhere_needs_allow_remote_and_a_token(host: str, tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="--allow-remote"):
        check_bind(host, 9100, allow_remote=False, token_file=tmp_path / "t")
    with pytest.raises(MetricsError, match="--token-file"):
        check_bind(host, 9100, allow_remote=True, token_file=None)
    check_bind(host, 9100, allow_remote=True, token_file=tmp_path / "t")


def private_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def test_a_token_is_read_stripped(tmp_path: Path) -> None:
    assert read_token(private_file(tmp_path / "t", b"  abc-123\n")) == b"abc-123"


def test_a_token_others_can_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="chmod 600"):
        read_token(private_file(tmp_path / "t", b"abc", 0o644))


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"\n", "empty"), (b"a b", "printable"), (b"x" * 5000, "over 4096")],
)
def test_bad_tokens_are_refused(tmp_path: Path, content: bytes, match: str) -> None:
    with pytest.raises(MetricsError, match=match):
        read_token(private_file(tmp_path / "t", content))


def test_a_link_or_a_directory_or_nothing_is_refused(tmp_path: Path) -> None:
    target = private_file(tmp_path / "real", b"abc")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(MetricsError, match="cannot read"):
        read_token(tmp_path / "link")
    with pytest.raises(MetricsError, match="not a regular file"):
        read_token(tmp_path)
    with pytest.raises(MetricsError, match="cannot read"):
        read_token(tmp_path / "missing")
