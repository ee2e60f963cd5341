"""What the pool core tells observers about one call: its facts when handed in, its outcome.

The core calls these only while observers are registered (``_hooks.observers``),
never under its lock; ``_hooks.notify`` keeps an observer's fault away from the call.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from . import _hooks
from ._job import ABANDONED, CANCELLED, CLOSED, DONE, Job, describe

if TYPE_CHECKING:
    from ._core import Core

__all__ = ["announce", "tell_answered"]

_OUTCOMES = {CANCELLED: "cancelled", ABANDONED: "abandoned", CLOSED: "closed"}


def announce(core: Core, job: Job) -> None:
    """``job`` was handed to ``core``: give it a CallInfo and tell the observers (call_submitted)."""
    info = job.info = _hooks.CallInfo(
        core.name, describe(job.fn), job.lane, job.t_queued, len(core.admission), core.busy
    )
    if _hooks.wants_context:
        info.context = contextvars.copy_context()
    _hooks.notify("call_submitted", info)


def tell_answered(job: Job) -> None:
    """``job`` reached its final state: tell the observers its outcome (call_answered), once."""
    info, state = job.info, job.state
    job.info = None
    if state == DONE:
        outcome = "returned" if job.ok else "raised"
    elif state == CLOSED and job.rejected:
        outcome = "rejected"
    else:
        outcome = _OUTCOMES[state]
    if state == CLOSED:
        info.error = job.result
    _hooks.notify("call_answered", info, outcome)
