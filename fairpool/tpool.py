"""A drop-in ``eventlet.tpool``: the same names, on fairpool's default pool.

Replace ``from eventlet import tpool`` with ``from fairpool import tpool``,
or call :func:`fairpool.monkey_patch` once at start-up so that every user of
``eventlet.tpool`` runs here unchanged.

The default pool is made on first use, sized by ``EVENTLET_THREADPOOL_SIZE``
(default 20) as eventlet's is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from . import _default
from ._default import SIZE_VARIABLE as SIZE_VARIABLE
from ._default import default_pool as default_pool
from ._hubchannel import close_idle_channel
from ._native import HAVE_EVENTLET
from .pool import Pool, check_size
from .proxy import Proxy as Proxy
from .proxy import proxy_call as proxy_call
from .statistics import PoolStatistics

__all__ = ["Proxy", "execute", "killall", "set_num_threads"]

P = ParamSpec("P")
R = TypeVar("R")

#: Kept for code that reads or sets them on eventlet.tpool. fairpool never
#: prints the exceptions it hands back, so QUIET has no effect.
QUIET = True
EXC_CLASSES: tuple[type[BaseException], ...] = (Exception,)
if HAVE_EVENTLET:
    from eventlet import timeout as _timeout

    EXC_CLASSES = (Exception, _timeout.Timeout)
SYS_EXCS = (GeneratorExit, KeyboardInterrupt, SystemExit)


def execute(meth: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``meth(*args, **kwargs)`` in the default pool; see :meth:`fairpool.Pool.execute`."""
    return (_default.current or default_pool())._call(meth, args, kwargs)  # type: ignore[no-any-return]


def setup() -> None:
    """Make the default pool ready (again, after :func:`killall`).

    Threads start on demand, so this is never needed before a call; it
    exists for code written against eventlet.tpool.
    """
    default_pool()._reopen()


def killall() -> None:
    """Run every queued call of the default pool, stop its threads, then allow reuse.

    As eventlet's: results of calls in flight are still delivered, and a
    later call (or :func:`setup`) starts threads again. At interpreter exit
    (eventlet.tpool's own ``atexit`` runs it, rerouted here by
    :func:`fairpool.monkey_patch`) it waits no longer than the exit's deadline
    (``exit_timeout``), and the pool stays closed.
    """
    pool = _default.current
    if pool is None:
        return
    pool.shutdown()
    pool._reopen()  # not once the exit began
    close_idle_channel()  # as eventlet's: nothing of the pool's is left on this thread's hub


def set_num_threads(nthreads: int) -> None:
    """Resize the default pool, live: see :meth:`fairpool.Pool.resize`.

    Raises:
        ValueError: ``nthreads`` is not an int >= 0.
    """
    default_pool().resize(check_size(nthreads, "nthreads"))
    eventlet_tpool = sys.modules.get("eventlet.tpool")
    if getattr(eventlet_tpool, "__fairpool_patched__", False):
        eventlet_tpool._nthreads = nthreads  # type: ignore[union-attr]  # code that reads eventlet's count


def statistics() -> PoolStatistics:
    """:meth:`fairpool.Pool.statistics` of the default pool."""
    return default_pool().statistics()


def _reset_default_for_tests(pool: Pool | None = None) -> Pool | None:
    """Swap the default pool (None: make a new one on next use); returns the old one."""
    old, _default.current = _default.current, pool
    return old
