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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar


class _HasLane(Protocol):
    lane: str


T = TypeVar("T", bound=_HasLane)


class _Lane(Generic[T]):
    __slots__ = ("active", "credit", "items", "name", "weight")

    def __init__(self, name: str, weight: int) -> None:
        self.name = name
        self.weight = weight
        self.items: deque[T] = deque()
        self.credit = weight  # items it may still take in its current turn
        self.active = False  # in the rotation (has items); idle lanes are forgotten


class FairQueue(Generic[T]):
    """Weighted round-robin between lanes, FIFO within each."""

    policy = "fair"

    def __init__(self) -> None:
        self._lanes: dict[str, _Lane[T]] = {}
        self._rotation: deque[_Lane[T]] = deque()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def put(self, item: T, weight: int = 1) -> None:
        """Queue an item at the back of its lane.

        ``weight`` is the lane's share: the last put sets it, and it applies
        from the lane's next turn.
        """
        lane = self._lanes.get(item.lane)
        if lane is None:
            lane = self._lanes[item.lane] = _Lane(item.lane, weight)
        else:
            lane.weight = weight
        lane.items.append(item)
        self._len += 1
        if not lane.active:
            lane.active = True
            lane.credit = lane.weight
            self._rotation.append(lane)

    def pop(self) -> T | None:
        """Take the next item, or None when empty."""
        rotation = self._rotation
        if not rotation:
            return None
        lane = rotation[0]
        item = lane.items.popleft()
        self._len -= 1
        if not lane.items:
            rotation.popleft()
            lane.active = False
            del self._lanes[lane.name]
        else:
            lane.credit -= 1
            if lane.credit <= 0:
                lane.credit = lane.weight
                rotation.rotate(-1)
        return item

    def remove(self, item: T) -> bool:
        """Take a given item out (a cancelled call). False if it is not here."""
        lane = self._lanes.get(item.lane)
        if lane is None:
            return False
        try:
            lane.items.remove(item)
        except ValueError:
            return False
        self._len -= 1
        if not lane.items and lane.active:
            lane.active = False
            self._rotation.remove(lane)
            del self._lanes[lane.name]
        return True

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
        return {name: len(lane.items) for name, lane in self._lanes.items()}

    def __iter__(self) -> Iterator[T]:
        for lane in self._rotation:
            yield from lane.items


class FifoQueue(Generic[T]):
    """Arrival order, whatever the lane."""

    policy = "fifo"

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, weight: int = 1) -> None:
        """Queue an item last; ``weight`` has no effect on a FIFO queue."""
        self._items.append(item)
        self._counts[item.lane] = self._counts.get(item.lane, 0) + 1

    def pop(self) -> T | None:
        if not self._items:
            return None
        item = self._items.popleft()
        self._uncount(item.lane)
        return item

    def remove(self, item: T) -> bool:
        try:
            self._items.remove(item)
        except ValueError:
            return False
        self._uncount(item.lane)
        return True

    def _uncount(self, lane: str) -> None:
        n = self._counts[lane] - 1
        if n:
            self._counts[lane] = n
        else:
            del self._counts[lane]

    def drain(self) -> list[T]:
        out = list(self._items)
        self._items.clear()
        self._counts.clear()
        return out

    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


POLICIES: dict[str, type[FairQueue[Any]] | type[FifoQueue[Any]]] = {"fair": FairQueue, "fifo": FifoQueue}
