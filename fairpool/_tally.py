"""A pool's per-lane call counts by outcome, kept by the core under the lock it already holds.

The metrics (:mod:`fairpool.otel_metrics`) read them at collection; this module is the
core's side and imports nothing of the metrics. While metrics are off, a core's
``tally`` is None and the core pays one attribute test per call for it.

Thread rules: :meth:`Tally.count` runs under the pool's lock only (the lock the core
holds to move the job anyway); :meth:`Tally.ran` in the worker that ran the call, after
its answer, without the lock. The reader (a collector) takes
:meth:`Tally.counts` without the lock: each lane's list is copied whole (a C-level
copy under the GIL), and the counts only grow. ``pending`` is a deque: appended by
workers, popped by collectors (``append`` and ``popleft`` are atomic).
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ._job import DONE

__all__ = [
    "ABANDONED",
    "CANCELLED",
    "CLOSED",
    "OUTCOMES",
    "RAISED",
    "REJECTED",
    "RETURNED",
    "Tally",
    "factory",
]

#: The outcomes, in the order of a lane's counts (the indexes below).
OUTCOMES = ("returned", "raised", "cancelled", "abandoned", "rejected", "closed")
RETURNED, RAISED, CANCELLED, ABANDONED, REJECTED, CLOSED = range(6)


class Tally:
    """One pool's counts by lane and outcome, and the queue waits and run times to record."""

    __slots__ = ("dropped", "lanes", "max_pending", "on_gone", "owner", "pending", "pool")

    def __init__(self, pool: str, max_pending: int) -> None:
        self.pool = pool
        #: A weak reference to the pool's core (:meth:`own`): once it is gone, nothing counts
        #: here any more, and ``on_gone(self)`` is called (the metrics fold the counts, ``fold``).
        self.owner: Callable[[], Any] | None = None
        self.on_gone: Callable[[Tally], None] | None = None
        self.lanes: dict[str, list[int]] = {}  #: lane: counts, indexed by outcome
        #: (lane, outcome or -1, queue wait, run time) of each call a worker ran: ``outcome`` is
        #: RETURNED or RAISED when the call was answered with its result, -1 when its caller
        #: had left or it was closed meanwhile (its run time is not recorded then).
        self.pending: deque[tuple[str, int, float, float]] = deque()
        self.max_pending = max_pending
        self.dropped = 0  #: pending entries dropped because ``max_pending`` were waiting

    def count(self, lane: str, outcome: int) -> None:
        """A call of ``lane`` reached its final state ``outcome``. Under the pool's lock."""
        counts = self.lanes.get(lane)
        if counts is None:
            counts = self.lanes[lane] = [0, 0, 0, 0, 0, 0]
        counts[outcome] += 1

    def ran(self, job: Any) -> None:
        """A worker ran ``job`` and its caller was answered (if still there): keep its times.

        In the worker, after the answer, without the pool's lock (it was counted under it).
        """
        pending = self.pending
        if len(pending) < self.max_pending:  # (may pass it by a few: no lock)
            started = job.t_started
            outcome = (RETURNED if job.ok else RAISED) if job.state == DONE else -1
            pending.append((job.lane, outcome, started - job.t_queued, job.t_finished - started))
        else:
            self.dropped += 1  # (may miss a few: no lock)

    def counts(self) -> list[tuple[str, list[int]]]:
        """(lane, counts by outcome) for each lane that had a call: copies, without the lock."""
        return [(lane, list(counts)) for lane, counts in list(self.lanes.items())]

    def own(self, core: Any) -> None:
        """``core`` counts here: when it is gone, ``on_gone(self)`` is called (in that thread)."""
        on_gone = self.on_gone
        if on_gone is None:
            self.owner = weakref.ref(core)
        else:  # (a cycle through this tally until the fold drops ``owner``)

            def gone(_ref: Any, tally: Tally = self) -> None:
                on_gone(tally)

            self.owner = weakref.ref(core, gone)

    def fold(self, other: Tally) -> None:
        """Add ``other``'s counts and pending entries to these (``other`` counts no more)."""
        for lane, counts in list(other.lanes.items()):
            mine = self.lanes.get(lane)
            if mine is None:
                self.lanes[lane] = list(counts)
            else:
                for outcome, n in enumerate(counts):
                    mine[outcome] += n
        pending, entries = self.pending, other.pending
        while entries:
            try:
                pending.append(entries.popleft())  # each entry once: here, or to a concurrent drain
            except IndexError:
                break
        self.dropped += other.dropped

    def forget(self) -> None:
        """In a forked child: the counts and entries so far are the parent's."""
        self.lanes = {}
        self.pending = deque()
        self.dropped = 0


#: Made for each new pool while metrics are on (``factory(pool_name)``); None while off.
factory: Callable[[str], Tally] | None = None
