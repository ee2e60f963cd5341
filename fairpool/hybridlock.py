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

Thread rules: the lock's state (owner, depth, the queue of waiters) changes
only under ``_mutex``, a native lock held for a few attribute loads and
stores, never while waiting, never across a call (see ``__slots__`` below).

The hand-over and giving up: ``release()`` picks the next waiter, makes it
the owner and only then wakes it. A waiter that stops waiting (its timeout
passed, or an exception was thrown into it) takes itself out of the queue
under ``_mutex``; if it is no longer there, the lock was handed to it
meanwhile and it holds it. A timed-out waiter then keeps it and reports
success (it does hold the lock); an interrupted one passes it on before the
exception goes up. Either way ``acquire`` returns True exactly when the
caller holds the lock, and the lock is never left owned by nobody.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from . import _hubchannel
from ._native import TIMEOUT_MAX, LockContext, allocate_lock, local
from ._waiters import GreenWaiter, NativeWaiter

__all__ = ["HybridCondition", "HybridRLock"]

T = TypeVar("T")

#: The owner token of a caller while greenlet itself is being finalized (interpreter exit).
_FINALIZING = object()

_getcurrent_raw = _hubchannel.getcurrent


def _getcurrent() -> Any:
    """The calling greenlet; at interpreter exit, when greenlet refuses, one fixed token (native path)."""
    try:
        return _getcurrent_raw()
    except RuntimeError:  # "greenlet is being finalized": a handler's lock taken at exit
        return _FINALIZING


def _checked_timeout(blocking: bool, timeout: Any) -> float:
    """``acquire``'s timeout if it is one ``threading.RLock`` accepts, else its error."""
    if not blocking:
        raise ValueError(f"can't specify a timeout for a non-blocking call (timeout={timeout!r})")
    if not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if math.isnan(timeout):
        raise ValueError(f"timeout must be a number of seconds, not {timeout!r}")
    if timeout < 0 and timeout != -1:
        raise ValueError(f"timeout must be -1 (wait forever) or a non-negative number, not {timeout!r}")
    if timeout > TIMEOUT_MAX:
        raise OverflowError(f"timeout value is too large: {timeout!r} (the most is {TIMEOUT_MAX})")
    return float(timeout)


class _NativeWait(local):
    """Per native thread: the lock it is blocked on natively, and its waiter there, if any."""

    lock: HybridRLock | None = None
    waiter: _Waiter | None = None


_native_wait = _NativeWait()


class _Waiter:
    """One thread or green thread waiting for the lock: a link of the lock's queue."""

    __slots__ = ("next", "owner", "prev", "queued", "wake")

    def __init__(self, owner: Any, wake: GreenWaiter | NativeWaiter) -> None:
        self.owner = owner  # the greenlet that will own the lock
        self.wake = wake  # answered when the lock is handed to this waiter
        self.prev: _Waiter | None = None
        self.next: _Waiter | None = None
        self.queued = False  # in the lock's queue (under its _mutex)


