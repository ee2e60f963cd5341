"""Instrumented locks: wait and hold times, per lock, and spans in the trace.

``instrument_lock(lock, name)`` wraps any lock-like object (threading.Lock,
RLock, Semaphore, BoundedSemaphore, eventlet's semaphores) and returns an
object used exactly like it. Each acquisition is timed: a contended one (the
lock was not free) records a ``wait <name>`` span, every one a ``hold <name>``
span, and the counters behind :meth:`InstrumentedLock.statistics` are kept
whether or not a trace is recording.

Thread rules: the wrapper adds no locking of its own around the wrapped
lock; its counters are updated under a small native lock, so it is safe from
green threads and native threads alike.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from . import trace
from ._faultlog import report_fault
from ._hubchannel import getcurrent as _getcurrent
from ._native import LockContext, allocate_lock

__all__ = [
    "InstrumentedLock",
    "LockStatistics",
    "add_listener",
    "instrument_lock",
    "lock_statistics",
    "remove_listener",
]

_registry: weakref.WeakValueDictionary[str, InstrumentedLock] = weakref.WeakValueDictionary()

#: Who hears of waits and holds besides the trace (fairpool.otel): objects with
#: ``lock_waited(name, start_us, end_us)`` and ``lock_held(name, start_us, end_us)``
#: (:func:`fairpool.trace.now_us` times), called in the thread that waited or held.
#: Replaced, never mutated, so readers need no lock.
listeners: tuple[Any, ...] = ()


def add_listener(listener: Any) -> None:
    """Tell ``listener`` of every contended wait and every hold of every instrumented lock."""
    global listeners
    if listener not in listeners:
        listeners = (*listeners, listener)


def remove_listener(listener: Any) -> None:
    """Stop telling ``listener``; does nothing if it is not listening."""
    global listeners
    listeners = tuple(x for x in listeners if x is not listener)


def _tell(event: str, name: str, start: float, end: float) -> None:
    """Send ``event`` to each listener; one that raises is reported and dropped, never reaching the caller."""
    for listener in listeners:
        try:
            getattr(listener, event)(name, start, end)
        except BaseException as exc:  # noqa: BLE001 - a listener must not break a lock's user
            remove_listener(listener)
            report_fault(f"fairpool: lock listener {listener!r} raised in {event}; it was removed", exc)


@dataclass(frozen=True)
class LockStatistics:
    """Counters of one instrumented lock since it was made. Times are in seconds."""

    name: str
    acquisitions: int
    contended: int  #: acquisitions that found the lock taken and waited
    total_wait: float
    max_wait: float
    total_hold: float
    max_hold: float


class InstrumentedLock(LockContext):
    """A lock that records how long it is waited for and held. Made by :func:`instrument_lock`."""

    def __init__(self, lock: Any, name: str) -> None:
        self._lock = lock
        self.name = name
        self._held: dict[int, list[float]] = {}  # holder (greenlet id) -> [acquired at (us), depth]
        self._stats_lock = allocate_lock()
        self._acquisitions = self._contended = 0
        self._total_wait = self._max_wait = self._total_hold = self._max_hold = 0.0

    @property
    def wrapped(self) -> Any:
        """The lock this one wraps."""
        return self._lock

    def acquire(self, blocking: bool = True, *args: Any, **kwargs: Any) -> bool:
        start = trace.now_us()
        if self._lock.acquire(False):
            contended = False
        elif not blocking:
            return False
        else:
            if not self._lock.acquire(True, *args, **kwargs):
                return False  # timed out
            contended = True
        acquired = trace.now_us()
        key = id(_getcurrent())
        held = self._held.get(key)
        if held is not None:
            held[1] += 1  # an RLock taken again by its holder: one hold
        else:
            self._held[key] = [acquired, 1]
        wait = (acquired - start) / 1e6 if contended else 0.0
        with self._stats_lock:
            self._acquisitions += 1
            if contended:
                self._contended += 1
                self._total_wait += wait
                self._max_wait = max(self._max_wait, wait)
        tracer = trace.active()
        if tracer is not None and contended:
            tracer.lock_waited(self.name, start, acquired)
        if listeners and contended:
            _tell("lock_waited", self.name, start, acquired)
        return True

    def release(self, *args: Any, **kwargs: Any) -> None:
        key = id(_getcurrent())
        held = self._held.get(key)
        released = trace.now_us()
        self._lock.release(*args, **kwargs)
        if held is None:
            return  # released by another thread than the one that took it (a semaphore)
        held[1] -= 1
        if held[1]:
            return
        del self._held[key]
        hold = (released - held[0]) / 1e6
        with self._stats_lock:
            self._total_hold += hold
            self._max_hold = max(self._max_hold, hold)
        tracer = trace.active()
        if tracer is not None:
            tracer.lock_held(self.name, held[0], released)
        if listeners:
            _tell("lock_held", self.name, held[0], released)

    def locked(self) -> bool:
        return bool(self._lock.locked())

    def statistics(self) -> LockStatistics:
        with self._stats_lock:
            return LockStatistics(
                self.name,
                self._acquisitions,
                self._contended,
                self._total_wait,
                self._max_wait,
                self._total_hold,
                self._max_hold,
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)  # anything else the wrapped lock offers

    def __repr__(self) -> str:
        return f"<fairpool.InstrumentedLock {self.name!r} wrapping {self._lock!r}>"


def instrument_lock(lock: Any, name: str) -> InstrumentedLock:
    """Wrap ``lock`` so that its waits and holds are counted and traced.

    The result works wherever ``lock`` did: ``acquire``/``release`` with the
    same arguments, ``with``, and any other attribute. Wrapping an already
    instrumented lock returns it unchanged.

    Raises:
        TypeError: ``lock`` has no ``acquire`` and ``release``.
        ValueError: ``name`` is not a non-empty string.
    """
    if isinstance(lock, InstrumentedLock):
        return lock
    if not (callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None))):
        raise TypeError(f"lock must have acquire() and release(), got {lock!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    wrapped = InstrumentedLock(lock, name)
    _registry[name] = wrapped
    return wrapped


def lock_statistics() -> dict[str, LockStatistics]:
    """Statistics of every instrumented lock still alive, by name."""
    return {name: lock.statistics() for name, lock in list(_registry.items())}


def named_native_lock(name: str) -> InstrumentedLock:
    """The instrumented native lock registered under ``name``, made on first use."""
    lock = _registry.get(name)
    if lock is None:
        lock = instrument_lock(allocate_lock(), name)
    return lock
