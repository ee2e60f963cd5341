"""A drop-in ``eventlet.tpool``: the same names, on fairpool's default pool.

Replace ``from eventlet import tpool`` with ``from fairpool import tpool``,
or call :func:`fairpool.monkey_patch` once at start-up so that every user of
``eventlet.tpool`` runs here unchanged.

The default pool is made on first use, sized by ``EVENTLET_THREADPOOL_SIZE``
(default 20) as eventlet's is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from eventlet import timeout as _timeout

from ._native import allocate_lock, os
from .pool import DEFAULT_THREADS, Pool, _check_size
from .proxy import Proxy as Proxy
from .proxy import proxy_call as proxy_call
from .statistics import PoolStatistics

__all__ = ["Proxy", "execute", "killall", "set_num_threads"]

P = ParamSpec("P")
R = TypeVar("R")

#: Kept for code that reads or sets them on eventlet.tpool. fairpool never
#: prints the exceptions it hands back, so QUIET has no effect.
QUIET = True
EXC_CLASSES = (Exception, _timeout.Timeout)
SYS_EXCS = (GeneratorExit, KeyboardInterrupt, SystemExit)

SIZE_VARIABLE = "EVENTLET_THREADPOOL_SIZE"

_default: Pool | None = None
_default_lock = allocate_lock()


def _size_from_environment() -> int:
    raw = os.environ.get(SIZE_VARIABLE)
    if raw is None or raw.strip() == "":
        return DEFAULT_THREADS
    try:
        size = int(raw)
    except ValueError:
        raise ValueError(f"{SIZE_VARIABLE} must be an int >= 0, got {raw!r}") from None
    return _check_size(size, SIZE_VARIABLE)


def default_pool() -> Pool:
    """The pool behind the module-level functions, made on first use.

    Raises:
        ValueError: ``EVENTLET_THREADPOOL_SIZE`` is not an int >= 0.
    """
    global _default
    pool = _default
    if pool is None:
        with _default_lock:
            if _default is None:
                _default = Pool(_size_from_environment(), name="default", _size_source=SIZE_VARIABLE)
            pool = _default
    return pool


def execute(meth: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``meth(*args, **kwargs)`` in the default pool; see :meth:`fairpool.Pool.execute`."""
    return (_default or default_pool())._core.execute(meth, args, kwargs)  # type: ignore[no-any-return]


def setup() -> None:
    """Make the default pool ready (again, after :func:`killall`).

    Threads start on demand, so this is never needed before a call; it
    exists for code written against eventlet.tpool.
    """
    default_pool()._core.reopen()


def killall() -> None:
    """Run every queued call of the default pool, stop its threads, then allow reuse.

    As eventlet's: results of calls in flight are still delivered, and a
    later call (or :func:`setup`) starts threads again.
    """
    pool = _default
    if pool is None:
        return
    pool.shutdown()
    pool._core.reopen()


def set_num_threads(nthreads: int) -> None:
    """Resize the default pool, live: see :meth:`fairpool.Pool.resize`.

    Raises:
        ValueError: ``nthreads`` is not an int >= 0.
    """
    default_pool().resize(_check_size(nthreads, "nthreads"))


def statistics() -> PoolStatistics:
    """:meth:`fairpool.Pool.statistics` of the default pool."""
    return default_pool().statistics()


def _reset_default_for_tests(pool: Pool | None = None) -> Pool | None:
    """Swap the default pool (None: make a new one on next use); returns the old one."""
    global _default
    old, _default = _default, pool
    return old
