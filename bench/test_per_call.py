"""Per-call cost: fairpool against eventlet.tpool, side by side in one process.

Each is measured as it runs and pinned to one CPU: on a 2-CPU machine, waking
a thread on the other CPU costs tens of microseconds and hides the software's
own cost. The speed targets are reported by ``python -m bench.report``, not
asserted here: a benchmark measures, a test checks behaviour.
"""

from __future__ import annotations

from typing import Any

import eventlet
import pytest
from eventlet import tpool as eventlet_tpool

import fairpool

from . import clib

PINNING = [pytest.param(False, id="unpinned"), pytest.param(True, id="pinned")]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("pinned", PINNING)
def test_round_trip(benchmark: Any, measure: Any, pinned: bool) -> None:
    """Sequential round trip of a no-op C call: fairpool, eventlet.tpool, and the Event ping-pong floor."""
    result = benchmark.pedantic(measure, args=("round_trip", pinned), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert set(result["median_us"]) == {"fairpool", "eventlet", "floor"}
    assert all(v > 0 for v in result["median_us"].values())


@pytest.mark.timeout(300)
def test_bytecodes_per_call(benchmark: Any, measure: Any) -> None:
    """Python calls and bytecodes per green call, in every thread: a count, not a time."""
    result = benchmark.pedantic(measure, args=("bytecodes",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    for design in ("fairpool", "eventlet"):
        for shape in ("sequential", "200 callers"):
            counted = result[f"{design}, {shape}"]
            # Each call runs at least the caller's own frames and the worker's: a count
            # near zero means the tracer missed the worker threads.
            assert counted["python_calls"] >= 5, f"{design}, {shape}: the workers were not traced: {counted}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("pinned", PINNING)
def test_throughput_of_200_green_callers(benchmark: Any, measure: Any, pinned: bool) -> None:
    """Calls per second with 200 concurrent green callers of a no-op C call."""
    result = benchmark.pedantic(measure, args=("throughput_noop", pinned), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["calls_per_s"]["fairpool"] > 0 and result["calls_per_s"]["eventlet"] > 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("pinned", PINNING)
def test_throughput_of_1ms_calls_against_the_ceiling(benchmark: Any, measure: Any, pinned: bool) -> None:
    """1 ms GIL-releasing calls, 20 threads, 200 callers, as a share of 20 native threads calling directly."""
    result = benchmark.pedantic(measure, args=("throughput_1ms", pinned), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert 0 < result["share_of_ceiling"]["fairpool"] <= 1.2


@pytest.mark.parametrize(
    "design",
    [pytest.param("fairpool", id="fairpool"), pytest.param("eventlet", id="eventlet.tpool")],
)
def test_microbench_round_trip(benchmark: Any, design: str) -> None:
    """pytest-benchmark's own statistics for one green round trip of a no-op C call."""
    noop = clib.lib().fp_noop
    execute = fairpool.execute if design == "fairpool" else eventlet_tpool.execute
    eventlet.sleep(0)  # a hub exists: the caller waits green
    execute(noop)
    benchmark.group = "round trip (in-process, unpinned)"
    benchmark.pedantic(execute, args=(noop,), rounds=2000, iterations=1, warmup_rounds=100)
    if design == "eventlet":
        eventlet_tpool.killall()
