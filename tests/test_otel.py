"""OpenTelemetry spans (fairpool.otel) with the real SDK: parentage in every world, outcomes and
their status, lock waits and hub stalls on the right spans, the switch, and one trace across two
processes that pass a W3C traceparent over a loopback socket."""

from __future__ import annotations

import asyncio
import ctypes
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import eventlet
import pytest

pytest.importorskip(
    "opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed: pip install -e '.[test]'"
)

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer

import fairpool
import fairpool.aio
from fairpool import _hooks, hubwatch, locks, otel

from .conftest import run_script, wait_until

_libc = ctypes.CDLL(None)


class Spans:
    """The spans one test made, read as they end (a call's span ends after its caller resumes)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("test")

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str, count: int = 1, timeout: float = 10.0) -> list[ReadableSpan]:
        """The spans called ``name``, once ``count`` of them have ended."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.all() if s.name == name]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} spans {name!r} ended; all: {self.all()}")
            time.sleep(0.005)

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    otel.instrument(s.provider)
    try:
        yield s
    finally:
        otel.uninstrument()
        s.provider.shutdown()


@pytest.fixture
def pool2() -> Iterator[fairpool.Pool]:
    p = fairpool.Pool(threads=2, name="otel")
    yield p
    p.shutdown(timeout=5)


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def inner_span(tracer: Tracer, name: str) -> Callable[[], str]:
    """A call that makes a span of its own, as a database driver would."""

    def call() -> str:
        with tracer.start_as_current_span(name):
            return threading.current_thread().name

    call.__fairpool_name__ = f"call_{name}"  # type: ignore[attr-defined]  # the pool's span name
    return call


# -- on, off, and the switch --------------------------------------------------------


def test_off_registers_nothing_anywhere() -> None:
    assert otel.active() is None
    assert not any(isinstance(o, otel.OtelObserver) for o in _hooks.observers)
    s = Spans()
    observer = otel.instrument(s.provider)
    try:
        assert observer in _hooks.observers and _hooks.wants_context
        assert observer in locks.listeners and observer.hub_stalled in hubwatch.stall_listeners
    finally:
        otel.uninstrument()
    assert observer not in _hooks.observers and observer not in locks.listeners
    assert observer.hub_stalled not in hubwatch.stall_listeners and otel.active() is None


def test_instrumenting_again_replaces_the_first() -> None:
    first = otel.instrument(Spans().provider)
    second = otel.instrument(Spans().provider)
    try:
        assert first not in _hooks.observers and second in _hooks.observers and otel.active() is second
    finally:
        otel.uninstrument()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "0.1", True])
def test_a_bad_threshold_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=r"hold_threshold must be a finite number of seconds >= 0"):
        otel.instrument(hold_threshold=bad)  # type: ignore[arg-type]
    assert otel.active() is None


