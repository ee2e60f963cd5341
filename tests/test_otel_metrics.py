"""OpenTelemetry metrics (fairpool.otel_metrics) with the SDK's in-memory reader: each outcome
counted once, the gauges of the right pool and lane while calls are blocked, hub stalls and
instrumented locks, the switch and the environment variable, faults kept from callers, and a
Prometheus scrape over HTTP of a pool workload running in another process."""

from __future__ import annotations

import ctypes
import itertools
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import eventlet
import pytest

pytest.importorskip(
    "opentelemetry.sdk.metrics", reason="opentelemetry-sdk is not installed: pip install -e '.[test]'"
)

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import fairpool
from fairpool import _hooks, hubwatch, locks, otel, otel_metrics

from .conftest import run_script, wait_until

_libc = ctypes.CDLL(None)
_KEYS = {"pool": "fairpool.pool.name", "lane": "fairpool.lane", "outcome": "fairpool.call.outcome"}
OUTCOMES = ("returned", "raised", "cancelled", "abandoned", "rejected", "closed")


class Metrics:
    """The metrics one test recorded, read by collecting the in-memory reader."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str, **attrs: str) -> list[Any]:
        """The data points of metric ``name`` whose attributes include ``attrs`` (pool=, lane=, ...)."""
        wanted = {_KEYS.get(k, k): v for k, v in attrs.items()}
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        if wanted.items() <= dict(point.attributes or {}).items():
                            found.append(point)
        return found

    def value(self, name: str, **attrs: str) -> int:
        """A counter's or gauge's value (summed over matching points; 0 if none)."""
        return sum(int(p.value) for p in self.points(name, **attrs))

    def outcomes(self, pool: str) -> dict[str, int]:
        return {o: n for o in OUTCOMES if (n := self.value("fairpool.pool.calls", pool=pool, outcome=o))}

    def histogram(self, name: str, **attrs: str) -> tuple[int, float]:
        """(count, sum) of a histogram's matching points."""
        points = self.points(name, **attrs)
        return sum(p.count for p in points), sum(p.sum for p in points)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    otel.instrument(spans=False, metrics=True, meter_provider=m.provider)
    try:
        yield m
    finally:
        otel.uninstrument()
        m.provider.shutdown()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


# -- calls by outcome, and their waits and run times -------------------------------------


@pytest.mark.timeout(30)
def test_returned_and_raised_are_counted_once_each_with_their_waits_and_run_times(metrics: Metrics) -> None:
    pool = fairpool.Pool(threads=1, name="m-done")
    try:
        assert pool.execute(int, "7") == 7
        with pytest.raises(ValueError):
            pool.execute(int, "x")
        assert pool.submit(time.sleep, 0.02).result(10) is None
    finally:
        pool.shutdown(timeout=5)
    assert metrics.outcomes("m-done") == {"returned": 2, "raised": 1}
    waits, _ = metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-done", lane="default")
    assert waits == 3, f"{waits} queue waits recorded for 3 calls"
    runs, run_s = metrics.histogram("fairpool.pool.call.run.duration", pool="m-done", outcome="returned")
    assert runs == 2 and run_s >= 0.02, f"run times of the returned calls: {runs} recorded, {run_s}s"
    assert metrics.histogram("fairpool.pool.call.run.duration", pool="m-done", outcome="raised")[0] == 1
    # A second collection reports the same totals (cumulative), nothing counted twice.
    assert metrics.outcomes("m-done") == {"returned": 2, "raised": 1}


@pytest.mark.timeout(30)
def test_a_cancelled_queued_call_is_counted_cancelled_and_never_waited(
    metrics: Metrics, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="m-cancel")
    try:
        busy = pool.submit(gate.wait, 10)
        queued = pool.submit(int, "1")
        assert queued.cancel()
        gate.set()
        busy.result(10)
    finally:
        pool.shutdown(timeout=5)
    assert metrics.outcomes("m-cancel") == {"returned": 1, "cancelled": 1}
    waits, _ = metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-cancel")
    assert waits == 1, "a call that never started has no queue wait"


