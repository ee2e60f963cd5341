"""The exceptions fairpool raises, each derived from :class:`FairpoolError`, and its one warning."""

from __future__ import annotations

__all__ = [
    "EventletNotInstalled",
    "ExitTimeoutWarning",
    "FairpoolError",
    "HubChannelError",
    "PoolClosed",
    "QueueFull",
]


class FairpoolError(Exception):
    """Base class of every error fairpool itself raises."""


class PoolClosed(FairpoolError, RuntimeError):
    """The pool was shut down (or the process forked) before the call could be answered.

    Raised at once for a call made after :meth:`fairpool.Pool.shutdown`, and
    delivered to a caller whose call was still queued or running when a
    shutdown's timeout ran out or when the process forked. A RuntimeError, as
    ``concurrent.futures`` executors raise for a submit after shutdown.
    """


class QueueFull(FairpoolError):
    """The pool's queue is at its ``max_queue`` bound and the pool was told to raise."""


class HubChannelError(FairpoolError):
    """The channel that carries results back to an eventlet hub failed.

    The call itself may have run; its result could not be handed back.
    """


class EventletNotInstalled(FairpoolError, ImportError):
    """A green-thread feature (``monkey_patch``, the hub watch) was asked for, and eventlet is not installed.

    Install fairpool's green mode with ``pip install 'fairpool[eventlet]'``.
    """


class CancelledByShutdown(PoolClosed):
    """The answer of a queued call at ``shutdown(cancel_futures=True)``: futures are cancelled with it.

    Internal: callers see ``PoolClosed`` (or a cancelled future).
    """


class ExitTimeoutWarning(RuntimeWarning):
    """The interpreter exited before some pool calls finished: their ``exit_timeout`` passed.

    Issued once, at exit, naming each call left (function, pool, lane, how
    long it had run or waited); their callers got :class:`PoolClosed`. A
    ``RuntimeWarning``, so it shows by default; filter or capture it by this
    class (``logging.captureWarnings(True)``, which oslo.log uses, logs it).
    """
