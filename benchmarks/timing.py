"""Timing helpers: percentiles, a stopwatch, and how busy the machine was meanwhile.

The machine is shared: other people's test suites run on the same two cores. Every figure is
therefore a ratio against a baseline measured in the same run, interleaved with it where
possible, and each section records the load average and the share of CPU time that other
processes took while it ran (``other_cpu``), so that a noisy figure can be recognised.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / min / mean in milliseconds, and the sample count."""
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "min_ms": round(min(ms), 3) if ms else float("nan"),
        "mean_ms": round(float(np.mean(ms)), 3) if ms else float("nan"),
        "n": len(ms),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _tree_pids(root: int) -> set[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def _cpu_ticks_of(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            continue
    return total


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]), idle


class Noise:
    """CPU that other processes used while a section ran: ``other_cpu`` is the fraction of
    the machine's CPU time neither idle nor spent by this benchmark's own process tree."""

    def __init__(self) -> None:
        self.start_total, self.start_idle = _machine_ticks()
        self.start_ours = _cpu_ticks_of(_tree_pids(os.getpid()))
        self.load_start = os.getloadavg()[0]
        self.wall = time.perf_counter()
        self._exited = 0

    def add_exited(self, ticks: int) -> None:
        """Ticks of our child processes that have exited (no longer in /proc)."""
        self._exited += ticks

    def result(self) -> dict[str, float]:
        total, idle = _machine_ticks()
        ours = _cpu_ticks_of(_tree_pids(os.getpid())) - self.start_ours + self._exited
        d_total = max(1, total - self.start_total)
        busy = d_total - (idle - self.start_idle)
        other = max(0.0, (busy - ours) / d_total)
        return {
            "seconds": round(time.perf_counter() - self.wall, 2),
            "load_avg_start": round(self.load_start, 2),
            "load_avg_end": round(os.getloadavg()[0], 2),
            "other_cpu": round(other, 3),
        }


@contextmanager
def noise(into: dict[str, Any]) -> Iterator[Noise]:
    """Record the section's wall time and machine noise under ``into["noise"]``."""
    sampler = Noise()
    try:
        yield sampler
    finally:
        into["noise"] = sampler.result()


class CpuAccount:
    """Where the machine's CPU went while a load ran against a server: the server's process
    tree (``server_s``, seconds of CPU), this process (the load generator: ``client_share``
    of the machine's CPU time), other processes (``other_share``) and idle (``idle_share``)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start_total, self.start_idle = _machine_ticks()
        self.start_server = _cpu_ticks_of(_tree_pids(server_pid))
        self.start_client = _own_cpu_s()

    def result(self) -> dict[str, float]:
        total, idle = _machine_ticks()
        d_total = max(1, total - self.start_total)
        server_ticks = _cpu_ticks_of(_tree_pids(self.server_pid)) - self.start_server
        client_ticks = (_own_cpu_s() - self.start_client) * self.hz
        busy = d_total - (idle - self.start_idle)
        return {
            "server_s": round(server_ticks / self.hz, 3),
            "server_share": round(server_ticks / d_total, 3),
            "client_share": round(client_ticks / d_total, 3),
            "other_share": round(max(0.0, (busy - server_ticks - client_ticks) / d_total), 3),
            "idle_share": round((idle - self.start_idle) / d_total, 3),
        }


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system
