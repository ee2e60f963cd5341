"""What OpenTelemetry metrics (fairpool.otel_metrics) cost a pool call. Prints JSON.

    python -m bench.measure_metrics metrics_overhead [--full]
    python -m bench.measure_metrics collection_stall [--full]

Metrics off against on (the SDK's MeterProvider with an InMemoryMetricReader),
in one process, rounds interleaved, medians: the round trip of a no-op C call
from a green thread, and the calls per second of 200 green callers.
"observer" registers a pool observer that does nothing: what any observer
costs (fairpool's observer slot: a CallInfo per call and its events; metrics
no longer use it). "on, collected" times the same 200 callers and then one
collection (the SDK's recording of the queue waits and run times happens
then): everything included; the difference per call is the collection's cost.

Two other designs for the histograms, measured the same way (metrics on, the
pools' tallies swapped for the round): "preaggregated", the pool keeps bucket
counts and sums per lane under its lock (what exporting them pre-aggregated
would cost; the SDK cannot take them; here the buckets are kept in the
worker after the answer, where fairpool appends its entries, unlocked: a
correct version needs the pool's lock or buckets per worker, so this is a
lower bound), and "worker_records", the SDK's
``Histogram.record`` called in the worker after the answer. The machine's
load average is reported beside the ratios.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any

warnings.simplefilter("ignore")  # eventlet's deprecation notice

import eventlet  # noqa: E402
from eventlet import tpool as eventlet_tpool  # noqa: E402

import fairpool  # noqa: E402

from . import _cli, clib  # noqa: E402
from ._cli import median, pick  # noqa: E402
from .measure import _sequential, _throughput  # noqa: E402


def _counted(reader: Any) -> int:
    """Calls the reader's collection counts (fairpool.pool.calls), over every pool and outcome."""
    data = reader.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data is not None else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "fairpool.pool.calls":
                    total += sum(int(p.value) for p in metric.data.data_points)
    return total


def metrics_overhead() -> dict[str, Any]:
    """Metrics off against on: round trip, 200 green callers, and 200 callers plus a collection."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from fairpool import _hooks, _tally, otel, otel_metrics

    class Nothing(_hooks.PoolObserver):
        """An observer that does nothing: the observer slot's own cost."""

    noop = clib.lib().fp_noop
    rounds, n, per_caller = pick(5, 11), pick(1000, 5000), pick(10, 50)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    eventlet.sleep(0)  # a hub exists: the callers wait green
    fairpool.execute(noop)
    load_before = os.getloadavg()
    designs = ("off", "observer", "on", "on_collected", "preaggregated", "worker_records")
    round_trip: dict[str, list[float]] = {k: [] for k in designs if k != "on_collected"}
    callers: dict[str, list[float]] = {k: [] for k in designs}
    nothing = Nothing()
    made = counted = 0
    original_ran = _tally.Tally.ran
    for _ in range(rounds):
        for name in designs:
            if name == "observer":
                _hooks.add_observer(nothing)
            elif name != "off":
                otel.instrument(spans=False, metrics=True, meter_provider=provider)
                before = _counted(reader)  # drained: each round starts with nothing pending
                if name in ("preaggregated", "worker_records"):
                    _tally.Tally.ran = _other_designs(otel_metrics)[name]  # type: ignore[method-assign]
            try:
                if name != "on_collected":
                    round_trip[name].append(median(_sequential(fairpool.execute, noop, n)))
                t = time.perf_counter()
                _throughput(fairpool.execute, noop, (), 200, per_caller)
                if name == "on_collected":
                    after = _counted(reader)  # the SDK records every call now, in this thread
                    made += 200 * per_caller
                    counted += after - before
                callers[name].append(200 * per_caller / (time.perf_counter() - t))
            finally:
                _tally.Tally.ran = original_ran  # type: ignore[method-assign]
                _hooks.remove_observer(nothing)
                otel.uninstrument()
    load_after = os.getloadavg()
    provider.shutdown()

    def ratio(a: list[float], b: list[float]) -> float:
        return median([x / y for x, y in zip(a, b, strict=True)])

    return {
        "rounds": rounds,
        "round_trip_calls": n,
        "calls_per_round": 200 * per_caller,
        "round_trip_us": {k: median(v) * 1e6 for k, v in round_trip.items()},
        "round_trip_on_over_off": ratio(round_trip["on"], round_trip["off"]),
        "round_trip_observer_over_off": ratio(round_trip["observer"], round_trip["off"]),
        "round_trip_on_over_observer": ratio(round_trip["on"], round_trip["observer"]),
        "callers_calls_per_s": {k: median(v) for k, v in callers.items()},
        "callers_on_over_off": ratio(callers["on"], callers["off"]),
        "callers_observer_over_off": ratio(callers["observer"], callers["off"]),
        "callers_on_over_observer": ratio(callers["on"], callers["observer"]),
        "callers_collected_over_off": ratio(callers["on_collected"], callers["off"]),
        "round_trip_preaggregated_over_off": ratio(round_trip["preaggregated"], round_trip["off"]),
        "round_trip_worker_records_over_off": ratio(round_trip["worker_records"], round_trip["off"]),
        "callers_preaggregated_over_off": ratio(callers["preaggregated"], callers["off"]),
        "callers_worker_records_over_off": ratio(callers["worker_records"], callers["off"]),
        # What a collection costs per call it records (the SDK's counter and two histograms).
        "collection_us_per_call": median(
            [1e6 / c - 1e6 / o for c, o in zip(callers["on_collected"], callers["on"], strict=True)]
        ),
        "calls_made": made,
        "calls_counted": counted,
        "load_average": {"before": load_before[0], "after": load_after[0]},
        "cpus": os.cpu_count(),
    }


