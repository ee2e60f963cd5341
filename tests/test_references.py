"""Nothing of a finished call stays reachable from the pool, in any world.

Each test makes a call whose callable, argument, keyword argument and result
(or exception) support weak references, waits for its answer, drops its own
references, and checks after ``gc.collect()`` that every one of them is gone,
and that no ``Job`` of the call's lane is left. The pool stays up and idle
meanwhile: what an idle worker still holds is what is being checked.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import eventlet
import pytest

import fairpool
import fairpool.aio
from fairpool import _hooks
from fairpool._job import CANCELLED, Job

from .conftest import wait_until

_lanes = itertools.count()


class _Token:
    """Something a call takes or returns that supports weak references."""


class _Boom(Exception):
    pass


class _Call:
    """One call's callable, argument, keyword argument and result, and weak references to them."""

    def __init__(self, raises: bool = False) -> None:
        self.lane = f"refs-{next(_lanes)}"
        arg, kwarg, outcome = _Token(), _Token(), (_Boom("on purpose") if raises else _Token())

        def fn(a: _Token, *, k: _Token) -> _Token:
            local = (a, k)  # noqa: F841 - frame locals a traceback would keep
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        self.fn, self.arg, self.kwarg = fn, arg, kwarg
        self.refs: dict[str, weakref.ref[Any]] = {
            "the callable": weakref.ref(fn),
            "the argument": weakref.ref(arg),
            "the keyword argument": weakref.ref(kwarg),
            "the result" if not raises else "the exception": weakref.ref(outcome),
        }

    def parts(self) -> tuple[Callable[..., _Token], _Token, _Token]:
        """Hand the call's parts over (the test keeps no reference of its own)."""
        parts = self.fn, self.arg, self.kwarg
        del self.fn, self.arg, self.kwarg
        return parts

    def watch(self, what: str, obj: Any) -> None:
        self.refs[what] = weakref.ref(obj)

    def kept(self, jobs: bool = True) -> list[str]:
        """What is still alive, after a collection; waits a little for it to go.

        A waiter is answered before the answering worker is out of the code that
        answers it (a future's result() returns as soon as it is set): give the
        worker a moment to finish. What an idle worker keeps, it keeps for good.
        """
        deadline = time.monotonic() + 2.0
        while True:
            gc.collect()
            kept = [what for what, ref in self.refs.items() if ref() is not None]
            if jobs and any(type(o) is Job and o.lane == self.lane for o in gc.get_objects()):
                kept.append("its job")
            if not kept or time.monotonic() > deadline:
                return kept
            time.sleep(0.01)

    def assert_released(self) -> None:
        kept = self.kept()
        assert not kept, f"the pool still keeps {', '.join(kept)} of a finished call alive"
        jobs = [o for o in gc.get_objects() if type(o) is Job and o.lane == self.lane]
        assert not jobs, f"the pool still keeps the finished call's job: {jobs}"


@pytest.fixture
def pool2() -> Iterator[fairpool.Pool]:
    pool = fairpool.Pool(threads=2, name="refs")
    yield pool
    pool.shutdown(timeout=5)


def _submit_and_wait(pool: fairpool.Pool, call: _Call) -> None:
    fn, arg, kwarg = call.parts()
    with fairpool.lane(call.lane):
        future = pool.submit(fn, arg, k=kwarg)
    del fn, arg, kwarg
    call.watch("the future", future)
    future.exception(10)
    del future


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raises", [False, True], ids=["returned", "raised"])
def test_a_submitted_call_s_future_and_outcome_are_released(pool2: fairpool.Pool, raises: bool) -> None:
    call = _Call(raises)
    _submit_and_wait(pool2, call)
    wait_until(lambda: pool2.statistics().busy == 0, what="the worker to go idle")
    call.assert_released()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raises", [False, True], ids=["returned", "raised"])
def test_a_native_caller_s_call_is_released(pool2: fairpool.Pool, raises: bool) -> None:
    call = _Call(raises)

    def caller() -> None:
        fn, arg, kwarg = call.parts()
        with fairpool.lane(call.lane):
            try:
                pool2.execute(fn, arg, k=kwarg)
            except _Boom:
                pass

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(10)
    call.assert_released()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raises", [False, True], ids=["returned", "raised"])
