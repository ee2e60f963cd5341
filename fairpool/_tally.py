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

Lanes are bounded: a tally keeps counts for the lanes its pool name's :class:`LaneNames`
names (at most its ``most``), and counts every later lane under :data:`OTHER_LANE`, so a
``lane_key`` that returns a value per request costs neither memory nor metric series
without bound. The tallies of one pool name share one ``LaneNames`` (with the gauges),
so a lane is named or folded alike everywhere, and for good: no count moves between lanes.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ._job import DONE
from ._native import allocate_lock
from .lanes import DEFAULT_LANE

__all__ = [
    "ABANDONED",
    "CANCELLED",
    "CLOSED",
    "OTHER_LANE",
    "OUTCOMES",
    "RAISED",
    "REJECTED",
    "RETURNED",
    "LaneNames",
    "Tally",
    "factory",
]

#: The outcomes, in the order of a lane's counts (the indexes below).
OUTCOMES = ("returned", "raised", "cancelled", "abandoned", "rejected", "closed")
RETURNED, RAISED, CANCELLED, ABANDONED, REJECTED, CLOSED = range(6)
#: The lane that stands for every lane past a pool name's named ones (:class:`LaneNames`).
OTHER_LANE = "<other>"
#: Most lanes named by a tally made without a :class:`LaneNames` (the metrics pass their own).
MOST_LANES = 4096


class LaneNames:
    """The lanes one pool name's metrics name one by one: its default lane and the first
    others seen, ``most`` in all; every later lane is reported as :data:`OTHER_LANE`, for good.

    Shared by that name's tallies (its live pools' and the folded one) and its gauges. A
    lane is named when first seen with room left, and stays named; once ``most`` are named
    (``full``), none is added: a lane maps to the same series from first to last.

    Thread rules: ``named`` only grows, under ``lock`` (taken at most a few times per lane
    named, never with another lock taken inside it); read without it (a set's
    ``in`` and copy are atomic under the GIL).
    """

    __slots__ = ("full", "lock", "most", "named")

    def __init__(self, most: int) -> None:
        self.most = most
        self.named: set[str] = {DEFAULT_LANE}
        self.full = len(self.named) >= most
        self.lock = allocate_lock()

    def name(self, lane: str) -> str:
        """The lane ``lane`` is reported as: itself if named (now, if there is room), else OTHER_LANE."""
        if lane in self.named:
            return lane
        if self.full:
            return OTHER_LANE
        with self.lock:
            named = self.named
            if lane not in named:
                if len(named) >= self.most:
                    self.full = True
                    return OTHER_LANE
                named.add(lane)
                self.full = len(named) >= self.most
        return lane


class Tally:
    """One pool's counts by lane and outcome, and the queue waits and run times to record."""

    __slots__ = ("dropped", "lanes", "max_pending", "names", "on_gone", "owner", "pending", "pool")

    def __init__(self, pool: str, max_pending: int, names: LaneNames | None = None) -> None:
        self.pool = pool
        #: The lanes named for ``pool``, shared by its name's tallies (its own if not given).
        self.names = LaneNames(MOST_LANES) if names is None else names
        #: A weak reference to the pool's core (:meth:`own`): once it is gone, nothing counts
        #: here any more, and ``on_gone(self)`` is called (the metrics fold the counts, ``fold``).
        self.owner: Callable[[], Any] | None = None
        self.on_gone: Callable[[Tally], None] | None = None
        #: lane: counts, indexed by outcome; only lanes ``names`` names, and OTHER_LANE
        self.lanes: dict[str, list[int]] = {}
        #: (lane, outcome or -1, queue wait, run time) of each call a worker ran: ``outcome`` is
        #: RETURNED or RAISED when the call was answered with its result, -1 when its caller
        #: had left or it was closed meanwhile (its run time is not recorded then).
        self.pending: deque[tuple[str, int, float, float]] = deque()
        self.max_pending = max_pending
        self.dropped = 0  #: pending entries dropped because ``max_pending`` were waiting

    def count(self, lane: str, outcome: int) -> None:
        """A call of ``lane`` reached its final state ``outcome``. Under the pool's lock."""
        counts = self.lanes.get(lane)
        if counts is None:  # its first call here, or a lane past the named ones
            counts = self._lane(lane)
        counts[outcome] += 1

    def _lane(self, lane: str) -> list[int]:
        """The counts ``lane``'s calls go to: its own, or OTHER_LANE's past the named lanes."""
        lane = self.names.name(lane)
        counts = self.lanes.get(lane)
        if counts is None:
            counts = self.lanes[lane] = [0, 0, 0, 0, 0, 0]
        return counts

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
        for lane, counts in list(other.lanes.items()):  # (named alike: one pool name, one LaneNames)
            mine = self._lane(lane)
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
