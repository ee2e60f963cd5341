"""The periodic statistics log of a pool (``Pool(stats_interval=...)``): an observer of one pool."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from . import _snapshot
from ._faultlog import log
from ._native import Event, start_thread, threads_patched

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["start_stats_logger"]


def start_stats_logger(pool_ref: weakref.ref[Pool], interval: float) -> None:
    """Log a pool's statistics every ``interval`` seconds while it lives and is open.

    A native thread would take logging's locks, which eventlet.monkey_patch()
    makes green; so under monkey-patching the logger is a green thread.
    """

    def tick() -> bool:
        pool = pool_ref()
        if pool is None or pool.closed:
            return False
        # Not pool.statistics(): a FuturistExecutor has futurist's property there.
        log.info(_snapshot.statistics(pool._core).log_line())
        return True

    if threads_patched():
        import eventlet

        def green_loop() -> None:
            while True:
                eventlet.sleep(interval)
                if not tick():
                    return

        eventlet.spawn_n(green_loop)
    else:
        stop = Event()

        def native_loop() -> None:
            while not stop.wait(interval):
                if not tick():
                    return

        pool = pool_ref()
        name = pool.name if pool is not None else "pool"
        start_thread(native_loop, (), f"fairpool-{name}-stats")