@pytest.mark.timeout(30)
def test_a_green_caller_that_gives_up_while_its_call_runs_is_counted_abandoned(
    metrics: Metrics, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="m-abandon")
    try:
        running = eventlet.spawn(pool.execute, gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the call to be running")
        running.kill()
        gate.set()
    finally:
        pool.shutdown(timeout=5)
    assert metrics.outcomes("m-abandon") == {"abandoned": 1}
    assert metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-abandon")[0] == 1


@pytest.mark.timeout(30)
def test_a_caller_that_leaves_after_its_answer_stays_returned_in_metrics_but_is_abandoned_in_statistics(
    metrics: Metrics, gate: threading.Event
) -> None:
    # The call returns and is answered while the caller's loop is blocked; a collection reports it
    # returned; then the task is cancelled before it took the answer. statistics() counts it again,
    # from the caller's side: abandoned, no longer completed. The counter cannot take back what a
    # collection reported (it never goes down): it stays returned (docs/tracing.md, "Metrics").
    import asyncio

    pool = fairpool.Pool(threads=1, name="m-left")
    started = threading.Event()

    def call() -> int:
        started.set()
        gate.wait(10)
        return 1

    async def main() -> dict[str, int]:
        task = asyncio.create_task(pool.run_sync(call))
        while not started.is_set():
            await asyncio.sleep(0.001)
        gate.set()  # from here on the loop is blocked until the cancel
        while pool.statistics().completed == 0:  # answered: the loop has not resumed the task
            time.sleep(0.001)
        reported = metrics.outcomes("m-left")
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return reported

    try:
        reported = asyncio.run(main())
        stats = pool.statistics()
    finally:
        pool.shutdown(timeout=5)
    assert reported == {"returned": 1}, f"a collection after the answer reported {reported}"
    counted = (stats.completed, stats.failed, stats.abandoned)
    assert counted == (0, 0, 1), f"statistics (completed, failed, abandoned) = {counted}"
    assert metrics.outcomes("m-left") == {"returned": 1}, "the counter took back what it had reported"
    runs = metrics.histogram("fairpool.pool.call.run.duration", pool="m-left", outcome="returned")[0]
    assert runs == 1, f"{runs} run times recorded as returned"


@pytest.mark.timeout(30)
def test_calls_refused_by_a_full_queue_or_a_closed_pool_are_counted_rejected(
    metrics: Metrics, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="m-reject", max_queue=1, on_full="raise")
    try:
        busy = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
        queued = pool.submit(int, "1")
        with pytest.raises(fairpool.QueueFull):
            pool.execute(int, "2")
        gate.set()
        busy.result(10)
        queued.result(10)
    finally:
        pool.shutdown(timeout=5)
    with pytest.raises(fairpool.PoolClosed):
        pool.execute(int, "3")
    assert metrics.outcomes("m-reject") == {"returned": 2, "rejected": 2}


@pytest.mark.timeout(30)
def test_a_call_queued_at_a_shutdown_is_counted_closed(metrics: Metrics, gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="m-close")
    busy = pool.submit(gate.wait, 10)
    wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
    queued = pool.submit(int, "1")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    busy.result(10)
    assert queued.cancelled()
    assert metrics.outcomes("m-close") == {"returned": 1, "closed": 1}


# -- the gauges: read from the live pools --------------------------------------------------


@pytest.mark.timeout(30)
def test_gauges_read_each_pools_queue_and_threads_by_lane_while_calls_are_blocked(
    metrics: Metrics, gate: threading.Event
) -> None:
    a = fairpool.Pool(threads=2, name="m-gauge-a")
    b = fairpool.Pool(threads=2, name="m-gauge-b", max_queue=1)
    try:
        running = [a.submit(gate.wait, 10) for _ in range(2)]
        wait_until(lambda: a.statistics().busy == 2, what="a's workers to be busy")
        queued = [a.submit(gate.wait, 10) for _ in range(2)]
        with fairpool.lane("audit"):
            queued.append(a.submit(gate.wait, 10))
        with fairpool.lane("bulk"):
            running.append(b.submit(gate.wait, 10))
        wait_until(lambda: b.statistics().busy == 1, what="b's first call to run")
        queued.append(b.submit(gate.wait, 10))  # b has idle workers: this one runs
        wait_until(lambda: b.statistics().busy == 2, what="b's second call to run")
        b_queued = [b.submit(gate.wait, 10)]  # b is busy: queued, then held
        held = threading.Thread(target=lambda: b_queued.append(b.submit(gate.wait, 10)), daemon=True)
        held.start()
        wait_until(lambda: b.statistics().waiting_admission == 1, what="a call held by b's max_queue")

        assert metrics.value("fairpool.pool.queue.length", pool="m-gauge-a", lane="default") == 2
        assert metrics.value("fairpool.pool.queue.length", pool="m-gauge-a", lane="audit") == 1
        assert metrics.value("fairpool.pool.thread.usage", pool="m-gauge-a", lane="default") == 2
        assert metrics.value("fairpool.pool.thread.count", pool="m-gauge-a") == 2
        assert metrics.value("fairpool.pool.thread.limit", pool="m-gauge-a") == 2
        assert metrics.value("fairpool.pool.queue.held", pool="m-gauge-a") == 0

        assert metrics.value("fairpool.pool.thread.usage", pool="m-gauge-b", lane="bulk") == 1
        assert metrics.value("fairpool.pool.thread.usage", pool="m-gauge-b", lane="default") == 1
        assert metrics.value("fairpool.pool.thread.limit", pool="m-gauge-b") == 2
        assert metrics.value("fairpool.pool.queue.length", pool="m-gauge-b", lane="default") == 1
        assert metrics.value("fairpool.pool.queue.held", pool="m-gauge-b", lane="default") == 1
        gate.set()
        held.join(10)
        for f in running + queued + b_queued:
            f.result(10)
        # Drained: the lanes seen stay, at 0 (a series that vanished would read as "no data").
        assert metrics.value("fairpool.pool.queue.length", pool="m-gauge-a", lane="audit") == 0
        assert metrics.points("fairpool.pool.queue.length", pool="m-gauge-a", lane="audit")
        assert metrics.outcomes("m-gauge-a") == {"returned": 5}
        assert metrics.outcomes("m-gauge-b") == {"returned": 4}
        assert metrics.value("fairpool.pool.calls", pool="m-gauge-a", lane="audit") == 1
    finally:
        gate.set()
        a.shutdown(timeout=5)
        b.shutdown(timeout=5)


# -- hub stalls and instrumented locks -------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_hub_stall_is_recorded_in_the_stall_histogram(metrics: Metrics) -> None:
    watch = fairpool.watch_hub(threshold=0.05)
    try:
        eventlet.sleep(0.05)
        eventlet.spawn(_libc.usleep, 150_000).wait()  # a blocking C call on the hub
        wait_until(lambda: watch.stalls, what="the stall to be reported")
    finally:
        watch.stop()
    count, seconds = metrics.histogram("fairpool.hub.stall.duration")
    assert count >= 1 and seconds >= 0.1, f"{count} stalls, {seconds}s recorded"


@pytest.mark.timeout(30)
def test_instrumented_lock_waits_and_holds_are_recorded(metrics: Metrics) -> None:
    lock = fairpool.instrument_lock(threading.Lock(), "m-lock")
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            holding.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    holding.wait(10)
    threading.Timer(0.05, release.set).start()
    with lock:  # contended: waits about 50 ms
        pass
    t.join(10)
    waits, wait_s = metrics.histogram("fairpool.lock.wait.duration", **{"fairpool.lock.name": "m-lock"})
    holds, hold_s = metrics.histogram("fairpool.lock.hold.duration", **{"fairpool.lock.name": "m-lock"})
    assert waits == 1 and wait_s >= 0.03, f"{waits} waits, {wait_s}s"
    assert holds == 2 and hold_s >= 0.03, f"{holds} holds, {hold_s}s"


# -- the switch ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_uninstrumenting_stops_recording_and_keeps_what_was_recorded() -> None:
    m = Metrics()
    otel.instrument(spans=False, metrics=True, meter_provider=m.provider)
    recorder = otel.metrics_active()
    assert recorder is not None and recorder in locks.listeners
    assert not _hooks.observers, "metrics need no pool observer: nothing on the caller's path"
    assert recorder.hub_stalled in hubwatch.stall_listeners
    assert otel.active() is None, "metrics only: no span observer"
    pool = fairpool.Pool(threads=1, name="m-off")
    try:
        pool.execute(int, "1")
        otel.uninstrument()
        assert otel.metrics_active() is None
        assert recorder not in locks.listeners
        assert recorder.hub_stalled not in hubwatch.stall_listeners
        pool.execute(int, "2")
        assert metrics_outcomes(m, "m-off") == {"returned": 1}, "the call made before it was switched off"
        assert not m.points("fairpool.pool.thread.count", pool="m-off"), "gauges still reported when off"
        # On again with the same provider: the same instruments, counting on.
        otel.instrument(spans=False, metrics=True, meter_provider=m.provider)
        pool.execute(int, "3")
        assert metrics_outcomes(m, "m-off") == {"returned": 2}
        assert m.value("fairpool.pool.thread.count", pool="m-off") == 1
    finally:
        otel.uninstrument()
        pool.shutdown(timeout=5)
        m.provider.shutdown()


def metrics_outcomes(m: Metrics, pool: str) -> dict[str, int]:
    return m.outcomes(pool)


@pytest.mark.timeout(30)
def test_spans_and_metrics_together() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    m = Metrics()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = otel.instrument(tracer_provider, metrics=True, meter_provider=m.provider)
    pool = fairpool.Pool(threads=1, name="m-both")
    try:
        assert observer is not None and otel.active() is observer and otel.metrics_active() is not None
        pool.execute(int, "1")
    finally:
        otel.uninstrument()
        pool.shutdown(timeout=5)
    assert m.outcomes("m-both") == {"returned": 1}
    wait_until(lambda: [s for s in exporter.get_finished_spans() if s.name == "int"], what="the call's span")
    m.provider.shutdown()
    tracer_provider.shutdown()


@pytest.mark.parametrize("name", ["spans", "metrics"])
def test_a_bad_switch_is_named(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be a bool, got 'yes'"):
        otel.instrument(**{name: "yes"})  # type: ignore[arg-type]
    assert otel.active() is None and otel.metrics_active() is None


@pytest.mark.timeout(30)
def test_metrics_put_nothing_on_the_callers_path_the_pool_counts_its_own_calls(metrics: Metrics) -> None:
    # No observer (no CallInfo, no events): each pool counts its calls by lane and outcome under
    # the lock it holds anyway, and the instruments read the counts when a reader collects.
    assert not _hooks.observers, f"metrics registered pool observers: {_hooks.observers}"
    pool = fairpool.Pool(threads=1, name="m-tally")
    try:
        with fairpool.lane("audit"):
            assert pool.execute(int, "5") == 5
        assert pool.submit(int, "6").result(10) == 6
        tally = pool._core.tally
        assert tally is not None, "a pool made while metrics are on has no tally"
        assert dict(tally.counts()) == {"audit": [1, 0, 0, 0, 0, 0], "default": [1, 0, 0, 0, 0, 0]}
        assert metrics.outcomes("m-tally") == {"returned": 2}
        otel.uninstrument()
        assert pool._core.tally is None, "the pool still counts with metrics off"
        pool.execute(int, "7")
    finally:
        pool.shutdown(timeout=5)
    assert metrics.outcomes("m-tally") == {"returned": 2}, "counted while off, or lost once off"


@pytest.mark.timeout(30)
def test_past_max_pending_entries_are_dropped_and_counted(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(otel_metrics, "MAX_PENDING", 3)
    recorder = otel.metrics_active()
    assert recorder is not None
    pool = fairpool.Pool(threads=1, name="m-drop")
    try:
        for _ in range(5):
            pool.execute(int, "1")
    finally:
        pool.shutdown(timeout=5)
    assert recorder.dropped == 2
    assert metrics.outcomes("m-drop") == {"returned": 5}, "calls are counted even past MAX_PENDING"
    assert metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-drop")[0] == 3
    warned = [r for r in caplog.records if "metric entries are waiting" in r.getMessage()]
    assert len(warned) == 1, f"{len(warned)} warnings for one recorder's drops"
    # On again (a new recorder, the same instruments and tallies): no second warning for old drops.
    otel.instrument(spans=False, metrics=True, meter_provider=metrics.provider)
    metrics.outcomes("m-drop")
    warned = [r for r in caplog.records if "metric entries are waiting" in r.getMessage()]
    assert len(warned) == 1, "the drops an earlier recorder warned of were warned of again"


_ENV_SCRIPT = """
    import logging, sys
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    import fairpool
    from fairpool import otel
    print("spans:", type(otel.active()).__name__, "metrics:", type(otel.metrics_active()).__name__)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("value", "spans", "recorder", "warning"),
    [
        ("1", "OtelObserver", "NoneType", None),
        ("metrics", "NoneType", "MetricsRecorder", None),
        (" Spans , metrics ", "OtelObserver", "MetricsRecorder", None),
        ("spans", "OtelObserver", "NoneType", None),
        ("metrics,traces", "NoneType", "NoneType", "nor a comma-separated list of spans and metrics"),
        ("metrics,", "NoneType", "NoneType", "nor a comma-separated list of spans and metrics"),
    ],
)
def test_the_environment_variable_switches_metrics(
    value: str, spans: str, recorder: str, warning: str | None
) -> None:
    out = run_script(_ENV_SCRIPT, env={"FAIRPOOL_OTEL": value})
    assert f"spans: {spans} metrics: {recorder}" in out, out
    if warning is None:
        assert "fairpool:" not in out, out
    else:
        assert out.count("fairpool: FAIRPOOL_OTEL=") == 1 and warning in out, out


# -- a Prometheus scrape over HTTP, of a workload in another process -------------------------

_SERVED = """
    import threading, sys, time
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    server, _ = start_http_server(0, addr="127.0.0.1")
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))

    import fairpool
    from fairpool import otel

    otel.instrument(spans=False, metrics=True)
    pool = fairpool.Pool(threads=2, name="scraped")
    for _ in range(7):
        pool.execute(int, "1")
    for _ in range(2):
        try:
            pool.execute(int, "x")
        except ValueError:
            pass
    with fairpool.lane("audit"):
        pool.execute(int, "2")
    gate = threading.Event()
    held = [pool.submit(gate.wait, 60) for _ in range(2)]  # both workers busy while scraped
    queued = pool.submit(gate.wait, 60)
    while pool.statistics().busy < 2:  # both started (under load a worker may take a while)
        time.sleep(0.001)
    print(server.server_port, flush=True)
    sys.stdin.readline()  # the test scraped: finish
    gate.set()
    for f in held + [queued]:
        f.result(10)
    pool.shutdown(timeout=5)
"""


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``; fails if not exactly one."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels.items() <= have.items():
            found.append(float(m.group(3)))
    assert len(found) == 1, f"{len(found)} samples {name} {labels} in the scrape:\n{text}"
    return found[0]


@pytest.mark.timeout(90)
def test_a_prometheus_scrape_over_http_shows_the_pool_and_its_lanes() -> None:
    pytest.importorskip(
        "opentelemetry.exporter.prometheus",
        reason="pip install -e '.[test]' (opentelemetry-exporter-prometheus)",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SERVED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"no port from the served process: {line!r} {proc.stderr.read()}"
        text = _scrape(int(line))
        proc.stdin.write("done\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    pool = {"fairpool_pool_name": "scraped"}
    default = {**pool, "fairpool_lane": "default"}
    # Counters: dots to underscores, _total; the outcome and lane as labels, the counts made.
    assert _sample(text, "fairpool_pool_calls_total", **default, fairpool_call_outcome="returned") == 7
    assert _sample(text, "fairpool_pool_calls_total", **default, fairpool_call_outcome="raised") == 2
    assert (
        _sample(
            text, "fairpool_pool_calls_total", **pool, fairpool_lane="audit", fairpool_call_outcome="returned"
        )
        == 1
    )
    # A histogram in seconds: _bucket lines up to +Inf, _sum and _count, one count per call.
    name = "fairpool_pool_call_queue_wait_duration_seconds"
    assert _sample(text, f"{name}_count", **default) == 9
    assert _sample(text, f"{name}_bucket", **default, le="+Inf") == 9
    assert _sample(text, f"{name}_bucket", **default, le="60.0") == 9
    assert 0 < _sample(text, f"{name}_sum", **default) < 60
    assert (
        _sample(
            text, "fairpool_pool_call_run_duration_seconds_count", **default, fairpool_call_outcome="raised"
        )
        == 2
    )
    assert f"# TYPE {name} histogram" in text
    # The gauges, read while both workers were busy and one call queued.
    assert _sample(text, "fairpool_pool_thread_usage", **default) == 2
    assert _sample(text, "fairpool_pool_thread_count", **pool) == 2
    assert _sample(text, "fairpool_pool_thread_limit", **pool) == 2
    assert _sample(text, "fairpool_pool_queue_length", **default) == 1
    assert _sample(text, "fairpool_pool_queue_length", **pool, fairpool_lane="audit") == 0


_GREEN_DRAIN = """
    import sys, time
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import fairpool
    from fairpool import otel, otel_metrics

    HOW = sys.argv[1]
    otel_metrics.DRAIN_INTERVAL = 0.05
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    if HOW == "collect first":  # instrumented before eventlet.monkey_patch(), as FAIRPOOL_OTEL does
        otel.instrument(spans=False, metrics=True, meter_provider=provider)
    import eventlet
    eventlet.monkey_patch()
    if HOW == "instrumented":  # after it, in the main thread, where the hub runs
        otel.instrument(spans=False, metrics=True, meter_provider=provider)
    else:  # a collection, from a green thread as an exporter's, starts the green drain
        import threading
        collector = threading.Thread(target=reader.get_metrics_data)
        collector.start()
        collector.join()
    pool = fairpool.Pool(threads=2, name="green")

    def caller():
        for _ in range(100):
            pool.execute(int, "1")

    for gt in [eventlet.spawn(caller) for _ in range(20)]:
        gt.wait()
    recorder = otel.metrics_active()
    deadline = time.monotonic() + 20
    while recorder.pending() and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    print("pending", recorder.pending())
    data = reader.get_metrics_data()
    print("counted", sum(
        int(p.value)
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "fairpool.pool.calls" for p in m.data.data_points
        if p.attributes["fairpool.pool.name"] == "green"
    ))
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["instrumented", "collect first"])
def test_under_monkey_patching_a_green_thread_records_between_collections(how: str) -> None:
    # Collectors are green threads there: a collection that recorded every call since the last
    # would hold the hub for as long. The green drain records them as they come, a chunk at a time.
    out = run_script(_GREEN_DRAIN.replace("sys.argv[1]", repr(how)), timeout=80)
    assert "fairpool:" not in out, out
    assert "pending 0" in out, f"calls still waiting for a collection: {out}"
    assert "counted 2000" in out, out


