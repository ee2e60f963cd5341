"""A pool's life cycle: shutdown and fork; the interpreter's exit is ``fairpool._exitrule``.

The only module that registers process hooks (``atexit``, threading's
pre-join hook and ``os.register_at_fork``), for every live pool and every
hub channel: at its import, the fork handler first, then the exit rule's
:func:`~fairpool._exitrule.at_exit`.

Guarantees:

* Shutdown answers every caller: queued calls still run; when a timeout
  runs out first, what is still queued or running is answered with a
  PoolClosed of its own (one instance per caller, so no traceback holds
  another caller's frames). A worker that shuts down its own pool (a call
  that calls ``shutdown`` or ``killall``) does not wait for itself, its
  own call is answered with its real outcome when it returns, and the
  calls still queued are left for it to run then, timeout or not.
* At interpreter exit the exit rule holds, one for every pool and world:
  see ``fairpool._exitrule``. A shutdown during the exit waits no longer
  than its pool's exit deadline.
* In a forked child the pool starts afresh: new lock, no threads; calls
  that were queued or running in the parent are answered with PoolClosed
  in the child (the parent's threads run them), never run twice.
"""

from __future__ import annotations

import atexit
from typing import Any

from . import _exitrule, _hubchannel, _workers
from ._core import Core
from ._hublock import HubLock
from ._job import ANSWERED, NEW
from ._native import get_ident, join_native, monotonic, os, stdlib_threading
from .errors import CancelledByShutdown, PoolClosed

__all__ = ["reopen", "shutdown"]


def shutdown(core: Core, timeout: float | None, wait: bool, join: Any, cancel_futures: bool = False) -> None:
    """Take no more calls, let the queue run, stop the workers; see the module docstring.

    ``join(threads, deadline)`` waits for threads (green or native, as the caller can).
    With ``cancel_futures``, queued calls are taken out first: futures are
    cancelled, other callers answered with PoolClosed. During the interpreter's
    exit the wait is native and ends at the pool's exit deadline at the latest;
    what is left then is the exit's to answer and name (:func:`~fairpool._exitrule.at_exit`).
    """
    _exitrule.exit_began(wait=wait)  # at exit before any fairpool hook ran: begin the exit rule here
    with core.locked() as out:
        core.closed = True
        if cancel_futures:
            for job in core.admission.drain():
                cancelled = CancelledByShutdown(f"pool {core.name!r} was shut down with cancel_futures=True")
                core.close_locked(job, cancelled, out)
        core.workers.wake_all()
        threads = [w.thread for w in core.workers.all.values() if w.thread is not None]
    if not wait:
        return
    me = get_ident()  # a worker shutting down its own pool does not wait for itself
    inside = any(t.ident == me for t in threads)
    deadline = None if timeout is None else monotonic() + timeout
    _join_others(core, me if inside else None, threads, deadline, join)
    exit_deadline = _exitrule.exit_deadline(core)
    if exit_deadline is not None and (deadline is None or exit_deadline < deadline):
        return  # the exit's deadline came first: what is left, the exit answers and names
    if timeout is None:
        return  # every other worker exited, so the queue is empty (or ours to run next)
    with core.locked() as out:
        # From inside a call, what is still queued is this worker's to run once its call
        # returns: the timeout bounds this wait, it does not give up on calls it cannot wait for.
        left = [] if inside else core.admission.drain()
        left += core.workers.running_jobs(except_thread=me)
        for job in left:
            error = PoolClosed(
                f"pool {core.name!r} was shut down and its timeout ({timeout}s) ran out before this "
                "call finished"
            )
            core.close_locked(job, error, out)


def _join_others(core: Core, me: int | None, threads: list[Any], deadline: float | None, join: Any) -> None:
    """Wait for the workers to exit, but never for one inside a shutdown of this pool itself
    (``me`` is the caller's thread when it is one of them: two such calls would each wait
    for the other forever), nor once the pool was reopened (``killall``: they stay).

    Workers started after the shutdown began (``resize()`` up, a failed worker's
    replacement) are waited for too: each step looks at the pool's workers again.
    Once the interpreter's exit began (before or during this wait), the wait is
    native and ends at the pool's exit deadline at the latest.
    """
    with core.locked():
        if me is not None:
            core.shutting_down_inside.add(me)
    threads = list(threads)
    try:
        while True:
            with core.locked():
                if not core.closed:
                    return  # reopened meanwhile: its workers stay, nothing to wait for
                threads += [w.thread for w in core.workers.all.values() if w.thread not in threads]
                busy_elsewhere = core.shutting_down_inside
                others = [
                    t for t in threads if t is not None and t.ident not in busy_elsewhere and t.is_alive()
                ]
            if not others:
                return
            until = deadline
            exit_deadline = _exitrule.exit_deadline(core)
            if exit_deadline is not None:
                join = join_native  # at exit nothing needs the hub to run
                until = exit_deadline if until is None else min(until, exit_deadline)
            step = monotonic() + _INSIDE_STEP
            join(others, step if until is None else min(step, until))
            if until is not None and monotonic() >= until:
                return
    finally:
        if me is not None:
            with core.locked():
                core.shutting_down_inside.discard(me)


