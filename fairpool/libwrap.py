"""``wrap_library``: every function of a C library or binding through the pool, traced.

    lib = fairpool.wrap_library(ffi_lib, lock="libvirt")   # serialize under one named lock
    lib.virDomainCreate(dom)                               # runs on a worker, never on the hub

Works with a cffi ``lib``, a ``ctypes.CDLL``, or a binding module or object
(a libvirt connection). Non-function attributes (constants, classes,
exception types) pass through unchanged. Configure ctypes ``argtypes`` and
``restype`` on the library before wrapping it. Each call shows in a trace as
the pool's ``run <name>.<function>`` span on the worker's track, with the
``wait``/``hold`` spans of the lock inside it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ._default import check_pool
from .locks import InstrumentedLock, instrument_lock, named_native_lock

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["WrappedLibrary", "wrap_library"]


def _library_name(lib: Any) -> str:
    for attr in ("__name__", "_name"):
        value = getattr(lib, attr, None)
        if isinstance(value, str) and value:
            return value.rsplit("/", 1)[-1]
    return type(lib).__name__


class WrappedLibrary:
    """The object :func:`wrap_library` returns: ``lib``'s functions, run through the pool."""

    def __init__(self, lib: Any, name: str, lock: InstrumentedLock | None, pool: Pool | None) -> None:
        self._fp_lib = lib
        self._fp_name = name
        self._fp_lock = lock
        self._fp_pool = pool
        self._fp_cache: dict[str, Any] = {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_fp_"):
            raise AttributeError(attr)
        cached = self._fp_cache.get(attr)
        if cached is not None:
            return cached
        value = getattr(self._fp_lib, attr)
        if not callable(value) or isinstance(value, type):
            return value  # constants, classes and exception types pass through
        wrapper = self._fp_wrap(attr, value)
        self._fp_cache[attr] = wrapper
        return wrapper

    def _fp_wrap(self, attr: str, fn: Any) -> Any:
        span = f"{self._fp_name}.{attr}"
        lock = self._fp_lock
        pool = self._fp_pool

        def in_worker(*args: Any, **kwargs: Any) -> Any:
            if lock is None:
                return fn(*args, **kwargs)
            with lock:
                return fn(*args, **kwargs)

        in_worker.__qualname__ = in_worker.__name__ = span
        in_worker.__fairpool_name__ = span  # type: ignore[attr-defined]  # the pool's span names

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if pool is None:
                from .tpool import default_pool

                return default_pool().execute(in_worker, *args, **kwargs)
            return pool.execute(in_worker, *args, **kwargs)

        return call

    def __dir__(self) -> list[str]:
        return dir(self._fp_lib)

    def __repr__(self) -> str:
        return f"<fairpool.wrap_library {self._fp_name!r} of {self._fp_lib!r}>"


def wrap_library(
    lib: Any, *, lock: Any = None, name: str | None = None, pool: Pool | None = None
) -> WrappedLibrary:
    """Return an object whose functions are ``lib``'s, each call sent through the pool and traced.

    Args:
        lib: A cffi ``lib``, a ``ctypes.CDLL``, or a binding module or object.
        lock: None, a name, or a native lock. With a name, calls run under the
            instrumented native lock of that name (shared by every library
            wrapped with the same name); with a lock, under that lock,
            instrumented. For C libraries that are not thread-safe or that
            hold a global lock: its contention then shows in the trace and in
            :func:`fairpool.lock_statistics`. The lock is taken in the worker
            thread, so it must be a native lock, not a green one.
        name: Names the spans (``<name>.<function>``); the library's own name by default.
        pool: The :class:`fairpool.Pool` to run in; the default pool if None.

    Raises:
        TypeError: ``lib`` is None, or ``lock`` is neither None, a name, nor a lock.
        ValueError: ``name`` or a lock name is empty.
    """
    if lib is None:
        raise TypeError("lib must be the library, module or object to wrap, got None")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"name must be a non-empty string or None, got {name!r}")
    instrumented: InstrumentedLock | None
    if lock is None:
        instrumented = None
    elif isinstance(lock, str):
        if not lock:
            raise ValueError("lock must be a non-empty name, a lock or None, got ''")
        instrumented = named_native_lock(lock)
    else:
        instrumented = instrument_lock(
            lock, getattr(lock, "name", None) or f"{name or _library_name(lib)} lock"
        )
    return WrappedLibrary(lib, name or _library_name(lib), instrumented, check_pool(pool))
