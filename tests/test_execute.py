"""execute(): results, errors, waiting green or native, inline cases."""

from __future__ import annotations

import _imp
import gc
import os
import threading
import time
import traceback
import weakref

import eventlet
import eventlet.hubs
import pytest
from eventlet import timeout as eventlet_timeout

import fairpool
from fairpool import tpool as fair_tpool
from fairpool.demo import ticks_during

from .conftest import wait_until


def test_execute_returns_the_result_with_args_and_kwargs(pool: fairpool.Pool) -> None:
    assert pool.execute(lambda a, b=0: a * 10 + b, 4, b=2) == 42


def test_execute_runs_in_a_named_worker_thread(pool: fairpool.Pool) -> None:
    name = pool.execute(lambda: threading.current_thread().name)
    assert name.startswith("fairpool-test-"), name
    assert threading.current_thread().name != name


def test_threads_start_on_demand_up_to_the_size(pool: fairpool.Pool, gate: threading.Event) -> None:
    assert pool.statistics().threads == 0
    pool.execute(int)
    assert pool.statistics().threads == 1, "one sequential call should need one thread"
    gts = [eventlet.spawn(pool.execute, gate.wait, 5) for _ in range(10)]
    wait_until(lambda: pool.statistics().busy == 4, what="4 busy workers")
    stats = pool.statistics()
    assert stats.threads == 4 and stats.queued == 6, stats
    gate.set()
    assert [gt.wait() for gt in gts] == [True] * 10


def test_green_caller_does_not_block_the_hub(pool: fairpool.Pool) -> None:
    # A native sleep: it would freeze the hub if run inline.
    during, _ = ticks_during(lambda: pool.execute(time.sleep, 0.2), period=0.002)
    assert during >= 10, f"the ticker ran only {during} times during 0.2s"


def test_exception_is_reraised_with_the_workers_traceback(pool: fairpool.Pool) -> None:
    def fails_in_worker() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        pool.execute(fails_in_worker)
    names = [frame.f_code.co_name for frame, _ in traceback.walk_tb(info.value.__traceback__)]
    assert "fails_in_worker" in names, names


def test_eventlet_timeout_raised_in_the_call_is_reraised(pool: fairpool.Pool) -> None:
    def raises_timeout() -> None:
        raise eventlet_timeout.Timeout(None)

    with pytest.raises(eventlet_timeout.Timeout):
        pool.execute(raises_timeout)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_base_exception_reaches_the_caller_and_the_worker_lives_on(exc_type: type) -> None:
    # eventlet.tpool re-raises these in the worker: the thread dies and the caller waits forever.
    pool = fairpool.Pool(threads=1, name="base")
    try:
        ident = pool.execute(threading.get_ident)

        def raise_it() -> None:
            raise exc_type("from the call")

        with pytest.raises(exc_type):
            pool.execute(raise_it)
        assert pool.execute(threading.get_ident) == ident, "the worker thread was replaced"
        assert pool.statistics().threads == 1
    finally:
        pool.shutdown(timeout=5)


def test_a_returned_exc_info_tuple_is_returned_not_raised(pool: fairpool.Pool) -> None:
    # eventlet.tpool guesses errors from the shape of the result and raises this one.
    value = (ValueError, ValueError("data, not an error"), None)
    assert pool.execute(lambda: value) is value


@pytest.mark.parametrize("bad", [-1, -20, 1.5, "4", True, None])
def test_pool_size_out_of_range_is_a_value_error_naming_it(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"threads must be an int >= 0, got {bad!r}"):
        fairpool.Pool(threads=bad)  # type: ignore[arg-type]


def test_set_num_threads_negative_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nthreads must be an int >= 0, got -3"):
        fairpool.set_num_threads(-3)


