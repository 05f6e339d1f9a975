"""Checking what a user types, before anything is sent to the loop (Qt-free)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopmon.gui.model import validation
from loopmon.gui.model.validation import client_limit, local_ports


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" 0.0.0.0 ", "0.0.0.0"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("fe80::1", "fe80::1"),
        ("LOCALHOST", "localhost"),
        ("256.0.0.1", None),
        ("1.2.3", None),
        ("", None),
        ("example.com", None),
    ],
)
def test_parse_host(text: str, host: str | None) -> None:
    assert validation.parse_host(text)[0] == host


@pytest.mark.parametrize(
    ("text", "port"),
    [("0", 0), ("65535", 65535), ("80", 80), ("65536", None), ("-1", None), ("1e3", None)],
)
def test_parse_port(text: str, port: int | None) -> None:
    assert validation.parse_port(text)[0] == port


@given(st.text())
def test_garbage_is_refused_with_a_reason_never_an_exception(text: str) -> None:
    for parse in (validation.parse_host, validation.parse_port):
        value, why = parse(text)
        assert (value is None) == bool(why)


def test_client_limit_follows_the_local_port_range(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ports = tmp_path / "range"
    ports.write_text("32768\t60999\n")
    assert local_ports(ports) == 28_232
    assert client_limit(28_232)[0] == 20_000
    assert client_limit(5_000)[0] == 4_000  # a narrow range: less, and the reason names it
    assert "5,000 local ports" in client_limit(5_000)[1]
    assert local_ports(tmp_path / "missing") is None
    assert client_limit(None)[0] == 20_000
