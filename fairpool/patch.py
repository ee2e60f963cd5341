"""Route every user of ``eventlet.tpool`` to fairpool, with one call at start-up.

``monkey_patch()`` replaces the functions and the Proxy class *on the
eventlet.tpool module object itself*, so every way of reaching them through
the module sees fairpool's: ``eventlet.tpool.execute(...)``, ``from eventlet
import tpool; tpool.execute(...)`` (before or after the patch), and
eventlet's own users (``eventlet.db_pool``, ``eventlet.green.MySQLdb``).

A name copied out of the module before the patch (``from eventlet.tpool
import execute`` at import time) is eventlet's own function object: the patch
gives each of those functions (``execute``, ``proxy_call``, ``setup``,
``killall``, ``set_num_threads``) a body that calls fairpool's, so such copies
run on fairpool too. eventlet's ``Proxy`` class looks its helpers up in the
module when called, so a copy of it runs on fairpool as well.
"""

from __future__ import annotations

import types
from typing import Any

from . import _default
from . import proxy as _proxy
from ._compat import import_eventlet_quietly
from ._faultlog import set_logging_hybrid
from ._native import HAVE_EVENTLET, allocate_lock
from .errors import EventletNotInstalled

__all__ = ["is_patched", "monkey_patch", "unpatch"]

#: The names routed to fairpool; each is a public function or class of eventlet.tpool.
PATCHED_NAMES = ("execute", "proxy_call", "Proxy", "setup", "killall", "set_num_threads")

#: eventlet.tpool's functions whose bodies are redirected, for copies bound before the patch.
REDIRECTED_FUNCTIONS = ("execute", "proxy_call", "setup", "killall", "set_num_threads")

# The bodies given to eventlet.tpool's own function objects. They run with
# eventlet.tpool's globals, where the patch puts ``_fairpool_tpool``.
_fairpool_tpool: Any = None


def _execute(meth: Any, *args: Any, **kwargs: Any) -> Any:
    return _fairpool_tpool.execute(meth, *args, **kwargs)


