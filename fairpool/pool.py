"""The pool: native worker threads behind one global, fair queue.

:class:`Pool` is the public face: argument checks, the caller's side of a
call (make the job and its waiter, hand it in, wait), docs and types. The
moves of a call live in ``fairpool._core``, the worker loop in
``fairpool._workers``, the ways of waiting in ``fairpool._waiters``,
shutdown and fork in ``fairpool._lifecycle``, and the interpreter's exit in
``fairpool._exitrule``. Worker threads hold the core, never the Pool, so a
pool dropped without a shutdown is collected and its finalizer stops the
idle workers.
"""

from __future__ import annotations

import asyncio
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Literal, ParamSpec, TypeVar

from . import _exitrule, _hooks, _hubchannel, _lifecycle, _snapshot, _tally, _workers
from ._core import Core
from ._fairqueue import POLICIES
from ._hubchannel import green_channel
from ._job import Job, describe
from ._native import holds_import_lock, import_lock_held, join_native, monotonic
from ._statslog import start_stats_logger
from ._waiters import AsyncioWaiter, GreenWaiter, NativeWaiter, PoolFuture, settle_inline
from ._workers import _worker_local, current_core
from .lanes import DEFAULT_LANE, _current, check_lane_name
from .statistics import PoolStatistics

__all__ = ["DEFAULT_THREADS", "Pool"]

P = ParamSpec("P")
R = TypeVar("R")

#: eventlet.tpool's default size, kept so a drop-in pool behaves the same.
DEFAULT_THREADS = 20

#: The longest ``stats_interval``: a day (longer is a mistake, and inf cannot be waited for).
MAX_STATS_INTERVAL = 86400.0


