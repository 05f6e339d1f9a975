"""The one descriptor-limit raiser every command and the bench's children use."""

from __future__ import annotations

import pytest

from loopmon import fdlimit

resource = pytest.importorskip("resource")


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """A fake RLIMIT_NOFILE: the list holds (soft, hard); setrlimit appends."""
    state = [(1024, 4096)]
    monkeypatch.setattr(resource, "getrlimit", lambda which: state[-1])
    monkeypatch.setattr(resource, "setrlimit", lambda which, pair: state.append(pair))
    return state


def test_raises_towards_what_is_wanted(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.raise_fd_limit(2000) == 2000
    assert limits[-1] == (2000, 4096)


def test_never_past_the_hard_limit(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.raise_fd_limit(10_000) == 4096


def test_none_wanted_means_the_hard_limit(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.raise_fd_limit() == 4096


def test_never_lowers(limits: list[tuple[int, int]]) -> None:
    assert fdlimit.raise_fd_limit(100) == 1024
    assert len(limits) == 1


def test_unlimited_hard_limit(limits: list[tuple[int, int]]) -> None:
    limits[-1] = (1024, resource.RLIM_INFINITY)
    assert fdlimit.raise_fd_limit() == 1 << 20
    limits[-1] = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    assert fdlimit.raise_fd_limit() is None
