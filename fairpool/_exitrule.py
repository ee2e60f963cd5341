"""The interpreter-exit rule: one for every pool and world.

Guarantees:

* At interpreter exit new calls are refused with PoolClosed; queued calls
  still run and running calls finish, but the exit waits for them only
  until a deadline, one for the whole process, measured from when the exit
  began: each pool's ``exit_timeout`` (default :data:`DEFAULT_EXIT_TIMEOUT`,
  or ``FAIRPOOL_EXIT_TIMEOUT``). The pools are waited for together, so N
  pools never wait N times. Past its deadline a pool's leftovers are
  answered with PoolClosed and named, all of them in ONE
  :class:`~fairpool.errors.ExitTimeoutWarning`; a call stuck in C is left
  in its daemon thread. The wait is native (the hub need not run). The
  first exit entry point to run does the wait (threading's pre-join hook,
  eventlet's copy of it under ``eventlet.monkey_patch()``, ``atexit``);
  later ones, a ``shutdown()`` or ``killall`` at exit included, never wait
  past the same deadline. One that comes before any fairpool hook ran
  (threading's own flag says the exit began: :func:`exit_began`) starts
  the rule itself.

Every live pool is registered here (:func:`register`): the exit answers
each one's callers, and the fork handler of ``fairpool._lifecycle`` reads
the same registry. ``_lifecycle`` registers :func:`at_exit` as a process
hook at its import (after its fork handler); :func:`hook_exit` adds it to
eventlet's copy of threading's pre-join hooks when there is one.
"""

from __future__ import annotations

import atexit
import math
import sys
import warnings
import weakref
from typing import Any

from . import _tally, _workers
from ._core import Core
from ._faultlog import report_fault, warn
from ._job import ABANDONED, CANCELLED, RUNNING, Job, describe, move
from ._native import (
    allocate_lock,
    get_ident,
    join_native,
    monotonic,
    seconds_from_environment,
    stdlib_threading,
)
from .errors import ExitTimeoutWarning, PoolClosed

__all__ = [
    "DEFAULT_EXIT_TIMEOUT",
    "EXIT_TIMEOUT_VARIABLE",
    "MAX_EXIT_TIMEOUT",
    "at_exit",
    "check_exit_timeout",
    "exit_began",
    "exit_deadline",
    "exit_timeout_of",
    "forget_exit_after_fork",
    "hook_exit",
    "register",
    "running_workers",
    "warn_exit_timeout",
]

#: How long the interpreter's exit waits for a pool's queued and running calls, by default
#: (docs/reliability.md says why 5 s).
DEFAULT_EXIT_TIMEOUT = 5.0

#: The longest ``exit_timeout``: an hour (longer is a mistake; a deadline is never infinite).
MAX_EXIT_TIMEOUT = 3600.0

#: The environment variable that sets the process's default ``exit_timeout``.
EXIT_TIMEOUT_VARIABLE = "FAIRPOOL_EXIT_TIMEOUT"


