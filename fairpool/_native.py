"""Unpatched native-thread primitives, whatever eventlet.monkey_patch() did.

The rule of the two worlds, kept by every module of fairpool:

* Worker threads are real native threads. They use only the primitives in
  this module (taken with ``eventlet.patcher.original``), never a patched
  ``threading``/``queue``/``time.sleep``/``socket``/``os.read``, and never
  touch an eventlet hub or a green primitive. Doing so from a native thread
  is what raises "cannot switch to a different thread".
* Only the thread that runs a hub switches greenlets on it. A worker hands
  a finished job to a hub through ``_hubchannel.HubChannel.deliver``, which
  appends to a deque and writes to a pipe: both safe from any thread.

Import everything native from here, so the rule lives in one place.

eventlet is optional. Without it (``pip install fairpool`` alone) there are no
green threads and nothing is patched: the primitives are the standard
library's, and neither eventlet nor greenlet is imported.
"""

from __future__ import annotations

import _imp
import threading as _threading_now
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._compat import import_eventlet_quietly

patcher: types.ModuleType | None
try:
    patcher = import_eventlet_quietly().patcher  # imported by eventlet's own __init__
except ImportError:  # eventlet is not installed: native threads and asyncio only
    patcher = None

if patcher is not None:
    threading: types.ModuleType = patcher.original("threading")
    _thread: types.ModuleType = patcher.original("_thread")
    os: types.ModuleType = patcher.original("os")
    time: types.ModuleType = patcher.original("time")
else:
    import _thread
    import os  # noqa: F401 - re-exported, as in the branch above
    import time

    threading = _threading_now

#: The threading module the interpreter itself uses (its shutdown hooks run there).
stdlib_threading: types.ModuleType = _threading_now

#: Whether eventlet is installed (and so green threads may exist).
HAVE_EVENTLET = patcher is not None

#: What eventlet throws into a green thread to interrupt it: its ``Timeout`` and
#: ``GreenletExit`` (``kill()``). Empty without eventlet.
GREEN_INTERRUPTIONS: tuple[type[BaseException], ...] = ()
if HAVE_EVENTLET:
    import greenlet as _greenlet
    from eventlet import hubs as _hubs
    from eventlet.timeout import Timeout as _Timeout

    GREEN_INTERRUPTIONS = (_greenlet.GreenletExit, _Timeout)


allocate_lock = _thread.allocate_lock
TIMEOUT_MAX: float = _thread.TIMEOUT_MAX  # the longest a lock or join can be told to wait
get_ident = _thread.get_ident
monotonic = time.monotonic
if TYPE_CHECKING:
    from threading import local as local
else:
    local = threading.local


class _WorkerLocal(local):
    core: Any = None  # the pool core whose worker this native thread is (set by fairpool._workers)


#: Per native thread: which pool's worker it is, if any.
worker_local = _WorkerLocal()


def thrown_in_for_the_caller(exc: BaseException) -> bool:
    """Whether ``exc``, raised out of an observer, is an interruption eventlet threw into the
    caller's green thread (its ``kill()``, or a ``Timeout`` whose ``with`` block is still open
    around the call) rather than the observer's own.

    A ``Timeout`` the observer made and left (its block's exit cancels it: ``timer`` is None
    again) is the observer's. A pool worker is a native thread of fairpool's own: nothing is
    thrown in for a caller there, even if an observer gave it a hub.
    """
    if not HAVE_EVENTLET or worker_local.core is not None:
        return False
    if _greenlet.getcurrent().parent is None and getattr(_hubs._threadlocal, "hub", None) is None:
        return False  # a thread without a hub: eventlet throws nothing in here
    if isinstance(exc, _Timeout):
        return exc.timer is not None
    return isinstance(exc, _greenlet.GreenletExit)


def threads_patched() -> bool:
    """Whether ``eventlet.monkey_patch()`` made ``threading`` green in this process."""
    return patcher is not None and bool(patcher.is_monkey_patched("thread"))


class LockContext:
    """``with lock:`` for the lock-like classes of fairpool: acquire on entry, release on exit."""

    __slots__ = ()

    def acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def start_thread(target: Callable[..., Any], args: tuple[Any, ...], name: str) -> Any:
    """Start a native daemon thread and return its Thread object.

    While ``threading`` is not monkey-patched, the real ``threading.Thread``
    is used, so ``threading.current_thread().name`` and logging's
    ``%(threadName)s`` show the worker's name. Once it is patched, the
    original copy is used: the patched one would make a green thread.
    """
    module = threading if threads_patched() else _threading_now
    thread = module.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


#: Whether *any* thread holds the import lock: the cheap first test before :func:`holds_import_lock`.
import_lock_held = _imp.lock_held


def holds_import_lock() -> bool:
    """Whether *this* thread holds the global import lock (then a pool call runs inline, as eventlet's).

    ``_imp.lock_held()`` is true while *any* thread holds it, which a worker
    does for a moment each time it imports: trusting it alone would run
    calls inline on the hub at random (eventlet.tpool does). Only the owner
    may release the lock, so a release that works tells us we own it; the
    lock is taken back at once.
    """
    if not _imp.lock_held():
        return False
    try:
        _imp.release_lock()
    except RuntimeError:
        return False  # held by another thread
    _imp.acquire_lock()
    return True