@pytest.mark.parametrize("raw", ["-1", "many"])
def test_bad_eventlet_threadpool_size_is_named(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("EVENTLET_THREADPOOL_SIZE", raw)
    with pytest.raises(ValueError, match=rf"EVENTLET_THREADPOOL_SIZE must be an int >= 0, got '?{raw}'?"):
        fairpool.execute(int)


def test_eventlet_threadpool_size_sets_the_default_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTLET_THREADPOOL_SIZE", "3")
    assert fairpool.default_pool().size == 3
    fair_tpool._reset_default_for_tests(None).shutdown()  # type: ignore[union-attr]
    monkeypatch.delenv("EVENTLET_THREADPOOL_SIZE")
    assert fairpool.default_pool().size == 20


def test_size_zero_runs_inline_with_a_warning_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTLET_THREADPOOL_SIZE", "0")
    with pytest.warns(RuntimeWarning, match="EVENTLET_THREADPOOL_SIZE=0"):
        ident = fairpool.execute(threading.get_ident)
    assert ident == threading.get_ident()
    assert fairpool.statistics().inline == 1


def test_a_call_from_a_pool_thread_runs_inline(pool: fairpool.Pool) -> None:
    def outer() -> tuple[int, int]:
        return threading.get_ident(), pool.execute(threading.get_ident)

    outer_ident, inner_ident = pool.execute(outer)
    assert outer_ident == inner_ident


def test_a_call_under_the_import_lock_runs_inline(pool: fairpool.Pool) -> None:
    _imp.acquire_lock()
    try:
        assert pool.execute(threading.get_ident) == threading.get_ident()
    finally:
        _imp.release_lock()


def test_the_import_lock_held_by_another_thread_does_not_make_calls_inline(pool: fairpool.Pool) -> None:
    # eventlet.tpool checks "held by anyone": a worker importing something made
    # calls from the hub run inline, blocking it.
    held, done = threading.Event(), threading.Event()

    def hold_import_lock() -> None:
        _imp.acquire_lock()
        held.set()
        done.wait(10)
        _imp.release_lock()

    t = threading.Thread(target=hold_import_lock)
    t.start()
    try:
        held.wait(10)
        assert _imp.lock_held()
        assert pool.execute(threading.get_ident) != threading.get_ident()
    finally:
        done.set()
        t.join(10)


def test_set_num_threads_grows_a_running_pool_at_once(gate: threading.Event) -> None:
    fairpool.set_num_threads(1)
    blocked = eventlet.spawn(fairpool.execute, gate.wait, 10)
    wait_until(lambda: fairpool.statistics().busy == 1, what="the first call to start")
    second = eventlet.spawn(fairpool.execute, lambda: "second")
    wait_until(lambda: fairpool.statistics().queued == 1, what="the second call to queue")
    fairpool.set_num_threads(2)
    assert second.wait() == "second"
    assert not gate.is_set() and not blocked.dead, "the second call ran only after the first"
    gate.set()
    assert blocked.wait() is True


def test_set_num_threads_shrinks_as_threads_finish_their_call(gate: threading.Event) -> None:
    fairpool.set_num_threads(4)
    gts = [eventlet.spawn(fairpool.execute, gate.wait, 10) for _ in range(4)]
    wait_until(lambda: fairpool.statistics().busy == 4, what="4 busy workers")
    fairpool.set_num_threads(1)
    assert fairpool.statistics().threads == 4, "busy workers must finish their call first"
    gate.set()
    assert [gt.wait() for gt in gts] == [True] * 4
    wait_until(lambda: fairpool.statistics().threads == 1, what="the pool to shrink to 1 thread")
    assert fairpool.execute(lambda: 7) == 7


class _Token:
    pass


class _Boom(Exception):
    """A user exception type (built-in ones cannot be weakly referenced)."""


def test_nothing_keeps_the_arguments_or_result_after_delivery(pool: fairpool.Pool) -> None:
    arg, result = _Token(), _Token()
    arg_ref, result_ref = weakref.ref(arg), weakref.ref(result)
    assert pool.execute(lambda a: result_ref(), arg) is result
    del arg, result
    gc.collect()
    assert arg_ref() is None, "the pool kept the call's argument alive"
    assert result_ref() is None, "the pool kept the call's result alive"


def test_nothing_keeps_the_exception_or_the_calls_locals_after_delivery(pool: fairpool.Pool) -> None:
    arg = _Token()
    arg_ref = weakref.ref(arg)

    def fails(a: _Token) -> None:
        local = a  # noqa: F841 - a frame local the traceback would keep
        raise _Boom("x")

    exc_ref = None
    try:
        pool.execute(fails, arg)
    except _Boom as exc:
        exc_ref = weakref.ref(exc)
    del arg
    gc.collect()
    assert exc_ref is not None and exc_ref() is None, "the exception (and its traceback) was kept"
    assert arg_ref() is None, "a traceback frame kept the call's argument alive"


def test_no_worker_idles_while_a_call_waits(gate: threading.Event) -> None:
    # One global queue: a short call made while a long one runs goes to the other worker.
    pool = fairpool.Pool(threads=2, name="global")
    try:
        long_call = eventlet.spawn(pool.execute, gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the long call to start")
        shorts = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(20)]
        assert [gt.wait() for gt in shorts] == list(range(20))
        assert not long_call.dead, "the short calls waited for the long one"
        gate.set()
        long_call.wait()
    finally:
        pool.shutdown(timeout=5)


def test_native_thread_callers_wait_without_a_hub(pool: fairpool.Pool) -> None:
    results: dict[int, object] = {}

    def caller(i: int) -> None:
        results[i] = (pool.execute(lambda: i * i), hasattr(eventlet.hubs._threadlocal, "hub"))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: (i * i, False) for i in range(20)}, "a native caller made or used a hub"


