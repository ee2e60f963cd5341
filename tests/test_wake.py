"""Waking workers: at most WAKE_AHEAD on their way at once, and never a worker idle while calls wait."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import QueueFull
from fairpool._core import WAKE_AHEAD

from .conftest import wait_until


@contextmanager
def _holding_the_gil() -> Iterator[None]:
    """Keep this thread on the GIL for up to 5 s unless it blocks: woken workers cannot move."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _start_all(pool: fairpool.Pool, n: int) -> None:
    """Start ``n`` workers: ``n`` calls that must all run at once (each waits for the others)."""
    barrier = threading.Barrier(n)
    futures = [pool.submit(barrier.wait, 10) for _ in range(n)]
    for f in futures:
        f.result(timeout=20)
    wait_until(lambda: len(pool._core.workers.idle) == n, timeout=10, what=f"{n} idle workers")


@pytest.mark.timeout(60)
def test_a_burst_of_calls_wakes_at_most_wake_ahead_idle_workers() -> None:
    """Ten calls queued at once on twenty idle workers wake WAKE_AHEAD of them, not ten."""
    pool = fairpool.Pool(20, name="burst")
    try:
        _start_all(pool, 20)
        with _holding_the_gil():
            futures = [pool.submit(int, i) for i in range(10)]
            idle_after = len(pool._core.workers.idle)
            coming = pool._core.workers.coming
        assert [f.result(timeout=10) for f in futures] == list(range(10)), "a call of the burst was lost"
    finally:
        pool.shutdown(timeout=5)
    assert 1 <= 20 - idle_after <= WAKE_AHEAD, (
        f"a burst of 10 calls woke {20 - idle_after} of 20 idle workers (at most {WAKE_AHEAD} expected)"
    )
    assert coming == 20 - idle_after, f"{coming} workers counted as coming, {20 - idle_after} woken"


@pytest.mark.timeout(60)
def test_a_bounded_queue_still_wakes_a_worker_per_call_and_refuses_none() -> None:
    """With max_queue, each call a worker is woken for is not counted against the bound."""
    pool = fairpool.Pool(20, name="bounded", max_queue=2, on_full="raise")
    try:
        _start_all(pool, 20)
        with _holding_the_gil():
            try:
                futures = [pool.submit(int, i) for i in range(15)]
            except QueueFull as exc:
                raise AssertionError(f"a call was refused while idle workers could take it: {exc}") from None
        assert [f.result(timeout=10) for f in futures] == list(range(15))
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("threads", [3, 20])
@pytest.mark.parametrize("stuck", [0, 1], ids=["none-stuck", "one-stuck"])
def test_no_worker_idles_while_calls_wait(threads: int, stuck: int) -> None:
    """Calls that can only finish all together (a barrier) finish: each worker back for a call
    wakes the next while calls wait, even while another worker is stuck in a long call."""
    pool = fairpool.Pool(threads, name="chain")
    release = threading.Event()
    try:
        blocked = [pool.submit(release.wait, 30) for _ in range(stuck)]
        for _ in range(3):  # from cold, then from idle workers
            n = threads - stuck
            barrier = threading.Barrier(n)
            futures = [pool.submit(barrier.wait, 15) for _ in range(n)]
            for f in futures:
                try:
                    f.result(timeout=30)
                except threading.BrokenBarrierError:
                    raise AssertionError(
                        f"{n} calls that must run at once did not: {pool.statistics()}"
                    ) from None
        release.set()
        assert all(f.result(timeout=10) for f in blocked)
    finally:
        release.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(120)
def test_green_callers_all_answered_while_fewer_workers_are_woken() -> None:
    """200 green callers of short calls on 20 threads: every caller gets its own answer."""
    pool = fairpool.Pool(20, name="green-chain")

    def caller(i: int) -> list[Any]:
        return [pool.execute(lambda i=i, k=k: (i, k)) for k in range(50)]

    try:
        got = [gt.wait() for gt in [eventlet.spawn(caller, i) for i in range(200)]]
    finally:
        pool.shutdown(timeout=5)
    for i, answers in enumerate(got):
        assert answers == [(i, k) for k in range(50)], f"caller {i} got another call's answer"


def _pair(i: int, k: int, sleep: float) -> tuple[int, int]:
    if sleep:
        time.sleep(sleep)
    return i, k


@pytest.mark.timeout(120)
def test_callers_resizes_and_cancels_racing_the_wake_chain_answer_each_call_once() -> None:
    """Native callers, futures cancelled at random, resizes between 1 and 20: each call is answered
    exactly once, with its own answer, and the queue drains."""
    pool = fairpool.Pool(8, name="racing")
    rng = random.Random(20)
    stop = threading.Event()
    wrong: list[str] = []
    done = [0] * 8

    def caller(i: int) -> None:
        r = random.Random(i)
        k = 0
        while not stop.is_set():
            k += 1
            sleep = r.choice([0.0, 0.0, 0.0001, 0.001])
            futures: list[tuple[int, Future[tuple[int, int]]]] = []
            for j in range(r.randint(1, 6)):
                futures.append((k * 10 + j, pool.submit(_pair, i, k * 10 + j, sleep)))
            for _key, f in futures:
                if r.random() < 0.2:
                    f.cancel()
            for key, f in futures:
                try:
                    got = f.result(timeout=20)
                except CancelledError:
                    continue
                except TimeoutError:
                    wrong.append(f"caller {i}: call {key} never answered: {pool.statistics()}")
                    return
                if got != (i, key):
                    wrong.append(f"caller {i}: call {key} got {got!r}")
            done[i] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch often: more interleavings
    callers = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(8)]
    try:
        for t in callers:
            t.start()
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not wrong:
            pool.resize(rng.randint(1, 20))
            time.sleep(rng.choice([0.0005, 0.002, 0.01]))
        pool.resize(8)
        stop.set()
        for t in callers:
            t.join(30)
            assert not t.is_alive(), f"a caller is stuck: {pool.statistics()}"
    finally:
        stop.set()
        sys.setswitchinterval(old)
    stats = pool.statistics()
    pool.shutdown(timeout=5)
    assert not wrong, wrong[:5]
    assert all(done), f"a caller never finished a round: {done}"
    assert stats.queued == 0, f"calls left in the queue: {stats}"
