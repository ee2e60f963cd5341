"""Beyond eventlet: native-thread callers against ThreadPoolExecutor, asyncio against run_in_executor."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.timeout(900)
def test_native_callers_against_threadpoolexecutor(benchmark: Any, measure: Any) -> None:
    """20 native threads: submit().result() and execute() on fairpool; submit().result() on the stdlib's."""
    result = benchmark.pedantic(measure, args=("worlds.native_executor",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["calls_per_s"]) == {"threadpoolexecutor submit", "fairpool submit", "fairpool execute"}
    assert all(v > 0 for v in result["calls_per_s"].values())


@pytest.mark.timeout(900)
def test_asyncio_run_sync_against_run_in_executor_and_fairness(benchmark: Any, measure: Any) -> None:
    """await run_sync(noop) against run_in_executor(None, noop); an interactive call under a bulk flood."""
    result = benchmark.pedantic(measure, args=("worlds.asyncio_calls",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert all(v > 0 for v in result["latency_us"].values())
    assert result["fairness"]["interactive_ms_median"] >= result["fairness"]["call_ms"]
