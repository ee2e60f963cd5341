"""Done-callbacks that submit: a chain of steps runs as a loop, never as a recursion.

Each step's future has a done-callback that submits the next step. Callbacks
run in the thread that settles the future (a worker; the submitting thread on
a pool of size 0; the thread adding the callback to a future already done).
A submit from a worker that ran the call on the worker's own stack nested each
step inside the last, until RecursionError (swallowed and logged by
concurrent.futures: the chain stopped, its waiter hung).
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

import eventlet
import pytest

import fairpool

from .conftest import wait_until

STEPS = 2000
#: Frames a step's callback may have beneath it. A recursion has one level per step.
MAX_DEPTH = 200


def _depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


class _Chain:
    """A chain of STEPS calls, each submitted by the previous one's done-callback."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.futures: list[Future[int]] = []
        self.done = threading.Event()
        self.deepest = 0
        self.error: BaseException | None = None

    def submit(self, i: int) -> None:
        try:
            future = self.executor.submit(int, i)
        except BaseException as exc:  # reported by check()
            self.error = exc
            self.done.set()
            raise
        self.futures.append(future)
        future.add_done_callback(lambda f: self.step_done(i))

    def step_done(self, i: int) -> None:
        self.deepest = max(self.deepest, _depth())
        if i + 1 < STEPS:
            self.submit(i + 1)
        else:
            self.done.set()

    def check(self) -> None:
        assert self.error is None, f"a step's submit raised {self.error!r}"
        assert self.done.is_set(), f"the chain stopped at step {len(self.futures)} of {STEPS}"
        unanswered = [i for i, f in enumerate(self.futures) if not f.done()]
        assert not unanswered, f"steps {unanswered[:5]} were never answered"
        results = [f.result() for f in self.futures]
        assert results == list(range(STEPS)), "a step's future has another step's result"
        assert self.deepest < MAX_DEPTH, f"the chain recursed: a callback ran {self.deepest} frames deep"


_EXECUTORS: dict[str, Callable[[], Executor]] = {
    "Pool(2)": lambda: fairpool.Pool(2, name="chain"),
    "Pool(1)": lambda: fairpool.Pool(1, name="chain"),
    "Pool(0)": lambda: fairpool.Pool(0, name="chain"),
    "FuturistExecutor(2)": lambda: fairpool.FuturistExecutor(2),
}


