"""Helping: a worker that waits on a future of its own pool whose call is still queued runs it.

``submit()`` from a worker queues its call (tests/test_callback_chains.py), so a call
that waits on such a future (``result()``, ``exception()``, ``map()``) would wait for
a free worker: on ``Pool(1)``, or when every worker does the same, forever. Instead
the waiting worker takes the call out of the queue and runs it in its own thread,
accounted for, observed and answered like any call, exactly once whatever races it
(a free worker popping it, ``cancel()``, ``shutdown(cancel_futures=True)``, ``resize(0)``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import eventlet
import pytest

import fairpool
import fairpool.testing
from fairpool import _hooks, _workers
from fairpool._hooks import CallInfo, PoolObserver

RACES = 250  # each race below runs this many times
ANSWER = 10.0  # seconds any answer may take under load before the test calls it a hang


def _pool(threads: int, name: str) -> fairpool.Pool:
    return fairpool.Pool(threads, name=name, exit_timeout=0)  # a hang on the old code must not hold the exit


def _answer(future: Future[Any], what: str) -> Any:
    try:
        return future.result(timeout=ANSWER)
    except FutureTimeout:
        pytest.fail(f"{what}: no answer in {ANSWER}s (a worker waits for a call queued behind itself)")


@pytest.fixture
def pool1() -> Iterator[fairpool.Pool]:
    pool = _pool(1, "helping1")
    yield pool
    pool.shutdown(wait=False)


def test_a_call_on_a_pool_of_one_waits_on_a_call_it_submitted(pool1: fairpool.Pool) -> None:
    where: list[int] = []

    def inner(x: int) -> int:
        where.append(threading.get_ident())
        return x * 2

    def outer() -> tuple[int, int]:
        return pool1.submit(inner, 21).result(), threading.get_ident()

    value, outer_thread = _answer(pool1.submit(outer), "submit(f).result() inside Pool(1)'s call")
    assert value == 42
    assert where == [outer_thread], "the helped call must run once, in the waiting worker's thread"
    value, _ = pool1.execute(outer)  # execute's waiter is another kind: the inner wait still helps
    assert value == 42


def test_exception_returns_the_helped_call_s_exception(pool1: fairpool.Pool) -> None:
    def outer() -> BaseException | None:
        return pool1.submit(lambda: 1 / 0).exception()

    error = _answer(pool1.submit(outer), "future.exception() inside Pool(1)'s call")
    assert isinstance(error, ZeroDivisionError), f"expected the helped call's error, got {error!r}"


def test_map_inside_a_call_of_a_pool_of_one(pool1: fairpool.Pool) -> None:
    def outer() -> list[int]:
        return list(pool1.map(abs, range(-5, 0)))

    assert _answer(pool1.submit(outer), "pool.map() inside Pool(1)'s call") == [5, 4, 3, 2, 1]


@pytest.mark.parametrize("depth", [1, 3])
def test_every_worker_waiting_on_nested_calls_helps(depth: int) -> None:
    """Pool(2), two outer calls at once (so no worker is free), each waits ``depth`` levels deep."""
    pool = _pool(2, "helping2")
    both_running = threading.Barrier(2, timeout=ANSWER)

    def level(n: int) -> int:
        if n == 0:
            return 1
        return pool.submit(level, n - 1).result() + 1

    def outer() -> int:
        both_running.wait()  # both workers busy: nobody is free for the nested calls
        return level(depth)

    try:
        futures = [pool.submit(outer) for _ in range(2)]
        assert [_answer(f, f"nested waits {depth} deep in both workers") for f in futures] == [depth + 1] * 2
        stats = pool.statistics()
        assert stats.completed == 2 * (depth + 1), f"each call counted once: {stats}"
        assert stats.busy == 0, f"busy must come back to 0: {stats}"
    finally:
        pool.shutdown(wait=False)


def test_nested_helping_is_bounded_then_waits_for_a_free_worker() -> None:
    """Past MAX_HELP_DEPTH nested helped calls a worker waits as usual: a free worker runs the next.

    Pool(1) grown to 2 only once the first worker is at the bound, so the split is deterministic
    (with a free worker from the start it could take any level, and the bound fall elsewhere).
    """
    pool = _pool(1, "helpdeep")
    depth = _workers.MAX_HELP_DEPTH + 5
    deepest: dict[int, int] = {}

    def level(n: int) -> int:
        me = threading.get_ident()
        helped = len(_workers._worker_local.worker.helped)
        deepest[me] = max(deepest.get(me, 0), helped)
        if n == 0:
            return 0
        if helped == _workers.MAX_HELP_DEPTH and len(deepest) == 1:
            pool.resize(2)  # this wait will not help: a second worker must take the next level
        return pool.submit(level, n - 1).result() + 1

    try:
        assert _answer(pool.submit(level, depth), "a chain of nested waits past the bound") == depth
        depths = sorted(deepest.values())
        assert depths == [depth - _workers.MAX_HELP_DEPTH - 1, _workers.MAX_HELP_DEPTH], (
            f"the first worker must help exactly {_workers.MAX_HELP_DEPTH} calls deep, the second the rest: "
            f"{deepest}"
        )
    finally:
        pool.shutdown(wait=False)


def test_a_wait_with_a_timeout_does_not_help(pool1: fairpool.Pool) -> None:
    """Documented: a timeout bounds the wait, so it never runs the call (which may take longer)."""
    ran = threading.Event()

    def outer() -> str:
        try:
            pool1.submit(ran.set).result(timeout=0.05)
        except FutureTimeout:
            return "timed out"
        return "answered"

    assert _answer(pool1.submit(outer), "result(timeout) inside Pool(1)'s call") == "timed out"
    assert ran.wait(ANSWER), "the call it timed out on must still run, after the outer call"


@pytest.mark.parametrize("who", ["native thread", "green thread", "another pool's worker"])
def test_a_waiter_that_is_not_a_worker_of_the_pool_does_not_help(pool1: fairpool.Pool, who: str) -> None:
    release = threading.Event()
    blocker = pool1.submit(release.wait, ANSWER)  # the one worker is busy: the call below stays queued
    queued = pool1.submit(threading.get_ident)
    waited_in: list[int] = []

    def wait_on_it() -> int:
        waited_in.append(threading.get_ident())
        return queued.result()

    threading.Timer(0.2, release.set).start()
    other = _pool(1, "other")
    try:
        if who == "native thread":
            box: queue.Queue[int] = queue.Queue()
            thread = threading.Thread(target=lambda: box.put(wait_on_it()))
            thread.start()
            ran_in = box.get(timeout=ANSWER)
        elif who == "green thread":
            ran_in = eventlet.spawn(wait_on_it).wait()
        else:
            ran_in = _answer(other.submit(wait_on_it), "a wait from another pool's worker")
        assert ran_in != waited_in[0], f"a {who} ran the queued call itself: only the pool's workers help"
        assert blocker.result(timeout=ANSWER)
    finally:
        release.set()
        other.shutdown(wait=False)


class _Recorder(PoolObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []
        self.lock = threading.Lock()

    def _add(self, event: str, call: CallInfo, extra: Any = None) -> None:
        with self.lock:
            self.events.append((event, call.call_id, extra))

    def call_started(self, call: CallInfo) -> None:
        self._add("started", call, call.worker)

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        self._add("finished", call, ok)

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        self._add("answered", call, outcome)


def test_a_helped_call_is_observed_and_counted_once(pool1: fairpool.Pool) -> None:
    recorder = _Recorder()
    _hooks.add_observer(recorder)
    try:

        def outer() -> int:
            return pool1.submit(int, "7").result()

        assert _answer(pool1.submit(outer), "an observed helped call") == 7
    finally:
        _hooks.remove_observer(recorder)
    ids = sorted({call_id for _, call_id, _ in recorder.events})
    assert len(ids) == 2, f"two calls (outer, helped) expected: {recorder.events}"
    for call_id in ids:
        mine = [(event, extra) for event, i, extra in recorder.events if i == call_id]
        assert [e for e, _ in mine] == ["started", "finished", "answered"], f"call {call_id}: {mine}"
        assert mine[0][1] == "fairpool-helping1-0", f"call {call_id} started elsewhere: {mine}"
        assert mine[2][1] == "returned", f"call {call_id}: {mine}"
    stats = pool1.statistics()
    assert (stats.submitted, stats.completed, stats.failed, stats.busy) == (2, 2, 0, 0), f"{stats}"
    assert stats.run_p50 is not None and stats.run_p50 >= 0, f"run time accounted: {stats}"


def test_shutdown_timeout_answers_a_helped_call_still_running(pool1: fairpool.Pool) -> None:
    """The helped call is one of the pool's running calls: a shutdown's timeout answers it."""
    started = threading.Event()
    box: queue.Queue[Future[str]] = queue.Queue()

    def slow() -> str:
        started.set()
        eventlet.patcher.original("time").sleep(1.0)
        return "late"

    def outer() -> None:
        future = pool1.submit(slow)
        box.put(future)
        future.exception()

    pool1.submit(outer)
    inner = box.get(timeout=ANSWER)
    assert started.wait(ANSWER), "the queued call never started: nobody helped"
    pool1.shutdown(timeout=0.05)
    assert inner.done(), "a shutdown's timeout must answer the helped call it found running"
    assert isinstance(inner.exception(0), fairpool.PoolClosed), f"got {inner.exception(0)!r}"


def test_a_helped_call_s_otel_span_is_a_child_of_the_waiting_call_s(pool1: fairpool.Pool) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from fairpool import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(provider)
    try:

        def helped() -> int:
            return 1

        def waiting() -> int:
            return pool1.submit(helped).result()

        assert _answer(pool1.submit(waiting), "an instrumented helped call") == 1
        deadline = time.monotonic() + ANSWER
        while len(exporter.get_finished_spans()) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        otel.uninstrument()
        provider.shutdown()
    by_name = {}
    for span in exporter.get_finished_spans():
        assert span.name not in by_name, f"a span ended twice: {exporter.get_finished_spans()}"
        by_name[span.name.rsplit(".", 1)[-1]] = span
    outer, inner = by_name["waiting"], by_name["helped"]
    assert inner.parent is not None and outer.context is not None, f"{by_name}"
    assert inner.parent.span_id == outer.context.span_id, (
        "the helped call's span must be the waiting call's child"
    )
    assert inner.attributes["fairpool.worker"] == outer.attributes["fairpool.worker"] == "fairpool-helping1-0"
    assert inner.attributes["fairpool.outcome"] == "returned", f"{inner.attributes}"


@pytest.mark.parametrize("stage", ["before run", "after run"])
def test_a_fault_in_the_helping_path_answers_the_helped_call(pool1: fairpool.Pool, stage: str) -> None:
    """A fault in fairpool while a worker runs a call helping answers that call, as in the loop.

    Before the run its caller gets FairpoolError; after it, the real outcome. The waiting call goes on.
    """

    def outer() -> Any:
        with fairpool.lane("helped"):
            future = pool1.submit(int, "3")
        try:
            return future.result()
        except fairpool.FairpoolError as exc:
            return exc

    with fairpool.testing.fault_in_worker_loop(stage, when=lambda job: job.lane == "helped"):
        outcome = _answer(pool1.submit(outer), f"a fault {stage} in a helped call")
    if stage == "before run":
        assert isinstance(outcome, fairpool.FairpoolError), f"expected FairpoolError, got {outcome!r}"
    else:
        assert outcome == 3, f"the helped call ran: its caller must get its value, got {outcome!r}"
    stats = pool1.statistics()
    assert stats.worker_faults == 1 and stats.busy == 0, f"{stats}"
    assert pool1.submit(int, "5").result(timeout=ANSWER) == 5, "the pool must serve on"


def test_a_call_held_by_max_queue_is_helped_too() -> None:
    """With max_queue, calls submitted past the bound are held; a worker waiting on one runs it."""
    pool = fairpool.Pool(1, name="helpheld", max_queue=1, exit_timeout=0)

    def outer() -> list[int]:
        futures = [pool.submit(int, str(i)) for i in range(4)]  # one queued, three held
        return [f.result() for f in reversed(futures)]  # held ones first

    try:
        assert _answer(pool.submit(outer), "waits on held calls inside Pool(1)'s call") == [3, 2, 1, 0]
        stats = pool.statistics()
        assert (stats.completed, stats.queued, stats.waiting_admission, stats.busy) == (5, 0, 0, 0), (
            f"{stats}"
        )
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_the_exit_answers_and_names_a_helped_call_still_running() -> None:
    """At the exit's deadline a helped call is one of the running calls it answers and names."""
    code = """
        import threading, time, warnings
        import fairpool

        warnings.simplefilter("always")
        pool = fairpool.Pool(1, name="exiting", exit_timeout=0.3)
        box = []
        started = threading.Event()

        def stuck_helped():
            started.set()
            time.sleep(5)

        def waiting():
            box.append(pool.submit(stuck_helped))
            box[0].exception()

        outer = pool.submit(waiting)
        assert started.wait(10)

        def report():
            print("helped:", type(box[0].exception(0)).__name__, "outer:", type(outer.exception(0)).__name__)

        import atexit
        atexit.register(report)  # after fairpool's exit routine: threading's pre-join hook ran it first
    """
    out, err = _run_for_stderr(code)
    assert "stuck_helped in pool 'exiting'" in err, f"the exit's warning must name the helped call:\n{err}"
    assert "waiting in pool 'exiting'" in err, f"and the call that waits on it:\n{err}"
    assert "helped: PoolClosed outer: PoolClosed" in out, f"both callers must be answered:\n{out}\n{err}"


