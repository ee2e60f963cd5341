"""``python -m fairpool demo``: what fairpool is for, in a few seconds.

1. A ticker green thread should tick every 10 ms. A blocking C call
   (libc ``usleep``, which eventlet cannot patch) made directly on the hub
   freezes it; the same call through eventlet.tpool or fairpool does not.
2. A burst of 100 calls from a periodic audit is queued, then one call from
   a VM boot. With one FIFO queue (eventlet.tpool) the boot waits behind the
   whole burst; in its own lane on fairpool it waits for about one call.
"""

from __future__ import annotations

import ctypes
import itertools
import time
from collections.abc import Callable
from typing import Any

from fairpool._compat import import_eventlet_quietly

eventlet = import_eventlet_quietly()  # the demo's own import: no deprecation banner in its output
from eventlet import tpool as eventlet_tpool  # noqa: E402

import fairpool  # noqa: E402

_libc = ctypes.CDLL(None)


def c_sleep(seconds: float) -> None:
    """A blocking C call: eventlet cannot make it yield."""
    _libc.usleep(int(seconds * 1e6))


def ticks_during(call: Callable[[], Any], period: float = 0.01) -> tuple[int, float]:
    """Run ``call`` while a ticker green thread ticks; (ticks, longest gap in seconds)."""
    stamps: list[float] = []

    def ticker() -> None:
        while True:
            stamps.append(time.monotonic())
            eventlet.sleep(period)

    t = eventlet.spawn(ticker)
    eventlet.sleep(0)
    start = time.monotonic()
    call()
    end = time.monotonic()
    t.kill()
    points = [start, *[s for s in stamps if start <= s <= end], end]
    return len(points) - 2, max(b - a for a, b in itertools.pairwise(points))


def burst_then_one(execute: Callable[..., Any], use_lanes: bool) -> float:
    """Queue 100 x 10 ms audit calls, then time one boot call made right after."""
    audit_lane = fairpool.lane("audit") if use_lanes else None

    def audit() -> None:
        if audit_lane is not None:
            with audit_lane:
                execute(c_sleep, 0.01)
        else:
            execute(c_sleep, 0.01)

    burst = [eventlet.spawn(audit) for _ in range(100)]
    eventlet.sleep(0)
    start = time.monotonic()
    if use_lanes:
        with fairpool.lane("boot"):
            execute(c_sleep, 0.01)
    else:
        execute(c_sleep, 0.01)
    took = time.monotonic() - start
    for gt in burst:
        gt.wait()
    return took


def main() -> int:
    call = 0.3
    print(f"A ticker green thread ticks every 10 ms; a blocking C call takes {call * 1e3:.0f} ms.\n")
    rows = [
        ("C call made directly on the hub", lambda: c_sleep(call)),
        ("through eventlet.tpool", lambda: eventlet_tpool.execute(c_sleep, call)),
        ("through fairpool", lambda: fairpool.execute(c_sleep, call)),
    ]
    for label, fn in rows:
        ticks, gap = ticks_during(fn)
        print(f"  {label:<34} ticks: {ticks:3d}   longest stall: {gap * 1e3:6.1f} ms")

    print("\nA periodic audit queues 100 calls of 10 ms on 2 threads; then a VM boot makes one call.\n")
    eventlet_tpool.killall()
    eventlet_tpool.set_num_threads(2)
    fairpool.set_num_threads(2)
    fifo = burst_then_one(eventlet_tpool.execute, use_lanes=False)
    fair = burst_then_one(fairpool.execute, use_lanes=True)
    print(f"  {'eventlet.tpool (one FIFO queue)':<34} the boot call took {fifo * 1e3:7.1f} ms")
    print(f"  {'fairpool, boot in its own lane':<34} the boot call took {fair * 1e3:7.1f} ms")
    print("\nAdd `fairpool.monkey_patch()` at start-up to run eventlet.tpool users on fairpool.")
    eventlet_tpool.killall()
    return 0
