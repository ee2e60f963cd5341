"""fairpool.Pool as a concurrent.futures.Executor: the behaviours CPython's own executor tests check,
and futures that wait green on a hub."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Iterator
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import PoolClosed
from fairpool.demo import ticks_during

from .conftest import run_script, wait_until


@pytest.fixture
def executor() -> Iterator[fairpool.Pool]:
    pool = fairpool.Pool(threads=2, name="executor")
    yield pool
    pool.shutdown(timeout=5)


def _blocker(gate: threading.Event) -> str:
    gate.wait(10)
    return "released"


def test_a_pool_is_an_executor_and_pool_closed_a_runtime_error() -> None:
    assert issubclass(fairpool.Pool, cf.Executor)
    assert issubclass(PoolClosed, RuntimeError), "executor code catches RuntimeError after shutdown"


def test_submit_returns_results_and_exceptions(executor: fairpool.Pool) -> None:
    assert executor.submit(pow, 2, 8).result(timeout=5) == 256
    failing = executor.submit(divmod, 1, 0)
    assert isinstance(failing.exception(timeout=5), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        failing.result()
    keywords = executor.submit(lambda a, *, b: a + b, 1, b=2)
    assert keywords.result(timeout=5) == 3


def test_map_keeps_the_order_of_its_inputs(executor: fairpool.Pool) -> None:
    def slow_square(x: int) -> int:
        time.sleep(0.001 * (10 - x))  # later inputs finish first
        return x * x

    assert list(executor.map(slow_square, range(10))) == [x * x for x in range(10)]
    assert list(executor.map(pow, [2, 3], [5, 2])) == [32, 9]
    assert list(executor.map(pow, [2, 3], [5, 2], chunksize=2)) == [32, 9]


def test_map_raises_the_first_failing_calls_exception_in_order(executor: fairpool.Pool) -> None:
    results = executor.map(lambda x: 1 // x, [1, 0, 2])
    assert next(results) == 1
    with pytest.raises(ZeroDivisionError):
        next(results)


@pytest.mark.timeout(30)
def test_map_with_a_timeout_raises_timeout_error(executor: fairpool.Pool, gate: threading.Event) -> None:
    results = executor.map(lambda _: _blocker(gate), range(3), timeout=0.1)
    start = time.monotonic()
    with pytest.raises(cf.TimeoutError):
        list(results)
    assert time.monotonic() - start < 5, "map's timeout was not applied"


@pytest.mark.timeout(30)
def test_cancel_succeeds_while_queued_and_the_call_never_runs(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="cancel")
    ran: list[int] = []
    try:
        running = pool.submit(_blocker, gate)
        wait_until(lambda: running.running(), what="the first call to start")
        queued = pool.submit(ran.append, 1)
        assert queued.cancel(), "a queued future could not be cancelled"
        assert queued.cancelled() and queued.done()
        assert not running.cancel(), "a running call was cancelled"
        gate.set()
        assert running.result(timeout=5) == "released"
        assert pool.submit(lambda: "after").result(timeout=5) == "after"
        assert ran == [], "a cancelled call ran"
        with pytest.raises(cf.CancelledError):
            queued.result()
        assert pool.statistics().cancelled == 1
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_shutdown_waits_for_every_queued_call_by_default() -> None:
    pool = fairpool.Pool(threads=2, name="shutdown-wait")
    futures = [pool.submit(time.sleep, 0.01) for _ in range(10)]
    pool.shutdown()
    assert all(f.done() and f.exception() is None for f in futures), "shutdown returned before the calls ran"
    assert pool.statistics().threads == 0


@pytest.mark.timeout(30)
def test_shutdown_without_waiting_returns_at_once_and_the_calls_still_run(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="shutdown-nowait")
    first = pool.submit(_blocker, gate)
    second = pool.submit(lambda: "second")
    pool.shutdown(wait=False)
    assert not first.done(), "shutdown(wait=False) waited"
    with pytest.raises(RuntimeError):
        pool.submit(int)
    gate.set()
    assert first.result(timeout=5) == "released" and second.result(timeout=5) == "second"


@pytest.mark.timeout(30)
def test_shutdown_with_cancel_futures_cancels_what_is_queued(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="cancel-futures")
    ran: list[int] = []
    running = pool.submit(_blocker, gate)
    wait_until(lambda: running.running(), what="the first call to start")
    queued = [pool.submit(ran.append, i) for i in range(5)]
    green_caller = eventlet.spawn(pool.execute, ran.append, 99)
    wait_until(lambda: pool.statistics().queued == 6, what="the green call to be queued")
    threading.Timer(0.1, gate.set).start()
    pool.shutdown(cancel_futures=True)
    assert all(f.cancelled() for f in queued), [f._state for f in queued]
    assert running.result(timeout=5) == "released", "a running call was cancelled"
    with pytest.raises(PoolClosed):
        green_caller.wait()
    assert ran == [], "a call taken out by cancel_futures ran"


def test_submit_after_shutdown_raises_runtime_error(executor: fairpool.Pool) -> None:
    executor.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        executor.submit(int)
    with pytest.raises(RuntimeError):
        list(executor.map(int, [1]))


def test_the_context_manager_shuts_down_after_waiting() -> None:
    with fairpool.Pool(threads=2, name="with") as pool:
        future = pool.submit(time.sleep, 0.05)
    assert future.done() and pool.closed


def test_shutdown_names_a_timeout_passed_where_wait_goes(executor: fairpool.Pool) -> None:
    with pytest.raises(TypeError, match=r"timeout is keyword-only: shutdown\(timeout=5\)"):
        executor.shutdown(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a number >= 0"):
        executor.shutdown(timeout=-1)


def test_done_callbacks_wait_and_as_completed_work(executor: fairpool.Pool) -> None:
    seen: list[Any] = []
    futures = [executor.submit(pow, 2, i) for i in range(5)]
    futures[0].add_done_callback(lambda f: seen.append(f.result()))
    done, not_done = cf.wait(futures, timeout=5)
    assert len(done) == 5 and not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=5)) == [1, 2, 4, 8, 16]
    wait_until(lambda: seen == [1], what="the done-callback to run")


# -- futures waited on from green threads ------------------------------------------


@pytest.mark.timeout(30)
def test_waiting_on_a_future_from_a_green_thread_lets_the_hub_run(executor: fairpool.Pool) -> None:
    results: list[object] = []
    future = executor.submit(time.sleep, 0.3)
    during, _ = ticks_during(lambda: results.append(eventlet.spawn(future.result).wait()), period=0.005)
    assert results == [None]
    assert during >= 10, f"the hub ran {during} ticks in 0.3 s: future.result() blocked it"


@pytest.mark.timeout(30)
def test_a_green_waits_timeout_raises_timeout_error_and_leaves_no_callback(
    executor: fairpool.Pool, gate: threading.Event
) -> None:
    future = executor.submit(_blocker, gate)

    def wait_briefly() -> str:
        try:
            future.result(timeout=0.05)
        except cf.TimeoutError:
            return "timed out"
        return "returned"

    for _ in range(3):
        assert eventlet.spawn(wait_briefly).wait() == "timed out"
    assert future._done_callbacks == [], "a timed-out green wait left its callback on the future"
    gate.set()
    assert eventlet.spawn(future.result, 5).wait() == "released"
    assert eventlet.spawn(future.exception, 5).wait() is None


@pytest.mark.timeout(30)
def test_several_native_threads_waiting_on_one_future_all_get_its_result(
    executor: fairpool.Pool, gate: threading.Event
) -> None:
    future = executor.submit(_blocker, gate)
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.05)
    got: list[Any] = []
    waiters = [threading.Thread(target=lambda: got.append(future.result(timeout=10))) for _ in range(5)]
    for t in waiters:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in waiters:
        t.join(10)
    assert got == ["released"] * 5, got
    assert future.result() == "released" and future.exception() is None


@pytest.mark.timeout(30)
def test_a_native_wait_on_a_cancelled_future_raises_cancelled_error(
    gate: threading.Event,
) -> None:
    pool = fairpool.Pool(threads=1, name="cancel-wait")
    try:
        pool.submit(_blocker, gate)
        queued = pool.submit(int)
        outcome: list[Any] = []

        def wait() -> None:
            try:
                queued.result(timeout=10)
            except cf.CancelledError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.05)
        assert queued.cancel()
        waiter.join(10)
        assert len(outcome) == 1, "a native waiter was not woken by cancel()"
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_a_cancelled_future_counts_as_done_for_wait_and_as_completed(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="cancel-notify")
    try:
        pool.submit(_blocker, gate)
        queued = pool.submit(int)
        assert queued.cancel()
        done, not_done = cf.wait([queued], timeout=5)
        assert done == {queued} and not not_done, "wait() was never told of the cancel"
        assert list(cf.as_completed([queued], timeout=5)) == [queued]
        assert queued.cancel() and not queued.running()
    finally:
        gate.set()
        pool.shutdown(timeout=5)
    pool2 = fairpool.Pool(threads=1, name="cancel-futures-notify")
    blocker = pool2.submit(time.sleep, 0.2)
    wait_until(lambda: blocker.running(), what="the blocking call to start")
    cancelled = [pool2.submit(int) for _ in range(5)]
    pool2.shutdown(cancel_futures=True)
    done, not_done = cf.wait(cancelled, timeout=5)
    assert len(done) == 5 and not not_done, "shutdown(cancel_futures=True) left futures un-notified"
    assert blocker.result(timeout=5) is None


@pytest.mark.timeout(60)
def test_wait_and_as_completed_work_under_monkey_patching() -> None:
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import concurrent.futures as cf, threading, time
        import fairpool
        pool = fairpool.Pool(threads=2, name="patched")
        futures = [pool.submit(time.sleep, 0.05) for _ in range(3)]
        done, not_done = cf.wait(futures, timeout=10)
        print(len(done), len(not_done))
        print(len(list(cf.as_completed([pool.submit(int) for _ in range(3)], timeout=10))))
        result = []
        t = threading.Thread(target=lambda: result.append(len(cf.wait([pool.submit(int)], timeout=10)[0])))
        t.start(); t.join()
        print(result[0])
        pool.shutdown()
        """
    )
    assert out.split() == ["3", "0", "3", "1"], out


