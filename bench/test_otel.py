"""What OpenTelemetry spans cost per pool call: nothing when off; the no-op provider, the SDK
unsampled, with its batch processor and with fairpool's, beside the Chrome-trace recorder; pinned
to one CPU."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed: pip install -e '.[test]'"
)


@pytest.mark.timeout(900)
def test_otel_overhead(benchmark: Any, measure: Any) -> None:
    result = benchmark.pedantic(measure, args=("otel_overhead", True), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["median_us"]) == {
        "untraced",
        "off",
        "noop_provider",
        "sdk_unsampled",
        "sdk_batch",
        "native_batch",
        "chrome_trace",
    }
    # Every span of the measured calls reached the exporter: none was dropped, so the cost is
    # that of recording them all.
    assert result["spans_exported"] == {
        "sdk_batch": result["spans_expected"],
        "native_batch": result["spans_expected"],
    }, result
