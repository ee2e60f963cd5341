"""A pool's counters and latency percentiles, as a frozen snapshot."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["STATS_WINDOW", "PoolStatistics"]

#: How many recent calls the queue-wait and run-time percentiles cover.
STATS_WINDOW = 1024


@dataclass(frozen=True)
class PoolStatistics:
    """What a pool is doing now, and what it has done since it was made.

    Times are in seconds. The percentiles cover the last :data:`STATS_WINDOW`
    calls that ran on a worker (0.0 when none has).
    """

    name: str
    size: int  #: the most worker threads the pool will run
    threads: int  #: worker threads alive now
    busy: int  #: workers running a call now
    queued: int  #: calls waiting for a worker (admitted to the queue)
    queued_by_lane: Mapping[str, int] = field(default_factory=dict)
    waiting_admission: int = 0  #: calls waiting for room in a full queue (``max_queue``)
    #: calls the pool admitted to its queue (not inline ones, nor those cancelled before admission)
    submitted: int = 0
    inline: int = 0  #: calls run in the caller's thread (size 0, from a worker, import lock)
    completed: int = 0  #: calls answered with the value they returned
    failed: int = 0  #: calls answered with the exception they raised
    #: calls whose caller gave up before they ran (queued, or before admission): they never ran.
    #: Can exceed ``submitted``: a call cancelled before the pool admitted it counts here only.
    cancelled: int = 0
    #: calls whose caller gave up while they ran (or after, before taking the answer): outcome dropped
    abandoned: int = 0
    #: admitted calls answered with an error instead of their outcome (PoolClosed at a
    #: shutdown's timeout, exit or fork; FairpoolError when no worker could run them)
    closed: int = 0
    worker_faults: int = 0  #: worker threads replaced after a fault in fairpool's own loop
    run_total: float = 0.0  #: seconds the calls that finished ran, added up
    wait_p50: float = 0.0
    wait_p99: float = 0.0
    wait_max: float = 0.0
    run_p50: float = 0.0
    run_p99: float = 0.0
    run_max: float = 0.0

    def log_line(self) -> str:
        """One line for an operator's log."""
        lanes = " ".join(f"{k}={v}" for k, v in sorted(self.queued_by_lane.items()))
        return (
            f"fairpool pool {self.name!r}: threads={self.threads}/{self.size} busy={self.busy} "
            f"queued={self.queued}" + (f" [{lanes}]" if lanes else "") + " "
            f"completed={self.completed} failed={self.failed} cancelled={self.cancelled} "
            f"abandoned={self.abandoned} wait_p50={self.wait_p50 * 1e3:.2f}ms "
            f"wait_p99={self.wait_p99 * 1e3:.2f}ms run_p50={self.run_p50 * 1e3:.2f}ms "
            f"run_p99={self.run_p99 * 1e3:.2f}ms"
        )


def percentiles(samples: Iterable[float]) -> tuple[float, float, float]:
    """(p50, p99, max) by nearest rank; zeros for no samples."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return 0.0, 0.0, 0.0

    def rank(p: float) -> float:
        return ordered[min(n - 1, max(0, int(p * n + 0.5) - 1))]

    return rank(0.50), rank(0.99), ordered[-1]


def new_window() -> deque[tuple[float, float]]:
    return deque(maxlen=STATS_WINDOW)