def _other_designs(otel_metrics: Any) -> dict[str, Any]:
    """``Tally.ran`` of the two designs not taken (see the module docstring), for the bench only."""
    from bisect import bisect_left

    buckets = otel_metrics.DURATION_BUCKETS
    width = len(buckets) + 1
    kept: dict[Any, dict[str, list[Any]]] = {}

    def preaggregated(self: Any, job: Any) -> None:
        started = job.t_started
        wait, run = started - job.t_queued, job.t_finished - started
        lanes = kept.get(self)
        if lanes is None:
            lanes = kept[self] = {}
        counts = lanes.get(job.lane)
        if counts is None:
            counts = lanes[job.lane] = [0] * (2 * width) + [0.0, 0.0]
        counts[bisect_left(buckets, wait)] += 1
        counts[2 * width] += wait
        if job.ok:
            counts[width + bisect_left(buckets, run)] += 1
            counts[2 * width + 1] += run

    def worker_records(self: Any, job: Any) -> None:
        started = job.t_started
        instruments = otel_metrics.active().instruments
        instruments.queue_wait.record(started - job.t_queued, instruments.attributes(self.pool, job.lane))
        outcome = "returned" if job.ok else "raised"
        attributes = instruments.attributes(self.pool, job.lane, outcome)
        instruments.run.record(job.t_finished - started, attributes)

    return {"preaggregated": preaggregated, "worker_records": worker_records}


_STALL_SCRIPT = """
import json, sys, time
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import fairpool
from fairpool import otel

green_drain, per_caller = sys.argv[1] == "1", int(sys.argv[2])
reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
if not green_drain:  # before monkey-patching (as FAIRPOOL_OTEL at import): the first collection drains
    otel.instrument(spans=False, metrics=True, meter_provider=provider)
import eventlet
eventlet.monkey_patch()
import threading
if green_drain:  # after it, in the main thread: the green drain starts at once
    otel.instrument(spans=False, metrics=True, meter_provider=provider)
pool = fairpool.Pool(threads=4, name="stall")
gaps = []
done = [False]

def ticker():
    last = time.monotonic()
    while not done[0]:
        eventlet.sleep(0.001)
        now = time.monotonic()
        gaps.append(now - last)
        last = now

def caller():
    for _ in range(per_caller):
        pool.execute(int, "1")

tick = eventlet.spawn(ticker)
for gt in [eventlet.spawn(caller) for _ in range(200)]:
    gt.wait()
eventlet.sleep(1.5)  # the green drain's turn (every second)
calls_gaps = max(gaps)
gaps.clear()
t = time.monotonic()
collector = threading.Thread(target=reader.get_metrics_data)  # as an exporter's thread: green
collector.start()
collector.join()
collection = time.monotonic() - t
eventlet.sleep(0.005)
done[0] = True
tick.wait()
print(json.dumps({"collection_s": collection, "longest_gap_s": max(gaps), "longest_gap_calls_s": calls_gaps}))
"""


def collection_stall() -> dict[str, Any]:
    """Under eventlet.monkey_patch(): how long a collection holds the hub after 200 green callers'
    calls, with the green drain (instrumented after patching) and without (instrumented before
    patching, the first collection: it records every call then).

    Each run is a fresh process (monkey-patched before anything is imported); a 1 ms ticker green
    thread measures the hub's longest gap during the collection.
    """
    import subprocess

    rounds, per_caller = pick(1, 5), pick(25, 100)
    runs: dict[str, list[dict[str, float]]] = {"first_collection": [], "green_drain": []}
    for _ in range(rounds):
        for name, flag in (("first_collection", "0"), ("green_drain", "1")):
            out = subprocess.run(
                [sys.executable, "-c", _STALL_SCRIPT, flag, str(per_caller)],
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            ).stdout
            runs[name].append(json.loads(out))
    return {
        "calls": 200 * per_caller,
        "rounds": rounds,
        "collection_ms": {k: median([r["collection_s"] for r in v]) * 1e3 for k, v in runs.items()},
        "longest_hub_gap_during_collection_ms": {
            k: median([r["longest_gap_s"] for r in v]) * 1e3 for k, v in runs.items()
        },
        "longest_hub_gap_during_calls_ms": {
            k: median([r["longest_gap_calls_s"] for r in v]) * 1e3 for k, v in runs.items()
        },
        "load_average": os.getloadavg()[0],
    }


MEASUREMENTS = {"metrics_overhead": metrics_overhead, "collection_stall": collection_stall}


def main(argv: list[str] | None = None) -> int:
    return _cli.main("bench.measure_metrics", MEASUREMENTS, argv, after=eventlet_tpool.killall)


if __name__ == "__main__":
    sys.exit(main())
