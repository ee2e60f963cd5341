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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from ._default import check_pool, default_pool
from .errors import PoolClosed
from .pool import Pool

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
        self._shut_down = True
        if self.owns_pool:
            self.pool.shutdown(wait, cancel_futures=cancel_futures)

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