#: How often a waiting shutdown looks again at which workers it still waits for.
_INSIDE_STEP = 0.05


def reopen(core: Core) -> None:
    """Take calls again after a shutdown (eventlet's ``killall`` then reuse); not once the exit began."""
    if _exitrule.exit_began(wait=False):
        return
    with core.locked():
        if _exitrule.exit_deadline(core) is None:  # the exit did not begin meanwhile
            core.closed = False


# -- fork ----------------------------------------------------------------------------


def _after_fork_in_child(core: Core) -> None:
    """Start afresh: new lock, no threads; calls in flight at the fork answered with PoolClosed."""
    old_lock = core.lock
    core.lock = HubLock(core.take_in_locked)
    in_flight = [j for j in old_lock.left if j.state == NEW] + list(core.admission)
    in_flight += core.workers.running_jobs()
    # Calls a worker had answered under the lock and was answering after it when the process
    # forked: that thread is gone here, and a future of them would never be settled.
    answering = [j for w in list(core.workers.records) for j in w.out if j.state in ANSWERED]
    answering += [j for out in list(core.answering.values()) for j in out if j.state in ANSWERED]
    core.answering = {}
    core.admission.drain()
    core.workers = _workers.WorkerSet(core.name, core.workers.size, core.workers.counts_coming)
    core.busy = 0
    core.shutting_down_inside = set()
    with core.locked() as out:
        for job in in_flight:
            if job.waiter is not None:
                job.waiter.reset_after_fork()
            error = PoolClosed(
                f"the process forked while this call was in pool {core.name!r}; it runs in the parent only"
            )
            core.close_locked(job, error, out)
    for job in answering:
        waiter = job.waiter
        if waiter is not None and waiter.needs_start:  # a future: any thread of the child may wait on it
            waiter.answer_in_child(
                PoolClosed(
                    f"the process forked while this call's answer was on its way in pool {core.name!r}; "
                    "the parent has its outcome"
                )
            )


#: The pools whose locks the thread that forks holds across the fork (``_before_fork``).
_held_at_fork: list[Core] = []


def _before_fork() -> None:
    """Hold every pool's lock across the fork, so that the child sees each pool between two
    moves (another thread half-way through one would leave the child's copy inconsistent).
    A pool's lock is never held while user code runs, so this waits only for moves to end."""
    for core in list(_exitrule._cores):
        core.lock.acquire()
        _held_at_fork.append(core)


def _after_fork_in_parent() -> None:
    held = list(_held_at_fork)
    _held_at_fork.clear()
    for core in held:
        core.unlock([])  # takes in what the hub left meanwhile, and answers what that moved


def _after_fork() -> None:
    _held_at_fork.clear()  # the parent's list: the child replaces each pool's lock
    _exitrule.forget_exit_after_fork()
    _workers.forget_worker_after_fork()
    _hubchannel.forget_all_after_fork()
    for core in list(_exitrule._cores):
        _after_fork_in_child(core)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork)
# Before the interpreter joins non-daemon threads (as concurrent.futures does), so that
# such a thread waiting on a queued call is answered and the process can exit; atexit as
# well: under eventlet.monkey_patch() the interpreter runs eventlet's copy of the pre-join
# hooks (hook_exit registers there too, once threading is patched).
# A first import once the exit began (in a non-daemon thread the interpreter is joining, in
# an atexit handler) finds threading shut down: atexit still runs the hook, and a pool made
# then is closed for exit at once (_exitrule.register() looks at threading's own flag).
try:
    stdlib_threading._register_atexit(_exitrule.at_exit)
except RuntimeError:  # "can't register atexit after shutdown"
    pass
atexit.register(_exitrule.at_exit)
_exitrule.hook_exit(atexit_too=False)
