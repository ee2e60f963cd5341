"""fairpool from asyncio: awaitable calls, cancellation, lanes per task, and the loop's default executor."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import fairpool
import fairpool.aio


@pytest.fixture
def pool1() -> Iterator[fairpool.Pool]:
    pool = fairpool.Pool(threads=1, name="aio")
    yield pool
    pool.shutdown(timeout=5)


def _name() -> str:
    return threading.current_thread().name


@pytest.mark.timeout(30)
def test_run_sync_returns_the_result_or_raises_in_the_task(pool1: fairpool.Pool) -> None:
    async def main() -> tuple[str, str]:
        name = await pool1.run_sync(_name)
        with pytest.raises(ZeroDivisionError):
            await pool1.run_sync(divmod, 1, 0)
        default = await fairpool.run_sync(_name)
        return name, default

    name, default = asyncio.run(main())
    assert name.startswith("fairpool-aio-"), f"the call ran on {name}"
    assert default.startswith("fairpool-default-"), f"fairpool.run_sync ran on {default}"


@pytest.mark.timeout(30)
def test_the_loop_runs_other_tasks_while_a_call_waits(pool1: fairpool.Pool) -> None:
    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await pool1.run_sync(time.sleep, 0.3)
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10, "the event loop was blocked while the call ran"


def _cancel_a_queued_call(pool: fairpool.Pool, start: Callable[..., Awaitable[Any]]) -> list[str]:
    """Fill ``pool``'s one thread, queue a call through ``start(fn, *args)``, cancel its task; what ran."""
    gate = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.create_task(start(gate.wait, 10))
        while pool.statistics().busy == 0:
            await asyncio.sleep(0.001)
        queued = asyncio.create_task(start(ran.append, "queued"))
        while pool.statistics().queued == 0:
            await asyncio.sleep(0.001)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()
        assert await blocker is True
        assert await start(lambda: "after") == "after"

    try:
        asyncio.run(main())
    finally:
        gate.set()
    return ran


@pytest.mark.timeout(30)
def test_a_task_cancelled_while_its_call_is_queued_never_runs_it(pool1: fairpool.Pool) -> None:
    assert _cancel_a_queued_call(pool1, pool1.run_sync) == [], "the cancelled task's call ran"
    assert pool1.statistics().cancelled == 1


@pytest.mark.timeout(30)
def test_a_task_cancelled_while_its_call_runs_has_the_outcome_dropped(pool1: fairpool.Pool) -> None:
    gate = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(pool1.run_sync(gate.wait, 10))
        while pool1.statistics().busy == 0:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        assert await pool1.run_sync(lambda: "next") == "next"

    try:
        asyncio.run(main())
    finally:
        gate.set()
    assert pool1.statistics().abandoned == 1


@pytest.mark.timeout(30)
def test_a_task_cancelled_after_its_call_was_answered_is_counted_once(pool1: fairpool.Pool) -> None:
    """The call returns and is answered while the loop is blocked; then the task is cancelled.

    Its outcome never reaches the task: it is counted as abandoned, and only so.
    """
    started, gate = threading.Event(), threading.Event()

    def call() -> None:
        started.set()
        gate.wait(10)

    async def main() -> None:
        task = asyncio.create_task(pool1.run_sync(call))
        while not started.is_set():
            await asyncio.sleep(0.001)
        gate.set()  # from here on the loop is blocked until the cancel
        while pool1.statistics().completed == 0:  # answered: the loop has not resumed the task
            time.sleep(0.001)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = pool1.statistics()
    counted = (stats.completed, stats.failed, stats.cancelled, stats.abandoned, stats.closed)
    assert (stats.submitted, counted) == (1, (0, 0, 0, 1, 0)), (
        f"submitted {stats.submitted}; (completed, failed, cancelled, abandoned, closed) = {counted}"
    )


@pytest.mark.timeout(30)
def test_lanes_follow_each_tasks_context(pool1: fairpool.Pool) -> None:
    gate = threading.Event()
    order: list[str] = []

    async def bulk() -> None:
        with fairpool.lane("bulk"):
            await asyncio.gather(*(pool1.run_sync(order.append, f"bulk-{i}") for i in range(30)))

    async def interactive() -> None:
        with fairpool.lane("interactive"):
            await pool1.run_sync(order.append, "interactive")

    async def main() -> None:
        blocker = asyncio.create_task(pool1.run_sync(gate.wait, 10))
        while pool1.statistics().busy == 0:
            await asyncio.sleep(0.001)
        flood = asyncio.create_task(bulk())
        while pool1.statistics().queued < 30:
            await asyncio.sleep(0.001)
        one = asyncio.create_task(interactive())
        while pool1.statistics().queued < 31:
            await asyncio.sleep(0.001)
        gate.set()
        await asyncio.gather(blocker, flood, one)

    try:
        asyncio.run(main())
    finally:
        gate.set()
    position = order.index("interactive")
    assert position <= 1, f"the interactive task's call ran after {position} bulk calls: {order[:5]}"


@pytest.mark.timeout(30)
def test_install_makes_to_thread_and_run_in_executor_run_on_fairpool() -> None:
    async def main() -> tuple[str, str]:
        executor = fairpool.aio.install()
        assert isinstance(executor, fairpool.aio.DefaultExecutor)
        loop = asyncio.get_running_loop()
        with fairpool.lane("to-thread"):
            via_to_thread = await asyncio.to_thread(_name)
        via_executor = await loop.run_in_executor(None, _name)
        return via_to_thread, via_executor

    via_to_thread, via_executor = asyncio.run(main())
    assert via_to_thread.startswith("fairpool-default-"), via_to_thread
    assert via_executor.startswith("fairpool-default-"), via_executor
    # asyncio.run shut its default executor down; the shared default pool lives on.
    assert fairpool.execute(lambda: "still open") == "still open"
    assert fairpool.statistics().submitted >= 2


@pytest.mark.timeout(30)
def test_to_thread_cancelled_while_queued_never_runs(pool1: fairpool.Pool) -> None:
    def to_thread(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        fairpool.aio.install(pool=pool1)  # in the running loop, before each call: idempotent
        return asyncio.to_thread(fn, *args)

    assert _cancel_a_queued_call(pool1, to_thread) == [], "a cancelled to_thread call ran"
    assert not pool1.closed, "asyncio.run shut down a pool the executor does not own"
    assert pool1.statistics().cancelled == 1


def test_the_default_executor_checks_its_arguments_and_refuses_calls_once_shut_down() -> None:
    with pytest.raises(TypeError, match=r"pool must be a fairpool\.Pool or None, got 5"):
        fairpool.aio.DefaultExecutor(pool=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be an int >= 1, got 0"):
        fairpool.aio.DefaultExecutor(threads=0)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match=r"pool must be a fairpool\.Pool or None, got 5"):
            fairpool.aio.install(loop, pool=5)  # type: ignore[arg-type]
    finally:
        loop.close()
    shared = fairpool.Pool(threads=1, name="shared")
    executor = fairpool.aio.DefaultExecutor(shared)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="was shut down"):
        executor.submit(int)
    assert not shared.closed and shared.submit(int).result(timeout=5) == 0
    shared.shutdown()
