"""The default pool behind ``fairpool.execute``, ``fairpool.tpool`` and ``Proxy``, made on first use.

Sized by ``EVENTLET_THREADPOOL_SIZE`` (default 20), as eventlet's is. Under
``fairpool.monkey_patch()`` it takes its size from ``eventlet.tpool._nthreads``
each time it starts (made, or first used after ``killall``), as eventlet's
pool does, so that ``tpool.killall(); tpool._nthreads = 20`` works.
"""

from __future__ import annotations

from typing import Any

from ._native import allocate_lock, os
from .pool import DEFAULT_THREADS, Pool, check_size

__all__ = ["SIZE_VARIABLE", "check_pool", "current", "default_pool"]

SIZE_VARIABLE = "EVENTLET_THREADPOOL_SIZE"
NTHREADS = "eventlet.tpool._nthreads"

#: The default pool, or None before first use, and after a killall under the patch.
current: Pool | None = None
#: The default pool after a killall under the patch, until its next use resizes it.
stopped: Pool | None = None
#: eventlet.tpool under fairpool.monkey_patch(), whose ``_nthreads`` sizes the pool at each start.
sized_by: Any = None
#: The ``_nthreads`` last written by fairpool or taken as the pool's size; a different value
#: found at a restart was written by someone else, and is taken. (A pool resized directly
#: keeps its size across killall while ``_nthreads`` is left alone.)
_synced_nthreads: object = None
_lock = allocate_lock()


def _size_from_environment() -> int:
    raw = os.environ.get(SIZE_VARIABLE)
    if raw is None or raw.strip() == "":
        return DEFAULT_THREADS
    try:
        size = int(raw)
    except ValueError:
        raise ValueError(f"{SIZE_VARIABLE} must be an int >= 0, got {raw!r}") from None
    return check_size(size, SIZE_VARIABLE)


def _nthreads_if_written() -> int | None:
    """Under the patch, ``eventlet.tpool._nthreads`` if it holds a size fairpool has not yet taken."""
    global _synced_nthreads
    nthreads = getattr(sized_by, "_nthreads", None)
    if nthreads is None or nthreads == _synced_nthreads:
        return None
    raw = os.environ.get(SIZE_VARIABLE, "").strip()
    size = check_size(nthreads, SIZE_VARIABLE if raw == str(nthreads) else NTHREADS)
    _synced_nthreads = size
    return size


def default_pool() -> Pool:
    """The pool behind the module-level functions, made on first use.

    Raises:
        ValueError: ``EVENTLET_THREADPOOL_SIZE`` (or, under the patch,
            ``eventlet.tpool._nthreads``) is not an int >= 0.
    """
    global current, stopped
    pool = current
    if pool is None:
        with _lock:
            if current is None:
                size = _nthreads_if_written() if sized_by is not None else None
                if stopped is not None:  # first use after a killall under the patch
                    pool, stopped = stopped, None
                    if size is not None and size != pool.size:
                        pool.resize(size)
                else:
                    pool = Pool(_size_from_environment() if size is None else size, name="default")
                    pool._core.size_source = SIZE_VARIABLE  # the size-0 warning names where the 0 came from
                current = pool
            pool = current
    return pool


def stop_for_restart(pool: Pool) -> None:
    """After a killall under the patch: the next use of the default pool (re)sizes it, as eventlet's."""
    global current, stopped
    with _lock:
        if sized_by is not None and current is pool:
            current, stopped = None, pool


def note_size(size: int) -> None:
    """The default pool was resized to ``size``: under the patch, ``eventlet.tpool._nthreads`` says so."""
    global _synced_nthreads
    with _lock:
        if sized_by is not None:
            sized_by._nthreads = _synced_nthreads = size


def size_by(eventlet_tpool: Any) -> None:
    """Take the default pool's size from ``eventlet_tpool._nthreads`` at each start (None: stop).

    If the pool already runs, ``_nthreads`` is set to its size, for code that reads it.
    """
    global sized_by, _synced_nthreads, current, stopped
    with _lock:
        sized_by = eventlet_tpool
        if eventlet_tpool is None:
            if current is None:
                current, stopped = stopped, None
            return
        pool = current or stopped
        if pool is None:
            _synced_nthreads = None  # the first start takes _nthreads, whatever it holds
        else:
            eventlet_tpool._nthreads = _synced_nthreads = pool.size


def check_pool(pool: object, param: str = "pool") -> Pool | None:
    """``pool`` if it is a Pool or None (the default pool, chosen at each call); else TypeError."""
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError(f"{param} must be a fairpool.Pool or None, got {pool!r}")
    return pool
