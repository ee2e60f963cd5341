"""What tracing costs on the pool's round trip: nothing when off, a few microseconds when on."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(900)
def test_tracing_overhead(benchmark: Any, measure: Any) -> None:
    """No tracing, a @traced call with recording off, and recording on; pinned to one CPU."""
    result = benchmark.pedantic(measure, args=("tracing_overhead", True), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["median_us"]) == {"untraced", "off", "on"}
