"""The pool: native worker threads behind one global, fair queue.

Layers, from the bottom:

* ``_Core`` holds every piece of state and the worker loop. Worker threads
  hold the core, never the :class:`Pool`, so a pool dropped without a
  shutdown is collected and its finalizer stops the idle workers.
* :class:`Pool` is the public face: argument checking, docs, types.

Guarantees, and the code that keeps them:

* No worker idles while a call waits: a call is put in the one queue, then
  an idle worker is woken or, below the size, a worker is started
  (``_dispatch_locked``). A worker goes idle only after finding the queue
  empty under the lock (``_next_locked``).
* Every caller is answered exactly once. A job's state changes under the
  core's lock (see ``_job``): the worker marks it DONE before handing it
  back; a caller that gives up marks it CANCELLED (still queued: it is taken
  out and never runs) or ABANDONED (running or done: its outcome is
  dropped); a shutdown timeout or a fork marks it CLOSED and answers it with
  PoolClosed. Whoever moves the state away from QUEUED/RUNNING owns the
  answer, so two answers never reach one caller.
* A worker never raises out of its loop: the call's outcome, BaseException
  included, is captured by ``Job.run``. If the loop itself fails, the worker
  answers its job, starts its replacement and then dies (``_worker_main``).
* The hub's thread never waits for the lock: green submits and cancels that
  find it taken go to ``intake``/``cancels``, and every unlock goes through
  ``_unlock``, which takes them in (``submit_job``, ``cancel``).
"""

from __future__ import annotations

import _imp
import atexit
import logging
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, ParamSpec, TypeVar

from . import _hubchannel, _job, trace
from ._fairqueue import POLICIES, FairQueue, FifoQueue
from ._job import Job, describe
from ._native import allocate_lock, get_ident, local, monotonic, os, start_thread, threading
from .errors import FairpoolError, PoolClosed, QueueFull
from .lanes import DEFAULT_LANE, _current, check_lane_name
from .statistics import PoolStatistics, new_window, percentiles
from .trace import Tracer

__all__ = ["DEFAULT_THREADS", "Pool"]

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("fairpool")

#: eventlet.tpool's default size, kept so a drop-in pool behaves the same.
DEFAULT_THREADS = 20


class _WorkerLocal(local):
    core: _Core | None = None  # the _Core whose worker this native thread is


_worker_local = _WorkerLocal()
_lock_held = _imp.lock_held


def _holds_import_lock() -> bool:
    """Whether *this* thread holds the global import lock (then a call runs inline, as eventlet's).

    ``_imp.lock_held()`` is true while *any* thread holds it, which a worker
    does for a moment each time it imports: trusting it alone would run
    calls inline on the hub at random (eventlet.tpool does). Only the owner
    may release the lock, so a release that works tells us we own it; the
    lock is taken back at once.
    """
    if not _lock_held():
        return False
    try:
        _imp.release_lock()
    except RuntimeError:
        return False  # held by another thread
    _imp.acquire_lock()
    return True


_cores: weakref.WeakSet[_Core] = weakref.WeakSet()
_EXIT = object()


class _Worker:
    __slots__ = ("index", "job", "name", "thread", "wake")

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.wake = allocate_lock()  # held while idle; released to wake it
        self.wake.acquire()
        self.thread: Any = None
        self.job: Job | None = None  # the job it runs now (for shutdown and fork)


