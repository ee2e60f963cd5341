"""fairpool: a fair, safe, instrumented thread pool for eventlet services.

One line at start-up routes every user of ``eventlet.tpool`` here::

    import fairpool
    fairpool.monkey_patch()

or use the same API directly: ``fairpool.execute(fn, *args)``,
``fairpool.Proxy(obj)``, ``fairpool.Pool(threads=4)``.
"""

from __future__ import annotations

from . import aio, trace
from .aio import run_sync
from .errors import (
    EventletNotInstalled,
    ExitTimeoutWarning,
    FairpoolError,
    HubChannelError,
    PoolClosed,
    QueueFull,
)
from .futurist_executor import FuturistExecutor
from .hubwatch import HubStall, HubWatch, watch_hub
from .hybridlock import HybridCondition, HybridRLock
from .lanes import DEFAULT_LANE, current_lane, lane
from .libwrap import wrap_library
from .locks import InstrumentedLock, LockStatistics, instrument_lock, lock_statistics
from .patch import is_patched, monkey_patch, patch_logging, unpatch, unpatch_logging
from .pool import DEFAULT_THREADS, Pool
from .proxy import Proxy, proxy_call
from .statistics import PoolStatistics
from .tpool import default_pool, execute, killall, set_num_threads, setup, statistics
from .trace import TraceError, trace_module, traced

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANE",
    "DEFAULT_THREADS",
    "EventletNotInstalled",
    "ExitTimeoutWarning",
    "FairpoolError",
    "FuturistExecutor",
    "HubChannelError",
    "HubStall",
    "HubWatch",
    "HybridCondition",
    "HybridRLock",
    "InstrumentedLock",
    "LockStatistics",
    "Pool",
    "PoolClosed",
    "PoolStatistics",
    "Proxy",
    "QueueFull",
    "TraceError",
    "aio",
    "current_lane",
    "default_pool",
    "execute",
    "instrument_lock",
    "is_patched",
    "killall",
    "lane",
    "lock_statistics",
    "monkey_patch",
    "patch_logging",
    "proxy_call",
    "run_sync",
    "set_num_threads",
    "setup",
    "statistics",
    "trace",
    "trace_module",
    "traced",
    "unpatch",
    "unpatch_logging",
    "watch_hub",
    "wrap_library",
]

trace._start_from_environment()
from . import hubwatch as _hubwatch  # noqa: E402

_hubwatch._start_from_environment()
from . import otel as _otel  # noqa: E402

_otel._start_from_environment()
