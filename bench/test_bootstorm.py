"""The boot storm of "Scaling the Boot Barrier": creation time against N parallel boots."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(3000)
def test_boot_storm(benchmark: Any, measure: Any) -> None:
    """N simulated VM creations at once, for each design; median and max creation time."""
    result = benchmark.pedantic(measure, args=("bootstorm",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    for name, series in result["designs"].items():
        assert len(series["median_s"]) == len(result["n"]), name
        assert all(m <= x for m, x in zip(series["median_s"], series["max_s"], strict=True)), name
