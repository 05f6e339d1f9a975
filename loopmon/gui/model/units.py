"""Human-readable renderings of the numbers a snapshot carries (bytes, rates, durations)."""

from __future__ import annotations

import time

from loopmon import units as core_units

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")

# The loop clock is time.monotonic in the process that runs the loop (the runner's thread
# shares this process), so a loop timestamp converts to wall time with one offset.
_WALL_OFFSET = time.time() - time.monotonic()


def byte_size(n: float | None) -> str:
    """1536 -> '1.5 KiB', the words serve, load and bench use; 'n/a' for a figure the
    producer cannot measure."""
    return "n/a" if n is None else core_units.byte_size(n)


def iec_unit(top: float) -> tuple[float, str]:
    """(divisor, unit) to show byte counts up to ``top`` in: 3 << 20 -> (1048576, 'MiB')."""
    divisor = 1.0
    for unit in _BYTE_UNITS:
        if abs(top) < divisor * 1024 or unit == _BYTE_UNITS[-1]:
            return divisor, unit
        divisor *= 1024
    return divisor, _BYTE_UNITS[-1]  # pragma: no cover - the loop always returns


def mib_per_s(record: dict[str, object]) -> float:
    """A load record's echo throughput in MiB/s (``mib_per_s``, or the older decimal
    ``mb_per_s``, 10^6 bytes a second, converted)."""
    value = record.get("mib_per_s")
    if isinstance(value, int | float):
        return float(value)
    decimal = record.get("mb_per_s", 0)
    return float(decimal) * 1e6 / 2**20 if isinstance(decimal, int | float) else 0.0


def rate(n: float) -> str:
    """Events per second, compact: 950 -> '950', 12_300 -> '12.3k', 4.5e6 -> '4.50M'."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def duration(seconds: float) -> str:
    """Ages and uptimes: '0.4 s', '42 s', '3m07s', '2h05m'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def lag(seconds: float) -> str:
    """Loop lag, in the unit that suits it: '80 µs', '2.5 ms', '1.20 s'."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def clock_time(loop_time: float, wall_offset: float | None = None) -> str:
    """A loop-clock timestamp as local wall time 'HH:MM:SS.mmm'. ``wall_offset`` (wall =
    loop time + offset) is the producer's when its clock is not this process's (a recording
    made by another process, maybe before this boot); by default, this process's."""
    return wall_time(loop_time + (_WALL_OFFSET if wall_offset is None else wall_offset))


def wall_time(wall: float) -> str:
    """A Unix time as local wall time 'HH:MM:SS.mmm'."""
    stamp = time.strftime("%H:%M:%S", time.localtime(wall))
    return f"{stamp}.{int((wall % 1) * 1000):03d}"
