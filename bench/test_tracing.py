"""What tracing costs on the pool's round trip: nothing when off, a few microseconds when on."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(900)
def test_tracing_overhead(benchmark: Any, measure: Any) -> None:
    """No tracing, a @traced call with recording off, and recording on; the hub's longest stall
    while recording 10,000 events/s; pinned to one CPU (the writer thread shares it)."""
    result = benchmark.pedantic(measure, args=("tracing_overhead", True), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["median_us"]) == {"untraced", "off", "on"}
    stall = result["hub_stall_at_10k_events_per_s"]
    assert stall["on"]["events_per_s"] > 5_000, stall  # the load really was there
    assert stall["on"]["dropped"] == 0, stall
