"""The one queue a pool's workers take calls from, and its two policies.

Not thread-safe on its own: the owning pool calls it under its lock.

``FairQueue``: one FIFO per lane, weighted round-robin between the lanes
that have calls waiting. Guarantees, checked by tests/test_fairqueue.py:

* nothing is lost or duplicated: every item put is popped or removed once;
* FIFO within a lane;
* a bounded wait between lanes: from the moment a lane has an item at its
  head, at most the sum of the *other* waiting lanes' weights are popped
  before it (a lane is served ``weight`` items in a row, then goes to the
  back of the rotation).

With one lane (a program that never names one) it is plain FIFO.

``FifoQueue``: arrival order, lanes ignored except in the per-lane counts.

Removal is O(1) in both: a removed item is forgotten from the set of live
items and skipped when it reaches the head of its lane (one at either end
of its lane leaves it at once). When skipped items
outnumber the live ones (and there are many), the lanes are compacted, so
memory stays proportional to what is queued. A caller that times out in a
loop therefore costs the pool O(1) per call, however long the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["POLICIES", "FairQueue", "FifoQueue"]

#: Compact when more than this many removed items wait to be skipped (and they outnumber the live).
COMPACT_AFTER = 1024


class _HasLane(Protocol):
    lane: str


T = TypeVar("T", bound=_HasLane)


class _Lane(Generic[T]):
    __slots__ = ("credit", "items", "live", "name", "weight")

    def __init__(self, name: str, weight: int) -> None:
        self.name = name
        self.weight = weight
        self.items: deque[T] = deque()  # live items, and removed ones not yet skipped
        self.live = 0  # live items in ``items``
        self.credit = weight  # items it may still take in its current turn


class _Removable(Generic[T]):
    """The live-item set and the removed-item count shared by both policies."""

    def __init__(self) -> None:
        self._live: set[T] = set()
        self._removed = 0  # removed items still sitting in a deque

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, item: object) -> bool:
        return item in self._live

    def _forget(self, item: T) -> bool:
        try:
            self._live.remove(item)
        except KeyError:
            return False
        self._removed += 1
        return True

    def _drop_end(self, items: deque[T], item: T) -> None:
        """A removed item at either end of ``items`` leaves it now (else it is skipped later)."""
        if items[-1] is item:
            items.pop()
            self._removed -= 1
        elif items[0] is item:
            items.popleft()
            self._removed -= 1

    def _should_compact(self) -> bool:
        return self._removed > COMPACT_AFTER and self._removed > len(self._live)


class FairQueue(_Removable[T]):
    """Weighted round-robin between lanes, FIFO within each."""

    policy = "fair"

    def __init__(self) -> None:
        super().__init__()
        # The lane of each name that has live items. A lane whose items were all
        # removed leaves this dict at once (a later put starts a new lane at the
        # back of the rotation) and the rotation when it comes to the head.
        self._lanes: dict[str, _Lane[T]] = {}
        self._rotation: deque[_Lane[T]] = deque()  # the current lane first
        # The last lane emptied by pop(), kept to be used again when the next put is for
        # the same name (a queue that keeps emptying, one call at a time, makes no lanes).
        self._spare: _Lane[T] | None = None

    def put(self, item: T, weight: int = 1) -> None:
        """Queue an item at the back of its lane.

        ``weight`` is the lane's share: the last put sets it, and it applies
        from the lane's next turn.
        """
        lane = self._lanes.get(item.lane)
        if lane is None:
            lane = self._spare
            if lane is not None and lane.name == item.lane:
                self._spare = None
                lane.weight = lane.credit = weight  # as new: at the back, a whole turn
            else:
                lane = _Lane(item.lane, weight)
            self._lanes[item.lane] = lane
            self._rotation.append(lane)
        else:
            lane.weight = weight
        lane.items.append(item)
        lane.live += 1
        self._live.add(item)

    def pop(self) -> T | None:
        """Take the next item, or None when empty."""
        rotation, live = self._rotation, self._live
        while rotation:
            lane = rotation[0]
            item = None
            if lane.live:
                item = lane.items.popleft()
                try:
                    live.remove(item)
                except KeyError:
                    self._removed -= 1  # removed earlier: skip it, at no cost to the lane's turn
                    continue
                lane.live -= 1
                if lane.live:
                    lane.credit -= 1
                    if lane.credit <= 0:
                        lane.credit = lane.weight
                        rotation.rotate(-1)
                    return item
            # The lane has no live item left (most pops empty their lane): take it out of the
            # rotation with the removed items it still holds, and keep it as the spare.
            if lane.items:
                self._removed -= len(lane.items)
                lane.items.clear()
            rotation.popleft()
            if self._lanes.get(lane.name) is lane:
                del self._lanes[lane.name]
                self._spare = lane
            if item is not None:
                return item
        return None

    def remove(self, item: T) -> bool:
        """Take a given item out (a cancelled call), in O(1). False if it is not queued."""
        if not self._forget(item):
            return False
        lane = self._lanes[item.lane]
        lane.live -= 1
        self._drop_end(lane.items, item)
        if not lane.live:
            del self._lanes[lane.name]  # its removed items are skipped when it reaches the head
        if self._should_compact():
            self._compact()
        return True

    def _compact(self) -> None:
        live = self._live
        for lane in self._rotation:
            lane.items = deque(i for i in lane.items if i in live)
        self._rotation = deque(lane for lane in self._rotation if lane.live)
        self._removed = 0

    def drain(self) -> list[T]:
        """Remove and return every item, in the order they would have been popped."""
        out: list[T] = []
        while True:
            item = self.pop()
            if item is None:
                return out
            out.append(item)

    def counts(self) -> dict[str, int]:
        """Queued items per lane (lanes with none are left out)."""
        return {name: lane.live for name, lane in self._lanes.items() if lane.live}

    def __iter__(self) -> Iterator[T]:
        live = self._live
        for lane in self._rotation:
            yield from (i for i in lane.items if i in live)


class FifoQueue(_Removable[T]):
    """Arrival order, whatever the lane."""

    policy = "fifo"

    def __init__(self) -> None:
        super().__init__()
        self._items: deque[T] = deque()
        self._counts: dict[str, int] = {}

    def put(self, item: T, weight: int = 1) -> None:
        """Queue an item last; ``weight`` has no effect on a FIFO queue."""
        self._items.append(item)
        self._live.add(item)
        self._counts[item.lane] = self._counts.get(item.lane, 0) + 1

    def pop(self) -> T | None:
        items, live = self._items, self._live
        while items:
            item = items.popleft()
            if item in live:
                live.remove(item)
                self._uncount(item.lane)
                return item
            self._removed -= 1
        return None

    def remove(self, item: T) -> bool:
        if not self._forget(item):
            return False
        self._uncount(item.lane)
        self._drop_end(self._items, item)
        if self._should_compact():
            live = self._live
            self._items = deque(i for i in self._items if i in live)
            self._removed = 0
        return True

    def _uncount(self, lane: str) -> None:
        n = self._counts[lane] - 1
        if n:
            self._counts[lane] = n
        else:
            del self._counts[lane]

    def drain(self) -> list[T]:
        out = list(self)
        self._items.clear()
        self._live.clear()
        self._counts.clear()
        self._removed = 0
        return out

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def __iter__(self) -> Iterator[T]:
        live = self._live
        return (i for i in self._items if i in live)


POLICIES: dict[str, type[FairQueue[Any]] | type[FifoQueue[Any]]] = {"fair": FairQueue, "fifo": FifoQueue}
