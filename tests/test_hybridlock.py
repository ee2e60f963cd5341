"""HybridRLock, and logging from pool threads under eventlet.monkey_patch()."""

from __future__ import annotations

import logging
import threading
import time

import eventlet
import pytest

import fairpool
from fairpool import HybridRLock

from .conftest import run_script


def test_green_and_native_threads_exclude_each_other() -> None:
    lock = HybridRLock()
    inside = 0
    peak = 0
    count = 0

    def critical(sleep: object) -> None:
        nonlocal inside, peak, count
        for _ in range(50):
            with lock:
                inside += 1
                peak = max(peak, inside)
                sleep(0.0002)  # type: ignore[operator]
                count += 1
                inside -= 1

    natives = [threading.Thread(target=critical, args=(time.sleep,)) for _ in range(4)]
    for t in natives:
        t.start()
    greens = [eventlet.spawn(critical, eventlet.sleep) for _ in range(4)]
    for gt in greens:
        gt.wait()
    for t in natives:
        t.join(30)
    assert peak == 1, f"{peak} holders at once"
    assert count == 400
    assert not lock.locked()


def test_it_is_reentrant_and_only_the_owner_releases() -> None:
    lock = HybridRLock()
    with lock, lock:
        assert lock.locked()
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        lock.release()
    lock.acquire()
    errors = []

    def other() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert len(errors) == 1
    lock.release()


def test_a_native_waiter_times_out_and_a_green_waiter_can_be_timed_out() -> None:
    lock = HybridRLock()
    lock.acquire()
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(lock.acquire(True, 0.05)))
    t.start()
    t.join(5)
    assert results == [False]
    assert lock.acquire(False) is True  # re-entrant for the owner
    lock.release()

    holder = eventlet.spawn(lambda: (lock.acquire(), eventlet.sleep(10)))
    lock.release()  # the main greenlet lets go; the green thread takes it
    eventlet.sleep(0.01)
    with pytest.raises(eventlet.Timeout):
        with eventlet.Timeout(0.05):
            lock.acquire()
    holder.kill()


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = HybridRLock()
    order: list[int] = []
    lock.acquire()

    def take(i: int) -> None:
        with lock:
            order.append(i)

    gts = []
    for i in range(5):
        gts.append(eventlet.spawn(take, i))
        eventlet.sleep(0)
    lock.release()
    for gt in gts:
        gt.wait()
    assert order == [0, 1, 2, 3, 4]


def test_patch_logging_gives_every_handler_a_hybrid_lock() -> None:
    existing = logging.StreamHandler()
    try:
        fairpool.patch_logging()
        fairpool.patch_logging()  # idempotent
        assert isinstance(existing.lock, HybridRLock)
        assert isinstance(logging.StreamHandler().lock, HybridRLock)
        assert isinstance(logging._lock, HybridRLock)  # type: ignore[attr-defined]
        logging.getLogger("fairpool.test").warning("still works")
    finally:
        fairpool.unpatch_logging()
    assert not isinstance(existing.lock, HybridRLock)
    assert not isinstance(logging._lock, HybridRLock)  # type: ignore[attr-defined]


def test_pool_threads_log_while_green_threads_log_under_monkey_patch() -> None:
    # eventlet issues 432 and 492: with eventlet.tpool this fails with
    # "Cannot switch to a different thread" and hangs.
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import io, logging, time
        import fairpool
        fairpool.monkey_patch()
        from eventlet import tpool

        stream = io.StringIO()

        class SlowHandler(logging.StreamHandler):
            def emit(self, record):
                super().emit(record)
                time.sleep(0.0005)  # holds the handler's lock a while, green or native

        log = logging.getLogger("svc")
        log.addHandler(SlowHandler(stream))
        log.setLevel(logging.INFO)

        def in_pool(i):
            for j in range(20):
                log.info("pool %s %s", i, j)
            return i

        def green_logger():
            for j in range(200):
                log.info("green %s", j)

        gts = [eventlet.spawn(green_logger) for _ in range(5)]
        gts += [eventlet.spawn(tpool.execute, in_pool, i) for i in range(20)]
        with eventlet.Timeout(30):
            results = [gt.wait() for gt in gts]
        assert results[5:] == list(range(20)), results
        print("lines", stream.getvalue().count("\\n"))
        """,
        timeout=60,
    )
    assert out.strip() == "lines 1400", out
