"""Busy processes beside a measurement, and what the machine's load was while it ran.

A compute node's CPUs are never idle: guests, other services and the agent's
own work run beside the pool. :class:`BusyProcesses` starts ``count``
CPU-bound processes (a pure-Python spin loop, normal priority) and always
stops them: on leaving the ``with`` block, at interpreter exit, and by
themselves when their parent is gone or after ``lifetime`` seconds, so that
a killed measurement never leaves one spinning. :class:`LoadMeter` reads the
load average and the share of CPU time that was busy (``/proc/stat``) over
the time it runs, so each row can say how loaded the machine was.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
from types import TracebackType

__all__ = ["CONDITIONS", "BusyProcesses", "LoadMeter", "conditions"]

# The spinner: a pure-Python loop, checking about every millisecond that its parent
# is still the one that started it and that its lifetime is not over.
_SPIN = (
    "import os, sys, time\n"
    "parent, end = os.getppid(), time.monotonic() + float(sys.argv[1])\n"
    "while os.getppid() == parent and time.monotonic() < end:\n"
    "    for _ in range(20000):\n"
    "        pass\n"
)

_live: set[subprocess.Popen[bytes]] = set()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill not reaped in 5 s
            pass
        _live.discard(p)


@atexit.register
def _stop_all() -> None:
    _stop(list(_live))


def conditions(cores: int | None = None) -> dict[str, int]:
    """Busy processes per condition: none, some (half the cores, at least one), one per core."""
    n = cores or os.cpu_count() or 1
    return {"none": 0, "some": max(1, n // 2), "one per core": n}


CONDITIONS = conditions()


class BusyProcesses:
    """``with BusyProcesses(n):`` runs ``n`` CPU-bound processes at normal priority beside the block.

    Args:
        count: How many processes (0: none).
        lifetime: Each stops by itself after this many seconds, whatever happens to its parent.
    """

    def __init__(self, count: int, lifetime: float = 600.0) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count!r}")
        self.count, self.lifetime = count, lifetime
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BusyProcesses:
        try:
            for _ in range(self.count):
                p = subprocess.Popen(
                    [sys.executable, "-c", _SPIN, str(self.lifetime)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self.procs.append(p)
                _live.add(p)
            if self.procs:
                time.sleep(0.05)  # they are spinning before the measurement starts
        except BaseException:
            _stop(self.procs)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _stop(self.procs)
        self.procs = []


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total


class LoadMeter:
    """Adds up the machine's busy CPU share over the intervals it is started and stopped for."""

    def __init__(self) -> None:
        self.busy = self.total = 0
        self.loadavg: list[float] = []
        self._start: tuple[int, int] | None = None

    def start(self) -> None:
        self._start = _cpu_times()
        try:
            self.loadavg.append(os.getloadavg()[0])
        except OSError:  # pragma: no cover - no load average on this system
            pass

    def stop(self) -> None:
        assert self._start is not None, "LoadMeter.stop() without start()"
        busy, total = _cpu_times()
        self.busy += busy - self._start[0]
        self.total += total - self._start[1]
        self._start = None

    def summary(self) -> dict[str, float | None]:
        """The busy share of all CPUs (0 to 1) and the 1-minute load average (median of its readings)."""
        loads = sorted(self.loadavg)
        return {
            "cpu_busy_share": self.busy / self.total if self.total else None,
            "loadavg_1min": loads[len(loads) // 2] if loads else None,
            "cores": float(os.cpu_count() or 1),
        }
