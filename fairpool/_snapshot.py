"""A pool core's counters and latencies, read under its lock, as a frozen PoolStatistics."""

from __future__ import annotations

from typing import Any

from ._core import Core
from .statistics import PoolStatistics, percentiles

__all__ = ["statistics"]


def statistics(core: Core) -> PoolStatistics:
    """A snapshot of ``core``: the counters under its lock, the percentiles after."""
    with core.locked():
        window = list(core.window)
        admission = core.admission
        stats: dict[str, Any] = dict(
            name=core.name,
            size=core.workers.size,
            threads=len(core.workers.all),
            busy=core.busy,
            queued=len(admission),
            queued_by_lane=admission.queue.counts(),
            waiting_admission=len(admission.held),
            submitted=core.submitted,
            inline=core.inline,
            completed=core.completed,
            failed=core.failed,
            cancelled=core.cancelled,
            abandoned=core.abandoned,
            closed=core.answered_closed,
            worker_faults=core.worker_faults,
            run_total=core.run_total,
        )
    wait = percentiles(w for w, _ in window)
    run = percentiles(r for _, r in window)
    return PoolStatistics(
        **stats,
        wait_p50=wait[0],
        wait_p99=wait[1],
        wait_max=wait[2],
        run_p50=run[0],
        run_p99=run[1],
        run_max=run[2],
    )
