"""Fault injection for tests: the documented seams into fairpool's core.

Use these to test how your service (or fairpool) behaves when the
unlikely happens, without patching fairpool's private names::

    with fairpool.testing.refuse_threads():
        with pytest.raises(fairpool.FairpoolError):
            pool.execute(work)

Each is a context manager that undoes itself on exit. They change
process-wide behaviour: do not use them in production code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from . import _hooks, _workers
from ._hooks import CallInfo, PoolObserver
from ._job import Job

__all__ = ["FailingObserver", "failing_observer", "fault_in_worker_loop", "observer_faults", "refuse_threads"]


@contextlib.contextmanager
def refuse_threads() -> Iterator[None]:
    """While inside, starting a worker thread fails as when the OS refuses one.

    ``RuntimeError("can't start new thread")`` is raised where fairpool
    starts a worker, in every pool. Workers already running are unaffected.
    """
    original = _workers.start_thread

    def refuse(target: Callable[..., Any], args: tuple[Any, ...], name: str) -> Any:
        raise RuntimeError("can't start new thread")

    _workers.start_thread = refuse
    try:
        yield
    finally:
        _workers.start_thread = original


class FailingObserver(PoolObserver):
    """An observer of pool calls whose every event raises ``error()``."""

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self.error = error
        self.raised = 0  #: how many times it raised

    def _fail(self) -> None:
        self.raised += 1
        raise self.error()

    def call_submitted(self, call: CallInfo) -> None:
        self._fail()

    def call_started(self, call: CallInfo) -> None:
        self._fail()

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        self._fail()

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        self._fail()

    def __repr__(self) -> str:
        return "<fairpool.testing.FailingObserver>"


@contextlib.contextmanager
def failing_observer(
    error: Callable[[], BaseException] = lambda: OSError(28, "No space left on device"),
) -> Iterator[FailingObserver]:
    """While inside, an observer of every pool call raises ``error()`` at each event.

    The default error is the one a trace file on a full disk gives. fairpool
    must answer every call as usual: see :func:`observer_faults`.
    """
    observer = FailingObserver(error)
    _hooks.add_observer(observer)
    try:
        yield observer
    finally:
        _hooks.remove_observer(observer)


def observer_faults() -> int:
    """How many exceptions observers have raised in this process (each swallowed and counted)."""
    return _hooks.fault_count()


@contextlib.contextmanager
def fault_in_worker_loop(
    stage: str = "before run",
    times: int = 1,
    error: Callable[[], BaseException] = lambda: RuntimeError("injected fault in the worker loop"),
    when: Callable[[Job], bool] = lambda job: True,
) -> Iterator[None]:
    """While inside, the next ``times`` worker-loop passes raise ``error()`` at ``stage``.

    ``stage`` is ``"before run"`` (the call was taken but not run: its caller
    gets a FairpoolError) or ``"after run"`` (the call ran: its caller gets
    its real outcome). ``when(job)`` picks which calls (default: any).
    The worker that faults is replaced.
    """
    if stage not in ("before run", "after run"):
        raise ValueError(f"stage must be 'before run' or 'after run', got {stage!r}")
    left = [times]

    def hook(at: str, job: Job) -> None:
        if at == stage and left[0] > 0 and when(job):
            left[0] -= 1
            raise error()

    _workers.fault_hook = hook
    try:
        yield
    finally:
        _workers.fault_hook = None
