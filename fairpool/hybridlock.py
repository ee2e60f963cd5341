"""A re-entrant lock that green threads and native threads can share.

Under ``eventlet.monkey_patch()``, ``threading.RLock()`` makes a green lock.
A native thread (a pool worker) that finds such a lock taken tries to wait
on a hub of its own, and the release that should wake it fails with
"Cannot switch to a different thread" (eventlet issues 432 and 492): the
hang seen when code running in tpool logs while green threads log too.

:class:`HybridRLock` waits the right way for each caller: a green thread
waits green (its hub keeps running other green threads), a native thread
blocks on a native lock. Ownership is handed directly from the releaser to
the next waiter, in arrival order; a green waiter is woken through
fairpool's hub channel, which any thread may use.

Thread rules: the lock's state (owner, depth, waiters) changes only under
``_mutex``, a native lock held for a few bytecodes, never while waiting.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import _hubchannel
from ._native import LockContext, allocate_lock
from ._waiters import GreenWaiter, NativeWaiter

__all__ = ["HybridRLock"]

#: The owner token of a caller while greenlet itself is being finalized (interpreter exit).
_FINALIZING = object()


def _getcurrent() -> Any:
    """The calling greenlet; at interpreter exit, when greenlet refuses, one fixed token (native path)."""
    try:
        return _hubchannel.getcurrent()
    except RuntimeError:  # "greenlet is being finalized": a handler's lock taken at exit
        return _FINALIZING


class _Waiter:
    """One thread or green thread waiting for the lock."""

    __slots__ = ("owner", "wake")

    def __init__(self, owner: Any, wake: GreenWaiter | NativeWaiter) -> None:
        self.owner = owner  # the greenlet that will own the lock
        self.wake = wake  # answered when the lock is handed to this waiter


class HybridRLock(LockContext):
    """A re-entrant lock shared by green threads and native threads.

    Same interface as ``threading.RLock``: ``acquire(blocking=True,
    timeout=-1)``, ``release()``, ``with``. A timeout is honoured for native
    callers; a green caller uses ``eventlet.Timeout`` as usual.
    """

    def __init__(self) -> None:
        self._mutex = allocate_lock()
        self._owner: Any = None  # the owning greenlet (a native thread's is its main greenlet)
        self._depth = 0
        self._waiters: deque[_Waiter] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _getcurrent()
        with self._mutex:
            if self._owner is None:
                self._owner, self._depth = me, 1
                return True
            if self._owner is me:
                self._depth += 1
                return True
            if not blocking:
                return False
            channel = _hubchannel.green_channel() if me is not _FINALIZING else None
            waiter = _Waiter(me, GreenWaiter(channel) if channel is not None else NativeWaiter())
            self._waiters.append(waiter)
        wake = waiter.wake
        try:
            if isinstance(wake, GreenWaiter):
                wake.wait()  # a timeout is an eventlet.Timeout, raised in here
                return True
            if wake.wait(timeout):
                return True
        except BaseException:
            self._give_up(waiter)  # killed or timed out while waiting
            raise
        return not self._give_up(waiter)

    def _give_up(self, waiter: _Waiter) -> bool:
        """Stop waiting. True if still waiting; False if the lock was handed over meanwhile."""
        with self._mutex:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return True
        if self._owner is waiter.owner:
            self._depth = 1
            self.release()  # it was ours: pass it on
        return False

    def release(self) -> None:
        me = _getcurrent()
        with self._mutex:
            if self._owner is not me:
                raise RuntimeError("cannot release un-acquired lock")
            self._depth -= 1
            if self._depth:
                return
            if not self._waiters:
                self._owner = None
                return
            nxt = self._waiters.popleft()
            self._owner, self._depth = nxt.owner, 1
        nxt.wake.answer(None)

    def locked(self) -> bool:
        return self._owner is not None

    def _is_owned(self) -> bool:  # used by threading.Condition
        return self._owner is _getcurrent()

    def _at_fork_reinit(self) -> None:  # logging re-initialises its locks in a forked child
        self._mutex = allocate_lock()
        self._owner, self._depth = None, 0
        self._waiters = deque()

    def __repr__(self) -> str:
        return (
            f"<fairpool.HybridRLock owner={self._owner!r} depth={self._depth} waiters={len(self._waiters)}>"
        )
