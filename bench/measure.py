"""The benchmark measurements. Each runs in a fresh process and prints JSON.

    python -m bench.measure NAME [--full]

Designs are always measured side by side in one process, rounds interleaved,
and reported as medians, so a noisy machine moves them together.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

warnings.simplefilter("ignore")  # eventlet's deprecation notice

import eventlet  # noqa: E402
from eventlet import patcher  # noqa: E402
from eventlet import tpool as eventlet_tpool  # noqa: E402

import fairpool  # noqa: E402
from fairpool.demo import ticks_during  # noqa: E402

from . import _cli, clib  # noqa: E402
from ._cli import median, pct, pick  # noqa: E402
from .legacy import PerThreadQueuePool  # noqa: E402

native_threading = patcher.original("threading")


# -- per-call cost ----------------------------------------------------------


def _sequential(execute: Callable[..., Any], fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    perf = time.perf_counter
    for _ in range(n):
        t = perf()
        execute(fn)
        out.append(perf() - t)
    return out


def _ping_pong(n: int) -> list[float]:
    """The floor: a round trip between two native threads with threading.Event."""
    a, b = native_threading.Event(), native_threading.Event()
    stop = [False]

    def other() -> None:
        while True:
            a.wait()
            a.clear()
            if stop[0]:
                return
            b.set()

    t = native_threading.Thread(target=other, daemon=True)
    t.start()
    out = []
    perf = time.perf_counter
    for _ in range(n):
        s = perf()
        a.set()
        b.wait()
        b.clear()
        out.append(perf() - s)
    stop[0] = True
    a.set()
    t.join()
    return out


def round_trip() -> dict[str, Any]:
    """Sequential round trip of a no-op C call from a green thread."""
    noop = clib.lib().fp_noop
    rounds, n = pick(5, 15), pick(2000, 5000)
    eventlet.sleep(0)  # a hub exists: both pools' callers wait green
    fairpool.execute(noop)
    eventlet_tpool.execute(noop)
    samples: dict[str, list[float]] = {"fairpool": [], "eventlet": [], "floor": []}
    per_round: dict[str, list[float]] = {k: [] for k in samples}
    for _ in range(rounds):
        for name, run in (
            ("fairpool", lambda: _sequential(fairpool.execute, noop, n)),
            ("eventlet", lambda: _sequential(eventlet_tpool.execute, noop, n)),
            ("floor", lambda: _ping_pong(n)),
        ):
            s = run()
            samples[name] += s
            per_round[name].append(median(s))
    ratios_ev = [f / e for f, e in zip(per_round["fairpool"], per_round["eventlet"], strict=True)]
    ratios_floor = [f / e for f, e in zip(per_round["fairpool"], per_round["floor"], strict=True)]
    return {
        "calls_per_design": rounds * n,
        "median_us": {k: median(v) * 1e6 for k, v in samples.items()},
        "p99_us": {k: pct(v, 0.99) * 1e6 for k, v in samples.items()},
        "ratio_to_eventlet": median(ratios_ev),
        "ratio_to_floor": median(ratios_floor),
    }


def _throughput(
    execute: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...], callers: int, per_caller: int
) -> float:
    def caller() -> None:
        for _ in range(per_caller):
            execute(fn, *args)

    t = time.perf_counter()
    threads = [eventlet.spawn(caller) for _ in range(callers)]
    for gt in threads:
        gt.wait()
    return callers * per_caller / (time.perf_counter() - t)


def throughput_noop() -> dict[str, Any]:
    """Calls per second with 200 concurrent green callers of a no-op."""
    noop = clib.lib().fp_noop
    rounds, per_caller = pick(3, 7), pick(25, 100)
    rates: dict[str, list[float]] = {"fairpool": [], "eventlet": []}
    fairpool.execute(noop)
    eventlet_tpool.execute(noop)
    for _ in range(rounds):
        rates["fairpool"].append(_throughput(fairpool.execute, noop, (), 200, per_caller))
        rates["eventlet"].append(_throughput(eventlet_tpool.execute, noop, (), 200, per_caller))
    ratios = [f / e for f, e in zip(rates["fairpool"], rates["eventlet"], strict=True)]
    return {
        "calls_per_round": 200 * per_caller,
        "calls_per_s": {k: median(v) for k, v in rates.items()},
        "ratio_to_eventlet": median(ratios),
    }


def throughput_1ms() -> dict[str, Any]:
    """1 ms GIL-releasing calls, 20 threads, 200 green callers, as a share of the ceiling.

    The ceiling: 20 native threads making the same calls directly, no hand-off.
    """
    sleep_us = clib.lib().fp_sleep_us
    rounds, per_caller = pick(3, 5), pick(10, 40)
    total = 200 * per_caller
    fairpool.set_num_threads(20)
    eventlet_tpool.set_num_threads(20)
    fairpool.execute(int)
    eventlet_tpool.execute(int)

    def ceiling() -> float:
        def work() -> None:
            for _ in range(total // 20):
                sleep_us(1000)

        threads = [native_threading.Thread(target=work) for _ in range(20)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return total / (time.perf_counter() - t)

    shares: dict[str, list[float]] = {"fairpool": [], "eventlet": []}
    ceil_rates = []
    for _ in range(rounds):
        c = ceiling()
        ceil_rates.append(c)
        shares["fairpool"].append(_throughput(fairpool.execute, sleep_us, (1000,), 200, per_caller) / c)
        shares["eventlet"].append(_throughput(eventlet_tpool.execute, sleep_us, (1000,), 200, per_caller) / c)
    return {
        "calls_per_round": total,
        "ceiling_calls_per_s": median(ceil_rates),
        "share_of_ceiling": {k: median(v) for k, v in shares.items()},
    }


# -- green-thread blocking --------------------------------------------------


def blocking() -> dict[str, Any]:
    """The longest stall of a 5 ms ticker green thread while a 200 ms C call runs."""
    sleep_us = clib.lib().fp_sleep_us
    rounds = pick(3, 10)
    designs: dict[str, Callable[[], Any]] = {
        "direct": lambda: sleep_us(200_000),
        "eventlet": lambda: eventlet_tpool.execute(sleep_us, 200_000),
        "fairpool": lambda: fairpool.execute(sleep_us, 200_000),
    }
    stalls: dict[str, list[float]] = {k: [] for k in designs}
    for _ in range(rounds):
        for name, call in designs.items():
            _, longest_gap = ticks_during(call, period=0.005)
            stalls[name].append(longest_gap)
    return {"max_stall_ms": {k: median(v) * 1e3 for k, v in stalls.items()}, "call_ms": 200}


def busy_hub() -> dict[str, Any]:
    """Sequential 2 ms C calls from one green thread while ten green threads keep the hub busy.

    The hub never blocks in ``epoll_wait``: it releases the GIL for each
    ``epoll_wait(0)`` and takes it straight back, so a worker whose call
    returned must win the GIL in that gap (CPython's convoy effect). For
    fairpool with its defaults, fairpool with its workers under ``SCHED_BATCH``
    (``Pool(batch_scheduling=True)``) and eventlet.tpool.
    """
    sleep_us = clib.lib().fp_sleep_us
    rounds, calls = pick(3, 5), pick(20, 40)
    pools = {
        "fairpool": fairpool.Pool(threads=4, name="busy-hub"),
        "fairpool, batch_scheduling=True": fairpool.Pool(threads=4, name="busy-other", batch_scheduling=True),
    }
    designs: dict[str, Callable[..., Any]] = {name: pool.execute for name, pool in pools.items()}
    designs["eventlet"] = eventlet_tpool.execute
    stop = [False]

    def spinner() -> None:
        while not stop[0]:
            sum(range(200))
            eventlet.sleep(0)

    spinners = [eventlet.spawn(spinner) for _ in range(10)]
    eventlet.sleep(0.1)
    per_call: dict[str, list[float]] = {k: [] for k in designs}
    worst: dict[str, list[float]] = {k: [] for k in designs}
    try:
        for _ in range(rounds):
            for name, execute in designs.items():
                times = _sequential(execute, lambda: sleep_us(2000), calls)
                per_call[name].append(median(times))
                worst[name].append(max(times))
    finally:
        stop[0] = True
        for g in spinners:
            g.wait()
        for pool in pools.values():
            pool.shutdown(timeout=5)
    return {
        "call_ms": 2,
        "median_call_ms": {k: median(v) * 1e3 for k, v in per_call.items()},
        "worst_call_ms": {k: max(v) * 1e3 for k, v in worst.items()},
    }


# -- queue imbalance --------------------------------------------------------


def _idle_while_waiting(records: list[tuple[float, float, float]], nthreads: int) -> float:
    """Worker-seconds idle while some call waited: the integral of min(idle, waiting)."""
    events: list[tuple[float, int, int]] = []  # (time, d_waiting, d_busy)
    for queued, started, ended in records:
        events += [(queued, 1, 0), (started, -1, 1), (ended, 0, -1)]
    events.sort()
    waiting = busy = 0
    total = 0.0
    last = events[0][0]
    for t, dw, db in events:
        total += (t - last) * min(max(nthreads - busy, 0), waiting)
        waiting += dw
        busy += db
        last = t
    return total


def imbalance() -> dict[str, Any]:
    """20 threads, 20 callers with one call each: 17 of 10 ms and 3 of 500 ms, shuffled."""
    sleep_us = clib.lib().fp_sleep_us
    trials = pick(8, 40)
    durations = [10_000] * 17 + [500_000] * 3
    random.Random(1).shuffle(durations)
    legacy = PerThreadQueuePool(20)
    fifo_pool = fairpool.Pool(threads=20, name="fifo", policy="fifo")
    fair_pool = fairpool.Pool(threads=20, name="fair")
    eventlet_tpool.set_num_threads(20)
    designs: dict[str, Callable[..., Any]] = {
        "per-thread queues (eventlet 2010-2013)": legacy.execute,
        "eventlet.tpool (global FIFO)": eventlet_tpool.execute,
        "fairpool fifo": fifo_pool.execute,
        "fairpool fair": fair_pool.execute,
    }
    for execute in designs.values():  # start every worker thread
        for gt in [eventlet.spawn(execute, sleep_us, 20_000) for _ in range(40)]:
            gt.wait()
    out: dict[str, dict[str, Any]] = {}
    per: dict[str, dict[str, list[float]]] = {k: {"done": [], "slow": [], "idle": []} for k in designs}
    for _ in range(trials):
        for name, execute in designs.items():
            records: list[tuple[float, float, float]] = []
            done: list[float] = []
            start = time.perf_counter()

            def caller(
                us: int,
                execute: Callable[..., Any] = execute,
                records: Any = records,
                done: list[float] = done,
                start: float = start,
            ) -> None:
                queued = time.perf_counter()
                span: list[float] = []

                def timed() -> None:
                    span.append(time.perf_counter())
                    sleep_us(us)
                    span.append(time.perf_counter())

                execute(timed)
                records.append((queued, span[0], span[1]))
                done.append((time.perf_counter() - start, us))  # type: ignore[arg-type]

            gts = [eventlet.spawn(caller, us) for us in durations]
            for gt in gts:
                gt.wait()
            completions = [t for t, _ in done]  # type: ignore[misc]
            per[name]["done"] += completions
            per[name]["slow"].append(sum(1 for t, us in done if us == 10_000 and t > 0.1))  # type: ignore[misc]
            per[name]["idle"].append(_idle_while_waiting(records, 20))
    for name, d in per.items():
        out[name] = {
            "median_completion_ms": median(d["done"]) * 1e3,
            "max_completion_ms": max(d["done"]) * 1e3,
            "slow_10ms_callers_per_trial": median(d["slow"]),
            "slow_10ms_callers_total": sum(d["slow"]),
            "idle_worker_s_while_waiting_per_trial": median(d["idle"]),
        }
    legacy.close()
    fifo_pool.shutdown()
    fair_pool.shutdown()
    return {"trials": trials, "longest_call_ms": 500, "designs": out}


# -- the boot storm ---------------------------------------------------------


def bootstorm() -> dict[str, Any]:
    """N parallel simulated VM creations, as in "Scaling the Boot Barrier".

    A boot: accounting updates under a per-host lock (each a 10 ms RPC; 3 of
    them, 2 being the no-op updates the talk removed), then 30 short calls
    (0.5 ms) into the C library under its global mutex, with 3 long calls
    (60 ms, no mutex) among them. Pool size 20. The "+ audit" designs run a
    periodic audit that queues 100 calls of 4 ms every 100 ms.
    """
    lib = clib.lib()
    ns = pick([1, 5, 20, 40], [1, 2, 5, 10, 20, 40])
    legacy = PerThreadQueuePool(20)
    eventlet_tpool.set_num_threads(20)
    fair = fairpool.Pool(threads=20, name="boot")

    def lanes_execute(fn: Callable[..., Any], *args: Any) -> Any:
        with fairpool.lane("boot"):
            return fair.execute(fn, *args)

    designs: dict[str, tuple[Callable[..., Any], bool, int]] = {
        # name: (execute, audit running, accounting updates per boot)
        "per-thread queues": (legacy.execute, False, 3),
        "eventlet.tpool": (eventlet_tpool.execute, False, 3),
        "fairpool": (fair.execute, False, 3),
        "fairpool, no-op updates removed": (fair.execute, False, 1),
        "eventlet.tpool + audit": (eventlet_tpool.execute, True, 3),
        "fairpool + audit": (fair.execute, True, 3),
        "fairpool, boots in own lane + audit": (lanes_execute, True, 3),
    }

    def boot(execute: Callable[..., Any], acct: Any, updates: int) -> float:
        start = time.perf_counter()
        for _ in range(updates):
            with acct:
                eventlet.sleep(0.010)  # the RPC to the conductor, under the host lock
        for i in range(30):
            execute(lib.fp_locked_sleep_us, 500)
            if i % 10 == 5:
                execute(lib.fp_sleep_us, 60_000)
        return time.perf_counter() - start

    def audit(execute: Callable[..., Any], stop: list[bool], use_lane: bool) -> None:
        def one() -> None:
            if use_lane:
                with fairpool.lane("audit"):
                    fair.execute(lib.fp_sleep_us, 4000)
            else:
                execute(lib.fp_sleep_us, 4000)

        while not stop[0]:
            for _ in range(100):
                eventlet.spawn_n(one)
            eventlet.sleep(0.1)

    results: dict[str, dict[str, list[float]]] = {name: {"median_s": [], "max_s": []} for name in designs}
    for n in ns:
        for name, (execute, with_audit, updates) in designs.items():
            acct = eventlet.semaphore.Semaphore(1)
            stop = [False]
            auditor = eventlet.spawn(audit, execute, stop, "own lane" in name) if with_audit else None
            eventlet.sleep(0.05)
            times = [gt.wait() for gt in [eventlet.spawn(boot, execute, acct, updates) for _ in range(n)]]
            stop[0] = True
            if auditor is not None:
                auditor.wait()
                eventlet.sleep(0.1)
            results[name]["median_s"].append(median(times))
            results[name]["max_s"].append(max(times))
    legacy.close()
    fair.shutdown()
    return {"n": ns, "designs": results}


def _trace_events(path: str) -> list[dict[str, Any]]:
    """A trace file's events other than metadata (process and track names, the anchor)."""
    with open(path) as f:
        return [e for e in json.load(f) if e.get("ph") != "M"]


def _amortized(execute: Callable[..., Any], fn: Callable[[], Any], n: int) -> float:
    """Seconds per call over ``n`` calls, everything included (on one CPU: the writer thread too)."""
    t = time.perf_counter()
    for _ in range(n):
        execute(fn)
    return (time.perf_counter() - t) / n


def _hub_stall_while_recording(
    traced_noop: Callable[[], Any], events_per_call: float, rate: float, seconds: float, path: str | None
) -> dict[str, float]:
    """The longest gap of a 1 ms ticker green thread while green callers make ``rate`` events/s."""
    from fairpool import trace

    period = 0.001
    calls_per_slot = max(1, round(rate / events_per_call / 100))  # slots of 10 ms
    stamps: list[float] = []
    done = [False]

    def ticker() -> None:
        while not done[0]:
            stamps.append(time.perf_counter())
            eventlet.sleep(period)

    def producer() -> None:
        end = time.perf_counter() + seconds
        slot = time.perf_counter()
        while slot < end:
            for _ in range(calls_per_slot):
                fairpool.execute(traced_noop)
            slot += 0.01
            eventlet.sleep(max(0.0, slot - time.perf_counter()))

    tracer = trace.start(path) if path else None
    try:
        tick = eventlet.spawn(ticker)
        eventlet.sleep(0.05)
        t0 = time.perf_counter()
        eventlet.spawn(producer).wait()
        elapsed = time.perf_counter() - t0
        done[0] = True
        tick.wait()
    finally:
        dropped = getattr(tracer, "dropped", 0)
        if tracer is not None:
            trace.stop()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    out = {
        "max_stall_ms": (max(gaps) - period) * 1e3,
        "p99_gap_ms": pct(gaps, 0.99) * 1e3,
        "dropped": dropped,
    }
    if tracer is not None:
        out["events_per_s"] = len(_trace_events(tracer.path)) / elapsed
    return out


def tracing_overhead() -> dict[str, Any]:
    """What tracing costs: the round trip of a no-op C call untraced, @traced with recording off, and
    recording; per event; and the hub's longest stall while recording 10,000 events a second."""
    import tempfile

    from fairpool import trace

    noop = clib.lib().fp_noop
    traced_noop = fairpool.traced(name="noop")(noop)
    rounds, n = pick(5, 15), pick(2000, 5000)
    eventlet.sleep(0)
    fairpool.execute(noop)
    per_round: dict[str, list[float]] = {"untraced": [], "off": [], "on": []}
    amortized: dict[str, list[float]] = {"untraced": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            per_round["untraced"].append(median(_sequential(fairpool.execute, noop, n)))
            per_round["off"].append(median(_sequential(fairpool.execute, traced_noop, n)))
            with trace.recording(f"{tmp}/round{r}.json"):
                per_round["on"].append(median(_sequential(fairpool.execute, traced_noop, n)))
            amortized["untraced"].append(_amortized(fairpool.execute, noop, n))
            with trace.recording(f"{tmp}/amortized{r}.json"):
                amortized["on"].append(_amortized(fairpool.execute, traced_noop, n))
        events_per_call = len(_trace_events(f"{tmp}/round0.json")) / n
        # Interleaved rounds, off and on, so a noisy machine moves both alike.
        stall_rounds, seconds = pick(4, 10), pick(0.5, 1.0)
        stalls: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for r in range(stall_rounds):
            stalls["off"].append(
                _hub_stall_while_recording(traced_noop, events_per_call, 10_000, seconds, None)
            )
            stalls["on"].append(
                _hub_stall_while_recording(
                    traced_noop, events_per_call, 10_000, seconds, f"{tmp}/stall{r}.json"
                )
            )
    base = median(per_round["untraced"])
    spread = median([abs(x - base) for x in per_round["untraced"]]) / base
    ratios = [o / u for o, u in zip(per_round["off"], per_round["untraced"], strict=True)]
    amortized_cost = (median(amortized["on"]) - median(amortized["untraced"])) * 1e6
    return {
        "median_us": {k: median(v) * 1e6 for k, v in per_round.items()},
        "ratio_off_to_untraced": median(ratios),
        "noise": max(2 * spread, 0.02),
        "events_per_call_on": events_per_call,
        "cost_per_call_on_us": (median(per_round["on"]) - base) * 1e6,
        "cost_per_event_on_us": (median(per_round["on"]) - base) * 1e6 / events_per_call,
        # Everything included: the writer thread's encoding and writing, on the same CPU when pinned.
        "amortized_cost_per_event_on_us": amortized_cost / events_per_call,
        "hub_stall_at_10k_events_per_s": {
            k: {
                "median_max_stall_ms": median([x["max_stall_ms"] for x in v]),
                "max_stall_ms": max(x["max_stall_ms"] for x in v),
                "p99_gap_ms": median([x["p99_gap_ms"] for x in v]),
                "dropped": sum(x["dropped"] for x in v),
                "events_per_s": median([x.get("events_per_s", 0.0) for x in v]),
                "rounds": len(v),
            }
            for k, v in stalls.items()
        },
    }


def otel_overhead() -> dict[str, Any]:
    """What OpenTelemetry spans (fairpool.otel) cost per pool call, beside the Chrome-trace recorder.

    The round trip of a no-op C call from a green thread: no observer; instrumented then
    uninstrumented ("off": nothing is left registered); the API's no-op provider; the SDK with
    sampling off; the SDK's BatchSpanProcessor and fairpool.otel.batch_span_processor (both
    exporting to a sink that keeps nothing, so the SDK's cost is measured, not an exporter's);
    and the Chrome trace recording the same calls.
    Rounds interleaved; per call by median, and everything included (the batch thread's work
    too, on the same CPU when pinned).
    """
    import tempfile

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    from opentelemetry.trace import NoOpTracerProvider

    from fairpool import otel, trace

    class Sink(SpanExporter):
        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    sink, native_sink = Sink(), Sink()
    batch = TracerProvider()
    batch.add_span_processor(BatchSpanProcessor(sink, max_queue_size=1 << 17))
    native = TracerProvider()
    native.add_span_processor(otel.batch_span_processor(native_sink, max_queue_size=1 << 17))
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    noop = clib.lib().fp_noop
    rounds, n = pick(5, 15), pick(2000, 5000)
    eventlet.sleep(0)  # a hub exists: the caller waits green, as tracing_overhead's does
    fairpool.execute(noop)
    setups: dict[str, Callable[[], Any]] = {
        "untraced": lambda: None,
        "off": lambda: (otel.instrument(batch), otel.uninstrument()),
        "noop_provider": lambda: otel.instrument(NoOpTracerProvider()),
        "sdk_unsampled": lambda: otel.instrument(unsampled),
        "sdk_batch": lambda: otel.instrument(batch),
        "native_batch": lambda: otel.instrument(native),
    }
    per_round: dict[str, list[float]] = {k: [] for k in [*setups, "chrome_trace"]}
    amortized: dict[str, list[float]] = {k: [] for k in ("untraced", "sdk_batch", "native_batch")}
    amortized["chrome_trace"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, setup in setups.items():
                setup()
                try:
                    per_round[name].append(median(_sequential(fairpool.execute, noop, n)))
                    if name in amortized:
                        amortized[name].append(_amortized(fairpool.execute, noop, n))
                finally:
                    otel.uninstrument()
            with trace.recording(f"{tmp}/round{r}.json"):
                per_round["chrome_trace"].append(median(_sequential(fairpool.execute, noop, n)))
                amortized["chrome_trace"].append(_amortized(fairpool.execute, noop, n))
    batch.force_flush()
    native.force_flush()
    spans = {"sdk_batch": sink.spans, "native_batch": native_sink.spans}
    batch.shutdown()
    native.shutdown()
    base = median(per_round["untraced"])
    spread = median([abs(x - base) for x in per_round["untraced"]]) / base
    untraced = per_round["untraced"]
    ratios = {k: median([x / u for x, u in zip(v, untraced, strict=True)]) for k, v in per_round.items()}
    amortized_base = median(amortized["untraced"])
    return {
        "median_us": {k: median(v) * 1e6 for k, v in per_round.items()},
        "ratio_to_untraced": ratios,
        "cost_per_call_us": {k: (median(v) - base) * 1e6 for k, v in per_round.items()},
        # Everything included: the batch processor's export thread, the trace's writer thread.
        "amortized_cost_per_call_us": {
            k: (median(v) - amortized_base) * 1e6 for k, v in amortized.items() if k != "untraced"
        },
        "noise": max(2 * spread, 0.02),
        "spans_exported": spans,
        "spans_expected": rounds * n * 2,  # each: the sequential and the amortized runs
    }


def _count_bytecodes(warm_up: Callable[[], None], calls: Callable[[], None], n: int) -> dict[str, Any]:
    """Python calls and bytecodes run per call, in every thread, while ``calls()`` makes ``n`` calls.

    Threads started before tracing begins are not traced, so the pool's
    workers must start after it (a fresh pool, or eventlet's killall):
    ``warm_up()`` runs traced, uncounted, and starts them.
    """
    per_code: Counter[str] = Counter()
    functions = [0]

    def opcodes(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            per_code[f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}"] += 1
        return opcodes

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        functions[0] += 1
        return opcodes

    modules = {id(m): m for m in (threading, native_threading)}.values()  # eventlet's copy, if another
    for module in modules:
        module.settrace(tracer)
    sys.settrace(tracer)
    try:
        warm_up()
        per_code.clear()
        functions[0] = 0
        calls()
    finally:
        sys.settrace(None)
        for module in modules:
            module.settrace(None)  # type: ignore[arg-type]
    return {
        "python_calls": functions[0] / n,
        "bytecodes": sum(per_code.values()) / n,
        "top": {k: v / n for k, v in per_code.most_common(12)},
    }


def bytecodes() -> dict[str, Any]:
    """Python calls and bytecodes per green call of a no-op, in all threads: fairpool and eventlet.tpool.

    A count, not a time: the same on a quiet machine and a noisy one, so a
    change to the hot path shows here first. Sequential calls, then 200
    concurrent green callers (where batching changes the count a little).
    """
    noop = clib.lib().fp_noop
    n = pick(2000, 10000)
    eventlet.sleep(0)
    result: dict[str, Any] = {}
    for name in ("fairpool", "eventlet"):
        for shape in ("sequential", "200 callers"):
            if name == "fairpool":
                pool = fairpool.Pool(threads=20, name="bytecodes")  # its workers start traced
                execute: Callable[..., Any] = pool.execute
            else:
                eventlet_tpool.killall()  # its workers restart traced
                execute = eventlet_tpool.execute

            def calls(n: int = n, shape: str = shape, execute: Callable[..., Any] = execute) -> None:
                if shape == "sequential":
                    for _ in range(n):
                        execute(noop)
                else:
                    _throughput(execute, noop, (), 200, n // 200)

            result[f"{name}, {shape}"] = _count_bytecodes(lambda: calls(400), calls, n)
            if name == "fairpool":
                pool.shutdown()
    return result


MEASUREMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "bytecodes": bytecodes,
    "round_trip": round_trip,
    "throughput_noop": throughput_noop,
    "throughput_1ms": throughput_1ms,
    "blocking": blocking,
    "busy_hub": busy_hub,
    "imbalance": imbalance,
    "bootstorm": bootstorm,
    "tracing_overhead": tracing_overhead,
    "otel_overhead": otel_overhead,
}


def main(argv: list[str] | None = None) -> int:
    return _cli.main("bench.measure", MEASUREMENTS, argv, after=eventlet_tpool.killall)


if __name__ == "__main__":
    sys.exit(main())
