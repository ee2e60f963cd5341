"""The default pool behind ``fairpool.execute``, ``fairpool.tpool`` and ``Proxy``, made on first use.

Sized by ``EVENTLET_THREADPOOL_SIZE`` (default 20), as eventlet's is.
"""

from __future__ import annotations

from ._native import allocate_lock, os
from .pool import DEFAULT_THREADS, Pool, check_size

__all__ = ["SIZE_VARIABLE", "check_pool", "current", "default_pool"]

SIZE_VARIABLE = "EVENTLET_THREADPOOL_SIZE"

#: The default pool, or None before first use.
current: Pool | None = None
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


def default_pool() -> Pool:
    """The pool behind the module-level functions, made on first use.

    Raises:
        ValueError: ``EVENTLET_THREADPOOL_SIZE`` is not an int >= 0.
    """
    global current
    pool = current
    if pool is None:
        with _lock:
            if current is None:
                pool = Pool(_size_from_environment(), name="default")
                pool._core.size_source = SIZE_VARIABLE  # the size-0 warning names where the 0 came from
                current = pool
            pool = current
    return pool


def check_pool(pool: object, param: str = "pool") -> Pool | None:
    """``pool`` if it is a Pool or None (the default pool, chosen at each call); else TypeError."""
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError(f"{param} must be a fairpool.Pool or None, got {pool!r}")
    return pool
