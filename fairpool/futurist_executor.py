"""An executor that futurist-based code (oslo.service, nova in threading mode) can swap in.

``futurist.ThreadPoolExecutor`` has fairpool's place in OpenStack services that
left eventlet. :class:`FuturistExecutor` has its interface, on a fairpool
:class:`~fairpool.Pool`, so the same service gets lanes, bounds, statistics
and tracing::

    executor = fairpool.FuturistExecutor(max_workers=8,
                                         check_and_reject=futurist.rejection.reject_when_reached(64))

futurist itself is not needed: ``statistics`` is a ``futurist.ExecutorStatistics``
when futurist is installed, and a :class:`ExecutorStatistics` with the same
fields otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from .pool import Pool
from .statistics import PoolStatistics

__all__ = ["ExecutorStatistics", "FuturistExecutor"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorStatistics:
    """futurist's executor statistics, where futurist is not installed."""

    failures: int = 0  #: calls that raised
    executed: int = 0  #: calls that ran to the end (returned or raised)
    runtime: float = 0.0  #: seconds they ran, added up
    cancelled: int = 0  #: calls cancelled before they ran


def _statistics_class() -> Callable[..., Any]:
    try:
        from futurist import ExecutorStatistics as FuturistStatistics
    except ImportError:
        return ExecutorStatistics
    return FuturistStatistics


class FuturistExecutor(Pool):
    """A fairpool :class:`~fairpool.Pool` with ``futurist.ThreadPoolExecutor``'s interface.

    Args:
        max_workers: The most worker threads (futurist's name for ``threads``);
            None for fairpool's default.
        check_and_reject: Called as ``check_and_reject(executor, backlog)``
            before each submit, with the number of calls waiting for a
            worker; it raises (``futurist.RejectedSubmission``) to refuse the
            call. futurist's ``rejection.reject_when_reached(n)`` fits.
        **pool_options: Any other :class:`~fairpool.Pool` argument (``name``,
            ``max_queue``, ``lane_key`` ...).

    Raises:
        ValueError: ``max_workers`` is not an int >= 1.
        TypeError: ``check_and_reject`` is not callable.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        check_and_reject: Callable[[FuturistExecutor, int], None] | None = None,
        **pool_options: Any,
    ) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be an int >= 1 or None, got {max_workers!r}")
        if check_and_reject is not None and not callable(check_and_reject):
            raise TypeError(f"check_and_reject must be callable or None, got {check_and_reject!r}")
        if max_workers is not None and "threads" in pool_options:
            raise TypeError("give max_workers or threads, not both")
        pool_options.setdefault("name", "futurist")
        if max_workers is not None:
            pool_options["threads"] = max_workers
        super().__init__(**pool_options)
        self._check_and_reject = check_and_reject

    @property
    def alive(self) -> bool:
        """Whether the executor takes calls (not shut down)."""
        return not self.closed

    @property
    def statistics(self) -> Any:
        """futurist's ``ExecutorStatistics``: failures, executed, runtime, cancelled.

        ``cancelled`` counts every future cancelled before its call ran, once,
        whoever cancelled it: its caller (``future.cancel()``) or
        ``shutdown(cancel_futures=True)`` (which :meth:`pool_statistics` counts
        as ``closed``). A property, as futurist's; fairpool's own figures are
        :meth:`pool_statistics`.
        """
        stats = self.pool_statistics()
        with self._core.locked():
            by_shutdown = self._core.futures_cancelled_by_shutdown
        return _statistics_class()(
            failures=stats.failed,
            executed=stats.completed + stats.failed,
            runtime=stats.run_total,
            cancelled=stats.cancelled + by_shutdown,
        )

    def pool_statistics(self) -> PoolStatistics:
        """fairpool's :class:`~fairpool.PoolStatistics` of this executor (``Pool.statistics()``)."""
        return Pool.statistics(self)

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Queue ``fn(*args, **kwargs)``, after ``check_and_reject``; see :meth:`fairpool.Pool.submit`."""
        if self._check_and_reject is not None:
            if self.closed:
                self._check_call(fn)  # raises PoolClosed, a RuntimeError, as futurist's does
            self._check_and_reject(self, len(self._core.admission))
        return super().submit(fn, *args, **kwargs)
