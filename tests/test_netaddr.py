"""Addresses in the one format every layer prints, and hosts as users type them."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopmon.netaddr import describe_error, format_address, host_address, split_address


def test_ipv6_goes_in_brackets_and_comes_back_out() -> None:
    assert format_address("::1", 10000) == "[::1]:10000"
    assert format_address("127.0.0.1", 80) == "127.0.0.1:80"
    assert host_address("[::1]") == "::1" and host_address("localhost") == "localhost"


@given(st.ip_addresses(), st.integers(0, 65535))
def test_split_address_reads_what_format_address_writes(ip: object, port: int) -> None:
    assert split_address(format_address(str(ip), port)) == (str(ip), port)


@pytest.mark.parametrize(
    "text,why",
    [
        ("nohost", "HOST:PORT"),
        (":80", "HOST:PORT"),
        ("::1:80", "brackets"),
        ("h:x", "port number"),
        ("h:70000", "out of range"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        split_address(text)


def test_os_errors_are_worded_in_lower_case() -> None:
    assert describe_error(OSError(errno.ECONNRESET, "x")) == "connection reset by peer"
    assert describe_error(ValueError("Bad thing")) == "bad thing"
