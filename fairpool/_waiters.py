"""Waiters: how each kind of caller is told that its call was answered.

One kind per caller:

* :class:`GreenWaiter`, a green thread on an eventlet hub: it switches to
  the hub until answered; the answer reaches it through the hub's channel.
* :class:`NativeWaiter`, a plain native thread: it blocks on a native lock.
* :class:`FutureWaiter`, ``Pool.submit``: the answer settles a Future.

Rules:

* ``answer(job)`` is called by whoever moved the job into DONE or CLOSED
  (see ``fairpool._job``), from any thread, after the pool's lock is
  released, once. It is idempotent anyway: a second call changes nothing.
* A waiter reads the job's outcome only after it was answered: the move
  into DONE or CLOSED set it under the lock, before ``answer``.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ._hubchannel import HubChannel, getcurrent
from ._job import Job
from ._native import allocate_lock, threading

__all__ = ["FutureWaiter", "GreenWaiter", "NativeWaiter"]


class GreenWaiter:
    """A green thread waiting on its hub.

    ``answered`` is set by the answering thread; ``waiting`` only by the
    green thread itself, and read by the hub (both in the hub's thread), so
    the hub resumes the green thread only while it is inside :meth:`wait`.
    An answer that comes when it is not (before it starts waiting, or after
    it gave up) is never switched to: it cannot wake an unrelated wait.
    """

    __slots__ = ("answered", "channel", "greenlet", "waiting")

    def __init__(self, channel: HubChannel) -> None:
        self.greenlet = getcurrent()
        self.channel = channel
        self.answered = False
        self.waiting = False

    def answer(self, job: Job | None) -> None:
        if not self.answered:
            self.answered = True
            self.channel.deliver(self)

    def wait(self) -> None:
        """Switch to the hub until answered. Raises what is thrown in (a Timeout, GreenletExit)."""
        if self.answered:
            return
        switch = self.channel.hub.switch
        self.waiting = True
        try:
            while not self.answered:
                switch()
        finally:
            self.waiting = False

    def resume(self) -> None:
        """Called by the hub's drain: switch to the green thread if it still waits."""
        if self.waiting:
            self.greenlet.switch()

    def reset_after_fork(self) -> None:
        pass


class NativeWaiter:
    """A native thread blocked on a lock of its own."""

    __slots__ = ("_lock", "answered")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self.answered = False

    def answer(self, job: Job | None) -> None:
        if not self.answered:
            self.answered = True
            self._lock.release()

    def wait(self, timeout: float = -1) -> bool:
        """Block until answered (True) or ``timeout`` seconds pass (False)."""
        return bool(self._lock.acquire(True, timeout))

    def reset_after_fork(self) -> None:
        pass


class FutureWaiter:
    """A :class:`concurrent.futures.Future`, settled from the answering thread."""

    __slots__ = ("answered", "future")

    def __init__(self, future: Future[Any]) -> None:
        # Settled from a worker thread: give it a native condition even if
        # eventlet.monkey_patch() made threading green.
        future._condition = threading.Condition()
        self.future: Future[Any] | None = future
        self.answered = False

    def start(self) -> bool:
        """A worker is about to run the call: False if the future was cancelled first."""
        future = self.future
        return future is not None and future.set_running_or_notify_cancel()

    def answer(self, job: Job | None) -> None:
        future = self.future
        if self.answered or future is None or job is None:
            return
        self.answered = True
        self.future = None
        ok, result = job.ok, job.result
        job.result = None
        try:
            if ok:
                future.set_result(result)
            else:
                future.set_exception(result)
        except Exception:  # noqa: BLE001 - InvalidStateError: settled meanwhile (cancelled)
            pass

    def reset_after_fork(self) -> None:
        """The parent's threads are gone: a lock one of them held would never be released."""
        if self.future is not None:
            self.future._condition = threading.Condition()
