"""Unpatched native-thread primitives, whatever eventlet.monkey_patch() does, before or after.

The rule of the two worlds, kept by every module of fairpool:

* Worker threads are real native threads. They use only the primitives in
  this module, never a patched ``threading``/``queue``/``time.sleep``/
  ``socket``/``os.read``, and never touch an eventlet hub or a green
  primitive. Doing so from a native thread is what raises "cannot switch to
  a different thread".
* Only the thread that runs a hub switches greenlets on it. A worker hands
  a finished job to a hub through ``_hubchannel.HubChannel.deliver``, which
  appends to a deque and writes to a pipe: both safe from any thread.

Import everything native from here, so the rule lives in one place.

Importing fairpool imports neither eventlet nor greenlet: the originals are
kept here at import, when nothing can be patched yet (only eventlet patches,
and it is not imported), and eventlet's pieces are taken when something needs
them (``fairpool._hubchannel`` binds them the first time a caller could be on
a hub). eventlet monkey-patches modules *in place*, so nothing here reads an
attribute of a module object at call time: the functions and classes are
captured once, and the classes whose methods read their module's globals
(``threading.Condition.wait`` takes a new lock from ``threading``'s globals,
``Thread`` cleans up through ``threading._active`` and ``get_ident``) are
subclassed here so they never do. If eventlet was imported before fairpool
(and may have patched already), its ``patcher.original`` copies are used.
"""

from __future__ import annotations

import _imp
import importlib.machinery
import importlib.util
import math
import os as _live_os
import sys
import threading as _live_threading
import time as _live_time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

_modules = sys.modules


def _private_thread_module() -> types.ModuleType:
    """A fresh instance of the builtin ``_thread`` module, as ``eventlet.patcher.original`` makes.

    Its functions are never patched (eventlet patches the instance in
    ``sys.modules``), and its lock types are its own: eventlet's
    ``monkey_patch()`` replaces every ``threading.RLock`` it finds reachable
    from ``sys.modules`` with a green one, and must not find fairpool's.
    """
    spec = importlib.machinery.BuiltinImporter.find_spec("_thread")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(module: types.ModuleType) -> types.ModuleType:
    """A copy of ``module``'s namespace as it is now: a later in-place patch does not reach it."""
    copy = types.ModuleType(f"fairpool._native.{module.__name__}")
    copy.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    return copy


_eventlet_first = _modules.get("eventlet")
os: types.ModuleType
time: types.ModuleType
_thread: types.ModuleType
if _eventlet_first is not None and hasattr(_eventlet_first, "patcher"):
    # eventlet was imported before fairpool and may have patched already: it kept the originals.
    os = _eventlet_first.patcher.original("os")
    time = _eventlet_first.patcher.original("time")
    _thread = _eventlet_first.patcher.original("_thread")
else:  # nothing is patched (only eventlet patches): keep the originals now
    os = _snapshot(_live_os)
    time = _snapshot(_live_time)
    _thread = _private_thread_module()
del _eventlet_first

#: The threading module the interpreter itself uses (its shutdown hooks run there).
stdlib_threading: types.ModuleType = _live_threading


def _installed(name: str) -> bool:
    """Whether the top-level module ``name`` can be imported, found without importing it."""
    if name in _modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it
        return False


#: Whether eventlet is installed (and so green threads may exist). Found without importing it.
HAVE_EVENTLET = _installed("eventlet")

allocate_lock = _thread.allocate_lock
RLock = _thread.RLock  # native even after eventlet.monkey_patch()
TIMEOUT_MAX: float = _thread.TIMEOUT_MAX  # the longest a lock or join can be told to wait
get_ident = _thread.get_ident
get_native_id = _thread.get_native_id
monotonic = time.monotonic
if TYPE_CHECKING:
    from threading import local as local
else:
    local = _thread._local


def eventlet_patcher() -> Any:
    """``eventlet.patcher`` if eventlet is imported (fully enough to have it), else None. Imports nothing."""
    eventlet = _modules.get("eventlet")
    return getattr(eventlet, "patcher", None)


def threads_patched() -> bool:
    """Whether ``eventlet.monkey_patch()`` made ``threading`` green in this process."""
    patcher = eventlet_patcher()
    return patcher is not None and bool(patcher.is_monkey_patched("thread"))


_green_interruptions: tuple[type[BaseException], ...] = ()


def green_interruptions() -> tuple[type[BaseException], ...]:
    """What eventlet throws into a green thread to interrupt it: its ``Timeout`` and
    ``GreenletExit`` (``kill()``). Empty while eventlet is not imported (nothing can be thrown)."""
    global _green_interruptions
    if not _green_interruptions:
        greenlet = _modules.get("greenlet")
        timeout = getattr(_modules.get("eventlet.timeout"), "Timeout", None)
        if greenlet is not None and timeout is not None:
            _green_interruptions = (greenlet.GreenletExit, timeout)
    return _green_interruptions