def check_size(value: object, param: str) -> int:
    """``value`` if it is an int >= 0; else ValueError naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{param} must be an int >= 0, got {value!r}")
    return value


def _must_not_wait() -> bool:
    """Whether this thread runs an event loop (an eventlet hub or asyncio's): it never waits for a lock."""
    return _hubchannel.on_hub() or asyncio._get_running_loop() is not None


def _join(threads: list[Any], deadline: float | None) -> None:
    """Wait for threads to end, green if the caller is on a hub, native otherwise."""
    if _hubchannel.on_hub():
        import eventlet

        while any(t.is_alive() for t in threads):
            if deadline is not None and monotonic() >= deadline:
                return
            eventlet.sleep(0.002)
        return
    join_native(threads, deadline)


class Pool(Executor):
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
            hub's thread, only to wait for the GIL that thread holds. Off by
            default: it shortens a no-op round trip by about a fifth while a
            CPU is free, but when every CPU is busy (other processes at the
            same priority) a woken worker waits for a time slice before it
            runs, and 1 ms calls ran at a fifth of the speed (docs/benchmarks.md,
            "Busy host"). Turn it on only for a host with CPUs to spare.
            Threads started inside a call inherit it.
        exit_timeout: At interpreter exit, the pool's queued calls still run
            and its running calls finish, for at most this many seconds
            (0 to 3600) from when the exit began; then the process exits and
            one :class:`fairpool.ExitTimeoutWarning` names each call left.
            None: ``FAIRPOOL_EXIT_TIMEOUT``, or 5 seconds.

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
        batch_scheduling: bool = False,
        exit_timeout: float | None = None,
    ) -> None:
        check_size(threads, "threads")
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
            or not 0 < stats_interval <= MAX_STATS_INTERVAL
        ):
            raise ValueError(
                f"stats_interval must be a number of seconds > 0 and <= {MAX_STATS_INTERVAL:g} (a day) "
                f"or None, got {stats_interval!r}"
            )
        if not isinstance(batch_scheduling, bool):
            raise ValueError(f"batch_scheduling must be True or False, got {batch_scheduling!r}")
        exit_seconds = _exitrule.check_exit_timeout(exit_timeout, "exit_timeout")
        self._core = Core(name, threads, policy, lane_key, max_queue, on_full, "threads", batch_scheduling)
        self._core.exit_timeout = exit_seconds
        _exitrule.register(self._core)
        self.name = name
        self.policy = policy
        self.max_queue = max_queue
        self._warned_zero = False
        self._finalizer = weakref.finalize(self, _lifecycle.shutdown, self._core, None, False, _join)
        if stats_interval is not None:
            start_stats_logger(weakref.ref(self), float(stats_interval))

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
        return self._call(fn, args, kwargs)  # type: ignore[no-any-return]

    def _call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The caller's side of :meth:`execute`: the hot path of every pool call."""
        core = self._core
        if core.closed or not callable(fn):
            # One of the pool's own workers runs its nested call inline even once the pool
            # is closed: a queued call that a shutdown, killall or the exit still runs uses it.
            if _worker_local.core is not core or not callable(fn):
                self._check_call(fn)
        if core.workers.size == 0 or _worker_local.core is core:
            return self._run_inline(fn, args, kwargs)
        if import_lock_held() and holds_import_lock():  # the C test first: it is almost always False
            return self._run_inline(fn, args, kwargs)
        if core.lane_key is None and _current.get() is None:
            job = Job(fn, args, kwargs, DEFAULT_LANE, 1)  # _new_job's common case, inline
        else:
            job = self._new_job(fn, args, kwargs)
        channel = green_channel()
        if channel is None:
            native = job.waiter = NativeWaiter()
            try:
                core.submit(job, False)
                native.wait()
            except BaseException:
                core.cancel(job, green=False)  # KeyboardInterrupt in a native caller
                raise
        else:
            # Wait green: the hub runs other green threads until the answer comes.
            green = job.waiter = GreenWaiter(channel)
            try:  # submit too: an observer that yields lets a Timeout or kill() in (_hooks.notify)
                core.submit(job, True)  # green: the hub's thread never waits for the pool's lock
                green.wait()
            except BaseException:
                green.give_up()  # if it never waited
                core.cancel(job, green=True)  # killed (GreenletExit) or timed out (eventlet.Timeout)
                raise
        if job.ok:  # job.unwrap(), spelled out for a value: the common case
            result = job.result
            job.result = None
            return result
        return job.unwrap()

    def _check_call(self, fn: object) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        if self._core.closed:
            raise self._refused(fn, self._core.closed_error())

    def _refused(self, fn: Any, error: Exception) -> Exception:
        """``error``, for a call refused before it was handed in; observers and metrics see it as rejected."""
        core = self._core
        if core.tally is not None:  # metrics on (rare path: the pool is shut down)
            with core.locked():
                core.count_locked(self._new_job(fn, (), {}), _tally.REJECTED)
        if _hooks.observers:
            core = self._core
            lane = self._new_job(fn, (), {}).lane
            info = _hooks.CallInfo(self.name, describe(fn), lane, monotonic(), len(core.admission), core.busy)
            _hooks.notify("call_submitted", info)
            info.error = error
            _hooks.notify("call_answered", info, "rejected")
        return error

    def _new_job(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        entry = _current.get()
        if entry is not None:
            return Job(fn, args, kwargs, entry[0], entry[1])
        lane_key = self._core.lane_key
        if lane_key is not None:
            name = lane_key()
            if name is not None:
                return Job(fn, args, kwargs, check_lane_name(name, "the lane_key result"), 1)
        return Job(fn, args, kwargs, DEFAULT_LANE, 1)

    def _run_inline(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        core = self._core
        if core.workers.size == 0 and not self._warned_zero:
            self._warned_zero = True
            message = (
                f"fairpool pool {self.name!r} has 0 threads ({core.size_source}=0): every call "
                "runs inline in the caller and blocks its hub while it runs"
            )
            if core.size_source != "threads":  # the default pool: eventlet's words first, for its users
                message = (
                    "Zero threads in tpool.  All tpool.execute calls will execute in main thread.  "
                    f"Check the value of the environment variable {core.size_source}. ({message})"
                )
            warnings.warn(message, RuntimeWarning, stacklevel=4)
        core.inline += 1  # not under the lock: an approximate count
        return fn(*args, **kwargs)

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Queue ``fn(*args, **kwargs)`` and return a :class:`concurrent.futures.Future`.

        For native-thread callers that want to wait with a timeout or cancel:
        ``future.cancel()`` succeeds until a worker starts the call, and a
        cancelled call never runs. Lanes apply as for :meth:`execute`.

        The call never runs on the caller's stack: from one of this pool's own
        workers it is queued like any other (a chain of done-callbacks that each
        submit the next step is a loop, not a recursion); with 0 threads it runs
        inline, its future settled without nesting without bound. A pool call
        that then waits on such a future (``result()``, ``exception()`` without
        a timeout, ``map()``) while its call is still queued runs that call
        itself ("helping", docs/api.md): it never waits for a free worker.

        Raises:
            PoolClosed: The pool is shut down.
            QueueFull: The queue is at ``max_queue`` and ``on_full="raise"``.
            TypeError: ``fn`` is not callable.
        """
        self._check_call(fn)
        core = self._core
        future: PoolFuture[R] = PoolFuture()
        if core.workers.size == 0:
            self._submit_inline(future, fn, args, kwargs)
            return future
        # From one of this pool's own workers too, the call is queued, never run here: a
        # done-callback that submits the next step of a chain would otherwise nest each step
        # inside the last (callbacks run in the worker), until RecursionError.
        admission = core.admission
        if admission.raise_when_full and admission.full(core.workers.coming):
            raise self._refused(fn, admission.full_error(fn))  # refused here, where the caller can see it
        job = self._new_job(fn, args, kwargs)
        job.waiter = future
        future._fairpool_job = job
        future._fairpool_cancel = self._cancel_from_future
        green = _must_not_wait()
        try:
            core.submit(job, green)
        except BaseException:  # a Timeout or kill() let in by an observer that yielded
            core.cancel(job, green)
            raise
        # Refused under the lock: the bound filled (or a shutdown came) since the check above.
        # Raised here too; only a call a hub's thread left for the lock's holder is refused later.
        error = future.exception(0) if job.rejected and future.done() else None
        if error is not None:
            raise error
        return future

    def _submit_inline(
        self, future: PoolFuture[Any], fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A pool of size 0: run the call here, and settle its future without nesting.

        Its done-callbacks may submit again: settlings nest at most
        ``_waiters.MAX_NESTED`` deep in this thread (or green thread, or task),
        and a deeper one is settled once the outermost returns (``settle_inline``),
        so a chain of callbacks runs as a loop, not as a recursion.
        """
        future.set_running_or_notify_cancel()
        ok = True
        try:
            value = self._run_inline(fn, args, kwargs)
        except BaseException as exc:  # noqa: BLE001 - the future carries it
            ok, value = False, exc
        settle_inline(future, ok, value)  # outside the handler: callbacks see no exception in flight

    def _cancel_from_future(self, job: Job) -> None:
        self._core.cancel(job, green=_must_not_wait())

    async def run_sync(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` on a worker thread and await its result (asyncio).

        The event loop runs other tasks meanwhile, and never waits for the
        pool's lock. Lanes follow the task's context. If the task is
        cancelled while the call is queued, the call never runs; while it
        runs, its outcome is dropped.

        Raises:
            PoolClosed: The pool is shut down.
            QueueFull: The queue is at ``max_queue`` and ``on_full="raise"``.
            TypeError: ``fn`` is not callable.
        """
        core = self._core
        if core.closed or not callable(fn):
            self._check_call(fn)
        if core.workers.size == 0 or current_core() is core:
            return self._run_inline(fn, args, kwargs)  # type: ignore[no-any-return]
        job = self._new_job(fn, args, kwargs)
        waiter = job.waiter = AsyncioWaiter(asyncio.get_running_loop())
        try:
            core.submit(job, True)  # the loop's thread, like a hub's, never waits for the lock
            await waiter.future
        except BaseException:
            core.cancel(job, green=True)  # the task was cancelled
            raise
        return job.unwrap()  # type: ignore[no-any-return]

    def resize(self, threads: int) -> None:
        """Change the most worker threads, on a live pool.

        Growing starts threads at once for queued calls; shrinking lets
        idle workers exit now and busy ones as they finish their call.
        0 makes later calls run inline (queued calls still run).

        Raises:
            ValueError: ``threads`` is not an int >= 0.
        """
        check_size(threads, "threads")
        if threads == 0:
            self._warned_zero = False
        _workers.resize(self._core, threads)

    @property
    def size(self) -> int:
        """The most worker threads the pool runs."""
        return self._core.workers.size

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._core.closed

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None
    ) -> None:
        """Take no more calls, run the queued ones, and stop the workers.

        As :meth:`concurrent.futures.Executor.shutdown`, with fairpool's
        ``timeout``. Every caller is answered: queued calls still run (as with
        eventlet's ``killall``) unless ``cancel_futures`` is set. If ``timeout``
        seconds pass first, the calls still queued or running are answered
        with :class:`fairpool.PoolClosed` (a running call goes on in its
        thread; its result is dropped). A green caller waits green. Called
        from inside one of this pool's calls, it does not wait for that call,
        and it leaves the queued calls to run once that call returns (its
        timeout then bounds only the wait for the other workers' calls).
        Calls made afterwards raise PoolClosed.

        Args:
            wait: Wait for the queued and running calls (up to ``timeout``);
                False returns at once, and the workers exit once the queue is empty.
            cancel_futures: Take out every call still queued: ``submit()``
                futures are cancelled, other callers get PoolClosed; running
                calls finish.
            timeout: Seconds to wait; None waits for every call.

        Raises:
            TypeError: ``wait`` is not a bool (``shutdown(5)`` once meant a timeout:
                pass ``timeout=5``).
            ValueError: ``timeout`` is negative.
        """
        if not isinstance(wait, bool):
            raise TypeError(
                f"wait must be a bool, got {wait!r}; the timeout is keyword-only: shutdown(timeout={wait!r})"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            raise ValueError(f"timeout must be a number >= 0 or None, got {timeout!r}")
        _lifecycle.shutdown(self._core, timeout, wait, _join, cancel_futures=bool(cancel_futures))

    def _reopen(self) -> None:
        """Take calls again after a shutdown (for eventlet's ``killall``, then reuse)."""
        _lifecycle.reopen(self._core)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's counters and recent latencies."""
        return _snapshot.statistics(self._core)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        core = self._core
        state = "closed" if core.closed else "open"
        return (
            f"<fairpool.Pool {self.name!r} {state} policy={self.policy} "
            f"threads={len(core.workers.all)}/{core.workers.size} queued={len(core.admission)}>"
        )
