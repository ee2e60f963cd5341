"""A lock that the hub's thread never waits for: try it, or leave the item for the holder.

Busy native threads (callers and workers) can pass an ordinary lock among
themselves for seconds while the hub's thread, and with it every green
thread, waits for its turn. So the hub's thread never blocks on the pool's
lock. It calls :meth:`HubLock.acquire_or_leave` with the job it wants the pool
to look at (a new call, or a call its caller gave up on): if the lock is
free it takes it, otherwise it leaves the job in ``left`` and goes on.
Whoever holds the lock takes in everything left before it releases
(:meth:`HubLock.release`).

Why nothing left is forgotten: the hub appends *before* trying the lock a
second time, and the holder looks at ``left`` again *after* releasing. If
the holder released between the hub's two tries, the hub's second try gets
the lock and takes the job in itself; otherwise the holder's look after
releasing sees the job and takes the lock back for it. Either way the job is
taken in by the next release, never by a later, unrelated one.

Cost: O(1) per item left and per item taken in, whatever the backlog.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ._native import allocate_lock

__all__ = ["HubLock"]

T = TypeVar("T")
Out = TypeVar("Out")


class HubLock(Generic[T, Out]):
    """A native lock plus a deque of items left by callers that would not wait.

    Args:
        take_in: Called under the lock for each item left, with a list it may
            append to (the things to do once the lock is released). Must not
            raise; if it does, the lock is released and the error propagates.
    """

    __slots__ = ("_lock", "left", "take_in")

    def __init__(self, take_in: Callable[[T, list[Out]], None]) -> None:
        self._lock = allocate_lock()
        self.left: deque[T] = deque()  # appended by the hub's thread, popped by the holder
        self.take_in = take_in

    def acquire(self) -> None:
        """Wait for the lock (native threads only)."""
        self._lock.acquire()

    def acquire_or_leave(self, item: T, out: list[Out]) -> bool:
        """Take the lock without waiting (True: the caller handles ``item``, then releases),
        or leave ``item`` for the holder (False).

        On False, ``out`` may have gained entries (when the second try got
        the lock and this caller took the left items in): the caller does
        them, as after any :meth:`release`.
        """
        lock = self._lock
        if lock.acquire(False):
            return True
        self.left.append(item)
        if lock.acquire(False):
            self.release(out)
        return False

    def release(self, out: list[Out]) -> list[Out]:
        """Take in every item left, release, and return ``out`` (what to do after unlocking)."""
        lock, left, take_in = self._lock, self.left, self.take_in
        while True:
            try:
                while left:
                    take_in(left.popleft(), out)
            except BaseException:
                lock.release()
                raise
            lock.release()
            if not left or not lock.acquire(False):
                return out

    def locked(self) -> bool:
        return bool(self._lock.locked())