@pytest.fixture(params=list(_EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # size 0: every call inline
        ex = _EXECUTORS[request.param]()
        yield ex
    ex.shutdown(wait=True, cancel_futures=True)


def _no_callback_errors(caplog: pytest.LogCaptureFixture) -> None:
    logged = [r.getMessage() for r in caplog.records if r.name == "concurrent.futures"]
    assert not logged, f"a done-callback raised: {logged[:3]}"


@pytest.mark.timeout(60)
def test_a_chain_started_by_a_native_thread_completes(
    executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "concurrent.futures")
    chain = _Chain(executor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        starter = threading.Thread(target=chain.submit, args=(0,))
        starter.start()
        starter.join(30)
        chain.done.wait(30)
    chain.check()
    _no_callback_errors(caplog)


@pytest.mark.timeout(60)
def test_a_chain_started_by_a_green_thread_completes(
    executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "concurrent.futures")
    chain = _Chain(executor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eventlet.spawn(chain.submit, 0).wait()
    wait_until(chain.done.is_set, timeout=30, what=f"the chain's end (at step {len(chain.futures)})")
    chain.check()
    _no_callback_errors(caplog)


@pytest.mark.timeout(60)
def test_a_done_callback_on_a_pool_of_size_zero_can_wait_for_what_it_submits() -> None:
    # Inside a done-callback a submit's future is settled once the callback returns;
    # waiting on it there must not wait for itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pool = fairpool.Pool(0, name="chain0")
        seen: list[Any] = []
        first = pool.submit(int, 1)
        first.add_done_callback(lambda f: seen.append(pool.submit(lambda: f.result() + 1).result(timeout=5)))
    assert seen == [2], f"the callback saw {seen}"
    pool.shutdown()


@pytest.mark.timeout(60)
def test_submit_from_a_worker_queues_the_call_and_the_worker_runs_it_after() -> None:
    pool = fairpool.Pool(1, name="chain1")
    try:
        order: list[str] = []

        def outer() -> Future[None]:
            inner = pool.submit(order.append, "inner")
            order.append("outer returns")
            return inner

        pool.execute(outer).result(10)
        assert order == ["outer returns", "inner"], f"submit() from a worker ran the call nested: {order}"
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_a_done_callback_added_to_a_done_future_runs_at_once_when_not_deeply_nested() -> None:
    # As concurrent.futures: code that adds a callback to a done future, then waits for
    # what the callback does, keeps working (only a chain past MAX_NESTED is deferred).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pool = fairpool.Pool(0, name="chain0")
        done_already = pool.submit(int, 7)
        seen: list[object] = []

        def callback(_f: Future[int]) -> None:
            ran = threading.Event()
            done_already.add_done_callback(lambda f: ran.set())
            seen.append(ran.wait(5))

        pool.submit(int, 1).add_done_callback(callback)
    assert seen == [True], "a callback added to a done future inside another callback was deferred"
    pool.shutdown()


def _nested_waits(pool: fairpool.Pool, wait: Callable[[Future[int]], object], depth: int) -> list[object]:
    """Callbacks nested ``depth`` deep on ``pool``, each submitting a call and waiting on its future."""
    seen: list[object] = []

    def callback(_f: Future[int]) -> None:
        n = len(seen) + 1
        seen.append(None)
        nxt = pool.submit(int, n)
        if n < depth:
            nxt.add_done_callback(callback)
        seen[n - 1] = wait(nxt)

    pool.submit(int, 0).add_done_callback(callback)
    return seen


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["wait", "as_completed", "exception", "result"])
def test_on_a_pool_of_size_zero_a_wait_deep_in_callbacks_settles_the_deferred_future(how: str) -> None:
    # Past MAX_NESTED nested settlings, a submit's future is deferred to the outermost settling,
    # which cannot return while a callback waits on it: cf.wait() (no timeout) hung forever and
    # as_completed() timed out. Every wait must settle it at once.
    import concurrent.futures as cf

    from fairpool._waiters import MAX_NESTED

    waits: dict[str, Callable[[Future[int]], object]] = {
        "wait": lambda f: len(cf.wait([f], timeout=10).done),
        "as_completed": lambda f: [g.result() for g in cf.as_completed([f], timeout=10)] and 1,
        "exception": lambda f: f.exception(timeout=10) is None and 1,
        "result": lambda f: f.result(timeout=10) >= 0 and 1,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pool = fairpool.Pool(0, name="zero")
    try:
        seen = _nested_waits(pool, waits[how], MAX_NESTED + 4)
    except cf.TimeoutError:
        pytest.fail(
            f"{how}() on a deferred future deep in callbacks waited for the outermost, which waited on it"
        )
    finally:
        pool.shutdown()
    assert seen == [1] * (MAX_NESTED + 4), f"{how}() did not see each deferred future done: {seen}"


@pytest.mark.timeout(60)
def test_on_a_pool_of_size_zero_concurrent_futures_wait_without_timeout_settles_the_deferred_future() -> None:
    # The hostile review's hang: cf.wait() without a timeout never returned at depth MAX_NESTED.
    import concurrent.futures as cf

    from fairpool._waiters import MAX_NESTED

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pool = fairpool.Pool(0, name="zero")
    result: list[list[object]] = []
    runner = threading.Thread(
        target=lambda: result.append(_nested_waits(pool, lambda f: len(cf.wait([f]).done), MAX_NESTED + 4)),
        daemon=True,
    )
    runner.start()
    runner.join(15)
    pool.shutdown()
    assert not runner.is_alive(), "concurrent.futures.wait() without a timeout hung on a deferred future"
    assert result == [[1] * (MAX_NESTED + 4)], f"cf.wait() did not see each deferred future done: {result}"


@pytest.mark.timeout(60)
def test_on_a_pool_with_workers_a_callback_added_to_a_done_future_runs_at_once_at_any_depth() -> None:
    # As concurrent.futures: the nesting bound is only a size-0 pool's. On Pool(2) a callback added
    # to a done future 9 deep was deferred to the outermost callback, which waited for it: forever.
    from fairpool._waiters import MAX_NESTED

    pool = fairpool.Pool(2, name="deep")
    try:
        done = pool.submit(int)
        done.result(timeout=10)
        reached: list[int] = []

        def nest(depth: int) -> None:
            reached.append(depth)
            if depth >= MAX_NESTED + 4:
                return
            ran = threading.Event()
            done.add_done_callback(lambda f: (nest(depth + 1), ran.set()))
            assert ran.wait(5), f"a callback added to a done future {depth + 1} deep did not run at once"

        pool.submit(nest, 1).result(timeout=30)
        assert reached == list(range(1, MAX_NESTED + 5)), f"nested callbacks ran at depths {reached}"
    finally:
        pool.shutdown(timeout=5)
