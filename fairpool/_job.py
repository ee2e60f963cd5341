"""One pool call: what to run, who waits for it, where it is in its life.

State changes that two threads can race on (a worker starting or finishing
the job, a caller cancelling it, a shutdown answering it) happen under the
owning pool's lock. A green waiter's job is read by the hub thread only
after that, so the hub sees a settled state.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

# Job states. Ints, compared with ``is``-free ``==`` on the hot path.
QUEUED = 0  # admitted to the pool's queue, or waiting for admission (``admitted`` False)
RUNNING = 1  # a worker took it
DONE = 2  # the worker set the outcome and is handing it back
DELIVERED = 3  # the waiter was given the outcome
CANCELLED = 4  # the caller gave up while it was queued: it never ran
ABANDONED = 5  # the caller gave up while it ran: its outcome is dropped
CLOSED = 6  # answered with PoolClosed by a shutdown or a fork; any late outcome is dropped

STATE_NAMES = ("queued", "running", "done", "delivered", "cancelled", "abandoned", "closed")


class Job:
    """A call handed to a pool, with its outcome once it ran."""

    __slots__ = (
        # Set by the caller before the job is queued; read by the worker.
        "fn",
        "args",
        "kwargs",
        "lane",
        "weight",  # the lane's weight, kept for a call admitted later
        # How the waiter is told: exactly one of these is used.
        "waiter",  # a greenlet waiting on a hub (green caller), else None
        "channel",  # the HubChannel of that greenlet's hub
        "done_lock",  # a held native lock a native caller blocks on, else None
        "future",  # a concurrent.futures.Future (pool.submit), else None
        # Changed under the pool lock.
        "state",
        "admitted",  # in the run queue (True) or waiting for a free slot (False)
        "cancel_requested",  # its caller gave up: a worker that takes it skips it
        # Set by the worker; read by the waiter after delivery.
        "ok",
        "result",
        # Timestamps (monotonic seconds) for statistics and tracing.
        "t_queued",
        "t_started",
        "t_finished",
        # Set only while a trace is recording.
        "trace_id",
        "trace_track",
        "trace_name",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        lane: str,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.lane = lane
        self.weight = 1
        self.waiter: Any = None
        self.channel: Any = None
        self.done_lock: Any = None
        self.future: Any = None
        self.state = QUEUED
        self.admitted = False
        self.cancel_requested = False
        self.ok = False
        self.result: Any = None
        self.t_queued = 0.0
        self.t_started = 0.0
        self.t_finished = 0.0
        self.trace_id = 0
        self.trace_track = 0
        self.trace_name = ""

    def run(self) -> None:
        """Run the call in this thread and keep its outcome. Never raises.

        A ``BaseException`` (SystemExit, KeyboardInterrupt, GeneratorExit,
        eventlet.Timeout) is an outcome like any other: it goes back to the
        caller and the worker thread lives on.
        """
        fn, args, kwargs = self.fn, self.args, self.kwargs
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        try:
            self.result = fn(*args, **kwargs)
            self.ok = True
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back to the caller
            tb = exc.__traceback__
            # The first entry is this frame; the caller wants fn's frames.
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            exc.__traceback__ = tb
            # Those frames have returned: drop their locals, so the traceback
            # the caller gets does not keep the call's arguments alive.
            if tb is not None:
                traceback.clear_frames(tb)
            self.result = exc
            self.ok = False
            del exc
        del fn, args, kwargs

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

    def drop(self) -> None:
        """Forget everything the call held: its callable, arguments and outcome."""
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        self.result = None
        self.waiter = None
        self.future = None


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


__all__ = ["STATE_NAMES", "Job", "describe"]
