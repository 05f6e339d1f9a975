"""What ``/proc`` says about a process and the machine: CPU time (``schedstat``), per-CPU
busy time, resident memory and open descriptors; the parsers are pure, for the tests.
"""

from __future__ import annotations

import os
import time


def parse_stat_cpu(text: str, ticks_per_s: float) -> float:
    """utime + stime in seconds from the text of ``/proc/PID/stat``."""
    fields = text.rpartition(")")[2].split()
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def parse_cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """{cpu: (busy ticks, total ticks)} from the text of ``/proc/stat``; busy counts
    everything but idle and iowait, so softirq work (loopback traffic) shows too."""
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            cpu = int(name[3:])
            ticks = [int(x) for x in rest.split()]
        except ValueError:
            continue
        total = sum(ticks[:8])  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        out[cpu] = (total - idle, total)
    return out


def core_busy(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: set[int]
) -> float | None:
    """The busy share of ``cpus`` between two ``parse_cpu_times`` readings."""
    busy = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    return busy / total if total > 0 else None


def parse_vmrss_kb(text: str) -> int | None:
    """VmRSS in kB from the text of ``/proc/PID/status``."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time a live process has used: the sum of its threads' schedstat run time, the
    figure the kernel splits into rusage's utime and stime, here to the nanosecond where
    rusage (and /proc's utime + stime, the fallback) counts clock ticks; None once it is gone."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        if total > 0:
            return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat_cpu(f.read(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def cpu_times() -> dict[int, tuple[int, int]]:
    try:
        with open("/proc/stat") as f:
            return parse_cpu_times(f.read())
    except OSError:
        return {}


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return parse_vmrss_kb(f.read())
    except OSError:
        return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def background_busy(seconds: float = 0.5) -> float | None:
    """How busy the machine's CPUs are before the bench starts anything: other work on the
    machine makes every figure noisier (the interleaving cancels its drift, not its noise)."""
    before = cpu_times()
    time.sleep(seconds)
    after = cpu_times()
    return core_busy(before, after, set(before))
