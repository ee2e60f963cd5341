"""Worker threads: the records, the idle stack, the size arithmetic, and the loop.

The pool core owns one :class:`WorkerSet` and changes it under its lock;
the loop (:func:`work`) runs in each worker thread and talks to the core only
through ``core.lock``, ``core.finish_locked``, ``core.next_locked``,
``core.answer``; the rare paths (a future cancelled as it starts, a fault in
the loop) are :func:`not_started` and :func:`worker_failed`, here.

Threads start on demand, one per call that finds no idle worker, up to the
size. An idle worker blocks on its own ``wake`` lock; the most recently idle
is woken first (it is the warmest). A worker retires when the pool is
larger than its size (at size 0, only once no call is queued: a pool
resized to 0 still runs what it had queued), and when the pool is closed
and the queue empty.

The seam for tests: :data:`start_thread` is how a worker thread is started.
``fairpool.testing.refuse_threads()`` swaps it to make the OS refuse threads.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _hooks, _tally
from ._faultlog import report_fault
from ._job import CANCELLED, DONE, NEW, QUEUED, Job, move, run_call
from ._native import allocate_lock, monotonic, os, worker_local
from ._native import start_thread as _start_native_thread
from .errors import FairpoolError

if TYPE_CHECKING:
    from ._core import Core

__all__ = [
    "AGAIN",
    "EXIT",
    "Worker",
    "WorkerSet",
    "current_core",
    "help_with",
    "not_started",
    "start_thread",
    "stop_idling",
    "work",
    "worker_failed",
]

#: How a worker thread is started: ``start_thread(target, args, name) -> Thread``.
#: Raises RuntimeError when the OS refuses a thread. The fault-injection seam.
start_thread: Callable[[Callable[..., Any], tuple[Any, ...], str], Any] = _start_native_thread

#: Called at two points of the loop, ``fault_hook(stage, job)`` with stage "before run" or
#: "after run", when set: the seam through which ``fairpool.testing`` injects a fault in
#: the loop itself. None (the default) costs one global read per call.
fault_hook: Callable[[str, Job], None] | None = None

#: What ``next_locked`` returns to tell a worker to exit.
EXIT: Any = object()

#: What ``next_locked`` returns to tell a worker to answer its calls (their futures'
#: done-callbacks run there), then ask again: not idle while those run.
AGAIN: Any = object()


_worker_local = worker_local  # which pool's worker this native thread is (kept in _native)


def current_core() -> Core | None:
    """The core this thread is a worker of, or None."""
    core: Core | None = _worker_local.core
    return core


def forget_worker_after_fork() -> None:
    _worker_local.core = _worker_local.worker = None


class Worker:
    """One worker thread's record. Fields change under the pool's lock."""

    __slots__ = (
        "__weakref__",
        "coming",
        "helped",
        "index",
        "job",
        "name",
        "out",
        "stopped_idling",
        "thread",
        "wake",
    )

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.coming = False  # woken or started, and not yet back for a call (see WorkerSet.coming)
        self.wake = allocate_lock()  # held while idle; released to wake it
        self.wake.acquire()
        self.thread: Any = None
        self.job: Job | None = None  # the job it runs now (for shutdown, fork and faults)
        self.helped: list[Job] = []  # jobs its call waits on and it runs itself (help), innermost last
        self.stopped_idling = False  # taken out of the idle stack by stop_idling (its own thread only)
        # What the worker answers after each release of the lock: one list, emptied each time. A
        # forked child answers what it held (its answers were on their way: fairpool._lifecycle).
        self.out: list[Job] = []


class WorkerSet:
    """Which workers exist, which are idle, how many may exist. Under the pool's lock."""

    __slots__ = ("all", "coming", "counts_coming", "idle", "name", "next_index", "records", "size", "threads")

    def __init__(self, name: str, size: int, counts_coming: bool) -> None:
        self.name = name
        self.size = size
        self.all: dict[int, Worker] = {}
        # Every worker thread started, until it is collected: one that retired (it left ``all``)
        # may still be answering its last call; the exit waits for it (fairpool._exitrule).
        self.threads: weakref.WeakSet[Any] = weakref.WeakSet()
        self.records: weakref.WeakSet[Worker] = weakref.WeakSet()  # the same workers' records
        self.idle: list[Worker] = []  # LIFO: the most recently idle worker is warmest
        self.next_index = 0
        # Workers woken or started for a queued call, not yet back for it: the queue's bound
        # does not count those calls. The core counts them for every pool (``counts_coming``: WAKE_AHEAD).
        self.coming = 0
        self.counts_coming = counts_coming

    # wake_one and wake_all wake workers to look again (resize, shutdown), not for a call:
    # they are not counted as coming (dispatch_locked's are), and they may retire.
    def wake_one(self) -> bool:
        """Wake an idle worker to look at the size again (resize); False if none is idle."""
        if self.idle:
            self.idle.pop().wake.release()
            return True
        return False

    def wake_all(self) -> None:
        while self.idle:
            self.idle.pop().wake.release()

    def expect(self, worker: Worker) -> None:
        """``worker`` was woken or started for a queued call (only when ``counts_coming``)."""
        worker.coming = True
        self.coming += 1

    def arrived(self, worker: Worker) -> None:
        """``worker`` is back for a call (under the lock, at the top of ``next_locked``)."""
        if worker.coming:
            worker.coming = False
            self.coming -= 1

    def start(self, core: Core) -> Worker:
        """Start a worker thread. Raises RuntimeError if the OS refuses it (nothing changes then)."""
        index = self.next_index
        self.next_index += 1
        worker = Worker(index, f"fairpool-{self.name}-{index}")
        self.all[index] = worker
        try:
            worker.thread = start_thread(work, (core, worker), worker.name)
        except BaseException:
            del self.all[index]
            raise
        self.threads.add(worker.thread)
        self.records.add(worker)
        if self.counts_coming:
            self.expect(worker)
        return worker

    def should_retire(self, queued: int, coming: bool) -> bool:
        """The pool is larger than its size; at size 0, or for a worker ``coming``, once no call is queued.

        At size 0 every worker that comes back for a call takes one while any
        is queued: one of them may be stuck in C, and the queue must not wait for it.
        A worker woken or started for a queued call (``coming``) takes one too:
        the bound let that call in counting on it.
        """
        return len(self.all) > self.size and not ((self.size == 0 or coming) and queued)

    def retire(self, worker: Worker) -> Any:
        self.all.pop(worker.index, None)
        return EXIT

    def remove_failed(self, worker: Worker) -> None:
        self.arrived(worker)
        self.all.pop(worker.index, None)
        if worker in self.idle:
            self.idle.remove(worker)

    def running_jobs(self, except_thread: int | None = None) -> list[Job]:
        """The jobs the workers run, those they run helping included (all but ``except_thread``'s)."""
        jobs: list[Job] = []
        for w in self.all.values():
            if w.thread is None or w.thread.ident != except_thread:
                if w.job is not None:
                    jobs.append(w.job)
                jobs += w.helped
        return jobs


