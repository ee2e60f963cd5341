"""Lanes in a live pool: a burst in one lane does not delay another lane."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import eventlet
import pytest

import fairpool
import fairpool.aio
from fairpool import _hooks

from .conftest import wait_until

T = TypeVar("T")


def _burst_then_one(policy: str) -> tuple[int, int]:
    """2 threads, 100 x 10 ms calls in lane "bulk", then one in lane "api".

    Returns (bulk calls finished before the api call was made, ... before it finished).
    """
    pool = fairpool.Pool(threads=2, name=policy, policy=policy)  # type: ignore[arg-type]
    finished: list[str] = []

    def bulk_call() -> None:
        with fairpool.lane("bulk"):
            pool.execute(time.sleep, 0.01)
        finished.append("bulk")

    try:
        bulk = [eventlet.spawn(bulk_call) for _ in range(100)]
        eventlet.sleep(0)
        wait_until(lambda: pool.statistics().queued_by_lane.get("bulk", 0) >= 90, what="the bulk burst")
        before = len(finished)
        with fairpool.lane("api"):
            pool.execute(time.sleep, 0.01)
        during = len(finished) - before
        for gt in bulk:
            gt.wait()
        return before, during
    finally:
        pool.shutdown(timeout=10)


def test_a_call_in_another_lane_overtakes_a_burst() -> None:
    _, during = _burst_then_one("fair")
    # With 2 workers, at most the two running bulk calls and one turn of "bulk" go first.
    assert during <= 4, f"{during} bulk calls finished while the api call waited"


def test_with_the_fifo_policy_the_same_call_waits_for_the_burst() -> None:
    before, during = _burst_then_one("fifo")
    assert during >= 90 - before, f"only {during} bulk calls finished first under FIFO"


def test_without_lanes_calls_run_in_arrival_order() -> None:
    pool = fairpool.Pool(threads=1, name="order")
    order: list[int] = []
    gate = threading.Event()
    try:
        first = eventlet.spawn(pool.execute, gate.wait, 5)
        wait_until(lambda: pool.statistics().busy == 1, what="the first call")
        gts = [eventlet.spawn(pool.execute, order.append, i) for i in range(20)]
        eventlet.sleep(0)
        gate.set()
        first.wait()
        for gt in gts:
            gt.wait()
        assert order == list(range(20))
    finally:
        gate.set()
        pool.shutdown(timeout=5)


def test_lane_weights_share_the_pool() -> None:
    pool = fairpool.Pool(threads=1, name="weights")
    order: list[str] = []
    gate = threading.Event()

    def call(lane: str, weight: int) -> None:
        with fairpool.lane(lane, weight=weight):
            pool.execute(order.append, lane)

    try:
        first = eventlet.spawn(pool.execute, gate.wait, 5)
        wait_until(lambda: pool.statistics().busy == 1, what="the first call")
        gts = [eventlet.spawn(call, "heavy", 3) for _ in range(6)]
        gts += [eventlet.spawn(call, "light", 1) for _ in range(3)]
        eventlet.sleep(0)
        gate.set()
        for gt in [first, *gts]:
            gt.wait()
        assert "".join(x[0] for x in order) == "hhhlhhhll", order
    finally:
        gate.set()
        pool.shutdown(timeout=5)


def test_lane_as_a_decorator_and_nested() -> None:
    seen: list[tuple[str, int] | None] = []

    @fairpool.lane("outer", weight=2)
    def work() -> None:
        seen.append(fairpool.current_lane())
        with fairpool.lane("inner"):
            seen.append(fairpool.current_lane())
        seen.append(fairpool.current_lane())

    work()
    seen.append(fairpool.current_lane())
    assert seen == [("outer", 2), ("inner", 1), ("outer", 2), None]


def test_one_lane_object_shared_by_green_threads() -> None:
    shared = fairpool.lane("shared")
    seen: list[object] = []

    def use() -> None:
        with shared:
            eventlet.sleep(0.001)
            seen.append(fairpool.current_lane())
        seen.append(fairpool.current_lane())

    for gt in [eventlet.spawn(use) for _ in range(5)]:
        gt.wait()
    assert seen.count(("shared", 1)) == 5 and seen.count(None) == 5


def test_lane_key_derives_the_lane_from_context() -> None:
    tenant = threading.local()
    pool = fairpool.Pool(threads=1, name="keyed", lane_key=lambda: getattr(tenant, "name", None))
    gate = threading.Event()
    try:
        first = eventlet.spawn(pool.execute, gate.wait, 5)
        wait_until(lambda: pool.statistics().busy == 1, what="the first call")

        def call_as(name: str) -> None:
            tenant.name = name
            pool.execute(int)

        gts = [eventlet.spawn(call_as, n) for n in ("t1", "t1", "t2")]
        eventlet.sleep(0)
        assert pool.statistics().queued_by_lane == {"t1": 2, "t2": 1}
        gate.set()
        for gt in [first, *gts]:
            gt.wait()
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("",), "name must be a non-empty string, got ''"),
        ((None,), "name must be a non-empty string, got None"),
        (("x", 0), "weight must be an int from 1 to 1000, got 0"),
        (("x", 1001), "weight must be an int from 1 to 1000, got 1001"),
        (("x", 2.5), "weight must be an int from 1 to 1000, got 2.5"),
    ],
)
def test_bad_lanes_are_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fairpool.lane(*args)


def test_lane_key_returning_a_bad_name_is_named() -> None:
    pool = fairpool.Pool(threads=1, name="badkey", lane_key=lambda: "")
    try:
        with pytest.raises(ValueError, match="the lane_key result must be a non-empty string"):
            pool.execute(int)
    finally:
        pool.shutdown(timeout=5)


def _run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` in a native thread of its own: under EVENTLET_HUB=asyncio this
    thread runs eventlet's asyncio loop already (tests/test_hubs.py runs this file so)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(asyncio.run(main))
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the event loop's thread did not finish"
    if errors:
        raise errors[0]
    return results[0]


class _LanesSeen(_hooks.PoolObserver):
    """Records the lane of every call the pools are handed."""

    def __init__(self) -> None:
        self.lanes: list[str] = []

    def call_submitted(self, call: _hooks.CallInfo) -> None:
        self.lanes.append(call.lane)


@pytest.fixture
def lanes_seen() -> Iterator[_LanesSeen]:
    observer = _LanesSeen()
    _hooks.add_observer(observer)
    yield observer
    _hooks.remove_observer(observer)


@pytest.mark.timeout(30)
def test_a_decorated_coroutine_runs_in_its_lane_across_awaits(lanes_seen: _LanesSeen) -> None:
    pool = fairpool.Pool(threads=2, name="alanes")

    @fairpool.lane("boot", weight=2)
    async def boot(x: int) -> int:
        """Boot it."""
        seen = [fairpool.current_lane()]
        await pool.run_sync(int)
        seen.append(fairpool.current_lane())
        await asyncio.to_thread(int)  # on the pool: fairpool.aio.install
        seen.append(fairpool.current_lane())
        await asyncio.sleep(0.001)
        seen.append(fairpool.current_lane())
        assert seen == [("boot", 2)] * 4, f"the coroutine lost its lane across awaits: {seen}"
        return x + 1

    async def other() -> list[object]:  # runs while boot() is suspended, in its own task
        seen = []
        for _ in range(5):
            seen.append(fairpool.current_lane())
            await asyncio.sleep(0.0005)
        return seen

    async def main() -> tuple[int, list[object], object]:
        fairpool.aio.install(pool=pool)
        result, others = await asyncio.gather(boot(41), other())
        return result, others, fairpool.current_lane()

    try:
        assert inspect.iscoroutinefunction(boot), "the decorated coroutine function is no longer one"
        assert (boot.__name__, boot.__doc__) == ("boot", "Boot it."), "functools.wraps metadata lost"
        result, others, after = _run_async(main())
        assert result == 42
        assert others == [None] * 5, f"another task saw the lane: {others}"
        assert after is None, "the lane leaked into the caller after the await"
        assert lanes_seen.lanes == ["boot", "boot"], f"the pool saw the calls in lanes {lanes_seen.lanes}"
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_a_decorated_coroutine_driven_by_hand_never_lends_its_lane_to_its_caller() -> None:
    inside: list[object] = []

    @fairpool.lane("boot")
    async def steps() -> str:
        for _ in range(3):
            inside.append(fairpool.current_lane())
            await asyncio.sleep(0)  # a bare yield to whoever drives it
        inside.append(fairpool.current_lane())
        return "done"

    coro = steps()
    seen = []
    try:
        while True:
            seen.append(fairpool.current_lane())
            coro.send(None)
    except StopIteration as stop:
        assert stop.value == "done"
    assert inside == [("boot", 1)] * 4, f"the coroutine lost its lane between its steps: {inside}"
    assert seen == [None] * 4, f"the caller saw the coroutine's lane between its steps: {seen}"


@pytest.mark.timeout(30)
def test_a_decorated_generator_runs_in_its_lane_only_while_it_runs(
    pool: fairpool.Pool, lanes_seen: _LanesSeen
) -> None:
    @fairpool.lane("audit")
    def audit(n: int) -> Iterator[tuple[object, int]]:
        """Audit them."""
        with fairpool.lane("inner"):  # a lane of its own across a yield is kept
            yield fairpool.current_lane(), pool.execute(int, "7")
        for i in range(n):
            received = yield fairpool.current_lane(), pool.execute(abs, -i)
            assert received in (None, "sent"), received
        return "finished"

    assert inspect.isgeneratorfunction(audit), "the decorated generator function is no longer one"
    assert (audit.__name__, audit.__doc__) == ("audit", "Audit them.")
    gen = audit(3)
    between = [fairpool.current_lane()]
    items = [next(gen)]
    between.append(fairpool.current_lane())
    with fairpool.lane("caller"):  # resumed from another lane: the generator still sees its own
        items.append(gen.send("sent"))
        between.append(fairpool.current_lane())
    items.append(next(gen))
    between.append(fairpool.current_lane())
    items.append(next(gen))
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "finished"
    assert items == [(("inner", 1), 7), (("audit", 1), 0), (("audit", 1), 1), (("audit", 1), 2)], items
    assert between == [None, None, ("caller", 1), None], f"the caller saw the generator's lane: {between}"
    assert lanes_seen.lanes == ["inner", "audit", "audit", "audit"], lanes_seen.lanes


@pytest.mark.timeout(30)
def test_a_decorated_generator_is_closed_and_thrown_into_in_its_lane() -> None:
    seen: list[object] = []

    @fairpool.lane("audit")
    def audit() -> Iterator[int]:
        try:
            yield 1
        except KeyError:
            seen.append(("caught", fairpool.current_lane()))
            yield 2
        finally:
            seen.append(("finally", fairpool.current_lane()))

    gen = audit()
    assert next(gen) == 1
    assert gen.throw(KeyError("k")) == 2
    gen.close()
    assert seen == [("caught", ("audit", 1)), ("finally", ("audit", 1))], seen
    assert fairpool.current_lane() is None
    # yield from a decorated generator: values, sends and the return value pass through.

    def outer() -> Iterator[int]:
        result = yield from audit()
        assert result is None

    assert list(outer()) == [1]


@pytest.mark.timeout(30)
def test_a_decorated_async_generator_runs_in_its_lane_only_while_it_runs(lanes_seen: _LanesSeen) -> None:
    pool = fairpool.Pool(threads=1, name="agen")
    closed: list[object] = []

    @fairpool.lane("stream")
    async def stream(n: int) -> AsyncIterator[tuple[object, int]]:
        try:
            for i in range(n):
                value = await pool.run_sync(abs, -i)
                yield fairpool.current_lane(), value
        finally:
            closed.append(fairpool.current_lane())

    async def main() -> tuple[list[object], list[object]]:
        items, between = [], []
        agen = stream(5)
        async for item in agen:
            between.append(fairpool.current_lane())
            items.append(item)
            if len(items) == 3:
                break
        await agen.aclose()
        return items, between

    try:
        assert inspect.isasyncgenfunction(stream)
        items, between = _run_async(main())
        assert items == [(("stream", 1), 0), (("stream", 1), 1), (("stream", 1), 2)], items
        assert between == [None] * 3, f"the consumer saw the generator's lane: {between}"
        assert closed == [("stream", 1)], f"the generator's finally ran in lane {closed}"
        assert lanes_seen.lanes == ["stream"] * 3, lanes_seen.lanes
    finally:
        pool.shutdown(timeout=5)
