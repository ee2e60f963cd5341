"""Reporting fairpool's own faults from any thread, without taking a green lock.

Under ``eventlet.monkey_patch()`` logging's locks are green: a native thread
(a pool worker) must not take them, unless :func:`fairpool.patch_logging`
made them hybrid. :func:`report_fault` logs when that is safe and writes to
stderr otherwise. ``patch_logging`` tells this module through
:func:`set_logging_hybrid`, so neither imports the other.
"""

from __future__ import annotations

import logging
import sys
import traceback

from ._native import threads_patched

__all__ = ["log", "report_fault", "set_logging_hybrid", "warn"]

log = logging.getLogger("fairpool")

_logging_hybrid = False


def set_logging_hybrid(on: bool) -> None:
    """Record whether logging's locks are hybrid (safe for native threads under monkey-patching)."""
    global _logging_hybrid
    _logging_hybrid = on


def _logging_is_safe_here() -> bool:
    return _logging_hybrid or not threads_patched()


def report_fault(message: str, exc: BaseException) -> None:
    """Report a fault in fairpool itself (never a call's own exception). Never raises."""
    try:
        if _logging_is_safe_here():
            log.error(message, exc_info=exc)
        else:
            sys.stderr.write(message + "\n" + "".join(traceback.format_exception(exc)))
    except Exception:  # noqa: BLE001 - a report must not become a second fault
        pass


def warn(message: str) -> None:
    """One warning on the ``fairpool`` logger, or on stderr where logging's locks are green. Never raises."""
    try:
        if _logging_is_safe_here():
            log.warning(message)
        else:
            sys.stderr.write(message + "\n")
    except Exception:  # noqa: BLE001 - a warning must not become a fault
        pass