_FORK = """
    import os
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import fairpool
    from fairpool import otel

    reader = InMemoryMetricReader()
    otel.instrument(spans=False, metrics=True, meter_provider=MeterProvider(metric_readers=[reader]))
    pool = fairpool.Pool(threads=1, name="forked")
    for _ in range(3):
        pool.execute(int, "1")  # answered, not yet collected: pending at the fork

    def counted():
        data = reader.get_metrics_data()
        return sum(
            int(p.value)
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "fairpool.pool.calls" for p in m.data.data_points
        )

    pid = os.fork()
    if pid == 0:
        pool.execute(int, "2")
        print("child", counted(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("parent", counted(), flush=True)
"""


@pytest.mark.timeout(60)
def test_a_forked_child_does_not_record_its_parents_calls() -> None:
    out = run_script(_FORK)
    assert "child 1" in out, f"the child counted calls of its parent: {out}"
    assert "parent 3" in out, out


def test_the_docs_table_lists_every_instrument_with_its_kind_and_unit() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "tracing.md").read_text(encoding="utf-8")
    kinds = {
        "updown": "observable up-down counter",
        "observable counter": "observable counter",
        "histogram": "histogram",
    }
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\| `(fairpool\.[a-z_.]+)` \| ([a-z -]+) \| `([^`]+)` \|", doc, re.M)
    }
    expected = {name: (kinds[kind], unit) for name, (kind, unit, _) in otel_metrics.METRICS.items()}
    assert rows == expected, f"docs/tracing.md's table and fairpool.otel_metrics.METRICS differ: {rows}"


_LATE_PROVIDER = """
    import fairpool
    from fairpool import otel

    otel.instrument(spans=False, metrics=True)  # before the service sets its provider
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    pool = fairpool.Pool(threads=1, name="late")
    pool.execute(int, "1")
    data = reader.get_metrics_data()
    names = sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
    print(" ".join(names))
"""


@pytest.mark.timeout(60)
def test_metrics_go_to_a_global_provider_set_after_instrumenting() -> None:
    out = run_script(_LATE_PROVIDER)
    for name in ("fairpool.pool.calls", "fairpool.pool.thread.count", "fairpool.pool.call.run.duration"):
        assert name in out.split(), f"{name} not collected from a provider set later: {out}"


_BUDGET = """
    import eventlet
    eventlet.monkey_patch()
    import threading
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import fairpool
    from fairpool import otel, otel_metrics

    otel_metrics.DRAIN_INTERVAL = 60  # the green drain runs, but not before the end of this test
    reader = InMemoryMetricReader()
    otel.instrument(spans=False, metrics=True, meter_provider=MeterProvider(metric_readers=[reader]))
    pool = fairpool.Pool(threads=2, name="budget")

    def caller():
        for _ in range(100):
            pool.execute(int, "1")

    for gt in [eventlet.spawn(caller) for _ in range(20)]:
        gt.wait()
    counted = []

    def collect():
        data = reader.get_metrics_data()
        counted.append(sum(
            int(p.value)
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "fairpool.pool.calls" for p in m.data.data_points
        ))

    collector = threading.Thread(target=collect)  # green, as an exporter's
    collector.start()
    collector.join()
    print("counted", counted[0], "pending", otel.metrics_active().pending())
"""


@pytest.mark.timeout(90)
def test_under_monkey_patching_a_collection_records_a_bounded_share_of_a_backlog() -> None:
    # The green drain records the rest a chunk at a time: the collection never holds the hub for
    # a backlog (6 observable callbacks, each records at most COLLECTION_BUDGET calls' times).
    # The counts by outcome are the pool's own: all of them, whatever is pending.
    out = run_script(_BUDGET, timeout=80)
    budget = 6 * otel_metrics.COLLECTION_BUDGET
    assert f"counted 2000 pending {2000 - budget}" in out, out


# -- helping: a worker that waits on a queued future of its own pool runs it itself ------


@pytest.mark.timeout(30)
def test_calls_run_by_helping_have_their_queue_waits_and_run_times(metrics: Metrics) -> None:
    pool = fairpool.Pool(threads=1, name="m-helped")

    def outer() -> None:
        inner = [pool.submit(time.sleep, 0.01) for _ in range(4)]
        for future in inner:
            future.result()  # Pool(1): this worker runs them itself

    try:
        pool.submit(outer).result(10)
    finally:
        pool.shutdown(timeout=5)
    assert metrics.outcomes("m-helped") == {"returned": 5}
    waits, _ = metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-helped")
    runs, run_s = metrics.histogram("fairpool.pool.call.run.duration", pool="m-helped", outcome="returned")
    assert waits == 5, f"{waits} queue waits recorded for 5 calls (4 of them helped)"
    assert runs == 5 and run_s >= 0.04, f"run times of 5 calls (4 helped): {runs} recorded, {run_s}s"


@pytest.mark.timeout(30)
def test_a_cancel_that_races_helping_is_counted_cancelled(metrics: Metrics) -> None:
    # The helper took the queued call; its future is cancelled before the helper starts it.
    pool = fairpool.Pool(threads=1, name="m-help-cancel")

    def outer() -> str:
        inner = pool.submit(int, "1")
        start = inner.start

        def cancel_then_start() -> bool:
            assert inner.cancel(), "the future could not be cancelled before it started"
            return start()

        inner.start = cancel_then_start  # type: ignore[method-assign]
        try:
            inner.result()
        except futures.CancelledError:
            return "cancelled"
        return "ran"

    try:
        assert pool.submit(outer).result(10) == "cancelled"
        stats = pool.statistics()
    finally:
        pool.shutdown(timeout=5)
    assert stats.cancelled == 1, f"statistics: {stats}"
    assert metrics.outcomes("m-help-cancel") == {"returned": 1, "cancelled": 1}


@pytest.mark.timeout(120)
def test_after_a_mixed_race_the_metrics_count_what_statistics_count(metrics: Metrics) -> None:
    # Helping, cancels, callers' timeouts and a shutdown racing each other: every final state a
    # call reaches is counted once in statistics() and once in fairpool.pool.calls, the same.
    pool = fairpool.Pool(threads=2, name="m-mixed")
    rng = random.Random(7)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)

    def outer(n: int) -> None:
        inner = [pool.submit(time.sleep, 0.0005 * (i % 3)) for i in range(n)]
        for i, future in enumerate(inner):
            try:
                if i % 4 == 0:
                    future.cancel()
                future.result(timeout=0.001 if i % 5 == 0 else None)
            except (futures.CancelledError, futures.TimeoutError, fairpool.FairpoolError):
                pass

    try:
        outers = []
        for _ in range(300):
            outers.append(pool.submit(outer, rng.randint(1, 6)))
            for future in pool.submit(int, "1"), pool.submit(int, "x"):
                if rng.random() < 0.3:
                    future.cancel()
        for future in outers[:150]:
            try:
                future.result(timeout=0.0001 if rng.random() < 0.2 else 30)
            except (futures.TimeoutError, futures.CancelledError):
                pass
    finally:
        pool.shutdown(timeout=0.05)
        sys.setswitchinterval(switch)
    stats = pool.statistics()
    expected = {
        "returned": stats.completed,
        "raised": stats.failed,
        "cancelled": stats.cancelled,
        "abandoned": stats.abandoned,
        "closed": stats.closed,
    }
    counted = metrics.outcomes("m-mixed")
    counted.pop("rejected", None)
    assert counted == {k: v for k, v in expected.items() if v}, f"metrics {counted} != statistics {expected}"


@pytest.mark.timeout(30)
def test_lanes_past_max_lanes_are_reported_under_the_other_lane_not_dropped(
    metrics: Metrics, gate: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otel_metrics, "MAX_LANES", 8)
    request = [0]
    pool = fairpool.Pool(threads=4, name="m-lanes", lane_key=lambda: f"req-{request[0]}")
    futures_: list[Any] = []
    try:
        for _ in range(20):  # earlier requests, one call each, each in a lane of its own
            request[0] += 1
            pool.execute(int, "1")
        metrics.value("fairpool.pool.thread.usage", pool="m-lanes")  # a scrape meanwhile
        for _ in range(10):  # now 10 requests in flight, in new lanes: 4 running, 6 queued
            request[0] += 1
            futures_.append(pool.submit(gate.wait, 10))
        wait_until(lambda: pool.statistics().busy == 4, what="4 calls to run")
        usage = metrics.value("fairpool.pool.thread.usage", pool="m-lanes")
        queued = metrics.value("fairpool.pool.queue.length", pool="m-lanes")
        assert (usage, queued) == (4, 6), f"gauges read {usage} busy, {queued} queued for 4 busy, 6 queued"
        assert metrics.value("fairpool.pool.thread.usage", pool="m-lanes", lane="<other>") == 4
        points = metrics.points("fairpool.pool.queue.length", pool="m-lanes")
        lanes = {point.attributes["fairpool.lane"] for point in points}
        assert len(lanes) <= 9 and "<other>" in lanes, f"lanes reported: {sorted(lanes)}"
        gate.set()
        for future in futures_:
            future.result(10)
        assert metrics.value("fairpool.pool.thread.usage", pool="m-lanes", lane="<other>") == 0
    finally:
        gate.set()
        pool.shutdown(timeout=5)


def _series(metrics: Metrics, name: str, pool: str) -> dict[tuple[str, ...], int]:
    """(lane, outcome if any): value (a counter's) or count (a histogram's), of one pool's points."""
    found: dict[tuple[str, ...], int] = {}
    for point in metrics.points(name, pool=pool):
        attributes = dict(point.attributes or {})
        outcome = attributes.get(_KEYS["outcome"])
        key = (attributes[_KEYS["lane"]],) if outcome is None else (attributes[_KEYS["lane"]], outcome)
        found[key] = found.get(key, 0) + int(point.count if hasattr(point, "count") else point.value)
    return found


@pytest.mark.timeout(120)
def test_the_calls_counter_and_histograms_fold_lanes_past_max_lanes_and_the_tally_stays_bounded(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lane_key with a value per request: the counter and the histograms name at most
    # MAX_LANES lanes per pool name (the default lane among them, as the gauges) and count the
    # rest under <other>, for good (each series only grows); the pool's tally keeps no more.
    import gc
    import tracemalloc

    monkeypatch.setattr(otel_metrics, "MAX_LANES", 8)
    request = [0]
    name = "m-lanecap"
    calls = "fairpool.pool.calls"
    histograms = ("fairpool.pool.call.queue_wait.duration", "fairpool.pool.call.run.duration")
    pool = fairpool.Pool(threads=2, name=name, lane_key=lambda: f"req-{request[0]}")
    before: dict[tuple[str, ...], int] = {}
    went_down: list[tuple[tuple[str, ...], int, int]] = []

    def requests(n: int, collect: bool = True) -> None:
        for _ in range(n):
            request[0] += 1
            assert pool.execute(int, "1") == 1
            with pytest.raises(ValueError):
                pool.execute(int, "x")
            if collect:  # a collection after each request: no series ever goes down
                now = _series(metrics, calls, name)
                went_down.extend((k, v, now.get(k, 0)) for k, v in before.items() if now.get(k, 0) < v)
                before.update(now)

    try:
        requests(50)
        counted = _series(metrics, calls, name)
        lanes = {lane for lane, _ in counted}
        assert not went_down, f"counter series went down between collections: {went_down[:5]}"
        assert len(lanes) <= 9 and "<other>" in lanes, f"{len(lanes)} lanes counted: {sorted(lanes)}"
        by_outcome = {o: sum(n for (_, out), n in counted.items() if out == o) for o in OUTCOMES[:2]}
        assert by_outcome == {"returned": 50, "raised": 50}, f"counted {by_outcome} of 50 calls each"
        assert counted[("<other>", "returned")] == 50 - 7, f"under <other>: {counted}"  # 7 + default named
        for histogram in histograms:
            recorded = _series(metrics, histogram, name)
            recorded_lanes = {key[0] for key in recorded}
            assert recorded_lanes == lanes, f"{histogram} lanes {sorted(recorded_lanes)} != counter's"
            assert sum(recorded.values()) == 100, f"{histogram}: {sum(recorded.values())} of 100 calls"
        points = metrics.points("fairpool.pool.queue.length", pool=name)
        gauged = {point.attributes[_KEYS["lane"]] for point in points}
        assert lanes <= gauged and len(gauged) <= 9, f"gauges' {sorted(gauged)}, counter's {sorted(lanes)}"

        # Another pool of the same name shares its series, so its new lanes go to <other> too.
        with fairpool.Pool(threads=1, name=name, lane_key=lambda: f"other-{request[0]}") as second:
            for _ in range(5):
                request[0] += 1
                second.execute(int, "2")
        counted = _series(metrics, calls, name)
        assert {lane for lane, _ in counted} == lanes, f"lanes counted: {sorted(lane for lane, _ in counted)}"
        assert counted[("<other>", "returned")] == 50 - 7 + 5, f"under <other>: {counted}"

        # The tally keeps the named lanes and <other>, however many lanes come.
        tally = pool._core.tally
        assert tally is not None
        gc.collect()
        tracemalloc.start()
        try:
            requests(200, collect=False)
            metrics.outcomes(name)  # record what is pending
            base = tracemalloc.get_traced_memory()[0]
            requests(2000, collect=False)
            metrics.outcomes(name)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert len(tally.lanes) <= 9, f"the tally keeps {len(tally.lanes)} lanes for 2255 lanes seen"
        # Before, each lane kept its counts in the tally and series in the SDK: over 1 MB here.
        assert grown < 150_000, f"{grown} bytes more after 2000 more requests, each in a lane of its own"
    finally:
        pool.shutdown(timeout=5)
    counted = _series(metrics, calls, name)
    assert sum(counted.values()) == 2 * 2250 + 5, f"{sum(counted.values())} calls counted of {2 * 2250 + 5}"
    for histogram in histograms:
        recorded = _series(metrics, histogram, name)
        assert len(recorded) <= 9 * 2, f"{histogram}: {len(recorded)} series"
        assert sum(recorded.values()) == 2 * 2250 + 5, f"{histogram}: {sum(recorded.values())} calls recorded"


@pytest.mark.timeout(120)
def test_pools_of_one_name_name_at_most_max_lanes_together_while_collections_race_their_calls(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four pools of one name, each called from its own threads in lanes of their own, some pools
    # gone and folded meanwhile, and a collector: the lanes named never pass MAX_LANES, each
    # counter series only grows, and the counts add up to the calls made.
    monkeypatch.setattr(otel_metrics, "MAX_LANES", 8)
    name, calls = "m-lanes-race", "fairpool.pool.calls"
    stop = threading.Event()
    went_down: list[tuple[tuple[str, ...], int, int]] = []
    most_lanes = [0]

    def collect() -> None:
        before: dict[tuple[str, ...], int] = {}
        while not stop.is_set():
            now = _series(metrics, calls, name)
            went_down.extend((k, v, now.get(k, 0)) for k, v in before.items() if now.get(k, 0) < v)
            before = now
            most_lanes[0] = max(most_lanes[0], len({key[0] for key in now}))

    def requests(who: int) -> None:
        for round_ in range(3):  # a pool each round: the one before is gone, folded
            with fairpool.Pool(threads=2, name=name) as pool:
                for i in range(40):
                    with fairpool.lane(f"{who}-{round_}-{i}"):
                        pool.submit(int, "1").result(10)
                        pool.execute(int, "2")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often: the lanes are named in a race
    try:
        collector = threading.Thread(target=collect, daemon=True)
        collector.start()
        makers = [threading.Thread(target=requests, args=(who,), daemon=True) for who in range(4)]
        for maker in makers:
            maker.start()
        for maker in makers:
            maker.join(90)
        stop.set()
        collector.join(30)
    finally:
        sys.setswitchinterval(switch)
    assert not went_down, f"counter series went down between collections: {went_down[:5]}"
    counted = _series(metrics, calls, name)
    lanes = {key[0] for key in counted}
    shown = sorted(lanes)[:12]
    assert max(most_lanes[0], len(lanes)) <= 9, f"up to {most_lanes[0]} lanes counted; {len(lanes)}: {shown}"
    assert sum(counted.values()) == 4 * 3 * 40 * 2, f"{sum(counted.values())} calls counted of 960"
    waits = _series(metrics, "fairpool.pool.call.queue_wait.duration", name)
    assert {key[0] for key in waits} <= lanes and sum(waits.values()) == 960, f"queue waits: {waits}"


@pytest.mark.timeout(120)
def test_pools_that_are_gone_are_folded_into_one_tally_per_name(metrics: Metrics) -> None:
    # One short-lived pool per request: what is kept stays flat, however many there were.
    import gc
    import tracemalloc

    def requests(n: int) -> None:
        for _ in range(n):
            with fairpool.Pool(threads=2, name="m-per-request") as pool:
                with fairpool.lane("a" if n % 2 else "b"):
                    pool.execute(int, "1")

    recorder = otel.metrics_active()
    assert recorder is not None

    def settle() -> dict[str, int]:  # the pools gone folded, every entry recorded
        gc.collect()
        for _ in range(100):
            counted = metrics.outcomes("m-per-request")
            if not recorder.pending():
                break
        return counted

    requests(101)
    settle()
    tracemalloc.start()
    try:
        requests(1000)  # the SDK's own state reaches its size (some 400 KB, whatever the pools)
        settle()
        base = tracemalloc.get_traced_memory()[0]
        requests(2000)
        gc.collect()
        unfolded = [t for t in recorder.instruments.tallies.values() if t.pool == "m-per-request"]
        counted = settle()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert counted == {"returned": 3101}, f"counts of the pools gone: {counted}"
    by_lane = (
        metrics.value("fairpool.pool.calls", pool="m-per-request", lane="a"),
        metrics.value("fairpool.pool.calls", pool="m-per-request", lane="b"),
    )
    assert by_lane == (101, 3000), f"calls by lane: {by_lane}"
    assert len(unfolded) == 1, f"{len(unfolded)} tallies kept until a collection, for pools all gone"
    mine = [t for t in recorder.instruments.tallies.values() if t.pool == "m-per-request"]
    assert len(mine) == 1, f"{len(mine)} tallies kept for 3101 pools of one name, all gone"
    # Before, ~1.2 KB a pool was kept: 2.4 MB for 2000 pools.
    assert kept < 200_000, f"{kept} bytes kept after 2000 more pools of the same name"
    waits, _ = metrics.histogram("fairpool.pool.call.queue_wait.duration", pool="m-per-request")
    assert waits == 3101, f"{waits} queue waits recorded for 3101 calls"


@pytest.mark.timeout(120)
def test_folding_gone_pools_while_collecting_counts_each_call_once(metrics: Metrics) -> None:
    # Pools made and gone in several threads while another collects: the counter never goes
    # down between collections (no call counted twice, then once) and ends exact.
    stop = threading.Event()
    seen: list[int] = []

    def collect() -> None:
        while not stop.is_set():
            seen.append(metrics.value("fairpool.pool.calls", pool="m-fold-race"))

    def requests() -> None:
        for _ in range(300):
            with fairpool.Pool(threads=1, name="m-fold-race") as pool:
                pool.execute(int, "1")
                pool.submit(int, "2").result(10)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    makers = [threading.Thread(target=requests, daemon=True) for _ in range(3)]
    for maker in makers:
        maker.start()
    for maker in makers:
        maker.join(60)
    stop.set()
    collector.join(30)
    decreases = [(a, b) for a, b in itertools.pairwise(seen) if b < a]
    assert not decreases, f"the counter went down between collections: {decreases[:5]}"
    assert metrics.value("fairpool.pool.calls", pool="m-fold-race") == 1800