def _proxy_call(autowrap: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
    return _fairpool_tpool.proxy_call(autowrap, f, *args, **kwargs)


def _setup() -> None:
    _fairpool_tpool.setup()


def _killall() -> None:
    _fairpool_tpool.killall()


def _set_num_threads(nthreads: int) -> None:
    _fairpool_tpool.set_num_threads(nthreads)


_BODIES = {
    "execute": _execute,
    "proxy_call": _proxy_call,
    "setup": _setup,
    "killall": _killall,
    "set_num_threads": _set_num_threads,
}

_saved: dict[str, Any] | None = None
_saved_logging: dict[str, Any] | None = None
_lock = allocate_lock()


def monkey_patch(*, logging: bool = True) -> None:
    """Make ``eventlet.tpool`` run on fairpool's default pool, for every importer.

    Call once at service start; calling again does nothing. Works whether
    it comes before or after ``eventlet.monkey_patch()``, and while green
    threads are calling ``eventlet.tpool``: if eventlet's own pool was
    running, calls are routed to fairpool first, then eventlet's threads
    stop (its queued and running calls still run and are answered).

    Args:
        logging: Also call :func:`patch_logging`, so that code running in
            the pool can log while green threads log too.

    Raises:
        EventletNotInstalled: eventlet is not installed (``pip install 'fairpool[eventlet]'``).
    """
    global _saved
    stop_eventlets_pool = None
    if not isinstance(logging, bool):
        raise TypeError(f"logging must be True or False, got {logging!r}")
    if not HAVE_EVENTLET:
        raise EventletNotInstalled(
            "fairpool.monkey_patch() routes eventlet.tpool to fairpool, and eventlet is not installed: "
            "pip install 'fairpool[eventlet]' (native threads and asyncio need no patch)"
        )
    import_eventlet_quietly()  # the first import of eventlet may be this one: not fairpool's banner
    if logging:
        patch_logging()
    with _lock:
        if _saved is not None:
            return
        from eventlet import tpool as eventlet_tpool

        from . import _exitrule
        from . import tpool as fair_tpool

        # eventlet.tpool registered its killall with atexit on import: fairpool's exit runs
        # before it, so that the rerouted killall finds the exit begun and its deadline set.
        _exitrule.hook_exit()
        # Reroute first, and only then stop eventlet's pool: stopping it lets the hub run, and
        # a green caller that resumes then must find fairpool, not a queue nobody serves.
        _saved = {name: getattr(eventlet_tpool, name) for name in PATCHED_NAMES}
        _saved["__code__"] = {}
        eventlet_tpool._fairpool_tpool = fair_tpool
        for name in REDIRECTED_FUNCTIONS:
            function = _saved[name]
            if getattr(function, "__globals__", None) is vars(eventlet_tpool):
                _saved["__code__"][name] = function.__code__
                function.__code__ = _BODIES[name].__code__
        for name in PATCHED_NAMES:
            setattr(eventlet_tpool, name, getattr(fair_tpool, name))
        eventlet_tpool.__fairpool_patched__ = True
        _proxy._route_through(eventlet_tpool)  # Proxy calls what a user puts in eventlet.tpool.execute
        _default.size_by(eventlet_tpool)  # each start takes eventlet.tpool._nthreads, as eventlet's
        stop_eventlets_pool = _eventlets_own_killall(eventlet_tpool)
    # Outside the lock: eventlet's killall lets the hub run, and a green thread that then
    # calls monkey_patch() or unpatch() must not block the hub on it.
    if stop_eventlets_pool is not None:
        stop_eventlets_pool()


def _eventlets_own_killall(eventlet_tpool: Any) -> Any:
    """eventlet's own ``killall``, to stop its pool after the reroute; None if it is not running.

    A green caller may be anywhere in eventlet's ``execute`` when the patch
    comes. Waiting for a call already queued: eventlet's threads still run it
    and its killall answers it. Resumed with an answer: its next call finds
    fairpool. In ``setup``'s one yield, about to queue: it resumes at killall's
    first yield, ahead of the threads' stop signals, so its call is run too.
    """
    if not getattr(eventlet_tpool, "_setup_already", False) or _saved is None:
        return None
    code = _saved["__code__"].get("killall")
    if code is None:  # not eventlet's function (someone replaced it): call what was there
        return _saved["killall"]
    # The function object now runs fairpool's body: make eventlet's again, on its module.
    return types.FunctionType(code, vars(eventlet_tpool), "killall")


def is_patched() -> bool:
    """Whether :func:`monkey_patch` is in effect."""
    return _saved is not None


def patch_logging() -> None:
    """Make logging's locks safe to share between green threads and pool threads.

    Under ``eventlet.monkey_patch()`` logging's locks are green: a pool
    thread that logs while a green thread holds a handler's lock fails with
    "Cannot switch to a different thread" or hangs (eventlet issues 432,
    492). This gives logging's module lock, every existing handler, and
    every handler made later a :class:`fairpool.hybridlock.HybridRLock`,
    which waits green in a green thread and natively in a native thread.

    Call it at start-up, before other threads log. Idempotent;
    :func:`unpatch_logging` undoes it.
    """
    import logging as logging_module

    from .hybridlock import HybridRLock

    global _saved_logging
    with _lock:
        if _saved_logging is not None:
            return
        original_create = logging_module.Handler.createLock
        _saved_logging = {
            "_lock": logging_module._lock,  # type: ignore[attr-defined]
            "createLock": original_create,
            "handlers": {},
        }

        def create_lock(self: logging_module.Handler) -> None:
            original_create(self)  # registers the handler for re-initialisation after fork
            self.lock = HybridRLock()  # type: ignore[assignment]

        logging_module._lock = HybridRLock()  # type: ignore[attr-defined]
        set_logging_hybrid(True)
        logging_module.Handler.createLock = create_lock  # type: ignore[method-assign]
        for ref in list(logging_module._handlerList):  # type: ignore[attr-defined]
            handler = ref()
            if handler is not None and handler.lock is not None:
                # A list, not a tuple: eventlet greens the RLocks it finds in lists, and
                # would otherwise warn that this one "was not greened".
                _saved_logging["handlers"][id(handler)] = [ref, handler.lock]
                handler.lock = HybridRLock()


def logging_patched() -> bool:
    """Whether :func:`patch_logging` is in effect."""
    return _saved_logging is not None


def unpatch_logging() -> None:
    """Undo :func:`patch_logging` (for tests). Handlers made meanwhile keep their hybrid locks."""
    import logging as logging_module

    global _saved_logging
    with _lock:
        if _saved_logging is None:
            return
        logging_module._lock = _saved_logging["_lock"]  # type: ignore[attr-defined]
        set_logging_hybrid(False)
        logging_module.Handler.createLock = _saved_logging["createLock"]  # type: ignore[method-assign]
        for ref, lock in _saved_logging["handlers"].values():
            handler = ref()
            if handler is not None:
                handler.lock = lock
        _saved_logging = None


def unpatch() -> None:
    """Undo :func:`monkey_patch` (for tests): eventlet.tpool gets its own functions back,
    and logging its own locks.

    Calls already running on fairpool finish there. Does nothing if not patched.
    """
    global _saved
    unpatch_logging()
    with _lock:
        if _saved is None:
            return
        from eventlet import tpool as eventlet_tpool

        for name, code in _saved.pop("__code__").items():
            _saved[name].__code__ = code
        for name, value in _saved.items():
            setattr(eventlet_tpool, name, value)
        del eventlet_tpool.__fairpool_patched__
        _proxy._route_through(None)
        _default.size_by(None)
        del eventlet_tpool._fairpool_tpool
        _saved = None