class HybridRLock(LockContext):
    """A re-entrant lock shared by green threads and native threads.

    A full ``threading.RLock``: ``acquire(blocking=True, timeout=-1)``,
    ``release()``, ``with``, ``locked()``, and what ``threading.Condition``
    uses (``_is_owned``, ``_release_save``, ``_acquire_restore``), so
    ``threading.Condition(HybridRLock())`` works, for green and native
    threads alike. The owner is the green thread (or, for a native thread,
    the thread): each green thread is an owner of its own. A timeout is
    honoured in both worlds; a green caller may also use ``eventlet.Timeout``.
    CPython's own lock tests (``test.lock_tests``) are run against it.
    """

    # The waiters are a doubly linked queue of _Waiter, so that every section under _mutex is
    # attribute loads and stores only: no call, no loop, no allocation, nothing freed there.
    # Python runs a signal handler only at a call or a loop, the collector (and so finalizers)
    # only at an allocation: a handler or finalizer that logs (and so takes this lock) never
    # finds _mutex held by its own thread.
    __slots__ = (
        "__weakref__",
        "_depth",
        "_first",
        "_last",
        "_mutex",
        "_owner",
        "_queued",
        "_unwoken",
        "_unwoken_by",
    )

    def __init__(self) -> None:
        self._mutex = allocate_lock()
        self._owner: Any = None  # the owning greenlet (a native thread's is its main greenlet)
        self._depth = 0
        self._first: _Waiter | None = None  # the queue: handed the lock in this order
        self._last: _Waiter | None = None
        self._queued = 0
        # The waiter last handed the lock, until it wakes, and who handed it (see _wake_own_handover).
        self._unwoken: _Waiter | None = None
        self._unwoken_by: Any = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, or one more level of it if the caller holds it already.

        Args:
            blocking: Wait for the lock if another thread holds it (False: return at once).
            timeout: The most seconds to wait, -1 for no limit (only with ``blocking``).

        Returns:
            True if the caller now holds the lock; False if it did not get it.

        Raises:
            ValueError: A timeout with ``blocking=False``, or a negative timeout other than -1.
            OverflowError: A timeout above ``threading.TIMEOUT_MAX``.
            TypeError: A timeout that is not a number.
        """
        if timeout != -1:
            timeout = _checked_timeout(blocking, timeout)
        try:
            me = _getcurrent_raw()
        except RuntimeError:  # "greenlet is being finalized": a handler's lock taken at exit
            me = _FINALIZING
        with self._mutex:
            if self._owner is None:
                self._depth = 1
                self._owner = me
                return True
            if self._owner is me:
                self._depth += 1
                return True
        if not blocking or timeout == 0:
            return False
        return self._acquire_waiting(me, timeout)

    def _acquire_waiting(self, me: Any, timeout: float) -> bool:
        """The lock is taken by another: queue up (or take it, if freed meanwhile) and wait."""
        self._wake_own_handover(me)
        channel = _hubchannel.green_channel() if me is not _FINALIZING else None
        if channel is not None:
            return self._queue_and_wait(_Waiter(me, GreenWaiter(channel)), timeout)
        outer = _native_wait.waiter
        if outer is not None and outer.queued and _native_wait.lock is self:
            return self._acquire_within_own_wait(outer, timeout)
        # Said before the waiter is queued and until it is done: a signal handler run in between
        # finds it (see _acquire_within_own_wait).
        waiter = _Waiter(me, NativeWaiter())
        was_lock = _native_wait.lock
        _native_wait.lock, _native_wait.waiter = self, waiter
        try:
            return self._queue_and_wait(waiter, timeout)
        finally:
            _native_wait.lock, _native_wait.waiter = was_lock, outer

    def _queue_and_wait(self, waiter: _Waiter, timeout: float) -> bool:
        me = waiter.owner
        with self._mutex:
            if self._owner is None:  # freed meanwhile (the queue is empty whenever it is free)
                self._depth = 1
                self._owner = me
                queued = False
            elif self._owner is me:  # handed to this thread meanwhile (a signal handler's wait)
                self._depth += 1
                queued = False
            else:
                last = self._last
                waiter.prev = last
                if last is None:
                    self._first = waiter
                else:
                    last.next = waiter
                self._last = waiter
                waiter.queued = True
                self._queued += 1
                queued = True
        if queued:
            return self._wait(waiter, timeout)
        if isinstance(waiter.wake, GreenWaiter):
            waiter.wake.give_up()
        return True

    def _wake_own_handover(self, me: Any) -> None:
        """Wake the waiter this caller handed the lock to, if its ``release()`` has not yet.

        ``release()`` wakes the next owner after letting go of ``_mutex``. A
        signal handler run in between, in the releasing thread or green thread,
        that waits for the lock would wait for ever: the new owner is woken
        only when the handler returns. So a caller about to wait wakes it
        first. Its own thread is the only one that answers that waiter (the
        releaser, or this handler, interrupting it): a second answer changes nothing.
        """
        pending = self._unwoken
        if pending is not None and self._unwoken_by is me:
            pending.wake.answer(None)

    def _acquire_within_own_wait(self, outer: _Waiter, timeout: float) -> bool:
        """Take the lock in a signal handler run while its own thread is queued for it natively.

        ``threading.RLock`` lets such a handler (one that logs, say) wait for
        the lock, take it and let go. Queued behind its own thread's waiter,
        it would wait for ever: the lock goes to that waiter first, which
        cannot run until the handler returns. It waits for that hand-over
        instead (the lock then belongs to this thread), takes one more level,
        and leaves the wake-up in place for the wait it interrupted. The
        waiter cannot give up meanwhile: its thread is running this handler.
        """
        wake = outer.wake
        assert isinstance(wake, NativeWaiter)
        if not wake.wait(timeout):
            return False
        wake._lock.release()  # the interrupted wait takes it when the handler returns
        with self._mutex:
            self._depth += 1  # handed to ``outer``, whose owner is this thread
        return True

    def _wait(self, waiter: _Waiter, timeout: float) -> bool:
        """Wait until the lock is handed to ``waiter`` (True) or ``timeout`` passes (False)."""
        wake = waiter.wake
        try:
            if isinstance(wake, NativeWaiter):
                if wake.wait(timeout):
                    return self._woken(waiter)
            elif timeout < 0:
                wake.wait()  # an eventlet.Timeout or kill() is raised in here
                return self._woken(waiter)
            else:
                from eventlet.timeout import Timeout

                timer = Timeout(timeout)  # our own: only this one instance means "timed out"
                try:
                    wake.wait()
                    return self._woken(waiter)
                except Timeout as exc:
                    if exc is not timer:
                        raise
                finally:
                    timer.cancel()
        except BaseException:
            if self._give_up(waiter):  # handed over meanwhile: pass it on, then let it go up
                self.release()
            raise
        return self._give_up(waiter)  # timed out; if it was handed over meanwhile, we hold it

    def _woken(self, waiter: _Waiter) -> bool:
        """The lock was handed to ``waiter``, now awake: forget it as the one to wake. True."""
        if self._unwoken is waiter:  # only the owner (this caller) writes it now; out of _mutex, as
            self._unwoken = self._unwoken_by = None  # this may free the last releaser's greenlet
        return True

    def _give_up(self, waiter: _Waiter) -> bool:
        """Stop waiting. False if it was still queued; True if the lock was handed to it meanwhile."""
        with self._mutex:
            handed = not waiter.queued  # release() took it out: it owns the lock, at depth 1
            if not handed:
                prev, after = waiter.prev, waiter.next
                if prev is None:
                    self._first = after
                else:
                    prev.next = after
                if after is None:
                    self._last = prev
                else:
                    after.prev = prev
                waiter.queued = False
                self._queued -= 1
        return handed and self._woken(waiter)

    def release(self) -> None:
        """Let go of one level of the lock; the last level hands it to the next waiter.

        Raises:
            RuntimeError: The caller does not hold the lock.
        """
        try:
            me = _getcurrent_raw()
        except RuntimeError:
            me = _FINALIZING
        with self._mutex:
            if self._owner is me:
                if self._depth > 1:
                    self._depth -= 1
                    return
                nxt = self._first
                if nxt is None:
                    self._owner = None
                    self._depth = 0
                    return
                after = nxt.next  # hand it over: the first waiter leaves the queue as its owner
                self._first = after
                if after is None:
                    self._last = None
                else:
                    after.prev = None
                nxt.queued = False
                self._queued -= 1
                self._depth = 1
                self._owner = nxt.owner
                self._unwoken = nxt  # woken just below, out of _mutex: see _wake_own_handover
                self._unwoken_by = me
            else:
                nxt = None
        if nxt is None:
            raise RuntimeError("cannot release un-acquired lock")
        nxt.wake.answer(None)

    def locked(self) -> bool:
        """Whether any thread or green thread holds the lock."""
        return self._owner is not None

    # -- what threading.Condition uses --------------------------------------
    def _is_owned(self) -> bool:
        return self._owner is _getcurrent()

    def _recursion_count(self) -> int:
        """How many levels of the lock the caller holds (0 if it does not hold it)."""
        return self._depth if self._owner is _getcurrent() else 0

    def _release_save(self) -> tuple[int, Any]:
        """Let go of every level (``Condition.wait``); the state to give ``_acquire_restore``."""
        me = _getcurrent()
        with self._mutex:
            owned = self._owner is me
            if owned:
                depth = self._depth
                self._depth = 1  # the release below lets go of the last level
        if not owned:
            raise RuntimeError("cannot release un-acquired lock")
        self.release()
        return depth, me

    def _acquire_restore(self, state: tuple[int, Any]) -> None:
        """Take the lock back, waiting green or natively, with the levels ``_release_save`` saved."""
        depth, owner = state
        self.acquire()
        with self._mutex:
            self._depth = depth
            self._owner = owner

    def _at_fork_reinit(self) -> None:  # logging re-initialises its locks in a forked child
        self._mutex = allocate_lock()
        self._owner, self._depth = None, 0
        self._first = self._last = None
        self._queued = 0
        self._unwoken = self._unwoken_by = None

    def __repr__(self) -> str:
        owner = self._owner
        cls = type(self)
        name = "fairpool.HybridRLock" if cls is HybridRLock else f"{cls.__module__}.{cls.__qualname__}"
        return (
            f"<{'locked' if owner is not None else 'unlocked'} {name} object owner={owner!r} "
            f"count={self._depth} waiters={self._queued} at {id(self):#x}>"
        )


class HybridCondition:
    """A condition variable green threads and native threads can share, under ``eventlet.monkey_patch()`` too.

    ``threading.Condition`` makes a lock per waiter; once threading is patched
    that lock is green, and a native thread can neither wait on it nor wake a
    green thread through it. Here each waiter waits the way its caller does:
    a green thread green (its hub keeps running), a native thread on a native
    lock, and :meth:`notify` wakes either kind from either kind. Otherwise it
    is a ``threading.Condition``: same methods, same errors.

    Thread rules: the queue of waiters changes only under ``_mutex``, a native
    lock held for a few operations, never while waiting.

    Args:
        lock: The lock it goes with; a new :class:`HybridRLock` if None. Any
            lock a green and a native thread can share (a ``HybridRLock``);
            another lock works as with ``threading.Condition``.
    """

    def __init__(self, lock: Any = None) -> None:
        self._lock = HybridRLock() if lock is None else lock
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._mutex = allocate_lock()
        self._waiters: deque[GreenWaiter | NativeWaiter] = deque()

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<fairpool.HybridCondition({self._lock!r}, {len(self._waiters)} waiting)>"

    def _is_owned(self) -> bool:
        owned = getattr(self._lock, "_is_owned", None)
        if owned is not None:
            return bool(owned())
        if self._lock.acquire(False):  # a plain lock: free means the caller does not hold it
            self._lock.release()
            return False
        return True

    def _release_save(self) -> Any:
        save = getattr(self._lock, "_release_save", None)
        if save is not None:
            return save()
        self._lock.release()
        return None

    def _acquire_restore(self, state: Any) -> None:
        restore = getattr(self._lock, "_acquire_restore", None)
        if restore is not None:
            restore(state)
        else:
            self._lock.acquire()

    def wait(self, timeout: float | None = None) -> bool:
        """Let go of the lock, wait for a notify or ``timeout`` seconds, take the lock back.

        Args:
            timeout: The most seconds to wait; None: no limit.

        Returns:
            True if notified, False if the timeout passed first.

        Raises:
            RuntimeError: The caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        channel = _hubchannel.green_channel() if _getcurrent() is not _FINALIZING else None
        waiter: GreenWaiter | NativeWaiter = GreenWaiter(channel) if channel is not None else NativeWaiter()
        with self._mutex:
            self._waiters.append(waiter)  # before the lock is let go: no notify can pass it by
        try:
            state = self._release_save()
        except BaseException:
            self._forget(waiter)
            raise
        notified = False
        try:
            notified = _wait_for_notify(waiter, timeout)
        finally:
            if not notified:
                notified = self._forget(waiter)
            self._acquire_restore(state)
        return notified

    def _forget(self, waiter: GreenWaiter | NativeWaiter) -> bool:
        """Take ``waiter`` out of the queue; True if a notify took it out first (it was notified)."""
        with self._mutex:
            try:
                self._waiters.remove(waiter)
                notified = False
            except ValueError:
                notified = True
        if isinstance(waiter, GreenWaiter):
            waiter.give_up()  # uncounts a waiter that never waited (no-op once it did)
        return notified

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` is true or ``timeout`` seconds pass; its last result.

        Args:
            predicate: Called with the lock held, before each wait and after it.
            timeout: The most seconds to wait in all; None: no limit.

        Raises:
            RuntimeError: The caller does not hold the lock.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters, green or native, in the order they began to wait.

        Raises:
            RuntimeError: The caller does not hold the lock.
        """
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        woken = []
        with self._mutex:
            while n > 0 and self._waiters:
                woken.append(self._waiters.popleft())
                n -= 1
        for waiter in woken:
            waiter.answer(None)

    def notify_all(self) -> None:
        """Wake every waiter.

        Raises:
            RuntimeError: The caller does not hold the lock.
        """
        self.notify(len(self._waiters))

    def notifyAll(self) -> None:  # noqa: N802 - threading.Condition's old name
        """Deprecated alias of :meth:`notify_all` (as ``threading.Condition`` has)."""
        self.notify_all()


def _wait_for_notify(waiter: GreenWaiter | NativeWaiter, timeout: float | None) -> bool:
    """Wait green or natively until ``waiter`` is answered (True) or ``timeout`` passes (False)."""
    if isinstance(waiter, NativeWaiter):
        if timeout is None:
            return waiter.wait()
        return waiter.wait(min(max(timeout, 0.0), TIMEOUT_MAX))
    if timeout is None:
        waiter.wait()  # an eventlet.Timeout or kill() is raised in here
        return True
    if timeout <= 0:
        waiter.give_up()
        return waiter.answered
    from eventlet.timeout import Timeout

    timer = Timeout(timeout)  # our own: only this one instance means "timed out"
    try:
        waiter.wait()
        return True
    except Timeout as exc:
        if exc is not timer:
            raise
        return False
    finally:
        timer.cancel()
