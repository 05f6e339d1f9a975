"""Byte counts and rates as the headless commands print them, in IEC units (B, KiB, MiB, GiB:
powers of 1024), the words the window uses too (``gui/units``). Layer 0, Qt-free: ``serve``'s
status line, ``load``'s summary and progress, and ``bench``'s table all say the same thing the
same way. JSON outputs keep raw numbers and never pass through here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["KIB", "MIB", "byte_rate", "byte_size"]

KIB: Final = 1 << 10
MIB: Final = 1 << 20
_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_size(n: float) -> str:
    """1536 -> '1.5 KiB'; whole bytes below 1 KiB ('512 B')."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def byte_rate(bytes_per_s: float) -> str:
    """A rate in bytes per second: 2_097_152 -> '2.0 MiB/s'."""
    return byte_size(bytes_per_s) + "/s"
