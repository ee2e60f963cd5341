"""A pool's life cycle: shutdown, interpreter exit, fork.

The only module that registers process hooks (``atexit`` and
``os.register_at_fork``), for every live pool and every hub channel.

Guarantees:

* Shutdown answers every caller: queued calls still run; when a timeout
  runs out first, what is still queued or running is answered with a
  PoolClosed of its own (one instance per caller, so no traceback holds
  another caller's frames). A worker that shuts down its own pool (a call
  that calls ``shutdown`` or ``killall``) does not wait for itself, its
  own call is answered with its real outcome when it returns, and the
  calls still queued are left for it to run then, timeout or not.
* At exit, queued calls are answered with PoolClosed and nothing waits for
  a call stuck in C (workers are daemon threads).
* In a forked child the pool starts afresh: new lock, no threads; calls
  that were queued or running in the parent are answered with PoolClosed
  in the child (the parent's threads run them), never run twice.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

from . import _hubchannel, _workers
from ._core import Core
from ._hublock import HubLock
from ._job import NEW
from ._native import get_ident, monotonic, os, stdlib_threading
from .errors import CancelledByShutdown, PoolClosed

__all__ = ["close_at_exit", "register", "reopen", "shutdown"]

_cores: weakref.WeakSet[Core] = weakref.WeakSet()


def register(core: Core) -> None:
    """Answer this core's callers at exit and after a fork."""
    _cores.add(core)


def shutdown(core: Core, timeout: float | None, wait: bool, join: Any, cancel_futures: bool = False) -> None:
    """Take no more calls, let the queue run, stop the workers; see the module docstring.

    ``join(threads, deadline)`` waits for threads (green or native, as the caller can).
    With ``cancel_futures``, queued calls are taken out first: futures are
    cancelled, other callers answered with PoolClosed.
    """
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
            step = monotonic() + _INSIDE_STEP
            join(others, step if deadline is None else min(step, deadline))
            if deadline is not None and monotonic() >= deadline:
                return
    finally:
        if me is not None:
            with core.locked():
                core.shutting_down_inside.discard(me)


#: How often a waiting shutdown looks again at which workers it still waits for.
_INSIDE_STEP = 0.05


def reopen(core: Core) -> None:
    """Take calls again after a shutdown (eventlet's ``killall`` then reuse)."""
    with core.locked():
        core.closed = False


def close_at_exit(core: Core) -> None:
    """At interpreter exit: take no more calls, answer queued ones, wait for nothing."""
    with core.locked() as out:
        core.closed = True
        for job in core.admission.drain():
            error = PoolClosed(f"pool {core.name!r} was closed at interpreter exit before this call ran")
            core.close_locked(job, error, out)
        core.workers.wake_all()


def _after_fork_in_child(core: Core) -> None:
    """Start afresh: new lock, no threads; calls in flight at the fork answered with PoolClosed."""
    old_lock = core.lock
    core.lock = HubLock(core.take_in_locked)
    in_flight = [j for j in old_lock.left if j.state == NEW] + list(core.admission)
    in_flight += core.workers.running_jobs()
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


def _after_fork() -> None:
    _workers.forget_worker_after_fork()
    _hubchannel.forget_all_after_fork()
    for core in list(_cores):
        _after_fork_in_child(core)


def _at_exit() -> None:
    for core in list(_cores):
        close_at_exit(core)


os.register_at_fork(after_in_child=_after_fork)
# Before the interpreter joins non-daemon threads (as concurrent.futures does), so
# that such a thread waiting on a queued call is answered and the process can exit;
# atexit as well, for an interpreter that has no such hook.
stdlib_threading._register_atexit(_at_exit)
atexit.register(_at_exit)
