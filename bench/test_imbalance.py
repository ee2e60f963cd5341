"""Queue imbalance: eventlet's old per-thread queues against the global FIFO and fair queues."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(1800)
def test_per_thread_queues_against_the_global_queue(benchmark: Any, measure: Any) -> None:
    """20 threads, 20 callers: 17 calls of 10 ms and 3 of 500 ms, shuffled; the same list each trial."""
    result = benchmark.pedantic(measure, args=("imbalance",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    designs = result["designs"]
    assert set(designs) == {
        "per-thread queues (eventlet 2010-2013)",
        "eventlet.tpool (global FIFO)",
        "fairpool fifo",
        "fairpool fair",
    }
    # Behaviour, with a tenfold margin: on a global queue no 10 ms call waits behind a 500 ms one.
    assert designs["fairpool fair"]["slow_10ms_callers_total"] == 0, designs["fairpool fair"]