def resize(core: Core, size: int) -> None:
    """Set ``core``'s size: start workers for queued (and held) calls, let the excess idle ones exit."""
    with core.locked() as out:
        workers = core.workers
        workers.size = size
        for _ in range(min(size - len(workers.all), len(core.admission) - len(workers.idle))):
            try:
                workers.start(core)
            except RuntimeError:
                break  # the workers that exist take the queue; the next call tries again
        core.admit_held_locked(out)  # room for held calls, with the workers just started
        for _ in range(len(workers.all) - size):
            if not workers.wake_one():  # it sees the excess and retires
                break


def _set_batch_scheduling() -> None:
    """Put the calling thread under SCHED_BATCH: no wake-up preemption (Linux only)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: scheduling stays as it was


def work(core: Core, worker: Worker) -> None:
    """A worker thread's whole life: take a call, run it, hand it back, until told to exit.

    Never raises: a call's outcome is a value (``run_call``), and a fault in
    this loop itself goes to :func:`worker_failed`, which answers the call
    the worker held (``worker.job``) and starts its replacement.
    """
    _worker_local.core = core
    _worker_local.worker = worker
    if core.batch_scheduling:
        _set_batch_scheduling()
    lock = core.lock
    ok, result = False, None
    out = worker.out  # what to answer after each release: one list, emptied each time
    job: Any = None  # the job this worker ran last, until it is accounted for
    done: Any = None  # the job just accounted for, until its times go to the pool's tally
    try:
        while True:
            if core.lock is not lock:  # a fork in the call: this is the child's copy of a worker,
                return  # and the child's pool (new lock, no threads) answered its call already
            lock.acquire()
            try:
                if job is not None:
                    core.finish_locked(job, ok, result, out)
                    result = None  # the job holds it now; the caller owns it once answered
                    done = job
                job = core.next_locked(worker, out)
            finally:
                lock.release(out)  # core.unlock(out), spelled out: twice per call
                if out:
                    try:
                        core.answer(out)
                    except BaseException as exc:  # noqa: BLE001 - a future's done-callback, not this worker
                        report_fault("fairpool: answering a call raised (a future's done-callback?)", exc)
                    out.clear()
            if done is not None:  # after the answer, unlocked: the metrics' queue wait and run time
                tally = core.tally
                if tally is not None:
                    tally.ran(done)
                done = None
            if job is None:
                if worker.stopped_idling:  # it ran done-callbacks meanwhile: look again, not idle
                    worker.stopped_idling = False
                    continue
                worker.wake.acquire()  # idle until a call, a resize or a shutdown
                continue
            if job is EXIT:
                return
            if job is AGAIN:  # it answered (ran done-callbacks) before going idle: now look again
                job = None
                continue
            # job.waiter, read twice rather than kept in a local: a local would keep the last
            # call's waiter (a future, and so its result) alive while this worker idles.
            if job.waiter.needs_start and not job.waiter.start():  # a future cancelled just now: never run it
                not_started(core, worker)
                job = None
                continue
            if job.info is None and fault_hook is None:  # nobody observes: the common case
                job.t_started = monotonic()
                ok, result = run_call(job)
                job.t_finished = monotonic()
                job.fn = None  # kept while it ran, for the exit to name it
            else:
                ok, result = _run_observed(job, worker)
                if fault_hook is not None:  # here: a fault now must find the call's outcome set
                    fault_hook("after run", job)
    except BaseException as exc:  # noqa: BLE001 - a fault in fairpool itself, not in the call
        worker_failed(core, worker, ok, result, exc)


def stop_idling() -> None:
    """This thread is about to run a future's done-callbacks: if it is an idle worker, it stops idling.

    A worker answers a future that has done-callbacks before it goes idle (``next_locked``
    returns AGAIN); one added after its pool looked finds it idle already. Taken out of
    the idle stack, it is not the worker woken for a call those callbacks submit (which
    would wait for them to return); it looks at the queue again once they returned.
    """
    core: Core | None = _worker_local.core
    worker: Worker | None = _worker_local.worker
    if core is None or worker is None or worker not in core.workers.idle:  # read unlocked: only
        return  # this thread puts it there, and a wake-up only takes it out
    with core.locked():
        if worker in core.workers.idle:
            core.workers.idle.remove(worker)
            worker.stopped_idling = True


def _run_observed(job: Job, worker: Worker) -> tuple[bool, Any]:
    """Run ``job`` as ``work`` does, telling the observers and calling the "before run" fault hook."""
    if fault_hook is not None:
        fault_hook("before run", job)
    info = job.info
    job.t_started = monotonic()
    if info is not None:
        info.worker, info.t_started = worker.name, job.t_started
        _hooks.notify("call_started", info)
    if info is not None and info.context is not None:
        ok, result = info.context.run(run_call, job)  # in a copy of its caller's context
    else:
        ok, result = run_call(job)
    job.t_finished = monotonic()
    job.fn = None  # type: ignore[assignment]
    if info is not None:
        info.t_finished = job.t_finished
        info.error = None if ok else result
        _hooks.notify("call_finished", info, ok)
    return ok, result


#: How many calls one worker may run helping, one inside the other (each level adds five
#: frames of fairpool's to the stack, plus the call's own frames). Past it, a wait on a queued
#: call waits for a free worker, as from any other thread: the stack stays far from the
#: recursion limit (a chain of nested waits is a recursion; this bounds it).
MAX_HELP_DEPTH = 32


def help_with(job: Job) -> bool:
    """This thread waits on ``job``'s future: if it is a worker of the job's pool and the job is
    still queued there, take the job out of the queue and run it here, now (helping).

    The call is run, accounted for, observed and answered as a worker runs any call
    (``work``); it just runs in the waiting worker's thread, inside its own call. Exactly
    once: the job is taken under the pool's lock by one move (``Core.help_locked``), which
    a worker's pop, a cancel, a shutdown or the exit each find already made.

    Returns:
        True if the job was taken and ran here (it is answered now), False to wait as usual:
        not a worker, a job of another pool, already running or answered, its cancel on its
        way, or :data:`MAX_HELP_DEPTH` helped calls nested already in this worker.
    """
    core: Core | None = _worker_local.core
    worker: Worker | None = _worker_local.worker
    if core is None or worker is None or len(worker.helped) >= MAX_HELP_DEPTH:
        return False
    if job.state > QUEUED:  # read unlocked: running or answered already, so no need of the lock
        return False
    with core.locked() as out:
        left = job.state == NEW  # a hub's thread left it for the lock's holder: this release takes it in
        taken = core.help_locked(job, worker, out)
    if not taken and left and job.state == QUEUED:
        with core.locked() as out:
            taken = core.help_locked(job, worker, out)
    if not taken:
        return False
    ok, result = False, None
    try:
        if job.waiter.needs_start and not job.waiter.start():  # the future was cancelled just now
            with core.locked() as out:
                worker.helped.remove(job)
                if move(job, CANCELLED):  # else a shutdown's timeout answered it (CLOSED) meanwhile
                    core.cancelled += 1
                    core.count_locked(job, _tally.CANCELLED)
                    core.drop_call(job)
                    out.append(job)  # not answered: its observers hear it was cancelled
            return True
        if job.info is None and fault_hook is None:
            job.t_started = monotonic()
            ok, result = run_call(job)
            job.t_finished = monotonic()
            job.fn = None  # type: ignore[assignment]
        else:
            ok, result = _run_observed(job, worker)
            if fault_hook is not None:
                fault_hook("after run", job)
    except BaseException as exc:  # noqa: BLE001 - a fault in fairpool itself, not in the call
        _help_failed(core, worker, job, ok, result, exc)
        return True
    out = []
    core.lock.acquire()
    core.answering[id(out)] = out  # a fork meanwhile: the child answers it (fairpool._lifecycle)
    try:
        core.finish_helped_locked(job, worker, ok, result, out)
        result = None  # the job holds it now
    finally:
        core.lock.release(out)
    try:
        if out:
            core.answer(out)
    except BaseException as exc:  # noqa: BLE001 - a future's done-callback, not this wait
        report_fault("fairpool: answering a call raised (a future's done-callback?)", exc)
    finally:
        core.answering.pop(id(out), None)
    tally = core.tally
    if tally is not None:  # after the answer, unlocked, as work() does: the metrics' queue wait and run time
        tally.ran(job)
    return True


def _help_failed(core: Core, worker: Worker, job: Job, ok: bool, result: Any, exc: BaseException) -> None:
    """A fault in fairpool while a worker ran ``job`` helping: answer it, as :func:`worker_failed` does."""
    with core.locked() as out:
        core.worker_faults += 1
        if job in worker.helped:
            worker.helped.remove(job)
        if job.state == DONE:
            pass
        elif job.t_finished:
            core.busy += 1  # finish_locked counts a worker freed: this one is not
            core.finish_locked(job, ok, result, out)  # it ran: its real outcome goes back
        else:
            message = f"fairpool worker {worker.name} failed while running this call (helping): {exc!r}"
            core.close_locked(job, FairpoolError(message), out)
    report_fault(f"fairpool worker {worker.name} failed running a call it helped; the call was answered", exc)


def not_started(core: Core, worker: Worker) -> None:
    """The worker's job was cancelled as it was about to start (its waiter said so): account for it."""
    with core.locked() as out:
        job = worker.job
        assert job is not None
        worker.job = None
        core.busy -= 1
        if move(job, CANCELLED):  # else a shutdown's timeout answered it (CLOSED) meanwhile
            core.cancelled += 1
            core.count_locked(job, _tally.CANCELLED)
            core.drop_call(job)
            out.append(job)  # not answered: its observers hear it was cancelled


def worker_failed(core: Core, worker: Worker, ok: bool, result: Any, exc: BaseException) -> None:
    """A fault in a worker's loop: answer the call it held, and replace it."""
    with core.locked() as out:
        core.worker_faults += 1
        job = worker.job
        if job is None or job.state == DONE:
            pass  # nothing held, or finish_locked accounted for it already
        elif job.t_finished:
            core.finish_locked(job, ok, result, out)  # it ran: its real outcome goes back
        else:
            core.busy -= 1
            message = f"fairpool worker {worker.name} failed while running this call: {exc!r}"
            core.close_locked(job, FairpoolError(message), out)
        worker.job = None
        core.workers.remove_failed(worker)
        if len(core.admission) or core.admission.held:
            core.dispatch_locked(out)
    report_fault(f"fairpool worker {worker.name} failed and was replaced; its calls were answered", exc)
