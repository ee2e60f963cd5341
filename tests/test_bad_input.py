"""Bad input: a clear error naming the parameter and the value, raised where the mistake is made.

Other modules test the rest: pool arguments (test_lifecycle), sizes and
EVENTLET_THREADPOOL_SIZE (test_execute), lanes and weights (test_lanes),
locks and wrap_library (test_locks_and_libraries), trace paths
(test_trace), corrupt and truncated traces (test_locks_and_libraries),
hub-watch thresholds (test_hubwatch), exit_timeout and FAIRPOOL_EXIT_TIMEOUT
(test_exit).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

import fairpool
from fairpool import PoolClosed


@pytest.mark.parametrize("bad", [-1, -0.5])
def test_a_negative_shutdown_timeout_is_named(pool: fairpool.Pool, bad: float) -> None:
    with pytest.raises(ValueError, match=f"timeout must be a number >= 0 or None, got {bad!r}"):
        pool.shutdown(timeout=bad)
    assert not pool.closed, "a rejected shutdown must not half-close the pool"


@pytest.mark.parametrize("bad", [-1, 2.0, "3", True, None])
def test_a_bad_resize_is_named(pool: fairpool.Pool, bad: object) -> None:
    with pytest.raises(ValueError, match=f"threads must be an int >= 0, got {bad!r}"):
        pool.resize(bad)  # type: ignore[arg-type]
    assert pool.size == 4


def test_a_non_callable_autowrap_rule_is_named() -> None:
    with pytest.raises(TypeError, match="autowrap_rule must be callable or None, got 'yes'"):
        fairpool.Proxy(object(), autowrap_rule="yes")  # type: ignore[arg-type]


def test_submit_checks_what_execute_checks(pool: fairpool.Pool) -> None:
    with pytest.raises(TypeError, match="fn must be callable, got None"):
        pool.submit(None)  # type: ignore[arg-type]
    pool.shutdown()
    with pytest.raises(PoolClosed, match="pool 'test' is shut down"):
        pool.submit(int)


def test_a_worker_waiting_on_its_own_pool_runs_the_call_inline_instead_of_deadlocking() -> None:
    pool = fairpool.Pool(threads=1, name="self")
    try:
        # With one thread, waiting for a second call from inside the first would never end.
        def outer() -> tuple[str, str]:
            inner = pool.execute(lambda: threading.current_thread().name)
            return threading.current_thread().name, inner

        outer_name, inner_name = pool.execute(outer)
        assert outer_name == inner_name == "fairpool-self-0"

        # submit() from a worker queues the call (never runs it on the worker's stack):
        # the worker runs it once the call that submitted it returned.
        def submits() -> tuple[Future[str], bool]:
            future = pool.submit(lambda: threading.current_thread().name)
            return future, future.done()

        future, done_at_once = pool.execute(submits)
        assert not done_at_once, "submit() from a worker ran the call on the worker's own stack"
        assert future.result(10) == "fairpool-self-0"
    finally:
        pool.shutdown(timeout=5)


def test_a_bad_hub_watch_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fairpool import hubwatch

    monkeypatch.setenv("FAIRPOOL_HUB_WATCH", "soon")
    assert hubwatch._start_from_environment() is None  # a warning, not an error: the service runs on
    assert "FAIRPOOL_HUB_WATCH='soon' is not a number of seconds from 0.01 to 3600" in caplog.text


@pytest.mark.parametrize("bad", [float("inf"), 1e300, 0, -1, "60"])
def test_a_stats_interval_out_of_range_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match="stats_interval must be a number of seconds > 0 and <= 86400"):
        fairpool.Pool(threads=1, stats_interval=bad)  # type: ignore[arg-type]


def test_batch_scheduling_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="batch_scheduling must be True or False, got 'no'"):
        fairpool.Pool(threads=1, batch_scheduling="no")  # type: ignore[arg-type]


def test_a_pool_argument_that_is_not_a_pool_is_named() -> None:
    with pytest.raises(TypeError, match=r"pool must be a fairpool\.Pool or None, got 3"):
        fairpool.Proxy([], pool=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pool must be a fairpool\.Pool or None, got 'x'"):
        fairpool.wrap_library(threading, pool="x")  # type: ignore[arg-type]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("timeout", [float("inf"), 1e10])
def test_a_huge_shutdown_timeout_waits_like_none(timeout: float) -> None:
    pool = fairpool.Pool(threads=1, name="huge-timeout")
    future = pool.submit(lambda: "done")
    done: list[BaseException | None] = []

    def shut() -> None:
        try:
            pool.shutdown(timeout=timeout)
            done.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            done.append(exc)

    t = threading.Thread(target=shut)  # a native caller: it joins the workers with that timeout
    t.start()
    t.join(20)
    assert done == [None], f"shutdown(timeout={timeout}) from a native thread: {done}"
    assert future.result(0) == "done" and pool.closed