def test_a_green_caller_s_call_and_the_green_thread_are_released(pool2: fairpool.Pool, raises: bool) -> None:
    # The green thread that made the call too: it ended, nothing of the pool's may keep it
    # (the first green caller on a hub made the hub's channel, whose listener kept it).
    call = _Call(raises)

    def caller() -> None:
        fn, arg, kwarg = call.parts()
        with fairpool.lane(call.lane):
            try:
                pool2.execute(fn, arg, k=kwarg)
            except _Boom:
                pass

    gt = eventlet.spawn(caller)
    gt.wait()
    call.watch("the green thread that made the call", gt)
    del gt
    eventlet.sleep(0)
    call.assert_released()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("raises", [False, True], ids=["returned", "raised"])
def test_a_run_sync_call_is_released(pool2: fairpool.Pool, raises: bool) -> None:
    call = _Call(raises)

    async def main() -> None:
        fn, arg, kwarg = call.parts()
        with fairpool.lane(call.lane):
            try:
                await pool2.run_sync(fn, arg, k=kwarg)
            except _Boom:
                pass

    asyncio.run(main())
    call.assert_released()


@pytest.mark.timeout(30)
def test_a_to_thread_call_is_released(pool2: fairpool.Pool) -> None:
    call = _Call()

    async def main() -> None:
        fairpool.aio.install(pool=pool2)
        fn, arg, kwarg = call.parts()
        with fairpool.lane(call.lane):
            await asyncio.to_thread(fn, arg, k=kwarg)

    asyncio.run(main())
    wait_until(lambda: pool2.statistics().busy == 0, what="the worker to go idle")
    call.assert_released()


@pytest.mark.timeout(30)
def test_an_observed_call_is_released(pool2: fairpool.Pool) -> None:
    # With an observer that runs each call in its caller's context: the worker's other path.
    class Watching(_hooks.PoolObserver):
        wants_context = True

    observer = Watching()
    _hooks.add_observer(observer)
    try:
        calls = [_Call(), _Call(raises=True)]
        for call in calls:
            _submit_and_wait(pool2, call)
        wait_until(lambda: pool2.statistics().busy == 0, what="the workers to go idle")
    finally:
        _hooks.remove_observer(observer)
    for call in calls:
        call.assert_released()


@pytest.mark.timeout(30)
def test_a_call_on_a_pool_of_size_zero_is_released() -> None:
    pool = fairpool.Pool(threads=0, name="refs0")
    try:
        call = _Call()
        with pytest.warns(RuntimeWarning, match="0 threads"):
            _submit_and_wait(pool, call)
        call.assert_released()
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["last", "first", "middle"])
def test_a_call_cancelled_while_queued_is_released_while_the_pool_is_busy(where: str) -> None:
    pool = fairpool.Pool(threads=1, name="refs1")
    gate = threading.Event()
    try:
        blocker = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the blocking call to start")
        call = _Call()
        fn, arg, kwarg = call.parts()
        with fairpool.lane(call.lane):
            before = pool.submit(int) if where != "first" else None
            future = pool.submit(fn, arg, k=kwarg)
            after = pool.submit(int) if where != "last" else None
        del fn, arg, kwarg
        call.watch("the future", future)
        assert future.cancel(), "the call should still be queued"
        del future
        kept = call.kept(jobs=False)  # the calls before and after it are in its lane
        assert not kept, f"the busy pool still keeps {', '.join(kept)} of a cancelled call alive"
        if where != "middle":  # in the middle, an empty record is skipped later (O(1) removal)
            jobs = [
                o for o in gc.get_objects() if type(o) is Job and o.lane == call.lane and o.state == CANCELLED
            ]
            assert not jobs, f"the busy pool still keeps the cancelled call's job: {jobs}"
        gate.set()
        blocker.result(10)
        for other in (before, after):
            if other is not None:
                other.result(10)
        del before, after
        call.assert_released()
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_a_future_whose_result_raised_is_freed_without_the_cycle_collector(pool2: fairpool.Pool) -> None:
    # result() raises the call's exception from its own frame: that frame must not keep the
    # future, or the future, its exception and the traceback form a cycle that only gc frees.
    future = pool2.submit(int, "not a number")
    future.exception(10)  # settled
    wait_until(lambda: pool2.statistics().busy == 0, what="the worker to go idle")
    gone = weakref.ref(future)
    gc.disable()
    try:
        with pytest.raises(ValueError):
            future.result()
        del future
        # The worker may still be on its way out of answering it (holding it for a moment).
        wait_until(lambda: gone() is None, timeout=2.0, what="the future freed (a cycle is freed only by gc)")
    finally:
        gc.enable()
