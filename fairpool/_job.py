"""One pool call, its states, and the one table of who may move them.

::

    NEW ──admitted──► QUEUED ──a worker takes it──► RUNNING ──it returns──► DONE
     │                  │                             │
     │                  ├──its caller gives up──► CANCELLED (it never runs; also from
     │                  │                           RUNNING if its future was cancelled
     │                  │                           just before it started)
     ├──its caller gives up before it was taken in ──┘│
     │                                                ├──its caller gives up──► ABANDONED
     └──refused──► CLOSED ◄──shutdown, exit, fork, ───┘   (its outcome is dropped)
                             a fault, no worker

Every move goes through :func:`move`, under the owning pool's lock. A move
that the table does not allow changes nothing and returns False: that is how
a worker finishing a call that was already answered (CLOSED) or left
(ABANDONED) drops its outcome, and how two answers never reach one caller.
The three moves every call makes (NEW→QUEUED at admission, QUEUED→RUNNING
and RUNNING→DONE in the core) are spelled out as a plain store where the
state they move from is known or checked, to save a call each; each such
store names its move in a comment, and tests/test_job.py checks that every
store of ``.state`` in fairpool names a move this table allows.

Whoever moves a job into DONE or CLOSED owns its answer: after releasing the
lock it calls ``job.waiter.answer(job)``, once. CANCELLED and ABANDONED are
not answered: the caller already left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ANSWERED", "STATE_NAMES", "TRANSITIONS", "Job", "describe", "move", "run_call"]

NEW = 0  # made by its caller, not yet taken in by the pool
QUEUED = 1  # in the pool's run queue, or held for room in a bounded queue
RUNNING = 2  # a worker runs it
DONE = 3  # it ran; its outcome is (being) handed to its waiter
CANCELLED = 4  # its caller gave up before it ran: it never runs
ABANDONED = 5  # its caller gave up while it ran: its outcome is dropped
CLOSED = 6  # answered with an error instead of running to the end

STATE_NAMES = ("new", "queued", "running", "done", "cancelled", "abandoned", "closed")

#: Who may take each move. Any move not listed is refused by :func:`move`.
TRANSITIONS: dict[tuple[int, int], str] = {
    (NEW, QUEUED): "the pool, taking in a submitted call (admission)",
    (NEW, CANCELLED): "the pool, taking in a call whose caller already gave up",
    (NEW, CLOSED): "the pool: closed, queue full (on_full='raise'), or no worker could start",
    (QUEUED, RUNNING): "a worker, or a worker whose call waits on it (helping: Core.help_locked)",
    (QUEUED, CANCELLED): "the caller (timeout, kill, future.cancel()), or a worker finding it cancelled",
    (QUEUED, CLOSED): "shutdown's timeout, exit's deadline, fork, or no worker could start",
    (RUNNING, CANCELLED): "the worker, whose waiter says it was cancelled just before it started",
    (RUNNING, DONE): "the worker that ran it",
    (RUNNING, ABANDONED): "the caller (timeout, kill)",
    (RUNNING, CLOSED): "shutdown's timeout, exit's deadline, fork, or a fault in the worker's loop",
}
# For each state, the states it may move to (indexed by state: one lookup on the hot path).
_NEXT: tuple[frozenset[int], ...] = tuple(
    frozenset(b for (a, b) in TRANSITIONS if a == state) for state in range(len(STATE_NAMES))
)

#: The states whose waiter is answered.
ANSWERED = (DONE, CLOSED)


class Job:
    """A call handed to a pool: what to run, who waits, where it is in its life."""

    __slots__ = (
        # Set by the caller before the pool sees the job; cleared when it runs (fn: when it
        # returns) or is answered.
        "fn",
        "args",
        "kwargs",
        "lane",
        "weight",  # the lane's weight, kept for a call admitted later
        "waiter",  # answers the caller: see fairpool._waiters
        "info",  # a _hooks.CallInfo while observers are registered, else None
        # Changed under the pool's lock only, through move().
        "state",
        "held",  # QUEUED but waiting for room in a bounded queue (admission's own flag)
        "rejected",  # CLOSED at admission (pool closed, queue full): the outcome observers see
        # Set by the caller (any thread, a plain store): the pool applies it when it takes the job in.
        "cancel_requested",
        # The outcome: set under the lock by whoever moved the job into DONE or CLOSED, and
        # read only after that move (not set before it: one store less per call).
        "ok",
        "result",
        # Monotonic seconds, for statistics and observers. t_queued is set by Core.submit,
        # t_started by the worker just before the call runs; neither is read before.
        "t_queued",
        "t_started",
        "t_finished",  # 0.0 until the call returned: a fault in the worker loop reads it
    )

    ok: bool
    result: Any
    t_queued: float
    t_started: float

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], lane: str, weight: int
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.lane = lane
        self.weight = weight
        self.waiter: Any = None
        self.info: Any = None
        self.state = NEW
        self.held = False
        self.rejected = False
        self.cancel_requested = False
        self.t_finished = 0.0

    def unwrap(self) -> Any:
        """Return the value or raise the exception, and forget both."""
        result = self.result
        self.result = None
        if self.ok:
            return result
        try:
            raise result
        finally:
            result = None

    def __repr__(self) -> str:
        return f"<fairpool job {STATE_NAMES[self.state]} lane={self.lane!r}>"


def move(job: Job, to: int) -> bool:
    """Move ``job`` to state ``to`` if :data:`TRANSITIONS` allows it. Call under the pool's lock."""
    if to in _NEXT[job.state]:
        job.state = to
        return True
    return False


def run_call(job: Job) -> tuple[bool, Any]:
    """Run the job's call in this thread; return ``(True, value)`` or ``(False, exception)``.

    Never raises: a ``BaseException`` (SystemExit, KeyboardInterrupt,
    GeneratorExit, eventlet.Timeout) is an outcome like any other, and the
    worker lives on. The arguments are dropped first, so the job does not keep
    them alive; the callable stays on the job until the call returns (the
    worker clears it then), so that the exit can name a call it leaves
    running. The traceback is left as the call made it (less this frame):
    clearing its frames would close a suspended generator whose frame is in
    it, which a direct call would not do.
    """
    fn, args, kwargs = job.fn, job.args, job.kwargs
    job.args = job.kwargs = None  # type: ignore[assignment]
    del job  # fn's frames link back to this one (f_back): it must not hold the job, nor its waiter
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the caller
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is run_call.__code__:
            exc.__traceback__ = tb.tb_next  # the caller wants fn's frames, not this one
        del tb  # nor the traceback (a cycle through fn's frame)
        return False, exc
    finally:
        del fn, args, kwargs


def describe(fn: Callable[..., Any]) -> str:
    """A short name for a callable, for errors, thread names and traces."""
    given = getattr(fn, "__fairpool_name__", None)
    if isinstance(given, str):
        return given
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    module = getattr(fn, "__module__", None)
    if module and module not in ("builtins", "__main__"):
        return f"{module}.{name}"
    return str(name)
