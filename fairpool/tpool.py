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
from typing import Any, ParamSpec, TypeVar

from . import _default
from . import proxy as _proxy
from ._compat import import_eventlet_quietly
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
EXC_CLASSES: tuple[type[BaseException], ...]  # made on first read (__getattr__): it names eventlet's Timeout
SYS_EXCS = (GeneratorExit, KeyboardInterrupt, SystemExit)


def __getattr__(name: str) -> Any:
    """``EXC_CLASSES``, made when first read, so that importing fairpool does not import eventlet."""
    if name != "EXC_CLASSES":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    classes: tuple[type[BaseException], ...] = (Exception,)
    if HAVE_EVENTLET:
        import_eventlet_quietly()
        from eventlet.timeout import Timeout

        classes = (Exception, Timeout)
    globals()["EXC_CLASSES"] = classes
    return classes


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
    pool = _default.current or _default.stopped
    if pool is None:
        return
    pool.shutdown()
    pool._reopen()  # not once the exit began
    close_idle_channel()  # as eventlet's: nothing of the pool's is left on this thread's hub
    _default.stop_for_restart(pool)  # under the patch, its next use takes eventlet.tpool._nthreads


def set_num_threads(nthreads: int) -> None:
    """Resize the default pool, live: see :meth:`fairpool.Pool.resize`.

    Raises:
        ValueError: ``nthreads`` is not an int >= 0.
    """
    default_pool().resize(check_size(nthreads, "nthreads"))
    _default.note_size(nthreads)  # under the patch, for code that reads eventlet.tpool._nthreads


_proxy._fair = _proxy._via = sys.modules[__name__]
_proxy._fair_execute = execute


def statistics() -> PoolStatistics:
    """:meth:`fairpool.Pool.statistics` of the default pool."""
    return default_pool().statistics()


def _reset_default_for_tests(pool: Pool | None = None) -> Pool | None:
    """Swap the default pool (None: make a new one on next use); returns the old one."""
    old, _default.current = _default.current or _default.stopped, pool
    _default.stopped = None
    _default._synced_nthreads = None
    return old
