"""HybridRLock, and logging from pool threads under eventlet.monkey_patch()."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import eventlet
import pytest

import fairpool
from fairpool import HybridRLock

from .conftest import run_script

T = TypeVar("T")


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


# -- a timed acquire racing the release ------------------------------------------------------


def _start(kind: str, fn: Callable[[], T]) -> Callable[[], T | None]:
    """Run ``fn`` in a native thread or a green thread; return what joins it and gives its result."""
    if kind == "green":
        return eventlet.spawn(fn).wait
    box: list[T] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()

    def join() -> T | None:
        t.join(10)
        assert not t.is_alive(), "a native thread of the race never finished"
        return box[0] if box else None

    return join


def _wait_for(event: threading.Event, kind: str) -> None:
    while not event.is_set():
        if kind == "native":
            event.wait(0.01)
        else:
            eventlet.sleep(0)


def _one_race(lock: HybridRLock, holder: str, waiter: str, how: str) -> tuple[bool, bool, str]:
    """The holder releases about when the waiter's timeout expires. (acquired, owned, error)."""
    import random

    held = threading.Event()
    delay = 0.002
    timeout = random.uniform(0.001, 0.003)

    def hold() -> None:
        lock.acquire()
        held.set()
        (time.sleep if holder == "native" else eventlet.sleep)(delay)
        lock.release()

    def wait() -> tuple[bool, bool, str]:
        _wait_for(held, waiter)
        if how == "timeout":
            got = lock.acquire(True, timeout)
        else:  # an eventlet.Timeout thrown in (green waiters only)
            try:
                with eventlet.Timeout(timeout):
                    got = lock.acquire()
            except eventlet.Timeout:
                got = False
        owned = lock._is_owned()
        error = ""
        if got:
            try:
                lock.release()
            except RuntimeError as exc:
                error = str(exc)
        return got, owned, error

    join_holder, join_waiter = _start(holder, hold), _start(waiter, wait)
    # Green threads first: joining a native thread blocks the hub, which a green thread needs.
    if holder == "green":
        join_holder()
    result = join_waiter()
    join_holder()
    assert result is not None, "the waiter of the race raised"
    return result


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("holder", "waiter", "how"),
    [
        ("native", "native", "timeout"),
        ("green", "native", "timeout"),
        ("native", "green", "timeout"),
        ("green", "green", "timeout"),
        ("native", "green", "eventlet.Timeout"),
        ("green", "green", "eventlet.Timeout"),
    ],
)
def test_a_timed_acquire_racing_the_release_returns_true_only_when_it_holds_the_lock(
    holder: str, waiter: str, how: str
) -> None:
    # The issue: a native acquire(True, timeout) whose release landed at its deadline passed the
    # lock on, then returned True without holding it (1 to 8% of such races).
    lock = HybridRLock()
    for trial in range(500):
        got, owned, error = _one_race(lock, holder, waiter, how)
        assert got == owned, f"trial {trial}: acquire returned {got} but the caller owned it: {owned}"
        assert not error, f"trial {trial}: the release after a successful acquire failed: {error}"
        assert not lock.locked(), f"trial {trial}: the lock was lost after the race: {lock!r}"
    assert lock.acquire(False), "the lock cannot be taken after the races"
    lock.release()


# -- threading.Condition over a HybridRLock --------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("waiter", "notifier"), [("native", "native"), ("native", "green"), ("green", "native")]
)
def test_condition_wait_releases_every_level_and_restores_them(waiter: str, notifier: str) -> None:
    # The issue: with the lock held twice, Condition.wait() released one level only, so the
    # notifier could never take the lock and the waiter was never woken.
    lock = HybridRLock()
    cond = threading.Condition(lock)
    waiting = threading.Event()

    def wait() -> tuple[bool, int]:
        with cond, cond:
            waiting.set()
            woken = cond.wait(5)
            return woken, lock._recursion_count()

    def notify() -> bool:
        _wait_for(waiting, notifier)
        got = cond.acquire(True, 2)  # took the lock within 2 s: wait() let go of both levels
        if got:
            cond.notify()
            cond.release()
        return got

    join_waiter, join_notifier = _start(waiter, wait), _start(notifier, notify)
    if notifier == "green":
        notified = join_notifier()
        result = join_waiter()
    else:
        result = join_waiter()
        notified = join_notifier()
    assert notified, "the notifier could not take the lock: wait() did not release every level"
    assert result == (True, 2), f"(woken, levels held after wait) = {result}, expected (True, 2)"
    assert not lock.locked(), repr(lock)