def test_the_cap_holds_for_green_and_native_callers_together() -> None:
    pool = fairpool.Pool(threads=3, name="cap")
    running = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1

    try:
        natives = [threading.Thread(target=lambda: [pool.execute(work) for _ in range(10)]) for _ in range(5)]
        for t in natives:
            t.start()
        greens = [eventlet.spawn(lambda: [pool.execute(work) for _ in range(10)]) for _ in range(10)]
        for gt in greens:
            gt.wait()
        for t in natives:
            t.join(10)
        assert peak == 3, f"peak of running calls was {peak}, the cap is 3"
        assert pool.statistics().completed == 150
    finally:
        pool.shutdown(timeout=5)


def test_a_non_callable_is_rejected_where_the_call_is_made(pool: fairpool.Pool) -> None:
    with pytest.raises(TypeError, match="fn must be callable, got 42"):
        pool.execute(42)  # type: ignore[arg-type]


def test_a_burst_of_completions_costs_one_wakeup(pool: fairpool.Pool) -> None:
    from fairpool import _hubchannel

    pool.execute(int)  # make the hub's channel
    channel = _hubchannel.current_channel()
    writes_before = channel.writes
    gts = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(40)]
    eventlet.sleep(0)  # every green thread queues its call
    time.sleep(0.2)  # block the hub natively: the workers finish all 40 meanwhile
    assert [gt.wait() for gt in gts] == list(range(40))
    writes = channel.writes - writes_before
    assert writes <= 2, f"{writes} wake-up writes for a burst of 40 completions"


def test_the_wakeup_channel_is_a_pipe_not_a_socket(pool: fairpool.Pool) -> None:
    import os
    import stat

    from fairpool import _hubchannel

    pool.execute(int)
    channel = _hubchannel.current_channel()
    assert stat.S_ISFIFO(os.fstat(channel.rfd).st_mode)
    assert stat.S_ISFIFO(os.fstat(channel.wfd).st_mode)


def test_a_green_thread_dying_of_its_calls_exception_does_not_stop_later_results(
    pool: fairpool.Pool,
) -> None:
    # Resuming a waiter that then dies raises its exception in the hub, inside the
    # wake-up handler; the handler must survive it, or every later result is stranded.
    from eventlet import hubs

    hub = hubs.get_hub()
    hub.debug_exceptions = False  # the dying thread's traceback is expected here
    try:
        dying = [eventlet.spawn(pool.execute, lambda: 1 / 0) for _ in range(3)]
        living = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(3)]
        for gt in dying:
            with pytest.raises(ZeroDivisionError):
                gt.wait()
        assert [gt.wait() for gt in living] == [0, 1, 2]
        assert pool.execute(lambda: "still delivered") == "still delivered"
    finally:
        hub.debug_exceptions = True


_HAS_SCHED = hasattr(os, "SCHED_BATCH") and hasattr(os, "sched_getscheduler")


@pytest.mark.skipif(not _HAS_SCHED, reason="scheduling policies are Linux's")
@pytest.mark.parametrize(
    ("batch", "policy"), [(None, "SCHED_OTHER"), (True, "SCHED_BATCH"), (False, "SCHED_OTHER")]
)
def test_workers_run_under_sched_batch_only_when_asked(batch: bool | None, policy: str) -> None:
    if batch is None:
        pool = fairpool.Pool(threads=1, name="sched")
    else:
        pool = fairpool.Pool(threads=1, name="sched", batch_scheduling=batch)
    try:
        got = pool.execute(os.sched_getscheduler, 0)  # 0: the calling thread, the worker
    finally:
        pool.shutdown(timeout=5)
    assert got == getattr(os, policy), f"the worker's policy is {got}, not {policy} ({getattr(os, policy)})"
