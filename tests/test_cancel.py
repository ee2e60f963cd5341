"""Cancellation: a caller that gives up never has its queued call run."""

from __future__ import annotations

import concurrent.futures
import gc
import threading
import weakref

import eventlet
import pytest
from greenlet import GreenletExit

import fairpool

from .conftest import wait_until


@pytest.fixture
def one_thread() -> fairpool.Pool:
    pool = fairpool.Pool(threads=1, name="one")
    yield pool
    pool.shutdown(timeout=5)


def _occupy(pool: fairpool.Pool, gate: threading.Event) -> eventlet.greenthread.GreenThread:
    busy = eventlet.spawn(pool.execute, gate.wait, 10)
    wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
    return busy


def test_a_timed_out_queued_call_never_runs(one_thread: fairpool.Pool, gate: threading.Event) -> None:
    ran: list[str] = []
    busy = _occupy(one_thread, gate)
    with pytest.raises(eventlet.Timeout):
        with eventlet.Timeout(0.05):
            one_thread.execute(ran.append, "should not run")
    gate.set()
    busy.wait()
    one_thread.execute(int)  # the queue has been worked through
    assert ran == []
    stats = one_thread.statistics()
    assert stats.cancelled == 1 and stats.queued == 0, stats


def test_a_killed_caller_s_queued_call_never_runs(one_thread: fairpool.Pool, gate: threading.Event) -> None:
    ran: list[str] = []
    busy = _occupy(one_thread, gate)
    caller = eventlet.spawn(one_thread.execute, ran.append, "should not run")
    eventlet.sleep(0)
    assert one_thread.statistics().queued == 1
    caller.kill()
    with pytest.raises(GreenletExit):
        caller.wait()
    assert one_thread.statistics().queued == 0
    gate.set()
    busy.wait()
    one_thread.execute(int)
    assert ran == [] and one_thread.statistics().cancelled == 1


class _Result:
    pass


def test_a_running_call_s_result_is_dropped_when_its_caller_gives_up(one_thread: fairpool.Pool) -> None:
    gate = threading.Event()
    refs: list[weakref.ref[_Result]] = []

    def slow() -> _Result:
        gate.wait(10)
        result = _Result()
        refs.append(weakref.ref(result))
        return result

    with pytest.raises(eventlet.Timeout):
        with eventlet.Timeout(0.05):
            one_thread.execute(slow)
    assert one_thread.statistics().abandoned == 1
    gate.set()
    wait_until(lambda: one_thread.statistics().busy == 0, what="the abandoned call to finish")
    one_thread.execute(int)  # lets the hub drain anything handed back
    gc.collect()
    assert refs and refs[0]() is None, "the abandoned call's result was kept"


def test_a_caller_that_gives_up_does_not_get_a_later_switch(one_thread: fairpool.Pool) -> None:
    # The abandoned result must not wake the green thread later, in some other wait.
    gate = threading.Event()
    with pytest.raises(eventlet.Timeout):
        with eventlet.Timeout(0.02):
            one_thread.execute(gate.wait, 10)
    ev = eventlet.event.Event()
    eventlet.spawn_after(0.1, ev.send, "woken properly")
    gate.set()
    assert ev.wait() == "woken properly"


def test_a_cancelled_future_never_runs(one_thread: fairpool.Pool, gate: threading.Event) -> None:
    ran: list[int] = []
    busy = one_thread.submit(gate.wait, 10)
    wait_until(lambda: one_thread.statistics().busy == 1, what="the worker to be busy")
    queued = one_thread.submit(ran.append, 1)
    assert queued.cancel()
    assert not busy.cancel(), "a running call cannot be cancelled"
    gate.set()
    assert busy.result(5) is True
    assert one_thread.submit(lambda: "after").result(5) == "after"
    assert ran == [] and one_thread.statistics().cancelled == 1
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(0)


def test_futures_from_native_threads_carry_results_and_errors(pool: fairpool.Pool) -> None:
    out: dict[str, object] = {}

    def native() -> None:
        out["ok"] = pool.submit(lambda: 42).result(5)
        out["err"] = type(pool.submit(lambda: 1 / 0).exception(5))

    t = threading.Thread(target=native)
    t.start()
    t.join(10)
    assert out == {"ok": 42, "err": ZeroDivisionError}
