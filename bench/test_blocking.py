"""Green-thread blocking: how long a ticker green thread stalls during a 200 ms C call."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(900)
def test_ticker_stall_direct_and_through_each_pool(benchmark: Any, measure: Any) -> None:
    """The C call made directly on the hub, then through eventlet.tpool, then through fairpool."""
    result = benchmark.pedantic(measure, args=("blocking",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    stalls = result["max_stall_ms"]
    # The stand-in library really blocks: made directly, it freezes the hub for the whole call.
    assert stalls["direct"] >= 0.9 * result["call_ms"], stalls


@pytest.mark.timeout(900)
def test_calls_while_green_threads_keep_the_hub_busy(benchmark: Any, measure: Any) -> None:
    """2 ms C calls, one after another, while ten green threads keep the hub from ever blocking."""
    result = benchmark.pedantic(measure, args=("busy_hub",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    medians = result["median_call_ms"]
    assert set(medians) == {"fairpool", "fairpool, batch_scheduling=True", "eventlet"}
    # Every call sleeps 2 ms in C: nothing can be quicker, whatever the convoy costs on top.
    assert all(v >= 0.9 * result["call_ms"] for v in medians.values()), medians
