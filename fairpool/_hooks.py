"""The observer slot: how tracing and other observers learn about pool calls.

The pool core imports this module, never the observers. An observer
subclasses :class:`PoolObserver` and overrides the events it wants; it is
registered with :func:`add_observer`. It receives a :class:`CallInfo` of plain
values, made at submit only while at least one observer is registered.

Rules, kept by :func:`notify`:

* Events are sent outside every pool lock, from the thread where they
  happen: ``submitted`` in the caller's, ``started`` and ``finished`` in the
  worker's, ``answered`` in whichever thread answered the call.
* An observer's exception, of any kind (SystemExit and KeyboardInterrupt
  included), never reaches a caller and never leaves a lock held: it is
  counted (:func:`fault_count`) and reported once per observer.
"""

from __future__ import annotations

import contextvars
import itertools
from typing import Any

from ._faultlog import report_fault
from ._native import allocate_lock, green_interruptions, thrown_in_for_the_caller

__all__ = ["CallInfo", "PoolObserver", "add_observer", "fault_count", "notify", "remove_observer"]

#: Process-wide call ids: ``next()`` on a count is atomic in CPython, so ids
#: are unique whichever thread submits.
_ids = itertools.count(1)


class CallInfo:
    """Plain values about one observed pool call."""

    __slots__ = (
        "busy",
        "call_id",
        "context",
        "error",
        "lane",
        "name",
        "notes",
        "pool",
        "queued",
        "t_finished",
        "t_queued",
        "t_started",
        "worker",
    )

    def __init__(self, pool: str, name: str, lane: str, t_queued: float, queued: int, busy: int) -> None:
        self.call_id = next(_ids)  #: unique in this process
        self.pool = pool
        self.name = name  #: the called function's name
        self.lane = lane
        self.t_queued = t_queued  #: monotonic seconds
        self.t_started = 0.0  #: 0.0 until a worker starts it (set before ``call_started``)
        self.t_finished = 0.0
        self.worker = ""  #: the worker thread's name, once started
        self.queued = queued  #: the pool's queue depth at the last event
        self.busy = busy  #: the pool's busy workers at the last event
        self.notes: dict[Any, Any] = {}  #: per-observer notes, keyed by the observer
        #: The exception the call raised (set before ``call_finished``), or the one its
        #: caller is answered with when it is rejected or closed; else None.
        self.error: BaseException | None = None
        #: A copy of the caller's contextvars context, in which the worker runs the call,
        #: while an observer asks for it (``wants_context``); else None.
        self.context: contextvars.Context | None = None


class PoolObserver:
    """Receives pool-call events. Override what you need; each must be quick and thread-safe."""

    #: True: each call runs in a copy of its caller's contextvars context
    #: (``CallInfo.context``), which ``call_submitted`` may change (``context.run(...)``),
    #: so that what the call does in the worker sees it (a tracing span, for one).
    wants_context = False

    def call_submitted(self, call: CallInfo) -> None:
        """The call was handed to the pool (caller's thread)."""

    def call_started(self, call: CallInfo) -> None:
        """A worker starts running the call (worker's thread)."""

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        """The call returned (``ok``) or raised, in the worker (worker's thread)."""

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        """The call's caller was answered or left (sent before the caller resumes).

        ``outcome`` is one of ``returned``, ``raised``, ``rejected`` (refused
        as it was handed in: the pool was shut down, or its queue full with
        ``on_full="raise"``), ``closed`` (answered with an error by a shutdown's
        timeout, exit, fork, a fault, or no worker),
        ``cancelled`` (the caller gave up while it was queued) or
        ``abandoned`` (the caller gave up while it ran).
        """


#: The registered observers. Replaced, never mutated, so readers need no lock.
observers: tuple[PoolObserver, ...] = ()
#: Whether any registered observer wants calls run in their caller's context.
wants_context = False
_faults = 0
_reported: set[int] = set()
_faults_lock = allocate_lock()  # faults are rare: a lock keeps the count exact


def add_observer(observer: PoolObserver) -> None:
    """Start sending events to ``observer`` (again, if it was removed)."""
    global observers, wants_context
    if observer not in observers:
        observers = (*observers, observer)
        wants_context = any(o.wants_context for o in observers)


def remove_observer(observer: PoolObserver) -> None:
    """Stop sending events to ``observer``; does nothing if it is not registered."""
    global observers, wants_context
    observers = tuple(o for o in observers if o is not observer)
    wants_context = any(o.wants_context for o in observers)


def fault_count() -> int:
    """How many exceptions observers have raised in this process (each was swallowed)."""
    return _faults


def notify(event: str, *args: Any) -> None:
    """Send ``event`` to every observer. Never raises an observer's exception.

    One exception: an observer that yields to the hub (a green lock, a green
    socket) lets eventlet throw the *calling green thread's* ``Timeout`` or
    ``kill()`` into it. That belongs to the caller, not to the observer
    (``_native.thrown_in_for_the_caller`` tells them apart): the other
    observers still get the event, then it is raised on (a kill before a
    timeout), and the pool core makes sure the call is cancelled or its
    answer still delivered.
    """
    interrupted: BaseException | None = None
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except BaseException as exc:  # noqa: BLE001 - an observer must not hurt a call, whatever it raises
            if not thrown_in_for_the_caller(exc):
                _observer_failed(observer, event, exc)
            elif interrupted is None or isinstance(exc, green_interruptions()[0]):
                interrupted = exc  # a kill (GreenletExit) wins over a timeout: the thread must end
    if interrupted is not None:
        try:
            raise interrupted
        finally:
            interrupted = None


def _observer_failed(observer: Any, event: str, exc: BaseException) -> None:
    """Count an observer's exception; report the first of each observer."""
    global _faults
    with _faults_lock:
        _faults += 1
        first = id(observer) not in _reported
        _reported.add(id(observer))
    if first:
        report_fault(
            f"fairpool: observer {observer!r} raised in {event}; its later errors are "
            "counted (fairpool.testing.observer_faults()) but not reported again",
            exc,
        )