def _run_for_stderr(code: str) -> tuple[str, str]:
    import subprocess
    import sys
    import textwrap

    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout, proc.stderr


# -- races: each runs RACES times -------------------------------------------------------------------


def _stagger(i: int) -> None:
    """A delay that varies with the race's number (the GIL released), so either side may win."""
    if i % 4:
        time.sleep((i % 9) * 40e-6)


def _outer_sending(
    pool: fairpool.Pool, fn: Callable[[], Any], box: queue.Queue[Any], go: threading.Barrier
) -> Callable[[], tuple[str, Any, int]]:
    """An outer call: submit ``fn``, hand its future to the test, meet it, then wait on the future.

    Returns what the wait gave (``"value"`` or ``"cancelled"``), the value, and the outer's thread.
    """

    def outer() -> tuple[str, Any, int]:
        future = pool.submit(fn)
        box.put(future)
        go.wait()
        try:
            return "value", future.result(), threading.get_ident()
        except CancelledError:
            return "cancelled", None, threading.get_ident()

    return outer


@pytest.mark.timeout(120)
def test_race_a_free_worker_and_the_helping_waiter_take_the_call_once() -> None:
    pool = _pool(4, "helprace")
    ran_in: list[int] = []

    def inner() -> int:
        ran_in.append(threading.get_ident())
        return 5

    def outer(i: int) -> tuple[int, int]:
        future = pool.submit(inner)  # an idle worker is woken for it: it races the help below
        _stagger(i)
        return future.result(), threading.get_ident()

    helped = 0
    try:
        for i in range(RACES):
            futures = [pool.submit(outer, i) for _ in range(2)]
            for future in futures:
                value, outer_thread = _answer(future, f"race {i}")
                assert value == 5, f"race {i}: {value!r}"
                helped += outer_thread in ran_in[-2:]
        assert len(ran_in) == 2 * RACES, f"each call must run exactly once: ran {len(ran_in)} of {2 * RACES}"
        assert helped, f"in {RACES} races the waiting worker never ran the queued call itself"
        stats = pool.statistics()
        assert (stats.completed, stats.cancelled, stats.busy) == (4 * RACES, 0, 0), f"{stats}"
    finally:
        pool.shutdown(wait=False)


