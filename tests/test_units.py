"""The IEC byte formatter the headless commands share."""

from __future__ import annotations

import pytest

from loopmon import units


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (2 * units.MIB, "2.0 MiB"),
        (3 << 30, "3.0 GiB"),
        (5 << 40, "5.0 TiB"),
        (5 << 50, "5120.0 TiB"),
    ],
)
def test_byte_size(n: int, text: str) -> None:
    assert units.byte_size(n) == text


def test_byte_rate() -> None:
    assert units.byte_rate(2 * units.MIB) == "2.0 MiB/s"
    assert units.byte_rate(100) == "100 B/s"


def test_matches_the_window_s_words() -> None:
    gui_units = pytest.importorskip("loopmon.gui.model.units")
    for n in (0, 700, 1536, 5 * units.MIB, 7 << 30):
        assert units.byte_size(n) == gui_units.byte_size(n)