_ENV_SCRIPT = """
    import logging, sys
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
    {before}
    import fairpool
    from fairpool import otel
    print("active:", type(otel.active()).__name__)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("value", "before", "active", "warning"),
    [
        ("1", "", "OtelObserver", None),
        ("on", "", "OtelObserver", None),
        ("0", "", "NoneType", None),
        ("maybe", "", "NoneType", "FAIRPOOL_OTEL='maybe' is not one of 1, true, yes, on, 0, false, no, off"),
        ("1", "sys.modules['opentelemetry'] = None", "NoneType", "pip install 'fairpool[otel]'"),
    ],
)
def test_the_environment_variable(value: str, before: str, active: str, warning: str | None) -> None:
    out = run_script(_ENV_SCRIPT.format(before=before), env={"FAIRPOOL_OTEL": value})
    assert f"active: {active}" in out, out
    if warning is None:
        assert "fairpool:" not in out, out
    else:
        assert out.count("fairpool: FAIRPOOL_OTEL=") == 1 and warning in out, out
        assert "spans are off" in out


@pytest.mark.timeout(60)
def test_importing_fairpool_imports_no_opentelemetry_while_off() -> None:
    out = run_script(
        "import sys, fairpool, fairpool.otel; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    assert out.strip() == "False"


@pytest.mark.timeout(30)
def test_with_the_apis_no_op_provider_calls_run_and_nothing_is_kept(pool2: fairpool.Pool) -> None:
    from opentelemetry.trace import NoOpTracerProvider

    seen: list[Any] = []

    class Spy(_hooks.PoolObserver):
        def call_answered(self, call: _hooks.CallInfo, outcome: str) -> None:
            seen.append(dict(call.notes))

    faults = _hooks.fault_count()
    otel.instrument(NoOpTracerProvider())
    spy = Spy()
    _hooks.add_observer(spy)
    try:
        assert pool2.execute(sum, [1, 2]) == 3
        with pytest.raises(ZeroDivisionError):
            pool2.execute(divmod, 1, 0)
    finally:
        _hooks.remove_observer(spy)
        otel.uninstrument()
    assert seen == [{}, {}], "no span was kept for a call the no-op tracer does not record"
    assert _hooks.fault_count() == faults


# -- parentage in every world ------------------------------------------------------------


@pytest.mark.timeout(30)
def test_native_thread_call_is_a_child_of_the_callers_span_and_the_parent_of_its_own(
    spans: Spans, pool2: fairpool.Pool
) -> None:
    with spans.tracer.start_as_current_span("request"), fairpool.lane("audit"):
        worker = pool2.execute(inner_span(spans.tracer, "db"))
        assert [x.name for x in spans.all()] == ["db", "call_db"], "the call's span had not ended"
    request, call, db = spans.one("request"), spans.one("call_db"), spans.one("db")
    assert parent_of(call) == span_id(request), "the pool call is not a child of the caller's span"
    assert parent_of(db) == span_id(call), "the span made in the worker is not a child of the pool call"
    assert call.context is not None and request.context is not None
    assert call.context.trace_id == request.context.trace_id
    attrs = dict(call.attributes or {})
    assert attrs["fairpool.pool"] == "otel" and attrs["fairpool.lane"] == "audit"
    assert attrs["fairpool.worker"] == worker and attrs["fairpool.outcome"] == "returned"
    assert attrs["fairpool.queue.depth"] == 0 and attrs["fairpool.queued_s"] >= 0.0
    assert attrs["fairpool.ran_s"] > 0.0
    assert call.status.status_code == StatusCode.UNSET
    assert events(call, "fairpool.started") == [{}]


@pytest.mark.timeout(30)
def test_queue_wait_is_the_time_from_the_spans_start_to_its_started_event(
    spans: Spans, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="one")
    try:
        busy = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
        queued = pool.submit(inner_span(spans.tracer, "late"))
        time.sleep(0.1)
        gate.set()
        busy.result(10)
        queued.result(10)
    finally:
        pool.shutdown(timeout=5)
    call = spans.one("call_late")
    attrs = dict(call.attributes or {})
    assert attrs["fairpool.queue.depth"] == 0, "the call was the first one queued"
    (started,) = [e for e in call.events if e.name == "fairpool.started"]
    assert call.start_time is not None
    gap = (started.timestamp - call.start_time) / 1e9
    assert gap >= 0.09, f"the call waited 0.1 s for the worker, but started {gap:.3f} s after its span"
    assert abs(attrs["fairpool.queued_s"] - gap) < 0.05, (attrs, gap)
    assert parent_of(spans.one("late")) == span_id(call)


@pytest.mark.timeout(30)
def test_futures_submitted_under_a_span_are_its_children(spans: Spans, pool2: fairpool.Pool) -> None:
    with spans.tracer.start_as_current_span("batch"):
        futures = [pool2.submit(inner_span(spans.tracer, f"item{i}")) for i in range(3)]
    for f in futures:
        f.result(10)
    batch = spans.one("batch")
    for i in range(3):
        call = spans.one(f"call_item{i}")
        assert parent_of(call) == span_id(batch)
        assert parent_of(spans.one(f"item{i}")) == span_id(call)


@pytest.mark.timeout(30)
def test_each_green_thread_has_its_own_current_span(spans: Spans, pool2: fairpool.Pool) -> None:
    def boot(name: str) -> None:
        with spans.tracer.start_as_current_span(name):
            pool2.execute(inner_span(spans.tracer, f"{name}-first"))  # waits green: the others run
            pool2.execute(inner_span(spans.tracer, f"{name}-second"))

    threads = [eventlet.spawn(boot, f"boot{i}") for i in range(4)]
    for t in threads:
        t.wait()
    for i in range(4):
        boot_span = spans.one(f"boot{i}")
        for step in ("first", "second"):
            call = spans.one(f"call_boot{i}-{step}")
            assert parent_of(call) == span_id(boot_span), f"boot{i}'s {step} call has another's parent"
            assert parent_of(spans.one(f"boot{i}-{step}")) == span_id(call)


@pytest.mark.timeout(30)
def test_each_asyncio_task_has_its_own_current_span(spans: Spans, pool2: fairpool.Pool) -> None:
    tracer = spans.tracer

    async def task(name: str) -> None:
        with tracer.start_as_current_span(name):
            await pool2.run_sync(inner_span(tracer, f"{name}-run_sync"))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, inner_span(tracer, f"{name}-executor"))
            await asyncio.to_thread(inner_span(tracer, f"{name}-to_thread"))

    async def main() -> None:
        fairpool.aio.install(pool=pool2)
        await asyncio.gather(*(task(f"task{i}") for i in range(3)))

    asyncio.run(main())
    for i in range(3):
        task_span = spans.one(f"task{i}")
        for how in ("run_sync", "executor"):
            call = spans.one(f"call_task{i}-{how}")
            assert parent_of(call) == span_id(task_span), f"task{i}'s {how} call has another's parent"
            assert parent_of(spans.one(f"task{i}-{how}")) == span_id(call)
        # asyncio.to_thread runs the function in a context it copied before the pool saw the call:
        # the pool call is the task's child, and so is what the function makes.
        (to_thread,) = [
            s for s in spans.all() if s.name == "functools.partial" and parent_of(s) == span_id(task_span)
        ]
        assert (to_thread.attributes or {})["fairpool.outcome"] == "returned"
        assert parent_of(spans.one(f"task{i}-to_thread")) == span_id(task_span)


# -- outcomes and their status ---------------------------------------------------------


@pytest.mark.timeout(30)
def test_an_exception_is_recorded_with_an_error_status(spans: Spans, pool2: fairpool.Pool) -> None:
    def fails() -> None:
        raise KeyError("instance-7")

    with pytest.raises(KeyError):
        pool2.execute(fails)
    call = spans.one(f"{__name__}.{fails.__qualname__}")
    assert call.status.status_code == StatusCode.ERROR
    assert call.status.description == "KeyError: 'instance-7'"
    assert (call.attributes or {})["fairpool.outcome"] == "raised"
    (exc,) = events(call, "exception")
    assert exc["exception.type"] == "KeyError" and "in fails" in str(exc["exception.stacktrace"])


@pytest.mark.timeout(30)
def test_a_cancelled_future_never_started_and_its_span_says_so(spans: Spans, gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="one")
    try:
        busy = pool.submit(gate.wait, 10)
        queued = pool.submit(inner_span(spans.tracer, "never"))
        assert queued.cancel()
        gate.set()
        busy.result(10)
    finally:
        pool.shutdown(timeout=5)
    call = spans.one("call_never")
    assert call.status.status_code == StatusCode.ERROR and "cancelled" in (call.status.description or "")
    assert (call.attributes or {})["fairpool.outcome"] == "cancelled"
    assert "fairpool.worker" not in (call.attributes or {}) and not events(call, "fairpool.started")
    assert not [s for s in spans.all() if s.name == "never"]


@pytest.mark.timeout(30)
def test_green_callers_that_give_up_while_queued_and_while_running(
    spans: Spans, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="one")

    def times_out(fn: Callable[..., Any]) -> None:
        with eventlet.Timeout(0.05, False):
            pool.execute(fn)

    try:
        running = eventlet.spawn(pool.execute, gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the call to be running")
        eventlet.spawn(times_out, inner_span(spans.tracer, "queued")).wait()  # the only worker is busy
        running.kill()  # its caller is killed while it runs
        gate.set()
    finally:
        pool.shutdown(timeout=5)
    abandoned = spans.one("threading.Event.wait")
    cancelled = spans.one("call_queued")
    assert (abandoned.attributes or {})["fairpool.outcome"] == "abandoned"
    assert abandoned.status.status_code == StatusCode.ERROR and events(abandoned, "fairpool.started")
    assert (cancelled.attributes or {})["fairpool.outcome"] == "cancelled"
    assert cancelled.status.status_code == StatusCode.ERROR and not events(cancelled, "fairpool.started")


@pytest.mark.timeout(30)
def test_calls_refused_by_a_full_queue_or_a_closed_pool_are_rejected(
    spans: Spans, gate: threading.Event
) -> None:
    pool = fairpool.Pool(threads=1, name="bounded", max_queue=1, on_full="raise")
    try:
        busy = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
        queued = pool.submit(int, "1")
        with spans.tracer.start_as_current_span("request"):
            with pytest.raises(fairpool.QueueFull):
                pool.execute(inner_span(spans.tracer, "full-execute"))
            with pytest.raises(fairpool.QueueFull):
                pool.submit(inner_span(spans.tracer, "full-submit"))
        gate.set()
        busy.result(10)
        queued.result(10)
    finally:
        pool.shutdown(timeout=5)
    with pytest.raises(fairpool.PoolClosed):
        pool.execute(inner_span(spans.tracer, "closed-execute"))
    request = spans.one("request")
    for name in ("full-execute", "full-submit", "closed-execute"):
        call = spans.one(f"call_{name}")
        assert (call.attributes or {})["fairpool.outcome"] == "rejected", name
        assert call.status.status_code == StatusCode.ERROR and "refused" in (call.status.description or "")
        assert not [s for s in spans.all() if s.name == name], f"{name} ran"
    assert parent_of(spans.one("call_full-execute")) == span_id(request)


@pytest.mark.timeout(30)
def test_calls_queued_at_a_shutdown_are_closed(spans: Spans, gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="one")
    busy = pool.submit(gate.wait, 10)
    wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
    queued = pool.submit(inner_span(spans.tracer, "dropped"))
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    busy.result(10)
    assert queued.cancelled()
    call = spans.one("call_dropped")
    assert (call.attributes or {})["fairpool.outcome"] == "closed"
    assert call.status.status_code == StatusCode.ERROR


@pytest.mark.timeout(30)
def test_uninstrumenting_ends_the_spans_of_calls_in_flight(gate: threading.Event) -> None:
    s = Spans()
    otel.instrument(s.provider)
    pool = fairpool.Pool(threads=1, name="one")
    try:
        busy = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
        otel.uninstrument()
        (call,) = s.named("threading.Event.wait")
        assert (call.attributes or {})["fairpool.outcome"] == "uninstrumented"
        gate.set()
        busy.result(10)
        pool.execute(int, "1")
    finally:
        otel.uninstrument()
        pool.shutdown(timeout=5)
    assert [x.name for x in s.all()] == ["threading.Event.wait"], "a span after uninstrument()"


# -- locks, wrapped libraries and hub stalls -----------------------------------------------


class SpyLock:
    """A native lock that says when someone blocks on it, so a test can make a wait last."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self.blocked = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        self.blocked.set()
        return self._lock.acquire(True, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def _held_until_waited(lock: Any, spy: SpyLock, more: float) -> threading.Thread:
    """Hold ``lock`` from another thread until someone blocks on it, then ``more`` seconds."""
    taken = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            spy.blocked.wait(10)
            time.sleep(more)

    t = threading.Thread(target=hold)
    t.start()
    assert taken.wait(5)
    return t


@pytest.mark.timeout(30)
def test_a_lock_wait_inside_a_call_is_an_event_on_its_span(spans: Spans, pool2: fairpool.Pool) -> None:
    spy = SpyLock("compute-resources")
    lock = fairpool.instrument_lock(spy, "compute-resources")

    def update_usage() -> None:
        with lock:
            time.sleep(0.02)  # a hold over the 0.01 s threshold

    holder = _held_until_waited(lock, spy, 0.1)
    with spans.tracer.start_as_current_span("request"):
        pool2.execute(update_usage)
    holder.join()
    call = spans.one(f"{__name__}.{update_usage.__qualname__}")
    (wait,) = events(call, "fairpool.lock.wait")
    assert wait["fairpool.lock"] == "compute-resources" and wait["fairpool.lock.wait_s"] >= 0.05
    (hold,) = events(call, "fairpool.lock.hold")
    assert hold["fairpool.lock.hold_s"] >= 0.015
    (ev,) = [e for e in call.events if e.name == "fairpool.lock.wait"]
    assert call.start_time is not None and call.end_time is not None
    assert call.start_time <= ev.timestamp <= call.end_time, "the wait is placed outside its span"
    assert not spans.one("request").events, "the caller's span got the worker's lock events"


@pytest.mark.timeout(30)
def test_short_holds_and_waits_under_the_thresholds_are_left_out(pool2: fairpool.Pool) -> None:
    s = Spans()
    otel.instrument(s.provider, wait_threshold=10.0, hold_threshold=10.0)
    spy = SpyLock("short")
    lock = fairpool.instrument_lock(spy, "short")

    def quick() -> None:
        with lock:
            time.sleep(0.02)

    try:
        holder = _held_until_waited(lock, spy, 0.05)
        pool2.execute(quick)
        holder.join()
        (call,) = s.named(f"{__name__}.{quick.__qualname__}")
    finally:
        otel.uninstrument()
    assert lock.statistics().contended == 1, "the wait the threshold leaves out did happen"
    assert [e.name for e in call.events] == ["fairpool.started"]


@pytest.mark.timeout(30)
def test_a_green_lock_wait_goes_on_the_green_threads_own_span(spans: Spans) -> None:
    sem = fairpool.instrument_lock(eventlet.semaphore.Semaphore(1), "green-sem")

    def boot(name: str, hold: float) -> None:
        with spans.tracer.start_as_current_span(name), sem:
            eventlet.sleep(hold)

    first = eventlet.spawn(boot, "first", 0.1)
    eventlet.sleep(0)
    second = eventlet.spawn(boot, "second", 0.0)
    first.wait()
    second.wait()
    assert not events(spans.one("first"), "fairpool.lock.wait")
    (wait,) = events(spans.one("second"), "fairpool.lock.wait")
    assert wait["fairpool.lock"] == "green-sem" and wait["fairpool.lock.wait_s"] >= 0.05
    assert events(spans.one("first"), "fairpool.lock.hold")[0]["fairpool.lock.hold_s"] >= 0.05


@pytest.mark.timeout(30)
def test_a_wrapped_library_call_is_a_span_with_its_lock_wait(spans: Spans, pool2: fairpool.Pool) -> None:
    spy = SpyLock("otel-libc")
    lib = fairpool.wrap_library(_libc, lock=spy, name="libc", pool=pool2)
    holder = _held_until_waited(lib._fp_lock, spy, 0.1)
    with spans.tracer.start_as_current_span("boot"):
        lib.usleep(1000)
    holder.join()
    call = spans.one("libc.usleep")
    assert parent_of(call) == span_id(spans.one("boot"))
    (wait,) = events(call, "fairpool.lock.wait")
    assert wait["fairpool.lock"] == "otel-libc" and wait["fairpool.lock.wait_s"] >= 0.05


def blocks_the_hub_in_c() -> None:
    _libc.usleep(150_000)  # a blocking C call made directly on the hub


@pytest.mark.timeout(30)
def test_a_hub_stall_is_a_span_with_its_stack_under_the_request_it_held_up(
    spans: Spans, pool2: fairpool.Pool, gate: threading.Event
) -> None:
    watch = fairpool.watch_hub(threshold=0.05)
    try:
        eventlet.sleep(0.05)

        def request() -> None:
            with spans.tracer.start_as_current_span("slow request"):
                pool2.execute(gate.wait, 10)  # in flight until the stall is reported

        victim = eventlet.spawn(request)
        wait_until(lambda: pool2.statistics().busy == 1, what="the call to be running")
        eventlet.spawn(blocks_the_hub_in_c).wait()
        wait_until(lambda: watch.stalls, what="the stall to be reported")
        gate.set()
        victim.wait()
    finally:
        watch.stop()
    stall = spans.one("fairpool.hub_stall")
    attrs = dict(stall.attributes or {})
    assert "blocks_the_hub_in_c" in str(attrs["code.stacktrace"]) and attrs["fairpool.hub.stall_s"] >= 0.1
    assert attrs["fairpool.hub.held_up"] == 1
    assert stall.end_time is not None and stall.start_time is not None
    assert (stall.end_time - stall.start_time) / 1e9 >= 0.1
    # The stall held up the caller (its green thread), not the worker: it is in the request's trace.
    request = spans.one("slow request")
    assert parent_of(stall) == span_id(request), "the stall is not under the request it held up"
    assert parent_of(spans.one("threading.Event.wait")) == span_id(request)


@pytest.mark.timeout(30)
def test_a_hub_stall_holds_up_a_caller_whose_call_ended_during_it(spans: Spans, pool2: fairpool.Pool) -> None:
    watch = fairpool.watch_hub(threshold=0.05)
    try:
        eventlet.sleep(0.05)

        def request() -> None:
            with spans.tracer.start_as_current_span("held up"):
                pool2.execute(time.sleep, 0.05)  # ends while the hub is blocked: the caller waits on

        victim = eventlet.spawn(request)
        eventlet.sleep(0)  # it submits its call and waits
        eventlet.spawn(blocks_the_hub_in_c).wait()
        wait_until(lambda: watch.stalls, what="the stall to be reported")
        victim.wait()
    finally:
        watch.stop()
    stall, call = spans.one("fairpool.hub_stall"), spans.one("time.sleep")
    assert call.end_time is not None and stall.end_time is not None and call.end_time < stall.end_time
    assert parent_of(stall) == span_id(spans.one("held up")), "the caller it held up is not its parent"


@pytest.mark.timeout(30)
def test_a_hub_stall_is_not_put_on_a_call_made_after_it(spans: Spans, pool2: fairpool.Pool) -> None:
    watch = fairpool.watch_hub(threshold=0.05)
    try:
        eventlet.sleep(0.05)

        def blocks_then_calls() -> None:
            blocks_the_hub_in_c()
            with spans.tracer.start_as_current_span("after"):
                pool2.execute(time.sleep, 0.2)  # in flight when the stall is reported, but made after it

        eventlet.spawn(blocks_then_calls).wait()
        wait_until(lambda: watch.stalls, what="the stall to be reported")
    finally:
        watch.stop()
    stall = spans.one("fairpool.hub_stall")
    assert stall.parent is None, "a call made after the stall was taken for one it held up"
    assert (stall.attributes or {})["fairpool.hub.held_up"] == 0
    spans.one("after")


@pytest.mark.timeout(60)
def test_a_forked_child_does_not_end_its_parents_spans() -> None:
    out = run_script(
        """
        import os, threading, eventlet, fairpool
        from fairpool import PoolClosed
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        fairpool.otel.instrument(provider)
        gate = threading.Event()
        fairpool.set_num_threads(1)
        running = eventlet.spawn(fairpool.execute, gate.wait, 5)
        queued = eventlet.spawn(fairpool.execute, sorted, [2, 1])
        eventlet.sleep(0.05)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for gt in (running, queued):
                    try:
                        gt.wait()
                    except PoolClosed:
                        pass
                fairpool.execute(abs, -1)
                spans = [(s.name, s.attributes["fairpool.outcome"]) for s in exporter.get_finished_spans()]
                os.write(w, repr(spans).encode())
            finally:
                os._exit(0)
        gate.set()
        running.wait(), queued.wait()
        os.waitpid(pid, 0)
        print(sorted((s.name, s.attributes["fairpool.outcome"]) for s in exporter.get_finished_spans()))
        print(os.read(r, 1000).decode())
        """
    )
    parent, child = out.strip().splitlines()
    assert parent == "[('sorted', 'returned'), ('threading.Event.wait', 'returned')]", parent
    assert child == "[('abs', 'returned')]", f"the child ended its copies of the parent's spans: {child}"


# -- the subscription points -----------------------------------------------------------------


def test_a_lock_listener_that_raises_is_dropped_and_the_lock_still_works() -> None:
    class Bad:
        def lock_waited(self, name: str, start: float, end: float) -> None:
            raise RuntimeError("boom")

        def lock_held(self, name: str, start: float, end: float) -> None:
            raise RuntimeError("boom")

    bad = Bad()
    locks.add_listener(bad)
    lock = fairpool.instrument_lock(threading.Lock(), "listened")
    try:
        with lock:
            pass
        assert bad not in locks.listeners and not lock.locked()
        assert lock.statistics().acquisitions == 1
    finally:
        locks.remove_listener(bad)


# -- the batch span processor with a native thread ------------------------------------------


class Counting:
    """A span exporter that counts, and can be told to fail."""

    def __init__(self, fail: int = 0) -> None:
        self.names: list[str] = []
        self.fail = fail

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self.fail:
            self.fail -= 1
            raise OSError("the collector is away")
        self.names += [x.name for x in spans]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


@pytest.mark.timeout(30)
def test_the_native_batch_processor_exports_flushes_and_outlives_a_failing_exporter(
    pool2: fairpool.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = Counting(fail=1)
    processor = otel.batch_span_processor(exporter, max_export_batch_size=2, schedule_delay=30)  # type: ignore[arg-type]
    provider = TracerProvider()
    provider.add_span_processor(processor)
    otel.instrument(provider)
    try:
        pool2.execute(int, "1")  # a batch that the exporter fails
        pool2.execute(int, "2")
        wait_until(lambda: exporter.fail == 0, what="the first batch to be tried")
        for i in range(3):
            pool2.execute(int, str(i))
        provider.force_flush()
        assert exporter.names == ["int"] * 3, "the batches after a failure were not exported"
    finally:
        otel.uninstrument()
        provider.shutdown()
    assert "a span exporter raised" in caplog.text and caplog.text.count("a span exporter raised") == 1
    assert processor.dropped == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_queue_size": 0}, "max_queue_size must be an int >= 1, got 0"),
        ({"max_export_batch_size": 1.5}, "max_export_batch_size must be an int >= 1, got 1.5"),
        ({"schedule_delay": 0}, "schedule_delay must be a finite number of seconds > 0, got 0"),
    ],
)
def test_the_native_batch_processor_names_a_bad_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        otel.batch_span_processor(Counting(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_under_monkey_patching_every_span_of_a_burst_of_green_calls_is_exported() -> None:
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import fairpool
        from eventlet import patcher
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SpanExportResult

        class Counting:
            spans = 0
            def export(self, spans):
                self.spans += len(spans)
                return SpanExportResult.SUCCESS
            def shutdown(self):
                pass

        exporter = Counting()
        processor = fairpool.otel.batch_span_processor(exporter)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        fairpool.otel.instrument(provider)
        tracer = provider.get_tracer("t")
        real_sleep = patcher.original("time").sleep

        def boot(i):
            with tracer.start_as_current_span(f"boot{i}"):
                for _ in range(60):
                    fairpool.execute(real_sleep, 0.0001)

        for g in [eventlet.spawn(boot, i) for i in range(50)]:
            g.wait()
        provider.shutdown()
        print(exporter.spans, processor.dropped)
        """
    )
    assert out.split() == [str(50 * 61), "0"], out


# -- across two processes ------------------------------------------------------------------

_COMMON = """
import json, os, socket, sys, time
{patch}
import fairpool
from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource({{"service.name": sys.argv[1]}}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
fairpool.otel.instrument(provider)
tracer = provider.get_tracer(sys.argv[1])


def dump(path):
    out = []
    for s in exporter.get_finished_spans():
        out.append({{
            "name": s.name,
            "trace_id": f"{{s.context.trace_id:032x}}",
            "span_id": f"{{s.context.span_id:016x}}",
            "parent_id": f"{{s.parent.span_id:016x}}" if s.parent else None,
            "attributes": dict(s.attributes),
            "events": [{{"name": e.name, "attributes": dict(e.attributes)}} for e in s.events],
        }})
    with open(path, "w") as f:
        json.dump(out, f)
"""

# The callee: an eventlet service (like nova-compute). Its pool has one worker, busy when the
# request comes (a pool wait), and the call inside takes a lock another thread holds (a lock wait).
_COMPUTE = (
    _COMMON.format(patch="import eventlet; eventlet.monkey_patch()")
    + """
from eventlet import patcher
from opentelemetry.trace import SpanKind
real_sleep = patcher.original("time").sleep
real_threading = patcher.original("threading")

pool = fairpool.Pool(threads=1, name="compute")


class SpyLock:  # a native lock that says when someone blocks on it
    def __init__(self):
        self._lock = real_threading.Lock()
        self.blocked = real_threading.Event()

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        self.blocked.set()
        return self._lock.acquire(True, timeout)

    def release(self):
        self._lock.release()

    def locked(self):
        return self._lock.locked()


spy = SpyLock()
libvirt = fairpool.instrument_lock(spy, "libvirt")
other_boot_done = real_threading.Event()


def hold_libvirt():  # another thread holds the lock until the request's call waits for it, and then some
    with libvirt:
        spy.blocked.wait(30)
        real_sleep(0.1)


def other_boot():  # another boot's call: holds the only worker until the request's call is queued, +0.1 s
    other_boot_done.wait(30)


def create_domain():
    with libvirt:
        with tracer.start_as_current_span("virDomainCreate"):
            real_sleep(0.01)


def release_other_boot():
    while pool.statistics().queued < 1:
        eventlet.sleep(0.001)
    eventlet.sleep(0.1)
    other_boot_done.set()


def handle(conn):
    carrier = json.loads(conn.makefile().readline())
    parent = propagate.extract(carrier)
    with tracer.start_as_current_span("compute.boot", context=parent, kind=SpanKind.SERVER):
        real_threading.Thread(target=hold_libvirt).start()
        while not libvirt.locked():
            eventlet.sleep(0.001)
        busy = eventlet.spawn(pool.execute, other_boot)  # a green thread of its own: a trace of its own
        while pool.statistics().busy < 1:
            eventlet.sleep(0.001)
        eventlet.spawn(release_other_boot)
        pool.execute(create_domain)
        busy.wait()
    conn.sendall(b"done\\n")
    conn.close()


server = eventlet.listen(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
handle(conn)
pool.shutdown()  # a call's span ends just after its caller resumes: let the worker finish that
dump(sys.argv[2])
"""
)

# The caller: a native-threads service (like nova-api). The RPC is itself a pool call: the
# traceparent is made in the worker, from the context the pool carried there.
_API = (
    _COMMON.format(patch="")
    + """
from opentelemetry.trace import SpanKind
pool = fairpool.Pool(threads=2, name="api")


def rpc(port):
    carrier = {}
    propagate.inject(carrier)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(json.dumps(carrier).encode() + b"\\n")
        return s.makefile().readline().strip()


with tracer.start_as_current_span("api.boot", kind=SpanKind.SERVER):
    assert pool.execute(rpc, int(sys.argv[3])) == "done"
pool.shutdown()
dump(sys.argv[2])
"""
)


@pytest.mark.timeout(90)
def test_one_trace_across_two_processes_over_a_traceparent(tmp_path: Path) -> None:
    (tmp_path / "compute.py").write_text(textwrap.dedent(_COMPUTE))
    (tmp_path / "api.py").write_text(textwrap.dedent(_API))
    env = {"PYTHONWARNINGS": "ignore"}
    import os

    env = dict(os.environ, **env)
    compute = subprocess.Popen(
        [sys.executable, str(tmp_path / "compute.py"), "compute", str(tmp_path / "compute.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert compute.stdout is not None
        port = compute.stdout.readline().strip()
        assert port.isdigit(), compute.stderr.read() if compute.stderr else port
        api = subprocess.run(
            [sys.executable, str(tmp_path / "api.py"), "api", str(tmp_path / "api.json"), port],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert api.returncode == 0, api.stderr
        _, err = compute.communicate(timeout=60)
        assert compute.returncode == 0, err
    finally:
        if compute.poll() is None:
            compute.kill()
            compute.wait()
    api_spans = json.loads((tmp_path / "api.json").read_text())
    compute_spans = json.loads((tmp_path / "compute.json").read_text())
    every = api_spans + compute_spans
    by_id = {s["span_id"]: s for s in every}
    (request,) = [s for s in api_spans if s["name"] == "api.boot"]
    (other,) = [s for s in compute_spans if s["name"] == "other_boot"]  # another boot's call, in a green
    assert other["parent_id"] is None  # thread of its own: a trace of its own
    assert {s["trace_id"] for s in every if s is not other} == {request["trace_id"]}, "two traces"

    def ancestry(span: dict[str, Any]) -> list[str]:
        names = []
        while span["parent_id"] is not None:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    (create,) = [s for s in compute_spans if s["name"] == "create_domain"]
    assert ancestry(create) == ["compute.boot", "rpc", "api.boot"], (
        "the callee's pool call is not under the request"
    )
    assert create["attributes"]["fairpool.queued_s"] >= 0.05, "the callee's pool wait is missing"
    (wait,) = [e for e in create["events"] if e["name"] == "fairpool.lock.wait"]
    assert (
        wait["attributes"]["fairpool.lock"] == "libvirt"
        and wait["attributes"]["fairpool.lock.wait_s"] >= 0.05
    )
    (inner,) = [s for s in compute_spans if s["name"] == "virDomainCreate"]
    assert inner["parent_id"] == create["span_id"]


@pytest.mark.timeout(120)
def test_the_demo_follows_its_slowest_boot_across_both_processes(tmp_path: Path) -> None:
    pytest.importorskip(
        "matplotlib", reason="the demo's timeline needs matplotlib: pip install -e '.[bench]'"
    )
    demo = Path(__file__).resolve().parent.parent / "docs" / "examples" / "otel_boot_demo.py"
    proc = subprocess.run(
        [sys.executable, str(demo), str(tmp_path)], capture_output=True, text=True, timeout=100
    )
    assert proc.returncode == 0, proc.stderr
    assert "The slowest of 12 boots took" in proc.stdout and "across 2 processes" in proc.stdout, proc.stdout
    assert "waited: queued (db pool)" in proc.stdout and "Where it waited:" in proc.stdout, proc.stdout
    assert (tmp_path / "slow-boot.png").read_bytes().startswith(b"\x89PNG")
    spans = [
        json.loads(line)
        for f in ("api.jsonl", "compute.jsonl")
        for line in (tmp_path / f).read_text().splitlines()
    ]
    assert len([s for s in spans if s["name"] == "POST /servers"]) == 12
    assert len([s for s in spans if s["name"] == "build_and_run_instance"]) == 12
    assert len([s for s in spans if s["name"] == "libvirt.usleep"]) == 36
    stalls = [s for s in spans if s["name"] == "fairpool.hub_stall"]
    # Its periodic task blocks the hub once (a loaded machine may add stalls of its own).
    assert any("sync_power_states" in s["attributes"].get("code.stacktrace", "") for s in stalls), stalls