def test_release_save_and_acquire_restore_keep_the_count_and_refuse_a_non_owner() -> None:
    lock = HybridRLock()
    with pytest.raises(RuntimeError, match="cannot release un-acquired lock"):
        lock._release_save()
    for _ in range(3):
        lock.acquire()
    state = lock._release_save()
    assert not lock.locked(), f"_release_save left the lock held: {lock!r}"
    got = _start("native", lambda: (lock.acquire(False), lock._recursion_count(), lock.release()))()
    assert got is not None and got[:2] == (True, 1), f"another thread could not take it meanwhile: {got}"
    lock._acquire_restore(state)
    assert lock._recursion_count() == 3 and lock._is_owned()
    for _ in range(3):
        lock.release()
    assert not lock.locked()


# -- the rest of threading.RLock's behaviour -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"blocking": False, "timeout": 1}, ValueError, "non-blocking call .*timeout=1"),
        ({"blocking": False, "timeout": 0}, ValueError, "non-blocking call .*timeout=0"),
        ({"timeout": -0.5}, ValueError, "not -0.5"),
        ({"timeout": -100}, ValueError, "not -100"),
        ({"timeout": float("nan")}, ValueError, "not nan"),
        ({"timeout": 1e100}, OverflowError, "too large: 1e\\+100"),
        ({"timeout": None}, TypeError, "not None"),
        ({"timeout": "1"}, TypeError, "not '1'"),
    ],
)
def test_bad_timeouts_are_refused_as_threading_refuses_them(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    lock = HybridRLock()
    with pytest.raises(error, match=match):
        lock.acquire(**kwargs)  # type: ignore[arg-type]
    assert not lock.locked(), "a refused acquire took the lock"
    with pytest.raises(error):
        threading.RLock().acquire(**kwargs)  # the same input, the same error class


def test_timeouts_minus_one_zero_and_non_blocking() -> None:
    lock = HybridRLock()
    assert lock.acquire(timeout=-1) and lock.acquire(True, 0) and lock.acquire(False)
    assert lock._recursion_count() == 3
    other = _start(
        "native",
        lambda: (lock.acquire(False), lock.acquire(True, 0), lock._recursion_count(), lock._is_owned()),
    )()
    assert other == (False, False, 0, False), other
    for _ in range(3):
        lock.release()
    done = threading.Event()
    lock.acquire()
    t = threading.Thread(target=lambda: (lock.acquire(timeout=-1), done.set(), lock.release()))
    t.start()
    assert not done.wait(0.05), "acquire(timeout=-1) did not wait for the holder"
    lock.release()
    t.join(5)
    assert done.is_set() and not lock.locked()


@pytest.mark.timeout(30)
def test_a_green_timeout_is_honoured_and_the_hub_keeps_running() -> None:
    # It was ignored: a green acquire(True, timeout) waited for as long as the lock was held.
    lock = HybridRLock()
    held, stop = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            stop.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    ticks = []
    ticker = eventlet.spawn(lambda: [ticks.append(eventlet.sleep(0.005)) for _ in range(5)])
    start = time.monotonic()
    got = eventlet.spawn(lock.acquire, True, 0.1).wait()
    elapsed = time.monotonic() - start
    stop.set()
    t.join(5)
    ticker.wait()
    assert got is False, "a green acquire with a timeout got a lock held elsewhere"
    assert 0.05 < elapsed < 5, f"the green timeout of 0.1 s ended after {elapsed:.3f} s"
    assert len(ticks) == 5
    assert not lock.locked(), repr(lock)


def test_each_green_thread_and_each_native_thread_is_an_owner_with_its_own_count() -> None:
    lock = HybridRLock()
    seen: dict[str, object] = {}

    def green_owner() -> None:
        lock.acquire()
        lock.acquire()
        seen["other green"] = eventlet.spawn(lambda: (lock.acquire(False), lock._recursion_count())).wait()
        seen["native"] = _start("native", lambda: (lock.acquire(False), lock._recursion_count()))()
        seen["count"] = lock._recursion_count()
        lock.release()
        lock.release()

    eventlet.spawn(green_owner).wait()
    assert seen == {"other green": (False, 0), "native": (False, 0), "count": 2}, seen
    assert not lock.locked()
    with pytest.raises(RuntimeError, match="un-acquired"):
        eventlet.spawn(lock.release).wait()
    with lock:
        with pytest.raises(RuntimeError, match="un-acquired"):
            eventlet.spawn(lock.release).wait()  # another green thread of the same native thread
        assert lock._recursion_count() == 1


def test_repr_says_locked_owner_count_and_waiters() -> None:
    lock = HybridRLock()
    assert re.fullmatch(
        r"<unlocked fairpool\.HybridRLock object owner=None count=0 waiters=0 at 0x[0-9a-f]+>", repr(lock)
    )
    lock.acquire()
    lock.acquire()
    text = repr(lock)
    # The test's main thread is no green thread: its owner is the native thread.
    owner = "<locked fairpool.HybridRLock object owner=<native thread "
    assert text.startswith(owner) and "count=2 waiters=0" in text, text
    lock.release()
    lock.release()


def test_a_waiter_killed_after_the_lock_was_handed_to_it_passes_it_on() -> None:
    lock = HybridRLock()
    lock.acquire()
    order: list[str] = []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    first, second = eventlet.spawn(take, "first"), eventlet.spawn(take, "second")
    eventlet.sleep(0)  # both wait, in that order
    lock.release()  # handed to first, which has not run yet
    first.kill()
    second.wait()
    assert order == ["second"], order
    assert not lock.locked(), f"the lock was lost with the killed waiter: {lock!r}"


def test_at_fork_reinit_frees_a_held_lock_and_drops_its_waiters() -> None:
    lock = HybridRLock()
    lock.acquire()
    gt = eventlet.spawn(lock.acquire)
    eventlet.sleep(0)
    lock._at_fork_reinit()
    assert not lock.locked() and "waiters=0" in repr(lock), repr(lock)
    assert lock.acquire(False)
    lock.release()
    gt.kill()


@pytest.mark.timeout(60)
def test_a_forked_child_logs_through_a_handler_lock_held_by_another_thread_at_the_fork() -> None:
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import io, logging, os, threading, time
        import fairpool
        fairpool.monkey_patch()
        native_threading = eventlet.patcher.original("threading")
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        log = logging.getLogger("svc")
        log.addHandler(handler)
        assert type(handler.lock).__name__ == "HybridRLock", handler.lock
        held = native_threading.Event()
        def hold():
            with handler.lock:
                held.set()
                time.sleep(2)
        native_threading.Thread(target=hold, daemon=True).start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            log.warning("child logs")
            os._exit(0 if "child logs" in stream.getvalue() else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
        """,
        timeout=50,
    )
    assert out.strip() == "child 0", out


@pytest.mark.timeout(120)
def test_a_signal_handler_that_takes_the_lock_never_deadlocks_its_own_thread() -> None:
    # A signal handler that logs takes the lock, waiting for it, wherever its thread is. Three
    # ways it deadlocked, each found here: the lock's inner mutex was held across calls (the
    # queue's append and popleft), where Python runs a handler, which then blocked on the mutex
    # its own thread held; a handler run while its thread waited for the lock queued behind that
    # thread's own waiter, which the lock goes to first; a handler run in release(), after the
    # hand-over and before the wake-up, waited for a new owner that nobody would wake.
    # threading.RLock survives all three. Only the main thread gets signals.
    out = run_script(
        """
        import signal, sys, threading, time
        from fairpool import HybridRLock

        lock = HybridRLock()
        handled = [0]

        def handler(signum, frame):
            with lock:  # as a handler that logs would
                handled[0] += 1

        stop = False

        def other():
            while not stop:
                with lock:
                    pass

        t = threading.Thread(target=other)
        t.start()
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        start = time.monotonic()
        while time.monotonic() - start < 2:
            with lock:  # contended: waits, is handed the lock, hands it on
                pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        stop = True
        t.join(10)
        print("handled", handled[0] > 100, "free", not lock.locked())
        """,
        timeout=60,
    )
    assert out.strip() == "handled True free True", out


_MIXED_CONDITION = """
import sys, warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import fairpool
native_sleep = eventlet.patcher.original("time").sleep

mode = {mode!r}
cond = {condition}
ready, entered, ticks = [], [], []

def ticker():
    while not ready:
        ticks.append(1)
        eventlet.sleep(0.01)

def waiter():
    with cond:
        entered.append(1)  # the lock is let go only inside wait(): a notifier holding it finds us waiting
        woken = cond.wait(10)  # True: notified; False: only the timeout ended it
        return woken, bool(ready), cond.wait(0)

def notifier(sleep):
    while len(entered) < 3:
        sleep(0.01)
    sleep(0.3)  # the waiters wait meanwhile: a green one must let its hub run (the ticker ticks)
    with cond:
        ready.append(1)
        cond.notify_all()

pool = fairpool.Pool(4, name="p")
if mode == "native-waits":
    futs = [pool.submit(waiter) for _ in range(3)]
    eventlet.spawn(notifier, eventlet.sleep)
    results = [f.result(timeout=15) for f in futs]
else:
    eventlet.spawn(ticker)
    pool.submit(notifier, native_sleep)
    greens = [eventlet.spawn(waiter) for _ in range(3)]
    results = [g.wait() for g in greens]
print(results, "ticks", len(ticks))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["native-waits", "green-waits"])
def test_hybrid_condition_wakes_native_and_green_waiters_under_monkey_patch(mode: str) -> None:
    # The issue: threading.Condition(HybridRLock()) under eventlet.monkey_patch() makes green waiter
    # locks; a pool thread waiting on one was never woken by a green notify (nor the reverse).
    condition = "fairpool.HybridCondition(fairpool.HybridRLock())"
    out = run_script(_MIXED_CONDITION.format(mode=mode, condition=condition), timeout=50)
    results, ticks = out.split(" ticks ")
    expected = "[(True, True, False), (True, True, False), (True, True, False)]"
    assert results == expected, f"{mode}: (notified, ready, wait(0)) per waiter: {out}"
    if mode == "green-waits":
        assert int(ticks) >= 5, f"the hub did not run while green threads waited ({ticks.strip()} ticks)"


def test_hybrid_condition_refuses_a_caller_without_the_lock_and_times_out() -> None:
    cond = fairpool.HybridCondition()
    with pytest.raises(RuntimeError, match="un-acquired"):
        cond.wait(0.01)
    with pytest.raises(RuntimeError, match="un-acquired"):
        cond.notify()
    with cond:
        assert cond.wait(0.01) is False and cond.wait(-1) is False
        assert cond.wait_for(lambda: 0, timeout=0.01) == 0
        cond.notify_all()
    assert "0 waiting" in repr(cond) and not cond._lock.locked()


_CONDITION_RACE = """
import warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import fairpool
native_sleep = eventlet.patcher.original("time").sleep

import collections

class Counted(collections.deque):
    popped = 0

    def popleft(self):  # only notify() takes waiters this way, under the condition's mutex
        waiter = super().popleft()
        Counted.popped += 1
        return waiter

cond = fairpool.HybridCondition()
cond._waiters = Counted()
woken, done = [0], []

def waiter(rounds):
    for _ in range(rounds):
        with cond:
            if cond.wait(0.001):
                woken[0] += 1
    done.append(1)

def notifier(sleep):
    while len(done) < 4:
        with cond:
            cond.notify()
        sleep(0.0005)

pool = fairpool.Pool(4, name="p")
futs = [pool.submit(waiter, 300) for _ in range(2)] + [pool.submit(notifier, native_sleep)]
greens = [eventlet.spawn(waiter, 300) for _ in range(2)] + [eventlet.spawn(notifier, eventlet.sleep)]
for g in greens:
    g.wait()
for f in futs:
    f.result(timeout=60)
with cond:
    assert not cond._waiters, cond
print(woken[0], Counted.popped)
"""


@pytest.mark.timeout(120)
def test_hybrid_condition_notifies_racing_timeouts_are_counted_once() -> None:
    # A notify that takes a waiter whose timeout is running out: the wait reports it as notified.
    out = run_script(_CONDITION_RACE, timeout=100)
    woken, popped = map(int, out.split())
    assert woken == popped, f"{woken} waits said notified, {popped} notifies took a waiter"
    assert popped > 0, "no notify ever found a waiter: the race was not exercised"