@pytest.mark.timeout(90)
@pytest.mark.parametrize("when", ["as_completed", "all_completed"])
def test_workers_never_park_on_a_wait_s_green_lock_under_monkey_patching(when: str) -> None:
    # as_completed() and wait(ALL_COMPLETED) guard what they collect with a threading.Lock,
    # green once patched; the worker that settles a future takes it (add_result). A native
    # thread that found it taken parked in a hub of its own, for good, holding the future's
    # lock: the wait hung past its timeout. Eight calls finishing together, thousands of
    # times, with a short switch interval, made that happen in most runs.
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import fairpool
        fairpool.monkey_patch()
        import concurrent.futures as cf, faulthandler, sys
        from eventlet import patcher
        native = patcher.original("threading")
        sys.setswitchinterval(1e-4)
        faulthandler.dump_traceback_later(30, exit=True)  # a hang says where, then exits
        pool = fairpool.Pool(8, name="patched-waits")
        for r in range(3000):
            barrier = native.Barrier(8)
            def call(i, barrier=barrier):
                barrier.wait()
                return i
            futures = [pool.submit(call, i) for i in range(8)]
            if WHEN == "as_completed":
                done = list(cf.as_completed(futures, timeout=5))
            else:
                done, _ = cf.wait(futures, timeout=5)
            assert len(done) == 8, (r, len(done))
        print("all answered")
        """.replace("WHEN", repr(when)),
        timeout=80,
    )
    assert out.strip() == "all answered", out


# -- the future's own lock: fast paths and the Condition made on first use ---------------


@pytest.mark.timeout(60)
def test_base_class_waits_on_the_condition_made_late_are_woken_by_the_settling() -> None:
    """Future's own result() waits on its Condition, made on first use; the worker's
    settling (which holds the lock under it directly) must notify it, at every timing."""
    pool = fairpool.Pool(threads=2, name="late-condition")
    try:
        for i in range(300):
            gate = threading.Event()
            future = pool.submit(lambda g=gate, i=i: (g.wait(5), i)[1])
            got: list[Any] = []

            def wait_on_condition(f: Any = future, got: list[Any] = got) -> None:
                got.append(cf.Future.result(f, timeout=5))

            waiters = [threading.Thread(target=wait_on_condition) for _ in range(3)]
            for t in waiters:
                t.start()
            if i % 2:
                time.sleep(0.0005)  # some rounds: the waits are in; others: the settling races them
            gate.set()
            for t in waiters:
                t.join(10)
            assert got == [i, i, i], f"round {i}: Future.result() on the condition got {got}"
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_threads_asking_for_the_condition_at_once_get_one_over_the_futures_lock() -> None:
    future: Any = fairpool.Pool(threads=1, name="one-condition").submit(int)
    future.result(timeout=5)
    for _ in range(200):
        fresh: Any = type(future)()
        seen: list[Any] = []
        barrier = threading.Barrier(4)

        def ask(f: Any = fresh, barrier: threading.Barrier = barrier, seen: list[Any] = seen) -> None:
            barrier.wait(5)
            seen.append(f._condition)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len({id(c) for c in seen}) == 1, "two Conditions for one future: a wait could miss its notify"
        with seen[0]:  # the Condition is over the future's own lock: holding one holds the other
            assert fresh._fairpool_mutex._is_owned()


@pytest.mark.timeout(120)
def test_cancel_racing_the_start_gives_exactly_one_outcome_to_every_reader() -> None:
    """cancel() against a worker's start(): the call ran (and its result is read everywhere)
    or never ran (cancelled everywhere), never both, never neither; wait() and as_completed agree."""
    pool = fairpool.Pool(threads=2, name="cancel-start")
    ran: list[int] = []
    try:
        for i in range(2000):
            future = pool.submit(ran.append, i)
            if i % 3 == 0:
                time.sleep(0)  # let the worker start it, sometimes
            cancelled = future.cancel()
            done, _ = cf.wait([future], timeout=10)
            assert done == {future}, f"round {i}: wait() did not see the future done"
            assert list(cf.as_completed([future], timeout=10)) == [future]
            assert future.cancelled() is cancelled, f"round {i}: cancel() gave {cancelled}, cancelled() not"
            if cancelled:
                with pytest.raises(cf.CancelledError):
                    future.result(timeout=10)
                assert i not in ran, f"round {i}: a cancelled call ran"
            else:
                assert future.result(timeout=10) is None, f"round {i}: the call's outcome was lost"
                assert ran[-1] == i, f"round {i}: not cancelled, yet the call did not run"
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_an_exception_result_is_raised_to_every_reader_with_its_traceback() -> None:
    pool = fairpool.Pool(threads=2, name="exc-fast")
    try:
        futures = [pool.submit(int, "not a number") for _ in range(200)]
        for f in futures:
            with pytest.raises(ValueError, match="not a number"):
                f.result(timeout=10)
            assert isinstance(f.exception(timeout=0), ValueError)
            assert isinstance(cf.Future.exception(f, timeout=0), ValueError)
    finally:
        pool.shutdown(timeout=5)
