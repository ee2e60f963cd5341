"""fairpool.FuturistExecutor against futurist's own executor tests (futurist ships them in its wheel)."""

from __future__ import annotations

import threading
import time

import pytest

import fairpool

theirs = pytest.importorskip("futurist.tests.test_executors", reason="needs futurist, oslotest")
futurist = pytest.importorskip("futurist")
rejection = pytest.importorskip("futurist.rejection")


class TestFuturistsExecutorTestsOnFairpool(theirs.TestExecutors):  # type: ignore[misc]
    """Every test futurist runs against its own ThreadPoolExecutor, on fairpool."""

    # pytest runs each test once, without testscenarios: the one scenario is set on the class.
    scenarios: list[object] = []
    executor_cls = fairpool.FuturistExecutor
    restartable = False
    executor_kwargs: dict[str, object] = {}


class TestFuturistsRejectionTestOnFairpool(theirs.TestRejection):  # type: ignore[misc]
    """futurist's check_and_reject hook: 1 worker plus 1 waiting call, then RejectedSubmission."""

    scenarios: list[object] = []
    executor_cls = fairpool.FuturistExecutor
    executor_kwargs = {"check_and_reject": rejection.reject_when_reached(1), "max_workers": 1}
    event_cls = threading.Event


def test_statistics_are_futurists_and_the_pools_figures_stay_reachable() -> None:
    executor = fairpool.FuturistExecutor(max_workers=2, stats_interval=60)
    try:
        executor.submit(divmod, 1, 0).exception(timeout=5)
        executor.submit(int).result(timeout=5)
        stats = executor.statistics
        assert isinstance(stats, futurist.ExecutorStatistics)
        assert (stats.executed, stats.failures, stats.cancelled) == (2, 1, 0)
        assert executor.pool_statistics().completed == 1
        assert executor.alive
    finally:
        executor.shutdown()
    assert not executor.alive
    with pytest.raises(RuntimeError):
        executor.submit(int)


@pytest.mark.timeout(30)
def test_every_cancelled_future_is_counted_once_whoever_cancels_it() -> None:
    executor = fairpool.FuturistExecutor(max_workers=1)
    gate = threading.Event()
    try:
        blocker = executor.submit(gate.wait, 10)
        started = time.monotonic()
        while executor.pool_statistics().busy != 1:
            assert time.monotonic() - started < 10, "the blocking call never started"
            time.sleep(0.001)
        queued = [executor.submit(int, i) for i in range(6)]
        assert queued[0].cancel(), "the first queued call should still be cancellable"
        shutdown = threading.Thread(target=executor.shutdown, kwargs={"cancel_futures": True})
        shutdown.start()
        started = time.monotonic()
        while not all(f.cancelled() for f in queued):
            assert time.monotonic() - started < 10, "shutdown(cancel_futures=True) cancelled too few"
            time.sleep(0.001)
        gate.set()
        shutdown.join(10)
        assert blocker.result(0) is True
        stats = executor.statistics
        assert stats.cancelled == 6, f"6 futures were cancelled (1 by its caller, 5 by the shutdown): {stats}"
        assert (stats.executed, stats.failures) == (1, 0), stats
    finally:
        gate.set()
        executor.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": 0}, "max_workers must be an int >= 1 or None, got 0"),
        ({"check_and_reject": 5}, "check_and_reject must be callable or None, got 5"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        fairpool.FuturistExecutor(**kwargs)  # type: ignore[arg-type]


def test_max_workers_and_threads_together_are_refused() -> None:
    with pytest.raises(TypeError, match="give max_workers or threads, not both"):
        fairpool.FuturistExecutor(max_workers=2, threads=3)