class _WorkerLocal(local):
    core: Any = None  # the pool core whose worker this native thread is (set by fairpool._workers)
    worker: Any = None  # and its record there (a fairpool._workers.Worker)


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
    interruptions = green_interruptions()
    if not interruptions or worker_local.core is not None or not isinstance(exc, interruptions):
        return False
    greenlet = _modules["greenlet"]
    hub_local = getattr(_modules.get("eventlet.hubs"), "_threadlocal", None)
    if greenlet.getcurrent().parent is None and getattr(hub_local, "hub", None) is None:
        return False  # a thread without a hub: eventlet throws nothing in here
    if isinstance(exc, interruptions[1]):
        return getattr(exc, "timer", None) is not None
    return True


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


class Condition(_live_threading.Condition):
    """A ``threading.Condition`` that stays native after ``eventlet.monkey_patch()``.

    The standard ``wait`` takes its waiter lock from ``threading``'s module
    globals, green once patched: this one takes it from :func:`allocate_lock`.
    Without a lock, it makes an RLock of this module's own ``_thread`` (see
    :func:`_private_thread_module`).
    """

    def __init__(self, lock: Any = None) -> None:
        super().__init__(_thread.RLock() if lock is None else lock)

    def wait(self, timeout: float | None = None) -> bool:
        if not self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)  # type: ignore[attr-defined]  # notify() releases it
        state = self._release_save()  # type: ignore[attr-defined]
        woken = False
        try:
            if timeout is None:
                woken = bool(waiter.acquire())
            elif timeout > 0:
                woken = bool(waiter.acquire(True, timeout))
            else:
                woken = bool(waiter.acquire(False))
            return woken
        finally:
            self._acquire_restore(state)  # type: ignore[attr-defined]
            if not woken:
                try:
                    self._waiters.remove(waiter)  # type: ignore[attr-defined]
                except ValueError:
                    pass  # notified just as the wait ended


class Event(_live_threading.Event):
    """A ``threading.Event`` on a native :class:`Condition`: set and waited for from any native thread."""

    def __init__(self) -> None:
        self._cond = Condition(allocate_lock())
        self._flag = False


class Thread(_live_threading.Thread):
    """The real ``threading.Thread``, except that it leaves threading's registry through what it entered by.

    ``eventlet.monkey_patch()`` replaces ``threading._active`` and
    ``get_ident`` in place: a thread started before the patch would end by
    deleting its green ident from the green registry ("Exception ignored in
    thread started by ...: KeyError"). This one keeps the registry it was
    entered in, and removes itself by its own ident. It does not take the
    registry's lock for that (the patch greens that lock, and a native thread
    must not take a green lock; nor may fairpool keep the original, which
    eventlet would report as an RLock it could not green): one ``dict.pop``
    is atomic.
    """

    _fairpool_registry: dict[int, Any]
    _fairpool_running: Any

    def start(self) -> None:
        self._fairpool_registry = _live_threading._active  # type: ignore[attr-defined]
        self._fairpool_running = allocate_lock()
        self._fairpool_running.acquire()
        super().start()
        # Back only once the thread is in the registry (run() has begun): a patch right after
        # start() returns could otherwise land between its start and its registration.
        while not self._fairpool_running.acquire(True, 0.05):
            if not self.is_alive():
                break

    def run(self) -> None:
        self._fairpool_running.release()
        super().run()

    def _delete(self) -> None:
        self._fairpool_registry.pop(self.ident, None)  # type: ignore[arg-type]


def start_thread(target: Callable[..., Any], args: tuple[Any, ...], name: str) -> Any:
    """Start a native daemon thread and return its Thread object.

    While ``threading`` is not monkey-patched, it is a real
    ``threading.Thread`` (:class:`Thread`), so ``threading.current_thread()``,
    ``threading.enumerate()`` and logging's ``%(threadName)s`` show the
    worker, and it still ends cleanly if ``threading`` is patched later.
    Once it is patched, eventlet's unpatched copy of ``threading`` starts it
    (the patched one would make a green thread).
    """
    thread: Any
    if threads_patched():
        original = eventlet_patcher().original("threading")
        thread = original.Thread(target=target, args=args, name=name, daemon=True)
    else:
        thread = Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def join_native(threads: list[Any], deadline: float | None) -> None:
    """Wait natively for ``threads`` to end, until ``deadline`` (monotonic) if given."""
    for t in threads:
        remaining = None if deadline is None else min(max(0.0, deadline - monotonic()), TIMEOUT_MAX)
        t.join(remaining)


#: The registry of threads that ``threading`` kept before any patch (patching replaces the dict).
_registry: dict[int, Any] = {} if threads_patched() else _live_threading._active  # type: ignore[attr-defined]


def thread_name() -> str:
    """The calling native thread's name, as ``threading`` knew it before any patch, without a green call."""
    ident = get_ident()
    thread = _registry.get(ident)
    if thread is None:
        patcher = eventlet_patcher()
        if patcher is not None:  # threads started by eventlet's unpatched copy of threading
            thread = patcher.original("threading")._active.get(ident)
    if thread is not None:
        return str(thread.name)
    if not threads_patched():
        return str(_live_threading.current_thread().name)
    return f"Dummy-{ident}"


def seconds_from_environment(name: str) -> tuple[str, float] | None:
    """The environment variable ``name`` as ``(its text, its value)``, the value NaN when the
    text is not a number (for the caller's range check to refuse); None if unset or blank."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return raw, float(raw)
    except ValueError:
        return raw, math.nan


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
