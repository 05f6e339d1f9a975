"""The token file: private, exclusive, found by port, stale ones skipped."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from loopmon.stream import tokens


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv(tokens.ENV_VAR, raising=False)
    return runtime


def test_a_token_file_is_0600_exclusive_and_found_by_port(private: Path) -> None:
    token = tokens.new_token()
    assert len(token) == 32
    path = tokens.write_token(token, 4242)
    assert path.parent == private / "loopmon"
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
    with pytest.raises(FileExistsError):
        tokens.write_token(tokens.new_token(), 4242)  # never overwritten
    assert tokens.find_local_token(4242) == (token, path)
    assert tokens.find_local_token(4243) is None
    assert tokens.consumer_token(4242, None, local=True) == token


def test_a_stale_file_of_a_dead_pid_is_skipped(private: Path) -> None:
    directory = tokens.runtime_dir()
    dead = 2**22 + 12345  # above pid_max's default: no such process
    stale = tokens.token_path(5000, pid=dead, directory=directory)
    stale.write_text(tokens.new_token().hex())
    assert tokens.find_local_token(5000) is None


def test_a_planted_link_or_an_open_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (runtime / "loopmon").symlink_to(target)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(tokens.TokenError, match="not a directory"):
        tokens.runtime_dir()
    (runtime / "loopmon").unlink()
    (runtime / "loopmon").mkdir(mode=0o755)
    os.chmod(runtime / "loopmon", 0o755)
    with pytest.raises(tokens.TokenError, match="0700"):
        tokens.runtime_dir()


def test_the_token_comes_from_a_file_or_the_environment_never_the_command_line(
    private: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tokens.new_token()
    given = tmp_path / "tok"
    given.write_text(token.hex() + "\n")
    assert tokens.consumer_token(1, str(given), local=False) == token
    monkeypatch.setenv(tokens.ENV_VAR, token.hex())
    assert tokens.consumer_token(1, None, local=False) == token
    monkeypatch.setenv(tokens.ENV_VAR, "nonsense")
    with pytest.raises(tokens.TokenError, match="LOOPMON_TOKEN"):
        tokens.consumer_token(1, None, local=False)
    monkeypatch.delenv(tokens.ENV_VAR)
    with pytest.raises(tokens.TokenError, match="--token-file"):
        tokens.consumer_token(1, None, local=False)
    assert tokens.same(token, bytes(token)) and not tokens.same(token, tokens.new_token())