def _exit_timeout_error(value: object) -> str | None:
    """Why ``value`` is not an exit timeout, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if not math.isfinite(value) or not 0 <= value <= MAX_EXIT_TIMEOUT:
        return "out of range"
    return None


def check_exit_timeout(value: object, param: str) -> float | None:
    """``value`` as seconds (None stays None: the process's default); else ValueError naming ``param``."""
    if value is None:
        return None
    if _exit_timeout_error(value) is not None:
        raise ValueError(
            f"{param} must be a number of seconds from 0 to {MAX_EXIT_TIMEOUT:g} or None, got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def _exit_timeout_from_environment() -> float:
    """``FAIRPOOL_EXIT_TIMEOUT``, or the default; a bad value gives one warning and the default."""
    found = seconds_from_environment(EXIT_TIMEOUT_VARIABLE)
    if found is None:
        return DEFAULT_EXIT_TIMEOUT
    raw, value = found
    if _exit_timeout_error(value) is not None:
        warn(
            f"fairpool: {EXIT_TIMEOUT_VARIABLE}={raw!r} is not a number of seconds from 0 to "
            f"{MAX_EXIT_TIMEOUT:g}; the default ({DEFAULT_EXIT_TIMEOUT:g}s) is used"
        )
        return DEFAULT_EXIT_TIMEOUT
    return value


#: The exit timeout of a pool made with ``exit_timeout=None``: FAIRPOOL_EXIT_TIMEOUT, read at import.
process_exit_timeout = _exit_timeout_from_environment()


#: Every live pool (the exit answers each one's callers; _lifecycle's fork handler too, in the child).
_cores: weakref.WeakSet[Core] = weakref.WeakSet()


def register(core: Core) -> None:
    """Answer this core's callers at exit and after a fork (a pool made during the exit is closed at once)."""
    hook_exit(atexit_too=False)
    _cores.add(core)
    if exit_began(wait=False):
        _close_for_exit(core)


#: How often the exit's wait looks again at which pools drained or reached their deadline.
_STEP = 0.05


class _ExitState:
    """The process's one exit: when it began, whether its wait is over. Changed under ``lock``."""

    def __init__(self) -> None:
        self.lock = allocate_lock()  # held by the one thread doing the exit's wait
        self.began_lock = allocate_lock()  # only while ``began`` is set
        self.began: float | None = None  # monotonic seconds when the first exit entry point ran
        self.done = False  # its wait is over: every pool drained, or its leftovers answered


_exit = _ExitState()


def _exit_timeout(core: Core) -> float:
    return process_exit_timeout if core.exit_timeout is None else core.exit_timeout


def exit_timeout_of(core: Core) -> float:
    """``core``'s exit timeout in seconds: its own, else the process's default."""
    return _exit_timeout(core)


def running_workers(core: Core) -> int:
    """How many of ``core``'s worker threads (other than the caller's) are still alive."""
    me = get_ident()
    with core.locked():
        return sum(1 for t in core.workers.threads if t.ident != me and t.is_alive())


def exit_deadline(core: Core) -> float | None:
    """When the exit stops waiting for ``core`` (monotonic), or None before the exit."""
    began = _exit.began
    return None if began is None else began + _exit_timeout(core)


def _close_for_exit(core: Core) -> None:
    """Take no more calls (PoolClosed); let the queue run; let idle workers go."""
    with core.locked():
        core.closed = core.closed_by_exit = True
        core.workers.wake_all()


def _interpreter_exiting() -> bool:
    """Whether the interpreter's exit has begun, whether or not a fairpool hook has run.

    threading sets its private ``_SHUTTING_DOWN`` as the interpreter's exit
    begins, before the pre-join hooks and before ``atexit``. It is looked for
    in the module and in the namespace of the ``_shutdown`` the interpreter
    will call (eventlet's green copy has its own); private, so read with
    defaults: a Python without it falls back on ``sys.is_finalizing()``.
    """
    if getattr(stdlib_threading, "_SHUTTING_DOWN", False) is True:
        return True
    namespace = getattr(getattr(stdlib_threading, "_shutdown", None), "__globals__", None)
    if isinstance(namespace, dict) and namespace.get("_SHUTTING_DOWN", False) is True:
        return True
    return sys.is_finalizing()


def exit_began(wait: bool) -> bool:
    """Whether the interpreter's exit began; if no fairpool hook has run yet, start the exit rule now.

    A fairpool hook can be missed until ``atexit`` runs it: a pool made (or
    ``fairpool.monkey_patch()`` called) before ``eventlet.monkey_patch()``
    registers no pre-join hook with eventlet's copy of threading, and a
    service's own ``atexit`` handler registered after ``import fairpool`` runs
    before fairpool's. A ``shutdown()`` or ``killall`` made then must still wait
    no longer than the exit's deadline: with ``wait`` (and not from a pool's
    worker) it runs :func:`at_exit` itself, so that the leftovers are answered
    and named before it returns; otherwise it only sets the deadline and
    closes the pools for exit.
    """
    if _exit.began is not None:
        return True  # a hook (or an earlier call) began it: the caller's wait is bounded by its deadline
    if not _interpreter_exiting():
        return False
    if wait and _workers.current_core() is None:
        at_exit()
    else:  # a pool's own call must not answer itself with PoolClosed: the exit's hook will do the rest
        _begin_exit()
    return True


def _begin_exit() -> float:
    """Set when the exit began (once) and close every pool for exit; the moment it began."""
    with _exit.began_lock:
        began = _exit.began
        if began is None:
            began = _exit.began = monotonic()
    for core in list(_cores):
        _close_for_exit(core)
    return began


def at_exit() -> None:
    """The interpreter's exit, whichever hook runs it first: see the module docstring.

    Closes every pool, waits natively for their queued and running calls until
    each pool's deadline (all measured from the same moment), then answers what
    is left with PoolClosed and names it in one warning. Later calls return at once.
    """
    if _exit.done:
        return
    with _exit.lock:
        if _exit.done:
            return
        began = _begin_exit()
        cores = list(_cores)
        left: list[str] = []
        try:
            _wait_for_pools(cores, left)
        finally:
            _exit.done = True
            if left:
                _warn_abandoned(left, monotonic() - began)


def _wait_for_pools(cores: list[Core], left: list[str]) -> None:
    """Wait for every pool together until its own deadline; answer what is left, a line for each in ``left``.

    Interrupted (a second Ctrl-C), it answers and names what every pool still has, at once.
    """
    me = get_ident()
    pending: dict[Core, float] = {}
    for core in cores:
        deadline = exit_deadline(core)
        assert deadline is not None
        pending[core] = deadline
    try:
        while pending:
            soonest: tuple[float, list[Any]] | None = None
            for core, deadline in list(pending.items()):
                with core.locked():  # every worker thread, a retired one still answering its last call too
                    alive = [t for t in core.workers.threads if t.ident != me and t.is_alive()]
                if not alive or monotonic() >= deadline:
                    del pending[core]
                    _abandon(core, left)  # drained (it finds nothing), or past its deadline
                elif soonest is None or deadline < soonest[0]:
                    soonest = (deadline, alive)
            if soonest is not None:
                join_native(soonest[1][:1], min(monotonic() + _STEP, soonest[0]))
    finally:
        for core in pending:
            _abandon(core, left)


def _abandon(core: Core, lines: list[str]) -> None:
    """Answer ``core``'s queued and running calls with PoolClosed; a line naming each in ``lines``.

    Never raises: a future's done-callback that raises while answered is reported.
    """
    try:
        _abandon_now(core, lines)
    except Exception as exc:  # noqa: BLE001 - the exit goes on: the other pools are still answered
        report_fault(f"fairpool: answering pool {core.name!r}'s calls at exit raised", exc)


def _abandon_now(core: Core, lines: list[str]) -> None:
    timeout = _exit_timeout(core)
    now = monotonic()
    with core.locked() as out:
        for job in core.admission.drain():
            if job.cancel_requested:  # its caller left; the cancel was on its way: it never runs
                move(job, CANCELLED)
                core.cancelled += 1
                core.count_locked(job, _tally.CANCELLED)
                core.drop_call(job)
                out.append(job)
                continue
            lines.append(f"{_name(core, job)}: queued for {now - job.t_queued:.1f}s, never ran")
            error = PoolClosed(
                f"pool {core.name!r}: the interpreter exited {timeout:g}s (its exit_timeout) after its "
                "exit began, before this call ran"
            )
            core.close_locked(job, error, out)
        for job in core.workers.running_jobs():
            if job.state not in (RUNNING, ABANDONED):
                continue
            started = getattr(job, "t_started", None) or now
            gave_up = ", its caller had given up" if job.state == ABANDONED else ""
            lines.append(f"{_name(core, job)}: running for {now - started:.1f}s, left running{gave_up}")
            error = PoolClosed(
                f"pool {core.name!r}: the interpreter exited {timeout:g}s (its exit_timeout) after its "
                "exit began, before this call finished"
            )
            core.close_locked(job, error, out)


def _name(core: Core, job: Job) -> str:
    fn = job.fn  # the worker clears it (unlocked) as the call returns: read it once
    what = "a call" if fn is None else describe(fn)
    return f"{what} in pool {core.name!r} (exit_timeout {_exit_timeout(core):g}s), lane {job.lane!r}"


def _warn_abandoned(lines: list[str], waited: float) -> None:
    """One warning naming every call the exit left; never raises (a filter may make it an error)."""
    message = (
        f"fairpool: the interpreter's exit left {len(lines)} pool call(s) unfinished after waiting "
        f"{waited:.1f}s (each pool's exit_timeout; the default is {EXIT_TIMEOUT_VARIABLE}, or "
        f"{DEFAULT_EXIT_TIMEOUT:g}s); their callers got PoolClosed:\n"
    ) + "\n".join(f"  {line}" for line in lines)
    warn_exit_timeout(message)


def warn_exit_timeout(message: str) -> None:
    """An :class:`ExitTimeoutWarning`; never raises (a filter may make it an error): stderr then."""
    try:
        # No source line to show: the warning is about the calls, not about this line.
        warnings.warn_explicit(message, ExitTimeoutWarning, filename="fairpool", lineno=0, module="fairpool")
    except Exception:  # noqa: BLE001 - made an error by a filter: at exit it must still be seen, not raised
        try:
            sys.stderr.write(f"{ExitTimeoutWarning.__name__}: {message}\n")
        except Exception:  # noqa: BLE001 - nowhere left to say it
            pass


_hooked_threading: set[int] = set()


def hook_exit(atexit_too: bool = True) -> None:
    """Make sure :func:`at_exit` runs first at exit, in whatever world.

    Under ``eventlet.monkey_patch()`` the interpreter calls eventlet's copy of
    ``threading._shutdown``, which runs the pre-join hooks registered with
    that copy, not with the original module: register there too. With
    ``atexit_too``, move the atexit hook after every atexit function
    registered so far, so that it runs before them (eventlet.tpool's
    ``killall``, which ``fairpool.monkey_patch()`` reroutes here).
    """
    shutdown_hook = getattr(stdlib_threading, "_shutdown", None)
    namespace = getattr(shutdown_hook, "__globals__", None)
    if isinstance(namespace, dict) and namespace is not vars(stdlib_threading):
        register_hook = namespace.get("_register_atexit")
        if callable(register_hook) and id(namespace) not in _hooked_threading:
            _hooked_threading.add(id(namespace))
            try:
                register_hook(at_exit)
            except RuntimeError:
                pass  # threading is shutting down already: atexit still runs it
    if atexit_too:
        atexit.unregister(at_exit)
        atexit.register(at_exit)


def forget_exit_after_fork() -> None:
    """In a forked child: the child's own exit, its lock free (another thread may have held it)."""
    global _exit
    _exit = _ExitState()
