"""What OpenTelemetry metrics cost per pool call: off against on with the SDK's in-memory reader
(round trip, 200 green callers, and those callers plus a collection), rounds interleaved in one
process; and under eventlet.monkey_patch(), how long a collection holds the hub, with the green
drain and without (bench/measure_metrics.py). Published in docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk.metrics", reason="opentelemetry-sdk is not installed: pip install -e '.[test]'"
)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_metrics_overhead(benchmark: Any, measure: Any, pinned: bool) -> None:
    result = benchmark.pedantic(measure, args=("metrics.metrics_overhead", pinned), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    designs = {"off", "observer", "on", "preaggregated", "worker_records"}
    assert set(result["round_trip_us"]) == designs
    assert set(result["callers_calls_per_s"]) == designs | {"on_collected"}
    # Every call made while metrics were on and collected was counted, once.
    assert result["calls_counted"] == result["calls_made"] > 0, result


@pytest.mark.timeout(1800)
def test_collection_stall(benchmark: Any, measure: Any) -> None:
    result = benchmark.pedantic(measure, args=("metrics.collection_stall",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["longest_hub_gap_during_collection_ms"]) == {"first_collection", "green_drain"}