def _check_once(outcome: tuple[str, Any, int], ran: list[int], cancelled: bool | None, i: int) -> None:
    kind, value, outer_thread = outcome
    if kind == "value":
        assert value == "ran" and len(ran) == 1, (
            f"race {i}: answered {value!r}, the call ran {len(ran)} times"
        )
        assert ran == [outer_thread], f"race {i}: the call ran in {ran}, not in the waiting worker"
        assert cancelled is not True, f"race {i}: cancel() said it succeeded, yet the call ran"
    else:
        assert not ran, f"race {i}: the future says cancelled, yet the call ran {len(ran)} times"


def _inner(runs: list[int]) -> Callable[[], str]:
    def inner() -> str:
        runs.append(threading.get_ident())
        return "ran"

    return inner


@pytest.mark.timeout(120)
def test_race_cancel_and_the_help() -> None:
    """Pool(1): only the waiting worker can run the call; a cancel() from outside races it."""
    pool = _pool(1, "helpcancel")
    box: queue.Queue[Any] = queue.Queue()
    go = threading.Barrier(2, timeout=ANSWER)
    seen = {"value": 0, "cancelled": 0}
    try:
        for i in range(RACES):
            runs: list[int] = []
            outer_future = pool.submit(_outer_sending(pool, _inner(runs), box, go))
            inner_future = box.get(timeout=ANSWER)
            go.wait()
            _stagger(i)
            cancelled = inner_future.cancel()
            outcome = _answer(outer_future, f"race {i}")
            _check_once(outcome, runs, cancelled, i)
            seen[outcome[0]] += 1
        assert seen["value"], f"the help never ran the call in {RACES} races: {seen}"
        stats = pool.statistics()
        assert stats.completed == RACES + seen["value"], f"{stats} {seen}"
        assert stats.cancelled == seen["cancelled"], f"{stats} {seen}"
        assert stats.busy == 0 and stats.queued == 0, f"{stats}"
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(180)
def test_race_shutdown_cancel_futures_and_the_help() -> None:
    seen = {"value": 0, "cancelled": 0}
    for i in range(RACES):
        pool = _pool(1, "helpshut")
        runs: list[int] = []
        box: queue.Queue[Any] = queue.Queue()
        go = threading.Barrier(2, timeout=ANSWER)
        outer_future = pool.submit(_outer_sending(pool, _inner(runs), box, go))
        inner_future = box.get(timeout=ANSWER)
        go.wait()
        _stagger(i)
        pool.shutdown(cancel_futures=True, timeout=ANSWER)
        outcome = _answer(outer_future, f"race {i}")
        _check_once(outcome, runs, None, i)
        assert inner_future.done(), f"race {i}: the helped call's future was never settled"
        seen[outcome[0]] += 1
        stats = pool.statistics()
        assert stats.busy == 0 and stats.completed == 1 + (outcome[0] == "value"), f"race {i}: {stats}"
    assert seen["value"], f"the help never ran the call in {RACES} races: {seen}"


