"""Waiters: how each kind of caller is told that its call was answered.

One kind per caller:

* :class:`GreenWaiter`, a green thread on an eventlet hub: it switches to
  the hub until answered; the answer reaches it through the hub's channel.
* :class:`NativeWaiter`, a plain native thread: it blocks on a native lock.
* :class:`PoolFuture`, ``Pool.submit``: the answer settles the Future itself.
* :class:`AsyncioWaiter`, ``await Pool.run_sync()``: the answer is handed to
  the task's event loop, which resumes the task.

Rules:

* ``answer(job)`` is called by whoever moved the job into DONE or CLOSED
  (see ``fairpool._job``), from any thread, after the pool's lock is
  released, once. It is idempotent anyway: a second call changes nothing.
* A waiter reads the job's outcome only after it was answered: the move
  into DONE or CLOSED set it under the lock, before ``answer``.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED as _CANCELLED
from concurrent.futures._base import CANCELLED_AND_NOTIFIED as _CANCELLED_AND_NOTIFIED
from concurrent.futures._base import FINISHED as _FINISHED
from concurrent.futures._base import PENDING as _PENDING
from concurrent.futures._base import RUNNING as _RUNNING
from contextvars import ContextVar
from typing import Any, TypeVar

from ._hubchannel import HubChannel, current_greenlet, green_channel
from ._job import Job
from ._native import TIMEOUT_MAX, Condition, Event, RLock, allocate_lock, threads_patched, worker_local
from ._workers import help_with, stop_idling
from .errors import CancelledByShutdown

__all__ = ["AsyncioWaiter", "GreenWaiter", "NativeWaiter", "PoolFuture", "settle_inline"]

T = TypeVar("T")

_WAITING = (_PENDING, _RUNNING)  # a Future's states in which result() would wait
_futures_logger = logging.getLogger("concurrent.futures")  # where Future logs a failing callback
_SETTLED = (_CANCELLED, _CANCELLED_AND_NOTIFIED, _FINISHED)  # done(): a callback added now runs at once


class GreenWaiter:
    """A green thread waiting on its hub.

    ``answered`` is set by the answering thread; ``waiting`` only by the
    green thread itself, and read by the hub (both in the hub's thread), so
    the hub resumes the green thread only while it is inside :meth:`wait`.
    An answer that comes when it is not (before it starts waiting, or after
    it gave up) is never switched to: it cannot wake an unrelated wait.
    """

    __slots__ = ("answered", "channel", "greenlet", "waiting")
    waiting: bool | None  # False until wait(), True inside it, None once done
    needs_start = False  # only a future can be cancelled in a way the worker must check (start())

    def __init__(self, channel: HubChannel) -> None:
        self.greenlet = current_greenlet()
        self.channel = channel
        self.answered = False
        self.waiting = False
        # Counted from now, not from wait(): killall() closes only a channel nobody counts on.
        # Uncounted once: at the end of wait() (waiting becomes None), or by give_up().
        channel.waiting += 1

    def answer(self, job: Job | None) -> None:
        if not self.answered:
            self.answered = True
            self.channel.deliver(self)

    def wait(self) -> None:
        """Switch to the hub until answered. Raises what is thrown in (a Timeout, GreenletExit)."""
        channel = self.channel
        switch = channel.hub.switch
        self.waiting = True
        try:
            while not self.answered:
                switch()
        finally:
            self.waiting = None  # done: never resumed again, never uncounted again
            channel.waiting -= 1

    def give_up(self) -> None:
        """The caller left before it waited (interrupted while handing its call in)."""
        if self.waiting is False:
            self.waiting = None
            self.channel.waiting -= 1

    def reset_after_fork(self) -> None:
        pass


class NativeWaiter:
    """A native thread blocked on a lock of its own."""

    __slots__ = ("_lock", "answered")
    needs_start = False

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


class _Waiters(list[Any]):
    """A future's list of ``concurrent.futures.wait()``/``as_completed()`` waiters.

    Those waiters wake on a ``threading.Event`` made where ``wait()`` was
    called, and guard what they collect with a ``threading.Lock``: under
    ``eventlet.monkey_patch()`` green ones, which the native worker that
    settles the future can neither set nor wait for (a native thread that
    finds a green lock taken parks in a hub of its own that nothing runs). A
    waiter appended here gets a native Event and a native lock instead, which
    any thread can use (a green caller of ``wait()`` then blocks its hub while
    it waits, as documented). It is appended under every future's lock
    (``concurrent.futures`` installs it so), before anything uses it.
    """

    def append(self, waiter: Any) -> None:
        future = _deferred_owner(self)
        if future is not None:  # its settling waits for this very context: the wait settles it first
            event = waiter.event
            if not isinstance(event, _SettlingEvent):
                event = waiter.event = _SettlingEvent()
            event.futures.append(future)
        elif threads_patched() and not isinstance(waiter.event, _NativeEvent):
            waiter.event = _NativeEvent()
        if threads_patched() and type(getattr(waiter, "lock", None)) not in (_NativeLock, type(None)):
            waiter.lock = allocate_lock()  # as_completed()'s and wait(ALL_COMPLETED)'s
        super().append(waiter)


_NativeEvent = Event
_NativeLock = type(allocate_lock())


class _SettlingEvent(_NativeEvent):
    """The Event of a ``concurrent.futures.wait()``/``as_completed()`` waiter that watches a future
    whose inline settling (a pool of size 0) was deferred in the waiting context itself.

    Waiting on it settles those futures first: the outermost settling, which would
    settle them, cannot return while this wait blocks. ``wait()`` is called after
    ``concurrent.futures`` released the futures' locks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.futures: list[PoolFuture[Any]] = []

    def wait(self, timeout: float | None = None) -> bool:
        futures, self.futures = self.futures, []
        for future in futures:
            future.settle_deferred()  # once: a no-op for one settled already
        return bool(super().wait(timeout))


def _deferred_owner(waiters: list[Any]) -> PoolFuture[Any] | None:
    """The future whose ``_waiters`` is ``waiters``, if this context deferred its settling."""
    steps = _settling.get()
    if steps is None or not steps.pending:
        return None
    for step in steps.pending:
        owner = getattr(step, "__self__", None)
        if (
            isinstance(owner, PoolFuture)
            and owner._waiters is waiters
            and owner._fairpool_deferred is not None
        ):
            return owner
    return None


class PoolFuture(Future[T]):
    """The :class:`concurrent.futures.Future` of a ``Pool.submit`` call, and that call's waiter.

    ``needs_start``: a worker calls :meth:`start` before running the call.

    * Waiting on it from a green thread (``result()``, ``exception()``) waits
      green: the hub runs other green threads meanwhile.
    * ``cancel()`` succeeds while the call is queued, and takes it out: it never runs.
    * It is settled from the answering thread, after the pool's lock is
      released; its done-callbacks run there, after every waiter was released
      (``result()`` and ``exception()``, native or green,
      ``concurrent.futures.wait()``, ``asyncio.wrap_future``): a slow or
      blocking callback delays none of them (:meth:`_invoke_callbacks`).
    """

    needs_start = True

    def __init__(self) -> None:
        # Future.__init__'s fields, made here so that its lock is native even if
        # eventlet.monkey_patch() made threading green (and is made once). Its
        # Condition is made on first use (``_condition``): fairpool's own paths
        # hold the lock under it directly, and a call's future rarely needs more.
        self._fairpool_mutex = RLock()
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = _Waiters()
        self._done_callbacks: list[Any] = []
        self._fairpool_job: Job | None = None  # set by the pool; dropped once answered
        self._fairpool_cancel: Any = None  # the pool's cancel(job), while it may be needed
        self._fairpool_answered = False
        # Held until the future is settled: a native thread waits on it, which is
        # cheaper than Future's Condition (whose waiters list is still kept for
        # concurrent.futures.wait and as_completed).
        self._fairpool_done = allocate_lock()
        self._fairpool_done.acquire()
        self._fairpool_open = False  # _fairpool_done was released (under the mutex)
        self._fairpool_deferred: tuple[bool, Any] | None = None  # an inline outcome (settle_inline)
        self._fairpool_inline = False  # its call ran inline (a pool of size 0): see add_done_callback
        self._fairpool_green: list[GreenWaiter] = []  # green result()/exception() waits (under the mutex)

    @property
    def _condition(self) -> Condition:  # type: ignore[override]  # read-only: the mutex is fixed
        """Future's Condition, over the future's mutex: made the first time Future's own
        methods (``done()``, ``cancel()``, ``concurrent.futures.wait()``...) ask for it."""
        try:
            return self.__dict__["_fairpool_condition"]  # type: ignore[no-any-return]
        except KeyError:  # one Condition even if two threads ask at once (setdefault is atomic)
            return self.__dict__.setdefault("_fairpool_condition", Condition(self._fairpool_mutex))  # type: ignore[no-any-return]

    # -- the waiter's side ---------------------------------------------------
    def start(self) -> bool:
        """A worker is about to run the call: False if the future was cancelled first."""
        with self._fairpool_mutex:
            state = self._state
            if state == _PENDING:  # set_running_or_notify_cancel's common case, inline
                self._state = _RUNNING
                return True
            if state != _CANCELLED:
                return False  # cancel() told the waiters already, or a shutdown settled it
            return bool(self.set_running_or_notify_cancel())

    def answer(self, job: Job | None) -> None:
        if self._fairpool_answered or job is None:
            return
        self._fairpool_answered = True
        self._fairpool_job = self._fairpool_cancel = None
        ok, result = job.ok, job.result
        job.result = None
        if not ok and isinstance(result, CancelledByShutdown):
            self.cancel()
        else:
            self._settle(ok, result)

    def _settle(self, ok: bool, value: Any) -> None:
        """``set_result(value)`` (``ok``) or ``set_exception(value)``, then :meth:`_invoke_callbacks`,
        under one hold of the future's mutex: the worker's path for every call. Nothing if the
        future was cancelled meanwhile (it says so already)."""
        with self._fairpool_mutex:
            if self._state in _SETTLED:
                return
            self._finish_locked(ok, value)
            green, callbacks, opening = self._take_waiters_locked()
        self._release_waiters(green, callbacks, opening)

    def _finish_locked(self, ok: bool, value: Any) -> None:
        """Under the mutex, on a future not settled yet: its outcome, and Future's waiters told."""
        if ok:
            self._result = value
        else:
            self._exception = value
        self._state = _FINISHED
        for waiter in self._waiters:  # concurrent.futures.wait() and as_completed()
            if ok:
                waiter.add_result(self)
            else:
                waiter.add_exception(self)
        condition = self.__dict__.get("_fairpool_condition")
        if condition is not None and condition._waiters:  # a Future.result() of the base class waits
            condition.notify_all()

    def reset_after_fork(self) -> None:
        """The parent's threads are gone: a lock one of them held would never be released."""
        self._fairpool_mutex = RLock()
        self.__dict__.pop("_fairpool_condition", None)
        if self._fairpool_open:
            self._fairpool_done = allocate_lock()  # a waiter of the parent's may have held it

    def answer_in_child(self, error: BaseException) -> None:
        """In a forked child: another thread of the parent was settling this future when the
        process forked, and is gone here. Settle it with ``error`` if it was not settled yet;
        if it was, let its waiters through (its callbacks run here if the parent's had not)."""
        self.reset_after_fork()  # its lock may be held by a thread gone in the child
        self._fairpool_answered = True
        self._fairpool_job = self._fairpool_cancel = None
        with self._fairpool_mutex:
            if self._state in _WAITING:
                self._finish_locked(False, error)
            elif self._fairpool_open:
                return  # settled, waiters released: the parent's thread was done with it
            green, callbacks, opening = self._take_waiters_locked()
        self._release_waiters(green, callbacks, opening)

    def settle_deferred(self) -> None:
        """Settle the future with the outcome ``settle_inline`` deferred (once; then nothing)."""
        deferred = self._fairpool_deferred
        if deferred is None:
            return
        self._fairpool_deferred = None
        ok, value = deferred
        deferred = None
        if ok:
            self.set_result(value)
        else:
            self.set_exception(value)

    def _deferred_here(self) -> bool:
        """Whether this context's settling in progress holds this future's settling."""
        steps = _settling.get()
        return steps is not None and any(getattr(step, "__self__", None) is self for step in steps.pending)

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """As Future's: on a future already done, ``fn`` runs at once, in this thread.

        Except where a pool of size 0 nests without bound: a chain whose callbacks
        each submit the next step to such a pool and add the next callback (its
        future is done already: settled inline) nests each callback in the last.
        On a future settled inline, or inside an inline settling in progress in
        this context, past :data:`MAX_NESTED` such callbacks and settlings one
        inside the other, the next runs once the outermost returns, so the chain
        runs as a loop, not as a recursion. Elsewhere (a future a worker settled,
        outside any inline settling) ``fn`` runs at once, at any depth, as
        ``concurrent.futures`` runs it.
        """
        with self._fairpool_mutex:
            if self._state not in _SETTLED:
                self._done_callbacks.append(fn)
                return
        if self._fairpool_inline or _settling.get() is not None:
            _one_at_a_time(functools.partial(_call_done_callback, fn, self))
        else:
            _call_done_callback(fn, self)

    def _invoke_callbacks(self) -> None:
        """The future was just settled (Future's set_result, set_exception, cancel): release
        every waiter, then run the done-callbacks, each once, in this thread.

        Waiters first: native and green ``result()``/``exception()`` waits,
        ``concurrent.futures.wait()`` on a cancelled future, and
        ``asyncio.wrap_future``'s hand-over to its loop (a done-callback of
        asyncio's that only schedules, run ahead of the others). Then the other
        callbacks in the order they were added; one that raises an Exception is
        logged as ``concurrent.futures`` logs it, and a BaseException is raised
        only after the rest ran.
        """
        with self._fairpool_mutex:
            if self._state == _CANCELLED:  # tell concurrent.futures.wait() and as_completed() now
                self.set_running_or_notify_cancel()
            green, callbacks, opening = self._take_waiters_locked()
        self._release_waiters(green, callbacks, opening)

    def _take_waiters_locked(self) -> tuple[list[GreenWaiter], list[Any], bool]:
        """Under the future's mutex, once settled: the green waits to answer, the callbacks to run,
        and whether to open the native waiters' lock (once)."""
        green = self._fairpool_green
        if green:
            self._fairpool_green = []
        callbacks = list(self._done_callbacks) if self._done_callbacks else []
        opening = not self._fairpool_open
        self._fairpool_open = True
        return green, callbacks, opening

    def _release_waiters(self, green: list[GreenWaiter], callbacks: list[Any], opening: bool) -> None:
        """Release the waiters, then run the done-callbacks (see :meth:`_invoke_callbacks`)."""
        if opening:
            self._fairpool_done.release()
        for waiter in green:
            waiter.answer(None)
        if not callbacks:
            return
        if worker_local.worker is not None:
            stop_idling()  # a worker runs them: not idle meanwhile
        wakers = [fn for fn in callbacks if getattr(fn, "__module__", None) == "asyncio.futures"]
        if wakers:
            callbacks = wakers + [fn for fn in callbacks if fn not in wakers]
        error: BaseException | None = None
        for fn in callbacks:
            try:
                _call_done_callback(fn, self)
            except BaseException as exc:  # noqa: BLE001 - raised once the other callbacks ran
                if error is None:
                    error = exc
        if error is not None:
            try:
                raise error
            finally:
                error = None

    # -- the caller's side ---------------------------------------------------
    def cancel(self) -> bool:
        if not super().cancel():
            return False
        # Its call never runs, so no worker tells concurrent.futures.wait() and
        # as_completed() (CPython's does when it dequeues the item): _invoke_callbacks did.
        job, cancel = self._fairpool_job, self._fairpool_cancel
        if job is not None and cancel is not None:
            self._fairpool_job = self._fairpool_cancel = None
            cancel(job)
        return True

    def result(self, timeout: float | None = None) -> T:
        if self._state in _WAITING:
            self._wait(timeout)
            timeout = 0  # waited already: what is left is to read the outcome
        if self._state == _FINISHED:  # final: read without the condition (Future's own, inline)
            error = self._exception
            if not error:
                return self._result  # type: ignore[return-value]
            try:
                raise error
            finally:  # no cycle through this frame: error -> traceback -> frame -> self -> error
                error = None
                self = None  # type: ignore[assignment]
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state in _WAITING:
            self._wait(timeout)
            timeout = 0
        return super().exception(timeout)

    def _wait(self, timeout: float | None) -> None:
        """Wait until settled or ``timeout``: green on a hub, else on the native lock.

        A worker of the future's pool that waits without a timeout on a call still
        queued runs that call itself (``fairpool._workers.help_with``): waiting for
        a free worker could wait for itself.
        """
        if self._fairpool_deferred is not None and self._deferred_here():
            self.settle_deferred()  # it waits for this very context to settle it: now
            return
        if timeout is None and worker_local.core is not None:
            job = self._fairpool_job  # None once answered or cancelled
            if job is not None and help_with(job) and self._state not in _WAITING:
                return
        if self._wait_green(timeout):
            return
        done = self._fairpool_done
        if done.acquire(True, -1 if timeout is None else min(max(0.0, timeout), TIMEOUT_MAX)):
            done.release()  # let the next waiter through

    def _wait_green(self, timeout: float | None) -> bool:
        """On a hub, wait green until done or ``timeout``; True if it waited (False: not on a hub)."""
        channel = green_channel()
        if channel is None:
            return False
        with self._fairpool_mutex:
            if self._state not in _WAITING:
                return True  # settled meanwhile
            waiter = GreenWaiter(channel)
            self._fairpool_green.append(waiter)  # answered by _invoke_callbacks, before the callbacks
        timer = None
        if timeout is not None:
            timer = channel.hub.schedule_call_global(max(0.0, timeout), waiter.answer, None)
        try:
            waiter.wait()
        finally:
            if timer is not None:
                timer.cancel()
            with self._fairpool_mutex:
                if waiter in self._fairpool_green:
                    self._fairpool_green.remove(waiter)  # a timed-out wait leaves nothing behind
        return True


#: How deep settlings and done-callbacks may nest in one thread before the next is deferred.
#: Below it they run at once, as ``concurrent.futures`` runs them (code that adds a
#: callback and then waits for it keeps working); past it the stack stops growing.
MAX_NESTED = 8


class _Steps:
    """This context's settlings and done-callbacks in progress (see :func:`_one_at_a_time`)."""

    __slots__ = ("depth", "pending")

    def __init__(self) -> None:
        self.depth = 0  # steps running now, one inside the other
        self.pending: deque[Callable[[], None]] = deque()  # deferred: run by the outermost, in turn


#: The steps in progress in this thread, green thread or task; None when none is.
_settling: ContextVar[_Steps | None] = ContextVar("fairpool_settling", default=None)


def _one_at_a_time(step: Callable[[], None]) -> None:
    """Run ``step`` (settling a future, or a done-callback) now, or once the steps in progress return.

    Steps nest up to :data:`MAX_NESTED` deep; a deeper one is deferred, and the
    outermost step's caller runs the deferred ones in turn: a chain of
    done-callbacks that each submit the next step runs as a loop, not as a
    recursion as deep as the chain.
    """
    steps = _settling.get()
    if steps is None:
        steps = _Steps()
        token = _settling.set(steps)
        try:
            _run_each(steps, step)
        finally:
            _settling.reset(token)
    elif steps.depth < MAX_NESTED:
        steps.depth += 1
        try:
            step()
        finally:
            steps.depth -= 1
    else:
        steps.pending.append(step)


def _run_each(steps: _Steps, step: Callable[[], None] | None) -> None:
    """Run ``step``, then every deferred step; if one raises (a BaseException), the rest still run."""
    pending = steps.pending
    while step is not None or pending:
        if step is None:
            step = pending.popleft()
        steps.depth = 1
        try:
            step()
        except BaseException:
            _run_each(steps, None)
            raise
        finally:
            steps.depth = 0
            step = None


def settle_inline(future: PoolFuture[Any], ok: bool, value: Any) -> None:
    """Settle ``future``, whose call ran inline (a pool of size 0), with ``value``.

    Its done-callbacks may submit again: settlings nest up to
    :data:`MAX_NESTED` deep in one context, and a deeper one is settled once
    the outermost returns (:func:`_one_at_a_time`). A wait on such a future
    from this same context (``result()`` in a done-callback) settles it at
    once: it would otherwise wait for itself.
    """
    future._fairpool_inline = True
    future._fairpool_deferred = (ok, value)
    _one_at_a_time(future.settle_deferred)


def _call_done_callback(fn: Callable[[Future[Any]], object], future: Future[Any]) -> None:
    """Call a done-callback as Future does: an Exception is logged, not raised."""
    try:
        fn(future)
    except Exception:  # as Future does: logged, the other callbacks still run
        _futures_logger.exception("exception calling callback for %r", future)


class AsyncioWaiter:
    """An asyncio task awaiting its call: the answer is handed to its loop's thread."""

    __slots__ = ("answered", "future", "loop")
    needs_start = False

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.future = loop.create_future()  # awaited by the task; only the loop's thread touches it
        self.answered = False

    def answer(self, job: Job | None) -> None:
        if not self.answered:
            self.answered = True
            try:
                self.loop.call_soon_threadsafe(self._settle)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits the answer

    def _settle(self) -> None:
        if not self.future.done():  # done: the task was cancelled meanwhile
            self.future.set_result(None)

    def reset_after_fork(self) -> None:
        pass
