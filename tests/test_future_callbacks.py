"""A future's done-callbacks: they run in the worker that answered the call, after its waiters.

Two promises of ``concurrent.futures`` that fairpool's futures broke:

* A worker running a future's done-callbacks is not idle: a call those callbacks
  submit is started by another worker (or a new one, up to the size) at once, as a
  submit from any other thread. The answering worker went idle first and was then
  the one woken for that call, so the call waited for the callbacks to return, a
  callback waiting on it timed out (or hung, with the caller's ``result()``).
* Waiters are released when the outcome is set, before the callbacks run:
  ``result()`` waited for every callback to return.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
import pytest

import fairpool

from .conftest import wait_until

ANSWER = 10.0  # seconds any answer may take under load before the test calls it a hang


def _warm_pool(threads: int, name: str) -> fairpool.Pool:
    pool = fairpool.Pool(threads, name=name, exit_timeout=0)
    gate = threading.Barrier(threads, timeout=ANSWER)
    for future in [pool.submit(gate.wait) for _ in range(threads)]:
        future.result(timeout=ANSWER)  # every worker started, and idle now
    return pool


MAKERS: dict[str, Callable[[], cf.Executor]] = {
    "Pool(4)": lambda: fairpool.Pool(4, name="cb4", exit_timeout=0),
    "Pool(4), 4 idle workers": lambda: _warm_pool(4, "cb4warm"),
    "Pool(2), 2 idle workers": lambda: _warm_pool(2, "cb2warm"),
    "FuturistExecutor(4)": lambda: fairpool.FuturistExecutor(max_workers=4),
}


@pytest.fixture(params=list(MAKERS))
def executor(request: pytest.FixtureRequest) -> Iterator[cf.Executor]:
    ex = MAKERS[request.param]()
    yield ex
    ex.shutdown(wait=False)


# -- a call submitted from a done-callback ------------------------------------------


@pytest.mark.timeout(60)
def test_a_call_submitted_by_a_done_callback_starts_while_the_callback_runs(executor: cf.Executor) -> None:
    started = threading.Event()
    seen: dict[str, bool] = {}

    def callback(_: cf.Future[Any]) -> None:
        executor.submit(started.set)  # not waited on: the callback goes on with its own work
        seen["started"] = started.wait(ANSWER)

    future = executor.submit(lambda: "step1")
    future.add_done_callback(callback)
    assert future.result(timeout=ANSWER) == "step1"
    assert started.wait(ANSWER), "the call a done-callback submitted never started"
    for _ in range(int(ANSWER * 100)):
        if "started" in seen:
            break
        threading.Event().wait(0.01)
    assert seen == {"started": True}, (
        "the call a done-callback submitted waited for the callback to return, other workers idle"
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout", [ANSWER, None], ids=["with a timeout", "without a timeout"])
def test_a_done_callback_that_waits_for_the_call_it_submitted_gets_it(
    executor: cf.Executor, timeout: float | None
) -> None:
    got: list[Any] = []
    answered = threading.Event()

    def callback(_: cf.Future[Any]) -> None:
        try:
            got.append(executor.submit(lambda: "step2").result(timeout=timeout))
        except cf.TimeoutError:
            got.append("TimeoutError")
        answered.set()

    future = executor.submit(lambda: "step1")
    future.add_done_callback(callback)
    assert future.result(timeout=ANSWER) == "step1", "result() waited for the done-callback"
    assert answered.wait(ANSWER), "the done-callback's wait on the call it submitted hung"
    assert got == ["step2"], f"the done-callback's wait got {got}: the call it submitted never ran"


@pytest.mark.timeout(60)
def test_without_any_timeout_the_chain_and_its_caller_are_answered() -> None:
    """finding_2_deadlock: the callback waits with no timeout, the caller too (in a thread: a hang fails).

    A guard: on the base commit helping already ran the call in the waiting worker; now a
    free worker may take it first, and either way each is answered once.
    """
    pool = fairpool.Pool(4, name="cbnotimeout", exit_timeout=0)
    got: list[Any] = []

    release = threading.Event()

    def caller() -> None:
        future = pool.submit(lambda: release.wait(ANSWER) and 1)
        future.add_done_callback(lambda _: got.append(pool.submit(lambda: 2).result()))
        release.set()  # the call returns after the callback was added: a worker runs it
        got.append(future.result())

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    thread.join(ANSWER)
    try:
        assert not thread.is_alive(), "f.result() hung: its done-callback waits for a call nobody started"
        for _ in range(int(ANSWER * 100)):
            if len(got) == 2:
                break
            threading.Event().wait(0.01)
        assert sorted(got) == [1, 2], f"answers: {got}"
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_on_a_pool_of_one_a_callback_s_wait_without_timeout_runs_the_call_itself() -> None:
    pool = fairpool.Pool(1, name="cb1", exit_timeout=0)
    got: list[Any] = []
    done = threading.Event()

    def callback(_: cf.Future[Any]) -> None:
        got.append(pool.submit(threading.get_ident).result())  # helping: the only worker runs it
        got.append(threading.get_ident())
        done.set()

    try:
        future = pool.submit(lambda: None)
        future.add_done_callback(callback)
        assert done.wait(ANSWER), "the callback's wait on a pool of one hung"
        assert got[0] == got[1], "the call was not run by the waiting worker itself"
    finally:
        pool.shutdown(wait=False)


# -- waiters are released before the callbacks run ----------------------------------


def _blocking_callback(entered: threading.Event, gate: threading.Event, left: threading.Event) -> Any:
    def callback(_: cf.Future[Any]) -> None:
        entered.set()
        gate.wait(3 * ANSWER)  # until the test sets it: longer than any wait of the test's
        left.set()

    return callback


@pytest.mark.timeout(60)
@pytest.mark.parametrize("outcome", ["result", "exception"])
@pytest.mark.parametrize("waiter", ["native", "native with a timeout", "green", "green with a timeout"])
def test_result_returns_while_a_done_callback_still_runs(
    executor: cf.Executor, waiter: str, outcome: str
) -> None:
    entered, gate, left = threading.Event(), threading.Event(), threading.Event()
    release = threading.Event()
    error = ValueError("the call's")

    def call() -> str:
        release.wait(ANSWER)
        if outcome == "exception":
            raise error
        return "value"

    future = executor.submit(call)
    future.add_done_callback(_blocking_callback(entered, gate, left))
    try:
        # With a timeout, the old wait returned once it passed, the callback still running:
        # only how long it took tells (a hang detector: the call itself returns at once).
        timeout = 2 * ANSWER if waiter.endswith("timeout") else None

        def wait() -> Any:
            exc = future.exception(timeout)
            return exc if exc is not None else future.result(timeout)

        got: Any = "no answer"
        t0 = time.monotonic()
        if waiter.startswith("green"):
            green = eventlet.spawn(wait)
            eventlet.sleep(0.01)  # waiting green before the call returns
            release.set()
            with eventlet.Timeout(3 * ANSWER, False):
                got = green.wait()
        else:
            release.set()
            got = wait()
        took = time.monotonic() - t0
        assert got == (error if outcome == "exception" else "value"), f"the {waiter} wait got {got!r}"
        assert took < ANSWER, f"the {waiter} wait took {took:.1f}s: it waited for the blocked done-callback"
        assert entered.wait(ANSWER), "the done-callback never ran"
        assert not left.is_set(), "result() returned only after the done-callback returned"
    finally:
        gate.set()
    assert left.wait(ANSWER), "the done-callback never returned"


@pytest.mark.timeout(60)
def test_concurrent_futures_wait_returns_while_a_done_callback_still_runs(executor: cf.Executor) -> None:
    entered, gate, left = threading.Event(), threading.Event(), threading.Event()
    future = executor.submit(lambda: 1)
    future.add_done_callback(_blocking_callback(entered, gate, left))
    try:
        done, _ = cf.wait([future], timeout=ANSWER)
        assert done == {future}
        assert not left.is_set(), "concurrent.futures.wait() returned only after the done-callback"
    finally:
        gate.set()


@pytest.mark.timeout(60)
def test_a_cancelled_future_s_waiters_are_released_before_its_callbacks_run() -> None:
    pool = fairpool.Pool(1, name="cbcancel", exit_timeout=0)
    hold = threading.Event()
    entered, gate, left = threading.Event(), threading.Event(), threading.Event()
    try:
        pool.submit(hold.wait, ANSWER)
        future = pool.submit(lambda: 1)  # queued behind the held call
        future.add_done_callback(_blocking_callback(entered, gate, left))
        canceller = threading.Thread(target=future.cancel, daemon=True)  # its callbacks run there
        canceller.start()
        assert entered.wait(ANSWER), "the done-callback never ran"
        done, _ = cf.wait([future], timeout=ANSWER)
        assert done == {future}, "concurrent.futures.wait() on a cancelled future waited for its callback"
        with pytest.raises(cf.CancelledError):
            future.result(timeout=ANSWER)
        assert not left.is_set()
    finally:
        gate.set()
        hold.set()
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_asyncio_wrap_future_resumes_while_a_done_callback_added_before_still_runs(
    executor: cf.Executor,
) -> None:
    entered, gate, left = threading.Event(), threading.Event(), threading.Event()
    release = threading.Event()
    future = executor.submit(release.wait, ANSWER)
    future.add_done_callback(_blocking_callback(entered, gate, left))  # added before asyncio's

    async def main() -> Any:
        wrapped = asyncio.wrap_future(future)
        release.set()
        return await asyncio.wait_for(wrapped, ANSWER)

    try:
        assert asyncio.run(main()) is True
        assert not left.is_set(), "the awaiting task resumed only after the done-callback returned"
    finally:
        gate.set()


# -- every callback runs once, in the worker, after the state is final --------------


@pytest.mark.timeout(60)
def test_every_callback_runs_once_in_the_worker_after_the_outcome_is_set(
    executor: cf.Executor, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[int, bool, Any, int]] = []
    release = threading.Event()

    def record(n: int) -> Callable[[cf.Future[Any]], None]:
        def callback(f: cf.Future[Any]) -> None:
            calls.append((n, f.done(), f.result(0), threading.get_ident()))

        return callback

    def failing(_: cf.Future[Any]) -> None:
        raise RuntimeError("a callback's own failure")

    future = executor.submit(lambda: (release.wait(ANSWER), threading.get_ident())[1])
    for n in range(3):
        future.add_done_callback(record(n))
    future.add_done_callback(failing)
    future.add_done_callback(record(3))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        release.set()
        worker = future.result(timeout=ANSWER)
        for _ in range(int(ANSWER * 100)):
            if len(calls) == 4:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.05)  # a second run of any callback would show now
    assert [c[0] for c in calls] == [0, 1, 2, 3], (
        f"callbacks ran {[c[0] for c in calls]}: each once, in order"
    )
    assert all(c[1] and c[2] == worker and c[3] == worker for c in calls), (
        f"not after the outcome, in the worker: {calls}"
    )
    assert any("exception calling callback" in r.getMessage() for r in caplog.records), (
        "the failure was not logged"
    )
    assert executor.submit(lambda: "still serving").result(timeout=ANSWER) == "still serving"


@pytest.mark.timeout(60)
def test_a_callback_raising_a_base_exception_lets_the_others_run_and_costs_no_worker() -> None:
    pool = fairpool.Pool(1, name="cbbase", exit_timeout=0)
    ran: list[str] = []

    def exiting(_: cf.Future[Any]) -> None:
        raise SystemExit("from a callback")

    try:
        future = pool.submit(lambda: None)
        future.add_done_callback(exiting)
        future.add_done_callback(lambda _: ran.append("after"))
        future.result(timeout=ANSWER)
        for _ in range(int(ANSWER * 100)):
            if ran:
                break
            threading.Event().wait(0.01)
        assert ran == ["after"], "a callback after one raising SystemExit did not run"
        assert pool.submit(lambda: "ok").result(timeout=ANSWER) == "ok", "the worker was lost"
        assert pool.statistics().worker_faults == 0
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(120)
def test_race_chains_of_callbacks_that_submit_are_each_answered_once() -> None:
    """Many callbacks submitting and waiting at once: a free worker or the waiting one (helping) runs
    each call, once. (Waits without a timeout: with one, every worker may wait in a callback, and
    nobody is left to run their calls, as with ThreadPoolExecutor.)"""
    pool = fairpool.Pool(3, name="cbrace", exit_timeout=0)
    answers: list[int] = []
    lock = threading.Lock()
    finished = threading.Semaphore(0)

    def callback(n: int) -> Callable[[cf.Future[Any]], None]:
        def run(_: cf.Future[Any]) -> None:
            got = pool.submit(lambda: n).result()
            with lock:
                answers.append(got)
            finished.release()

        return run

    try:
        futures = []
        for n in range(200):
            future = pool.submit(lambda: None)
            future.add_done_callback(callback(n))
            futures.append(future)
        for future in futures:
            future.result(timeout=ANSWER)
        for _ in range(200):
            assert finished.acquire(timeout=ANSWER), f"{len(answers)} of 200 callbacks got their answer"
        assert sorted(answers) == list(range(200))
        for _ in range(int(ANSWER * 100)):
            if pool.statistics().busy == 0:
                break
            threading.Event().wait(0.01)
        stats = pool.statistics()
        assert stats.busy == 0 and stats.completed == 400, f"accounting after the race: {stats}"
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_a_callback_added_after_the_worker_went_idle_still_frees_it_for_the_call_it_submits() -> None:
    """The race: a callback added between the worker's last look at the queue and the settling.

    An observer's ``call_answered`` runs in the worker after it went idle and before the
    future is settled: a callback it adds must still not leave the worker idle (LIFO: the
    first woken) while it runs.
    """
    from fairpool import _hooks

    pool = _warm_pool(2, "cblate")
    started = threading.Event()
    seen: list[bool] = []
    target: list[cf.Future[Any]] = []

    def callback(_: cf.Future[Any]) -> None:
        pool.submit(started.set)
        seen.append(started.wait(ANSWER))

    class AddsTheCallbackLate(_hooks.PoolObserver):
        def call_answered(self, call: _hooks.CallInfo, outcome: str) -> None:
            if target and call.pool == "cblate":
                target.pop().add_done_callback(callback)

    observer = AddsTheCallbackLate()
    gate = threading.Event()
    _hooks.add_observer(observer)
    try:
        future = pool.submit(gate.wait, ANSWER)
        target.append(future)
        gate.set()
        assert future.result(timeout=ANSWER) is True
        assert started.wait(ANSWER), "the call the late callback submitted never started"
        for _ in range(int(ANSWER * 100)):
            if seen:
                break
            threading.Event().wait(0.01)
        assert seen == [True], "a late-added callback's call waited for the callback, a worker idle"
    finally:
        _hooks.remove_observer(observer)
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
def test_a_helped_call_s_callbacks_run_once_in_the_helping_worker_after_its_outcome() -> None:
    pool = fairpool.Pool(1, name="cbhelped", exit_timeout=0)
    ran: list[tuple[int, bool]] = []

    def outer() -> tuple[int, int]:
        inner = pool.submit(lambda: 5)
        inner.add_done_callback(lambda f: ran.append((threading.get_ident(), f.done())))
        return inner.result(), threading.get_ident()  # helping: this worker runs inner

    try:
        value, worker = pool.submit(outer).result(timeout=ANSWER)
        assert value == 5
        assert ran == [(worker, True)], (
            f"the helped call's callback ran {ran}, not once in the helping worker"
        )
    finally:
        pool.shutdown(wait=False)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fairpool.Pool(2)", "ThreadPoolExecutor(2)"])
def test_a_callback_added_while_the_worker_still_runs_earlier_ones_runs_at_once_in_the_adding_thread(
    kind: str,
) -> None:
    # As concurrent.futures (checked against ThreadPoolExecutor here): once result() returned the
    # future is done, so a callback added then runs at once in the adding thread, ahead of a
    # callback added earlier that the worker has not reached yet (docs/api.md says so).
    executor: cf.Executor = (
        fairpool.Pool(2, name="order") if kind.startswith("fairpool") else cf.ThreadPoolExecutor(2)
    )
    try:
        order: list[str] = []
        first_runs, release = threading.Event(), threading.Event()
        added = threading.Event()
        future = executor.submit(lambda: added.wait(10) and 1)  # done only once both callbacks are added
        future.add_done_callback(lambda f: (order.append("cb1"), first_runs.set(), release.wait(10)))
        future.add_done_callback(lambda f: order.append("cb2"))
        added.set()
        assert future.result(timeout=10) == 1
        assert first_runs.wait(10), "the first callback never ran"
        future.add_done_callback(lambda f: order.append("cb3:" + threading.current_thread().name))
        assert order == ["cb1", "cb3:" + threading.current_thread().name], (
            f"{kind}: a callback added to a done future did not run at once in the adding thread: {order}"
        )
        release.set()
        wait_until(lambda: len(order) == 3, timeout=10, what="the second callback")
        assert order[2] == "cb2", f"{kind}: callbacks ran in the order {order}"
    finally:
        release.set()
        executor.shutdown(wait=True)
