"""fairpool from asyncio: await a pool call, or make fairpool the loop's default executor.

::

    result = await fairpool.run_sync(conn.lookupByName, name)   # the default pool
    result = await pool.run_sync(ioctx.stat, name)               # a pool of your own

    fairpool.aio.install()            # in the running loop: asyncio.to_thread and
                                      # run_in_executor(None, ...) now run on fairpool

Lanes follow the task's context (``with fairpool.lane("bulk"):`` inside a
task), so the same fairness holds between tasks as between green threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import _exitrule
from ._default import check_pool, default_pool
from .errors import PoolClosed
from .pool import Pool

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
else:
    try:
        from concurrent.futures import ThreadPoolExecutor
    except RuntimeError:
        # A first import once the interpreter's exit began: concurrent.futures.thread
        # cannot register its exit hook then, and refuses to load. fairpool still imports
        # (its pools are closed for the exit); only asyncio's type check is lost.
        class ThreadPoolExecutor(Executor):
            pass


__all__ = ["DefaultExecutor", "install", "run_sync"]

P = ParamSpec("P")
R = TypeVar("R")


async def run_sync(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``await`` ``fn(*args, **kwargs)`` run on the default pool: see :meth:`fairpool.Pool.run_sync`."""
    return await default_pool().run_sync(fn, *args, **kwargs)


class DefaultExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` by type only, so asyncio accepts it: every call goes to a fairpool Pool.

    ``loop.set_default_executor`` accepts only ThreadPoolExecutor instances.
    This one starts no thread of its own: ``submit`` is the pool's. When the
    loop shuts it down (``asyncio.run`` does, at its end), the pool is shut
    down only if this executor made it (``owns_pool``).

    Args:
        pool: The pool to run on; None makes one (``threads`` workers) that this executor owns.
        threads: The size of the pool made when ``pool`` is None, >= 1.

    Raises:
        TypeError: ``pool`` is not a Pool.
        ValueError: ``threads`` is not an int >= 1.
    """

    def __init__(self, pool: Pool | None = None, *, threads: int = 8) -> None:
        # ThreadPoolExecutor.__init__ is not called: it would set up threads and
        # queues of its own. Only the methods below are used.
        check_pool(pool)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.owns_pool = pool is None
        self.pool = pool if pool is not None else Pool(threads, name="asyncio")
        self._shut_down = False  # this executor's own state: a shared pool lives on

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        if self._shut_down:
            raise PoolClosed(f"this asyncio default executor on pool {self.pool.name!r} was shut down")
        return self.pool.submit(fn, *args, **kwargs)

    def map(
        self, fn: Callable[..., R], *iterables: Any, timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[R]:
        return self.pool.map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; shut down the pool if this executor made it.

        ``asyncio.run()`` calls this at its end (``shutdown_default_executor``)
        and waits for it with no limit. So that a call stuck in C (a
        ``to_thread`` call its task gave up on) cannot hold ``asyncio.run()``
        forever, ``wait=True`` waits at most the pool's ``exit_timeout`` (5 s by
        default): then the calls still queued or running are answered with
        :class:`~fairpool.PoolClosed`, a stuck call is left in its daemon
        thread, and one :class:`~fairpool.ExitTimeoutWarning` says so.

        Args:
            wait: Wait for the queued and running calls (at most ``exit_timeout``).
            cancel_futures: Cancel the calls still queued.
        """
        self._shut_down = True
        if not self.owns_pool:
            return
        if not wait:
            self.pool.shutdown(False, cancel_futures=cancel_futures)
            return
        limit = _exitrule.exit_timeout_of(self.pool._core)
        self.pool.shutdown(True, cancel_futures=cancel_futures, timeout=limit)
        left = _exitrule.running_workers(self.pool._core)
        if left:
            _exitrule.warn_exit_timeout(
                f"fairpool: asyncio's shutdown of its default executor waited {limit:g}s (the exit_timeout "
                f"of pool {self.pool.name!r}) and left {left} call(s) running; their callers got PoolClosed"
            )

    def __repr__(self) -> str:
        return f"<fairpool.aio.DefaultExecutor on {self.pool!r}>"


def install(loop: asyncio.AbstractEventLoop | None = None, pool: Pool | None = None) -> DefaultExecutor:
    """Make fairpool the default executor of ``loop`` (default: the running loop).

    ``asyncio.to_thread(...)`` and ``loop.run_in_executor(None, ...)`` then run
    on ``pool`` (default: fairpool's default pool, which the loop does not shut
    down), with its lanes, bounds, statistics and tracing.

    Raises:
        RuntimeError: ``loop`` is None and no loop is running.
        TypeError: ``pool`` is not a Pool.
    """
    check_pool(pool)
    if loop is None:
        loop = asyncio.get_running_loop()
    executor = DefaultExecutor(pool if pool is not None else default_pool())
    loop.set_default_executor(executor)
    return executor
