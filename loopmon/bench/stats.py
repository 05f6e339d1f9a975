"""Statistics of paired rounds: medians, per-round ratios, which side was the limit, and
how much other work shared the servers' core.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

SATURATED = 0.85  # CPU share of one core above which a side counts as the limit


# Other work taking more than this share of the servers' core in a round is reported.
INTERFERENCE_SHARE = 0.25


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (and not NaN); None if there are none."""
    clean = [float(v) for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else None


def paired_ratios(
    values: Sequence[float | None], baseline: Sequence[float | None]
) -> list[float | None]:
    """Round by round ``values[i] / baseline[i]``; None where either is missing or the
    baseline is zero."""
    out: list[float | None] = []
    for v, b in zip(values, baseline, strict=False):
        out.append(v / b if v is not None and b is not None and b > 0 else None)
    return out


def saturation(client_util: float | None, server_util: float | None) -> str:
    """Which side ran out of CPU: "client", "server", "both", "neither" or "?"."""
    if client_util is None or server_util is None:
        return "?"
    client = client_util >= SATURATED
    server = server_util >= SATURATED
    if client and server:
        return "both"
    if client:
        return "client"
    if server:
        return "server"
    return "neither"


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (a figure nothing was measured for) as None, so
    ``--json`` is JSON that every parser takes, not Python's NaN extension."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def interference(index: int, core_busy: float | None, server_util: float | None) -> str:
    """A note when something besides the server kept the servers' core busy in a round (the
    core's busy share, softirq included, less the server process's own): its figures are
    then noisier than the interleaving can cancel. Empty when not, or not known."""
    if core_busy is None or server_util is None:
        return ""
    other = core_busy - server_util
    if other <= INTERFERENCE_SHARE:
        return ""
    return (
        f"round {index + 1}: other work took {other:.0%} of the servers' core "
        "(that round's figures are noisier)"
    )
