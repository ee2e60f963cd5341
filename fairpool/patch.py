"""Route every user of ``eventlet.tpool`` to fairpool, with one call at start-up.

``monkey_patch()`` replaces the functions and the Proxy class *on the
eventlet.tpool module object itself*, so every way of reaching them through
the module sees fairpool's: ``eventlet.tpool.execute(...)``, ``from eventlet
import tpool; tpool.execute(...)`` (before or after the patch), and
eventlet's own users (``eventlet.db_pool``, ``eventlet.green.MySQLdb``).

A name copied out of the module before the patch (``from eventlet.tpool
import execute`` at import time) still points at eventlet's function: that
copy cannot be reached. Patch before importing such code, or change it to
use the module attribute.
"""

from __future__ import annotations

from typing import Any

from ._native import allocate_lock

__all__ = ["is_patched", "monkey_patch", "unpatch"]

#: The names routed to fairpool; each is a public function or class of eventlet.tpool.
PATCHED_NAMES = ("execute", "proxy_call", "Proxy", "setup", "killall", "set_num_threads")

_saved: dict[str, Any] | None = None
_lock = allocate_lock()


def monkey_patch() -> None:
    """Make ``eventlet.tpool`` run on fairpool's default pool, for every importer.

    Call once at service start; calling again does nothing. Works whether
    it comes before or after ``eventlet.monkey_patch()``. If eventlet's own
    pool was already running, its threads are stopped first (its queued
    calls still run and are answered).
    """
    global _saved
    with _lock:
        if _saved is not None:
            return
        from eventlet import tpool as eventlet_tpool

        from . import tpool as fair_tpool

        if getattr(eventlet_tpool, "_setup_already", False):
            eventlet_tpool.killall()
        _saved = {name: getattr(eventlet_tpool, name) for name in PATCHED_NAMES}
        for name in PATCHED_NAMES:
            setattr(eventlet_tpool, name, getattr(fair_tpool, name))
        eventlet_tpool.__fairpool_patched__ = True


def is_patched() -> bool:
    """Whether :func:`monkey_patch` is in effect."""
    return _saved is not None


def unpatch() -> None:
    """Undo :func:`monkey_patch` (for tests): eventlet.tpool gets its own functions back.

    Calls already running on fairpool finish there. Does nothing if not patched.
    """
    global _saved
    with _lock:
        if _saved is None:
            return
        from eventlet import tpool as eventlet_tpool

        for name, value in _saved.items():
            setattr(eventlet_tpool, name, value)
        del eventlet_tpool.__fairpool_patched__
        _saved = None
