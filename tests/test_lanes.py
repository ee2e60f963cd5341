"""Lanes in a live pool: a burst in one lane does not delay another lane."""

from __future__ import annotations

import threading
import time

import eventlet
import pytest

import fairpool

from .conftest import wait_until


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