def _check_size(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{param} must be an int >= 0, got {value!r}")
    return value


class _Locked:
    __slots__ = ("core",)

    def __init__(self, core: _Core) -> None:
        self.core = core

    def __enter__(self) -> None:
        self.core.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.core._unlock()


class _Core:
    """All of a pool's state and its worker loop. See the module docstring."""

    def __init__(
        self,
        name: str,
        size: int,
        policy: str,
        lane_key: Callable[[], str | None] | None,
        max_queue: int | None,
        on_full: str,
        size_source: str,
        batch_scheduling: bool,
    ) -> None:
        self.name = name
        self.size = size
        self.size_source = size_source  # named in the size-0 warning
        self.lane_key = lane_key
        self.max_queue = max_queue
        self.raise_when_full = on_full == "raise"
        self.batch_scheduling = batch_scheduling
        # The core's lock. Native callers and workers block on it; the hub's
        # thread never does (see submit_job, cancel and _unlock).
        self.lock = allocate_lock()
        self.intake: deque[Job] = deque()  # green calls that found the lock taken
        self.cancels: deque[Job] = deque()  # green cancellations that found the lock taken
        queue_type = POLICIES[policy]
        self.queue: FairQueue[Job] | FifoQueue[Job] = queue_type()
        self.overflow: FairQueue[Job] | FifoQueue[Job] = queue_type()
        self.workers: dict[int, _Worker] = {}
        self.idle: list[_Worker] = []  # LIFO: the most recently idle worker is warmest
        self.next_index = 0
        self.busy = 0
        self.closed = False
        self.warned_zero = False
        self.window = new_window()
        self.submitted = self.inline = self.completed = self.failed = 0
        self.cancelled = self.abandoned = self.answered_closed = self.worker_faults = 0
        self.tracer: Tracer | None = trace.active()  # set by fairpool.trace while recording
        _cores.add(self)

    # ------------------------------------------------------------------
    # The caller's side
    # ------------------------------------------------------------------
    def _check_call(self, fn: object) -> None:
        if self.closed:
            raise self._closed_error()
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(f"pool {self.name!r} is shut down; it takes no more calls")

    def execute(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The hot path: every pool call of a service comes through here.
        if self.closed or not callable(fn):
            self._check_call(fn)
        if _worker_local.core is self or self.size == 0 or _holds_import_lock():
            return self._run_inline(fn, args, kwargs)
        job = Job(fn, args, kwargs, DEFAULT_LANE)
        self._set_lane(job)
        channel = _hubchannel.green_channel()
        if channel is None:
            return self._wait_native(job)
        # Wait green: the hub runs other green threads until the channel
        # switches back here with the outcome.
        job.waiter = _hubchannel.getcurrent()
        job.channel = channel
        self.submit_job(job, green=True)
        switch = channel.hub.switch
        try:
            while job.state != _job.DELIVERED:
                switch()
        except BaseException:
            # Killed (GreenletExit) or timed out (eventlet.Timeout) while waiting.
            self.cancel(job, green=True)
            raise
        if self.tracer is not None:
            self.tracer.pool_answered(self, job, "returned" if job.ok else "raised")
        return job.unwrap()

    def _run_inline(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.size == 0 and not self.warned_zero:
            self.warned_zero = True
            warnings.warn(
                f"fairpool pool {self.name!r} has 0 threads ({self.size_source}=0): every call "
                "runs inline in the caller and blocks its hub while it runs",
                RuntimeWarning,
                stacklevel=4,
            )
        self.inline += 1
        return fn(*args, **kwargs)

    def _set_lane(self, job: Job) -> None:
        entry = _current.get()
        if entry is not None:
            job.lane = entry[0]
            job.weight = entry[1]
        elif self.lane_key is not None:
            name = self.lane_key()
            if name is not None:
                job.lane = check_lane_name(name, "the lane_key result")

    def _wait_native(self, job: Job) -> Any:
        done = job.done_lock = allocate_lock()
        done.acquire()
        self.submit_job(job)
        try:
            done.acquire()
        except BaseException:
            self.cancel(job)  # KeyboardInterrupt in a native caller
            raise
        job.state = _job.DELIVERED
        if self.tracer is not None:
            self.tracer.pool_answered(self, job, "returned" if job.ok else "raised")
        return job.unwrap()

    def submit_future(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        self._check_call(fn)
        future: Future[Any] = Future()
        # The future is settled from a worker thread: give it a native
        # condition even if eventlet.monkey_patch() made threading green.
        future._condition = threading.Condition()
        if _worker_local.core is self or self.size == 0:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._run_inline(fn, args, kwargs))
            except BaseException as exc:  # noqa: BLE001 - the future carries it
                future.set_exception(exc)
            return future
        job = Job(fn, args, kwargs, DEFAULT_LANE)
        self._set_lane(job)
        job.future = future
        self.submit_job(job, green=_hubchannel.on_hub())

        def on_done(f: Future[Any], job: Job = job) -> None:
            if f.cancelled():
                self.cancel(job, green=_hubchannel.on_hub())

        future.add_done_callback(on_done)
        return future

    def submit_job(self, job: Job, green: bool = False) -> None:
        """Queue a job (or hold it for admission) and make sure a worker will take it.

        A green caller (the hub's thread) never waits for the lock: if it is
        taken, the job goes to ``intake`` and the holder takes it in as it
        unlocks (:meth:`_unlock`). Busy native callers could otherwise pass
        the lock among themselves for seconds while every green thread
        waits (the soak test found exactly that).
        """
        job.t_queued = monotonic()
        tracer = self.tracer
        if tracer is not None:
            tracer.pool_submitted(self, job)
        if self.closed:
            raise self._closed_error()
        if self.raise_when_full and self.max_queue is not None and len(self.queue) >= self.max_queue:
            raise self._full_error(job)
        if green:
            if not self._lock_or_leave(self.intake, job):
                return
        else:
            self.lock.acquire()
        try:
            self._admit_new_locked(job)
        finally:
            self._unlock()

    def _lock_or_leave(self, pending: deque[Job], job: Job) -> bool:
        """Take the lock without waiting (True), or leave ``job`` in ``pending`` for the holder.

        After appending it tries once more: if the holder released the lock in
        between (and so may have looked at ``pending`` too early), this caller
        takes it and :meth:`_unlock` takes ``job`` in.
        """
        lock = self.lock
        if lock.acquire(False):
            return True
        pending.append(job)
        if lock.acquire(False):
            self._unlock()
        return False

    def _full_error(self, job: Job) -> QueueFull:
        return QueueFull(
            f"pool {self.name!r} has {len(self.queue)} calls queued, its max_queue bound "
            f"({self.max_queue}); not taking {describe(job.fn)}"
        )

    def _admit_new_locked(self, job: Job) -> None:
        """Put a newly submitted job in the queue (or hold it for room). Raises for its caller."""
        if self.closed:
            raise self._closed_error()
        if self.max_queue is not None and len(self.queue) >= self.max_queue:
            if self.raise_when_full:
                raise self._full_error(job)
            self.overflow.put(job, job.weight)
        else:
            job.admitted = True
            self.queue.put(job, job.weight)
        self.submitted += 1
        self._dispatch_locked()

    def _unlock(self) -> None:
        """Release the lock, first taking in what green callers left while it was held.

        A green caller appends to ``intake``/``cancels`` only after failing to
        take the lock, and tries once more after appending; the holder looks
        again after releasing. So whatever is appended is taken in by one of
        them: nothing waits there for a later, unrelated unlock.
        """
        lock = self.lock
        while True:
            answered = self._take_pending_locked() if (self.intake or self.cancels) else None
            lock.release()
            if answered:
                self._hand_back_later(answered)
            if not (self.intake or self.cancels) or not lock.acquire(False):
                return

    def _take_pending_locked(self) -> list[Job]:
        """Admit the green calls in ``intake`` and apply the cancellations in ``cancels``.

        Returns the calls answered with an error instead (the pool closed,
        the queue full with ``on_full="raise"``): hand them back unlocked.
        """
        answered: list[Job] = []
        intake, cancels = self.intake, self.cancels
        while intake:
            job = intake.popleft()
            if job.cancel_requested:
                continue  # its caller gave up before it was taken in; counted below
            try:
                self._admit_new_locked(job)
            except FairpoolError as exc:
                answered += self._close_locked([job], exc)
        while cancels:
            job = cancels.popleft()
            state = self._cancel_locked(job)
            if state is not None:
                self._after_cancel(job, state)
        return answered

    def _dispatch_locked(self) -> None:
        idle = self.idle
        if idle:
            idle.pop().wake.release()
        elif len(self.workers) < self.size:
            self._spawn_locked()

    def _spawn_locked(self) -> None:
        index = self.next_index
        self.next_index += 1
        worker = _Worker(index, f"fairpool-{self.name}-{index}")
        self.workers[index] = worker
        try:
            worker.thread = start_thread(self._worker_main, (worker,), worker.name)
        except RuntimeError as exc:  # the OS would not give us a thread
            del self.workers[index]
            if not self.workers:
                # Nobody would ever take the queued calls: answer them now.
                # (The caller's own job is among them; its caller gets the raise.)
                self._hand_back_later(
                    self._close_locked(
                        self.queue.drain() + self.overflow.drain(),
                        FairpoolError(f"pool {self.name!r} could not start a worker thread: {exc}"),
                    )
                )
                raise FairpoolError(f"pool {self.name!r} could not start a worker thread: {exc}") from exc

    def cancel(self, job: Job, green: bool = False) -> None:
        """The caller gave up on ``job``: never run it, or drop its outcome.

        Takes effect at once: a worker skips a job marked here, and a green
        caller's waiter is cleared so the hub never resumes it for this job.
        Only the bookkeeping waits, for a green caller, until the lock is free.
        """
        job.cancel_requested = True
        if green:
            job.waiter = None  # the drain (this same hub thread) will not switch to us
            if not self._lock_or_leave(self.cancels, job):
                return
        else:
            self.lock.acquire()
        try:
            state = self._cancel_locked(job)
        finally:
            self._unlock()
        if state is not None:
            self._after_cancel(job, state)

    def _cancel_locked(self, job: Job) -> int | None:
        """Take a queued job out, or mark a running one abandoned. Returns the prior state."""
        state = job.state
        if state == _job.QUEUED:
            if job.admitted:
                self.queue.remove(job)
                self._admit_locked()
            elif not self.overflow.remove(job):
                try:
                    self.intake.remove(job)
                except ValueError:
                    pass
            job.state = _job.CANCELLED
            self.cancelled += 1
        elif state == _job.RUNNING or state == _job.DONE:
            job.state = _job.ABANDONED
            self.abandoned += 1
        else:
            return None  # already answered, or skipped by a worker (counted there)
        return state

    def _after_cancel(self, job: Job, state: int) -> None:
        tracer = self.tracer
        if tracer is not None:
            tracer.pool_answered(self, job, "cancelled" if state == _job.QUEUED else "abandoned")
        if state == _job.QUEUED:
            job.drop()

    def _admit_locked(self) -> None:
        """A slot in the bounded queue freed up: admit the next held call."""
        if self.overflow and (self.max_queue is None or len(self.queue) < self.max_queue):
            job = self.overflow.pop()
            if job is not None:
                job.admitted = True
                self.queue.put(job, job.weight)
                self._dispatch_locked()

    # ------------------------------------------------------------------
    # The worker's side
    # ------------------------------------------------------------------
    def _worker_main(self, worker: _Worker) -> None:
        _worker_local.core = self
        if self.batch_scheduling:
            _set_batch_scheduling()
        lock = self.lock
        done: Job | None = None  # ran, and not yet handed back: the crash handler needs it
        try:
            while True:
                lock.acquire()
                try:
                    hand_back = done is not None and self._finish_locked(done)
                    job = self._next_locked(worker)
                finally:
                    self._unlock()
                if done is not None:
                    if hand_back:
                        self._hand_back(done)
                    else:
                        done.drop()
                    done = None
                if job is None:
                    worker.wake.acquire()  # idle until a call, a resize or a shutdown
                    continue
                if job is _EXIT:
                    return
                assert isinstance(job, Job)
                tracer = self.tracer
                job.t_started = monotonic()
                job.run()
                job.t_finished = monotonic()
                done = job
                if tracer is not None:
                    tracer.pool_finished(self, job, worker)
        except BaseException as exc:  # noqa: BLE001 - a fault in fairpool itself, not in the call
            self._worker_crashed(worker, done, exc)

    def _worker_crashed(self, worker: _Worker, done: Job | None, exc: BaseException) -> None:
        """A fault in the worker loop: answer every call it held, and replace it.

        ``done`` ran and has an outcome: it is handed back as usual. A call
        taken but not known to have finished is answered with FairpoolError
        (it may have run: it is not run again).
        """
        with self._locked():
            self.worker_faults += 1
            self.workers.pop(worker.index, None)
            if worker in self.idle:
                self.idle.remove(worker)
            current = worker.job if worker.job is not done else None
            worker.job = None
            if done is not None and done.state == _job.RUNNING:
                self._finish_locked(done)  # it ran; the fault came before it was accounted
            answered: list[Job] = []
            if current is not None and current.state == _job.RUNNING:
                self.busy -= 1
                answered = self._close_locked(
                    [current],
                    FairpoolError(f"fairpool worker {worker.name} failed while running this call: {exc!r}"),
                )
            if (self.queue or self.overflow) and len(self.workers) < max(self.size, 1):
                self._spawn_locked()
        if done is not None and done.state == _job.DONE:
            try:
                self._hand_back(done)  # handing back twice is harmless: the waiter takes one
            except Exception:  # noqa: BLE001 - a lock released twice; the waiter was answered
                pass
        self._hand_back_later(answered)
        _report_fault(f"fairpool worker {worker.name} failed and was replaced; its calls were answered", exc)

    def _finish_locked(self, job: Job) -> bool:
        """Account for a finished job; True if its waiter should get the outcome.

        The worker keeps ``worker.job`` until the job is handed back, so a
        fork or a crash in between still finds it.
        """
        self.busy -= 1
        self.window.append((job.t_started - job.t_queued, job.t_finished - job.t_started))
        if job.ok:
            self.completed += 1
        else:
            self.failed += 1
        if job.state == _job.RUNNING:
            job.state = _job.DONE
            return True
        return False  # abandoned by its caller, or already answered by a shutdown

    def _next_locked(self, worker: _Worker) -> Job | object | None:
        """The next job for this worker, None to go idle, or _EXIT to stop."""
        while True:
            worker.job = None
            n = len(self.workers)
            if n > self.size and not (self.size == 0 and n == 1 and self.queue):
                return self._retire_locked(worker)
            job = self.queue.pop()
            if job is None:
                if self.closed:
                    return self._retire_locked(worker)
                self.idle.append(worker)
                return None
            if job.cancel_requested or (
                job.future is not None and not job.future.set_running_or_notify_cancel()
            ):
                job.state = _job.CANCELLED  # its caller gave up before a worker took it
                self.cancelled += 1
                job.drop()
                self._admit_locked()
                continue
            job.state = _job.RUNNING
            worker.job = job
            self.busy += 1
            self._admit_locked()
            return job

    def _retire_locked(self, worker: _Worker) -> object:
        del self.workers[worker.index]
        return _EXIT

    def _hand_back(self, job: Job) -> None:
        """Give a DONE or CLOSED job's outcome to its waiter. Any thread."""
        if job.channel is not None:
            job.channel.deliver(job)
        elif job.done_lock is not None:
            job.done_lock.release()
        elif job.future is not None:
            future, job.future = job.future, None
            if self.tracer is not None:
                self.tracer.pool_answered(self, job, "returned" if job.ok else "raised")
            try:
                if job.ok:
                    future.set_result(job.result)
                else:
                    future.set_exception(job.result)
            except BaseException:  # noqa: BLE001 - an InvalidStateError: cancelled meanwhile
                pass
            job.result = None

    def _locked(self) -> _Locked:
        """``with self._locked():`` holds the lock and unlocks through :meth:`_unlock`."""
        return _Locked(self)

    def _close_locked(self, jobs: list[Job], error: BaseException) -> list[Job]:
        """Mark queued or running jobs answered with ``error``; returns them.

        Hand them back with :meth:`_hand_back_later` after the lock is released.
        A running call goes on in its thread; its late outcome is dropped.
        """
        answered = []
        for job in jobs:
            if job.state == _job.QUEUED or job.state == _job.RUNNING:
                job.state = _job.CLOSED
                job.ok = False
                job.result = error
                job.fn = job.args = job.kwargs = None  # type: ignore[assignment]
                self.answered_closed += 1
                answered.append(job)
        return answered

    def _take_intake(self) -> list[Job]:
        jobs = [j for j in self.intake if not j.cancel_requested]
        self.intake.clear()
        return jobs

    def _hand_back_later(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._hand_back(job)

    # ------------------------------------------------------------------
    # Size and life cycle
    # ------------------------------------------------------------------
    def resize(self, size: int) -> None:
        with self._locked():
            self.size = size
            if size == 0:
                self.warned_zero = False
            want = min(size - len(self.workers), len(self.queue) - len(self.idle))
            for _ in range(max(0, want)):
                self._spawn_locked()
            excess = len(self.workers) - size
            while excess > 0 and self.idle:
                self.idle.pop().wake.release()  # it sees the excess and retires
                excess -= 1

    def shutdown(self, timeout: float | None, wait: bool) -> None:
        with self._locked():
            self.closed = True
            while self.idle:
                self.idle.pop().wake.release()
            workers = [w for w in self.workers.values()]
        if not wait:
            return
        me = get_ident()  # a worker shutting down its own pool does not wait for itself
        deadline = None if timeout is None else monotonic() + timeout
        threads = [w.thread for w in workers if w.thread is not None and w.thread.ident != me]
        _join(threads, deadline)
        with self._locked():
            left = self.queue.drain() + self.overflow.drain() + self._take_intake()
            left += [w.job for w in self.workers.values() if w.job is not None]
            answered = self._close_locked(
                left,
                PoolClosed(
                    f"pool {self.name!r} was shut down and its timeout ({timeout}s) ran out "
                    "before this call finished"
                ),
            )
        self._hand_back_later(answered)

    def reopen(self) -> None:
        with self._locked():
            self.closed = False

    def close_at_exit(self) -> None:
        """At interpreter exit: take no more calls, answer queued ones, wait for nothing.

        Worker threads are daemons, so a call stuck in C does not hold up
        the exit (eventlet issue 989).
        """
        with self._locked():
            self.closed = True
            answered = self._close_locked(
                self.queue.drain() + self.overflow.drain() + self._take_intake(),
                PoolClosed(f"pool {self.name!r} was closed at interpreter exit before this call ran"),
            )
            while self.idle:
                self.idle.pop().wake.release()
        self._hand_back_later(answered)

    def after_fork_in_child(self) -> None:
        """Start afresh in a forked child: no threads, new locks, in-flight calls answered.

        The calls queued or running at the fork belong to the parent, whose
        threads run them. Their waiters exist in the child too, as copies:
        they are answered with PoolClosed rather than left waiting, and
        nothing is run twice.
        """
        self.lock = allocate_lock()
        in_flight = list(self.queue) + list(self.overflow) + list(self.intake)
        self.intake = deque()
        self.cancels = deque()
        in_flight += [w.job for w in self.workers.values() if w.job is not None]
        self.queue = type(self.queue)()
        self.overflow = type(self.overflow)()
        self.workers = {}
        self.idle = []
        self.busy = 0
        error = PoolClosed(
            f"the process forked while this call was in pool {self.name!r}; it runs in the parent only"
        )
        for job in in_flight:
            if job.state == _job.QUEUED or job.state == _job.RUNNING:
                self._close_locked([job], error)
            elif job.state != _job.DONE:
                continue  # DONE: it finished before the fork; hand back its real outcome
            channel = job.channel
            if channel is not None:
                # The parent's pipe is gone: resume the waiter from a hub timer.
                channel.hub.schedule_call_global(0, _hubchannel.switch_to_waiters, channel.hub, [job].pop)
            elif job.done_lock is not None:
                job.done_lock = None  # its thread did not survive the fork
            elif job.future is not None:
                future, job.future = job.future, None
                future._condition = threading.Condition()
                try:
                    future.set_exception(error)
                except BaseException:  # noqa: BLE001 - already settled
                    pass

    def statistics(self) -> PoolStatistics:
        with self._locked():
            window = list(self.window)
            stats = dict(
                name=self.name,
                size=self.size,
                threads=len(self.workers),
                busy=self.busy,
                queued=len(self.queue) + len(self.intake),
                queued_by_lane=self.queue.counts(),
                waiting_admission=len(self.overflow),
                submitted=self.submitted,
                inline=self.inline,
                completed=self.completed,
                failed=self.failed,
                cancelled=self.cancelled,
                abandoned=self.abandoned,
                closed=self.answered_closed,
                worker_faults=self.worker_faults,
            )
        wait = percentiles(w for w, _ in window)
        run = percentiles(r for _, r in window)
        return PoolStatistics(
            **stats,  # type: ignore[arg-type]
            wait_p50=wait[0],
            wait_p99=wait[1],
            wait_max=wait[2],
            run_p50=run[0],
            run_p99=run[1],
            run_max=run[2],
        )


def _report_fault(message: str, exc: BaseException) -> None:
    """Report a fault from any thread.

    Under eventlet.monkey_patch() logging's locks are green, and a native
    thread must not take them unless fairpool.patch_logging() made them
    hybrid; then the report goes to stderr instead.
    """
    from eventlet import patcher

    from . import patch

    if patcher.is_monkey_patched("thread") and not patch.logging_patched():
        import sys
        import traceback

        sys.stderr.write(message + "\n" + "".join(traceback.format_exception(exc)))
    else:
        log.error(message, exc_info=exc)


def _set_batch_scheduling() -> None:
    """Put the calling thread under SCHED_BATCH: no wake-up preemption (Linux only)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: scheduling stays as it was


def _join(threads: list[Any], deadline: float | None) -> None:
    """Wait for threads to end, green if the caller is on a hub, native otherwise."""
    if _hubchannel.on_hub():
        import eventlet

        while any(t.is_alive() for t in threads):
            if deadline is not None and monotonic() >= deadline:
                return
            eventlet.sleep(0.002)
        return
    for t in threads:
        remaining = None if deadline is None else max(0.0, deadline - monotonic())
        t.join(remaining)


class Pool:
    """Native worker threads behind one global queue, fair between lanes.

    Calls from green threads wait green (the hub keeps running other green
    threads); calls from plain native threads block on a native lock. Both
    go through the same queue and the same cap on running calls.

    Threads start on demand, up to ``threads``. Every worker takes the next
    call from the one queue, so no worker idles while a call waits.

    Args:
        threads: The most worker threads, and so the most calls running at
            once. 0 runs every call inline in the caller, with a RuntimeWarning.
        name: Names the workers (``fairpool-<name>-<i>``), errors and logs.
        policy: ``"fair"`` (a FIFO per lane, weighted round-robin between
            lanes: see :class:`fairpool.lane`) or ``"fifo"`` (arrival order).
        lane_key: Called in the caller's context at each call made outside
            any :class:`fairpool.lane`; returns the lane's name (a request id,
            a tenant) or None for the default lane.
        max_queue: The most calls waiting for a worker; None for no bound.
        on_full: What a call does when the queue is at ``max_queue``:
            ``"wait"`` (green or native, for room in the queue) or ``"raise"``
            (:class:`fairpool.QueueFull`).
        stats_interval: If set, log :meth:`statistics` every that many
            seconds at INFO on the ``fairpool`` logger.
        batch_scheduling: Run the workers under Linux's ``SCHED_BATCH``
            policy, so that a worker woken with a call does not preempt the
            hub's thread, only to wait for the GIL that thread holds. It
            halves the round trip on a busy CPU; the workers' share of CPU
            time is unchanged. Threads started inside a call inherit it.

    Raises:
        ValueError: An argument is out of range; the message names it.
    """

    def __init__(
        self,
        threads: int = DEFAULT_THREADS,
        *,
        name: str = "pool",
        policy: Literal["fair", "fifo"] = "fair",
        lane_key: Callable[[], str | None] | None = None,
        max_queue: int | None = None,
        on_full: Literal["wait", "raise"] = "wait",
        stats_interval: float | None = None,
        batch_scheduling: bool = True,
        _size_source: str = "threads",
    ) -> None:
        _check_size(threads, "threads")
        check_lane_name(name, "name")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {sorted(POLICIES)}, got {policy!r}")
        if lane_key is not None and not callable(lane_key):
            raise ValueError(f"lane_key must be callable or None, got {lane_key!r}")
        if max_queue is not None and (
            isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1
        ):
            raise ValueError(f"max_queue must be an int >= 1 or None, got {max_queue!r}")
        if on_full not in ("wait", "raise"):
            raise ValueError(f"on_full must be 'wait' or 'raise', got {on_full!r}")
        if stats_interval is not None and (
            isinstance(stats_interval, bool)
            or not isinstance(stats_interval, (int, float))
            or not stats_interval > 0
        ):
            raise ValueError(f"stats_interval must be a number > 0 or None, got {stats_interval!r}")
        self._core = _Core(
            name, threads, policy, lane_key, max_queue, on_full, _size_source, bool(batch_scheduling)
        )
        self.name = name
        self.policy = policy
        self.max_queue = max_queue
        self._finalizer = weakref.finalize(self, self._core.shutdown, None, False)
        if stats_interval is not None:
            _start_stats_logger(weakref.ref(self), float(stats_interval))

    def execute(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` on a worker thread and return its result.

        The caller waits: green if it runs on an eventlet hub, native
        otherwise. Whatever ``fn`` raises, BaseException included, is raised
        here with ``fn``'s traceback.

        The call runs inline instead when made from one of this pool's own
        workers (waiting would deadlock), while the import lock is held, or
        when the pool has 0 threads.

        If the waiting green thread is killed or its ``eventlet.Timeout``
        fires, a call still queued never runs, and a running call's result
        is dropped.

        Raises:
            PoolClosed: The pool is shut down.
            QueueFull: The queue is at ``max_queue`` and ``on_full="raise"``.
            TypeError: ``fn`` is not callable.
        """
        return self._core.execute(fn, args, kwargs)  # type: ignore[no-any-return]

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Queue ``fn(*args, **kwargs)`` and return a :class:`concurrent.futures.Future`.

        For native-thread callers that want to wait with a timeout or cancel:
        ``future.cancel()`` succeeds until a worker starts the call, and a
        cancelled call never runs. Lanes apply as for :meth:`execute`.

        Raises:
            PoolClosed: The pool is shut down.
            QueueFull: The queue is at ``max_queue`` and ``on_full="raise"``.
            TypeError: ``fn`` is not callable.
        """
        return self._core.submit_future(fn, args, kwargs)

    def resize(self, threads: int) -> None:
        """Change the most worker threads, on a live pool.

        Growing starts threads at once for queued calls; shrinking lets
        idle workers exit now and busy ones as they finish their call.
        0 makes later calls run inline (queued calls still run).

        Raises:
            ValueError: ``threads`` is not an int >= 0.
        """
        self._core.resize(_check_size(threads, "threads"))

    @property
    def size(self) -> int:
        """The most worker threads the pool runs."""
        return self._core.size

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._core.closed

    def shutdown(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Take no more calls, run the queued ones, and stop the workers.

        Every caller is answered: queued calls still run (as with
        eventlet's ``killall``). If ``timeout`` seconds pass first, the calls
        still queued or running are answered with :class:`fairpool.PoolClosed`
        (a running call goes on in its thread; its result is dropped).
        A green caller waits green. Calls made afterwards raise PoolClosed.

        Args:
            timeout: Seconds to wait for queued and running calls; None waits
                for all of them.
            wait: False returns at once; the workers exit once the queue is empty.

        Raises:
            ValueError: ``timeout`` is negative.
        """
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        self._core.shutdown(timeout, wait)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's counters and recent latencies."""
        return self._core.statistics()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        core = self._core
        state = "closed" if core.closed else "open"
        return (
            f"<fairpool.Pool {self.name!r} {state} policy={self.policy} "
            f"threads={len(core.workers)}/{core.size} queued={len(core.queue)}>"
        )


def _start_stats_logger(pool_ref: weakref.ref[Pool], interval: float) -> None:
    """Log a pool's statistics every ``interval`` seconds while it lives.

    A native thread would take logging's locks, which eventlet.monkey_patch()
    makes green; so under monkey-patching the logger is a green thread.
    """

    def tick() -> bool:
        pool = pool_ref()
        if pool is None or pool.closed:
            return False
        log.info(pool.statistics().log_line())
        return True

    from eventlet import patcher

    if patcher.is_monkey_patched("thread"):
        import eventlet

        def green_loop() -> None:
            while True:
                eventlet.sleep(interval)
                if not tick():
                    return

        eventlet.spawn_n(green_loop)
    else:
        stop = threading.Event()

        def native_loop() -> None:
            while not stop.wait(interval):
                if not tick():
                    return

        pool = pool_ref()
        name = pool.name if pool is not None else "pool"
        start_thread(native_loop, (), f"fairpool-{name}-stats")


def _after_fork_in_child() -> None:
    _worker_local.core = None
    for core in list(_cores):
        core.after_fork_in_child()


def _close_all_at_exit() -> None:
    for core in list(_cores):
        core.close_at_exit()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