@pytest.mark.timeout(180)
@pytest.mark.filterwarnings("ignore:fairpool pool 'helpresize' has 0 threads:RuntimeWarning")
def test_race_resize_to_zero_and_the_help() -> None:
    """Pool(2), one worker idle (free to pop the call), resize(0) racing the help."""
    pool = _pool(2, "helpresize")
    box: queue.Queue[Any] = queue.Queue()
    go = threading.Barrier(2, timeout=ANSWER)
    helped = 0
    try:
        for i in range(RACES):
            pool.resize(2)
            pool.submit(int).result(timeout=ANSWER)  # a worker idles, free to pop the helped call
            runs: list[int] = []
            outer_future = pool.submit(_outer_sending(pool, _inner(runs), box, go))
            box.get(timeout=ANSWER)
            go.wait()
            _stagger(i)
            pool.resize(0)
            kind, value, outer_thread = _answer(outer_future, f"race {i}")
            assert (kind, value) == ("value", "ran"), f"race {i}: {kind} {value!r}"
            assert len(runs) == 1, f"race {i}: the call ran {len(runs)} times"
            helped += runs == [outer_thread]
        assert helped, f"in {RACES} races the waiting worker never ran the queued call itself"
        stats = pool.statistics()
        assert stats.completed == 3 * RACES and stats.busy == 0, f"{stats}"
    finally:
        pool.shutdown(wait=False)
