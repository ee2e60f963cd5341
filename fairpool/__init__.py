"""fairpool: a fair, safe, instrumented thread pool for eventlet services.

One line at start-up routes every user of ``eventlet.tpool`` here::

    import fairpool
    fairpool.monkey_patch()

or use the same API directly: ``fairpool.execute(fn, *args)``,
``fairpool.Proxy(obj)``, ``fairpool.Pool(threads=4)``.
"""

from __future__ import annotations

from .errors import FairpoolError, HubChannelError, PoolClosed, QueueFull
from .lanes import DEFAULT_LANE, current_lane, lane
from .patch import is_patched, monkey_patch, unpatch
from .pool import DEFAULT_THREADS, Pool
from .proxy import Proxy, proxy_call
from .statistics import PoolStatistics
from .tpool import default_pool, execute, killall, set_num_threads, setup, statistics

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANE",
    "DEFAULT_THREADS",
    "FairpoolError",
    "HubChannelError",
    "Pool",
    "PoolClosed",
    "PoolStatistics",
    "Proxy",
    "QueueFull",
    "current_lane",
    "default_pool",
    "execute",
    "is_patched",
    "killall",
    "lane",
    "monkey_patch",
    "proxy_call",
    "set_num_threads",
    "setup",
    "statistics",
    "unpatch",
]
