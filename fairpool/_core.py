"""The pool core: every move of a pool's jobs, under its one lock.

A call's path: ``Pool._call`` makes a :class:`~fairpool._job.Job` and a waiter
(``fairpool._waiters``), hands the job in (``submit``) and waits. Under the lock
the job is admitted (``take_in_locked``) and a worker woken or started
(``dispatch_locked``); the worker (``fairpool._workers.work``) takes it
(``next_locked``), runs it unlocked, and accounts for it (``finish_locked``).
Functions ending in ``_locked`` run under the lock and append the jobs they
moved into a final state to ``out``; :meth:`Core.unlock` releases the lock and
only then answers them (:meth:`Core.answer`). Nothing is answered, and no
observer is called, while the lock is held.

Which thread touches what:

* ``lock``: native callers and workers wait for it; the hub's thread never
  does (``fairpool._hublock``): it leaves its job and the holder takes it in.
* ``admission``, ``workers``, ``busy``, the counters, ``window``, ``shutting_down_inside``: under ``lock``.
* ``closed``: written under ``lock``; read without it for a fast refusal
  (a call that races a shutdown is refused under the lock instead).
* ``name``, ``size_source``, ``lane_key``, ``batch_scheduling``, ``exit_timeout``, ``wake_ahead``: set once.
* ``closed_by_exit``: set with ``closed`` when the interpreter's exit closes the pool.
* ``tally``: set and cleared by the metrics (``fairpool.otel_metrics``) without the lock, one
  attribute store; read once per move. Its counts change under ``lock`` (``fairpool._tally``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from . import _hooks, _observed, _tally
from ._admission import Admission
from ._hublock import HubLock
from ._job import (
    ABANDONED,
    ANSWERED,
    CANCELLED,
    CLOSED,
    DONE,
    NEW,
    QUEUED,
    RUNNING,
    Job,
    move,
)
from ._native import monotonic
from ._workers import AGAIN, Worker, WorkerSet
from .errors import CancelledByShutdown, FairpoolError, PoolClosed
from .statistics import new_window

__all__ = ["WAKE_AHEAD", "Core"]

#: The most workers woken (or started) for queued calls and not yet back for one. A call
#: queued beyond it wakes nobody: each worker, back for a call, wakes the next while calls
#: wait, so no worker idles while a call waits for longer than a wake-up. Waking more only
#: adds threads fighting for the GIL: with 20 native callers of a no-op on 20 threads, the
#: pool did 0.44 x ThreadPoolExecutor(6)'s calls with every idle worker woken, 0.75 x with
#: this bound (docs/benchmarks.md, "Busy host"). A bounded queue wakes one per call (its
#: bound does not count the calls a worker is on its way to).
WAKE_AHEAD = 2


def _answer_runs_callbacks(out: list[Job]) -> bool:
    """Whether answering ``out`` runs a future's done-callbacks (user code) in this thread.

    A worker that answers such a job answers it before it goes idle (``next_locked``
    returns AGAIN): idle, it would be the first woken for a call its callbacks submit,
    and that call would wait for the callbacks to return, other workers idle meanwhile.
    Read without the future's lock: a callback added from now until the future is
    settled finds the worker idle, and takes it out of the idle stack before it runs
    (``PoolFuture._invoke_callbacks``, ``fairpool._workers.stop_idling``).
    """
    for job in out:
        waiter = job.waiter
        if waiter is not None and waiter.needs_start and waiter._done_callbacks and job.state in ANSWERED:
            return True
    return False


class Core:
    """One pool's state and the moves of its jobs. See the module docstring."""

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
        self.size_source = size_source  # named in the size-0 warning
        self.lane_key = lane_key
        self.batch_scheduling = batch_scheduling
        self.lock: HubLock[Job, Job] = HubLock(self.take_in_locked)
        self.admission = Admission(name, policy, max_queue, on_full == "raise")
        self.workers = WorkerSet(name, size, counts_coming=True)
        self.wake_ahead = WAKE_AHEAD if max_queue is None else 1 << 62  # see WAKE_AHEAD
        self.closed = False
        self.closed_by_exit = False  # closed by the interpreter's exit (fairpool._exitrule.at_exit)
        self.exit_timeout: float | None = None  # seconds the exit waits for its calls; None: the default
        self.busy = 0
        self.window = new_window()  # (queue wait, run time) of recent calls
        self.submitted = self.inline = self.completed = self.failed = 0
        self.cancelled = self.abandoned = self.answered_closed = self.worker_faults = 0
        self.futures_cancelled_by_shutdown = 0  # closed calls whose future says cancelled (cancel_futures)
        self.run_total = 0.0  # seconds the calls that finished ran, in all
        self.shutting_down_inside: set[int] = set()  # worker threads inside a shutdown of this pool
        # The lists of jobs that rare paths (``locked()``, helping) answer after releasing the
        # lock, while they do: a forked child answers what another thread was answering.
        self.answering: dict[int, list[Job]] = {}
        factory = _tally.factory  # metrics on: counts by lane and outcome (fairpool._tally)
        self.tally: _tally.Tally | None = None if factory is None else factory(name)
        if self.tally is not None:
            self.tally.own(self)  # when this pool is gone, its counts are folded by its name

    def closed_error(self) -> PoolClosed:
        if self.closed_by_exit:
            return PoolClosed(f"pool {self.name!r} takes no more calls: the interpreter is exiting")
        return PoolClosed(f"pool {self.name!r} is shut down; it takes no more calls")

    # -- handing a job in (any thread) --------------------------------------
    def submit(self, job: Job, green: bool) -> None:
        """Hand ``job`` (NEW, with its waiter) to the pool. Its answer comes through the waiter.

        Also how a cancel reaches the pool (:meth:`cancel`): either way the pool
        looks at the job under the lock (``take_in_locked``), now or, when the
        hub's thread finds the lock held, by the holder as it releases.
        """
        if not job.cancel_requested:  # a new call, not a cancel
            job.t_queued = monotonic()
            if _hooks.observers:
                _observed.announce(self, job)
        out: list[Job] = []
        lock = self.lock
        if green:
            if not lock.acquire(False):  # lock.acquire_or_leave(job, out), spelled out: usually free
                if lock.leave(job, out):  # it got the lock on its second try: answer what it moved
                    self.answer(out)
                return
        else:
            lock.acquire()
        try:
            self.take_in_locked(job, out)
        finally:
            lock.release(out)  # self.unlock(out), spelled out: this runs for every call
            if out:
                self.answer(out)

    def cancel(self, job: Job, green: bool) -> None:
        """The caller gave up: the call never runs if still queued; else its outcome is dropped."""
        job.cancel_requested = True
        self.submit(job, green)

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[Job]]:
        """``with core.locked() as out:``: hold the lock; on exit unlock, then answer ``out`` (rare paths)."""
        out: list[Job] = []
        self.lock.acquire()
        key = id(out)
        self.answering[key] = out  # a fork meanwhile: the child answers these (fairpool._lifecycle)
        try:
            yield out
        finally:
            try:
                self.unlock(out)
            finally:
                self.answering.pop(key, None)

    def unlock(self, out: list[Job]) -> None:
        """Release the lock (taking in what the hub left), then answer the jobs in ``out``."""
        if self.lock.release(out):
            self.answer(out)

    def answer(self, jobs: list[Job]) -> None:
        """Answer each job's waiter (DONE, CLOSED) and tell the observers. Never under the lock.

        If something raises here (a future's done-callback raising SystemExit),
        the rest of ``jobs`` are still answered before it propagates.
        """
        for job in jobs:
            try:
                if job.info is None:
                    if job.state in ANSWERED:
                        job.waiter.answer(job)
                else:
                    try:  # observers hear of it before the caller resumes
                        _observed.tell_answered(job)
                    finally:  # an interruption thrown in while an observer yielded (see _hooks.notify)
                        if job.state in ANSWERED:
                            job.waiter.answer(job)
            except BaseException:
                self.answer(jobs[jobs.index(job) + 1 :])  # a job is in ``jobs`` once
                raise

    # -- moves, under the lock ---------------------------------------------
    def take_in_locked(self, job: Job, out: list[Job]) -> None:
        """Bring the pool up to date with ``job``: admit it if new, apply its caller's cancel."""
        if job.state == NEW:
            admission = self.admission
            if job.cancel_requested:
                move(job, CANCELLED)
                self.cancelled += 1
                self.count_locked(job, _tally.CANCELLED)
                out.append(job)
            elif self.closed:
                job.rejected = True
                self.close_locked(job, self.closed_error(), out)
            elif admission.max_queue is None:  # admission.admit(), spelled out: no bound
                admission.queue.put(job, job.weight)
                job.state = QUEUED  # NEW -> QUEUED
                self.submitted += 1
                self.dispatch_locked(out)
            else:
                error = admission.admit(job, self.workers.coming)
                if error is not None:
                    job.rejected = True
                    self.close_locked(job, error, out)
                else:
                    self.submitted += 1
                    if not job.held:
                        self.dispatch_locked(out)
                    self.admit_held_locked(out)
        elif job.cancel_requested:
            if job.state == QUEUED:
                self.admission.withdraw(job)
                self.admit_held_locked(out)
                move(job, CANCELLED)
                self.cancelled += 1
                self.count_locked(job, _tally.CANCELLED)
                self.drop_call(job)
                # A withdrawn job may sit in its lane until a worker skips it (the fair queue
                # removes in O(1)): it keeps nothing of its caller's. Not answered, so no waiter.
                job.waiter = None
                out.append(job)
            elif job.state == RUNNING and job.waiter.needs_start:
                pass  # a future cancelled before it started: the worker's start() says so (not_started)
            elif move(job, ABANDONED):
                self.abandoned += 1
                self.count_locked(job, _tally.ABANDONED)
                out.append(job)
            elif job.state == DONE:  # answered, but its caller left without the answer: dropped after all
                if job.ok:  # counted once: as abandoned now, no longer as completed or failed
                    self.completed -= 1
                else:
                    self.failed -= 1
                self.abandoned += 1

    def close_locked(self, job: Job, error: BaseException, out: list[Job]) -> None:
        """Answer a NEW, QUEUED or RUNNING job with ``error`` (one instance per job)."""
        if move(job, CLOSED):
            job.ok, job.result = False, error
            self.drop_call(job)
            self.count_locked(job, _tally.REJECTED if job.rejected else _tally.CLOSED)
            if not job.rejected:  # a refusal is its caller's exception, not a call closed
                self.answered_closed += 1
                if type(error) is CancelledByShutdown and job.waiter.needs_start:  # a future: cancelled
                    self.futures_cancelled_by_shutdown += 1
            out.append(job)

    def count_locked(self, job: Job, outcome: int) -> None:
        """``job`` reached its final state ``outcome`` (a ``_tally`` index): counted while metrics are on."""
        tally = self.tally
        if tally is not None:
            tally.count(job.lane, outcome)

    @staticmethod
    def drop_call(job: Job) -> None:
        job.fn = job.args = job.kwargs = None  # type: ignore[assignment]

    def admit_held_locked(self, out: list[Job]) -> None:
        """Move held calls up into the run queue while the bound allows, each with a worker."""
        while self.admission.held and self.admission.make_room(self.workers.coming):
            self.dispatch_locked(out)

    def dispatch_locked(self, out: list[Job]) -> None:
        """A job was queued: wake an idle worker, or start one if the size allows, unless
        ``wake_ahead`` workers are on their way already (the first back wakes the next)."""
        workers = self.workers
        if workers.coming >= self.wake_ahead:
            return
        idle = workers.idle
        if idle:  # wake the warmest idle worker for this call; inline: this runs for almost every call
            worker = idle.pop()
            worker.coming = True  # workers.expect(worker), spelled out
            workers.coming += 1
            worker.wake.release()
            return
        if len(workers.all) >= max(workers.size, 1):  # at the size (at size 0, one runs the queue)
            return
        try:
            workers.start(self)
        except RuntimeError as exc:  # the OS would not give us a thread
            if not workers.all:  # nobody would ever take the queued calls: answer them now
                message = f"pool {self.name!r} could not start a worker thread: {exc}"
                for job in self.admission.drain():
                    self.close_locked(job, FairpoolError(message), out)

    def next_locked(self, worker: Worker, out: list[Job]) -> Any:
        """The next job for ``worker`` (now RUNNING), None to go idle, EXIT to stop, or AGAIN.

        AGAIN: the queue is empty but ``out`` holds a future whose answer runs its
        done-callbacks in this worker: it answers them, then asks again (it is not
        idle meanwhile, so a call they submit wakes another worker).
        """
        admission, workers = self.admission, self.workers
        coming = worker.coming  # woken or started for a queued call: it takes one before it retires
        if coming:  # workers.arrived(worker), spelled out: the hot path
            worker.coming = False
            workers.coming -= 1
        while True:
            if len(workers.all) > workers.size and workers.should_retire(len(admission), coming):
                worker.job = None
                return workers.retire(worker)
            job = admission.queue.pop()
            if job is not None and admission.max_queue is not None and admission.held:  # (len: a call)
                self.admit_held_locked(out)  # into the room it left
            if job is None:
                worker.job = None
                if self.closed:
                    return workers.retire(worker)
                if out and _answer_runs_callbacks(out):
                    return AGAIN  # not idle while it runs done-callbacks: they may submit (and wait)
                workers.idle.append(worker)
                return None
            if job.cancel_requested:  # its caller gave up; the cancel is still on its way
                move(job, CANCELLED)
                self.cancelled += 1
                self.count_locked(job, _tally.CANCELLED)
                self.drop_call(job)
                out.append(job)  # not answered: its observers hear it was cancelled
                continue
            job.state = RUNNING  # QUEUED -> RUNNING: every job in the queue is QUEUED
            worker.job = job
            self.busy += 1
            if coming and len(admission):  # calls still wait: wake the next worker (see WAKE_AHEAD)
                self.dispatch_locked(out)
            return job

    def help_locked(self, job: Job, worker: Worker, out: list[Job]) -> bool:
        """``worker``, whose call waits on ``job``'s future, takes ``job`` to run it itself, if queued here.

        The helping move: QUEUED -> RUNNING, as a worker's ``next_locked`` makes it,
        but out of the middle of the queue (withdrawn in O(1), as a cancel does).
        False, and nothing changes, if the job is not QUEUED in this pool (another
        pool's, running or answered already) or its caller's cancel is on its way.
        ``busy`` is not counted up: the worker is busy already (``finish_helped_locked``).
        """
        admission = self.admission
        if job.state != QUEUED or job.cancel_requested:
            return False
        if job not in admission.queue and job not in admission.held:
            return False  # queued in another pool
        admission.withdraw(job)
        job.held = False
        self.admit_held_locked(out)  # room it left in a bounded queue
        job.state = RUNNING  # QUEUED -> RUNNING: checked above
        worker.helped.append(job)
        return True

    def finish_helped_locked(self, job: Job, worker: Worker, ok: bool, result: Any, out: list[Job]) -> None:
        """Account for ``job``, which ``worker`` ran helping (``help_locked``), as ``finish_locked`` does."""
        worker.helped.remove(job)
        self.busy += 1  # finish_locked counts a worker freed: this one goes on with its own call
        self.finish_locked(job, ok, result, out)

    def finish_locked(self, job: Job, ok: bool, result: Any, out: list[Job]) -> None:
        """Account for ``job``, which a worker ran; answer it unless it was answered or left already.

        ``worker.job`` names it until ``next_locked`` (next, same hold of the lock) changes it."""
        self.busy -= 1
        ran = job.t_finished - job.t_started
        wait = job.t_started - job.t_queued
        self.window.append((wait, ran))
        self.run_total += ran
        tally = self.tally
        if job.state == RUNNING:  # else CLOSED or ABANDONED already (and counted so): dropped
            if ok:
                self.completed += 1
            else:
                self.failed += 1
            job.state = DONE  # RUNNING -> DONE
            job.ok, job.result = ok, result
            out.append(job)
            if tally is not None:  # metrics on (its times go to the tally after the answer: work())
                tally.count(job.lane, _tally.RETURNED if ok else _tally.RAISED)
