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

Back-pressure: the hub can leave items faster than one holder takes them in.
The hub's thread wakes often and takes Python's GIL back at every wake-up,
so a holder that shares the GIL with it can get a small share of it; with
green threads whose timeouts are shorter than their calls, the backlog then
grew without end while one worker stayed inside :meth:`HubLock.release`
and every call waited for it. So once :data:`BACKLOG` items are left, the
hub waits for the lock (up to :data:`BACKLOG_WAIT` seconds, with the GIL
released, which lets the holder catch up) and takes the backlog in itself.
The wait is bounded: if the lock stays held it leaves the item all the
same, and the guarantee above still holds. The hub waits only while the
backlog is that long, so in ordinary use it never waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._native import allocate_lock

__all__ = ["HubLock"]

#: Items left after which the hub waits for the lock before leaving more (see the module docstring).
BACKLOG = 256
#: The longest the hub waits for the lock once :data:`BACKLOG` items are left, in seconds.
BACKLOG_WAIT = 0.002

T = TypeVar("T")
Out = TypeVar("Out")


class HubLock(Generic[T, Out]):
    """A native lock plus a deque of items left by callers that would not wait.

    Args:
        take_in: Called under the lock for each item left, with a list it may
            append to (the things to do once the lock is released). Must not
            raise; if it does, the lock is released and the error propagates.
        lock: The native lock to use (tests pass a scripted one); a new one by default.
    """

    __slots__ = ("_lock", "acquire", "left", "take_in")

    def __init__(self, take_in: Callable[[T, list[Out]], None], lock: Any = None) -> None:
        self._lock = allocate_lock() if lock is None else lock  # tests pass a scripted one
        #: Wait for the lock (native threads only): the native lock's own ``acquire``,
        #: so that a worker's two acquisitions per call cost no Python call.
        self.acquire: Callable[..., bool] = self._lock.acquire
        self.left: deque[T] = deque()  # appended by the hub's thread, popped by the holder
        self.take_in = take_in

    def acquire_or_leave(self, item: T, out: list[Out]) -> bool:
        """Take the lock without waiting (True: the caller handles ``item``, then releases),
        or leave ``item`` for the holder (False).

        On False, ``out`` may have gained entries (when the second try got
        the lock and this caller took the left items in): the caller does
        them, as after any :meth:`release`. The second try waits, briefly,
        only when :data:`BACKLOG` items are left already (back-pressure).
        """
        if self._lock.acquire(False):
            return True
        self.leave(item, out)
        return False

    def leave(self, item: T, out: list[Out]) -> list[Out]:
        """The second half of :meth:`acquire_or_leave`, for a caller whose ``acquire(False)`` failed.

        Leaves ``item`` for the holder, then tries the lock a second time (see
        the module docstring). Returns ``out``, which may have gained entries,
        as for :meth:`acquire_or_leave`: the caller does them.
        """
        lock, left = self._lock, self.left
        left.append(item)
        if len(left) < BACKLOG:
            got = lock.acquire(False)
        else:  # the holder is behind: wait (GIL released) so that it can catch up
            got = lock.acquire(True, BACKLOG_WAIT)
        if got:
            self.release(out)
        return out

    def release(self, out: list[Out]) -> list[Out]:
        """Take in every item left, release, and return ``out`` (what to do after unlocking)."""
        lock, left = self._lock, self.left
        while True:
            if left:  # rarely: on every call's path, nothing was left
                self._take_in_left(out)
            lock.release()
            if not left or not lock.acquire(False):
                return out

    def _take_in_left(self, out: list[Out]) -> None:
        """Take in every item left, holding the lock; on a fault, release it and re-raise."""
        left, take_in = self.left, self.take_in
        try:
            while left:
                take_in(left.popleft(), out)
        except BaseException:
            self._lock.release()
            raise

    def locked(self) -> bool:
        return bool(self._lock.locked())
