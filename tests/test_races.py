"""Races between callers, timeouts, shutdown, resizing and faults: each test pins one bug."""

from __future__ import annotations

import concurrent.futures
import importlib
import itertools
import logging
import operator
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import ModuleType, TracebackType
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import FairpoolError, PoolClosed, _hooks

from .conftest import wait_until

# -- helpers ----------------------------------------------------------------

#: Seconds a call made while a load of short timeouts goes on may take. Generous: workers
#: starved of the GIL by a busy hub are slow, but a livelocked pool never answers at all.
DURING = 20


def _testing() -> ModuleType:
    """fairpool's test seams, imported where used so the other tests run without them."""
    return importlib.import_module("fairpool.testing")


def _green_answer(seconds: float, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in this green thread; fail with ``what`` if it takes more than ``seconds``."""
    timer = eventlet.Timeout(seconds)
    try:
        return fn(*args)
    except eventlet.Timeout as exc:
        if exc is not timer:
            raise
        raise AssertionError(f"{what}: no answer within {seconds}s") from None
    finally:
        timer.cancel()


def _green_wait_all(gts: list[Any], seconds: float, what: str) -> list[Any]:
    """Wait for every green thread in ``gts``; fail with ``what`` if they take more than ``seconds``."""
    return _green_answer(seconds, what, lambda: [gt.wait() for gt in gts])  # type: ignore[no-any-return]


def _outcome(gt: Any) -> Any:
    """What a green thread returned, or the exception it raised."""
    try:
        return gt.wait()
    except BaseException as exc:  # noqa: BLE001 - the outcome is what the test checks
        return exc


def _native_answer(seconds: float, what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a new native thread; fail with ``what`` if it takes more than ``seconds``."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            errors.append(exc)

    t = threading.Thread(target=run, name="test-native-caller", daemon=True)
    t.start()
    deadline = time.monotonic() + seconds
    while t.is_alive() and time.monotonic() < deadline:
        eventlet.sleep(0.005)  # keep the hub running: green work may be part of the answer
    assert not t.is_alive(), f"{what}: no answer within {seconds}s"
    if errors:
        raise errors[0]
    return out[0]


def _state(pool: fairpool.Pool) -> str:
    """The pool's statistics for a failure message, or why there are none."""
    try:
        return repr(_native_answer(2, "statistics()", pool.statistics))
    except AssertionError:
        return "statistics() itself got no answer within 2s"


def _probe(answer: Callable[..., Any], pool: fairpool.Pool, what: str, *args: Any) -> Any:
    """``pool.execute(*args)`` through ``answer`` (green or native) within DURING seconds."""
    try:
        return answer(DURING, what, pool.execute, *args)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the pool: {_state(pool)}") from None


def _join_all(threads: list[threading.Thread], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    for t in threads:
        while t.is_alive() and time.monotonic() < deadline:
            eventlet.sleep(0.005)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"{what}: {len(stuck)} native callers still stuck after {seconds}s: {stuck[:5]}"


def _pool_is_idle(pool: fairpool.Pool) -> None:
    wait_until(
        lambda: (s := pool.statistics()).queued == 0 and s.busy == 0,
        timeout=10,
        what="the pool to have nothing queued and nothing running",
    )


def _markers_in(tb: TracebackType | None) -> set[Any]:
    """The ``marker`` locals of every frame in a traceback."""
    seen: set[Any] = set()
    while tb is not None:
        if "marker" in tb.tb_frame.f_locals:
            seen.add(tb.tb_frame.f_locals["marker"])
        tb = tb.tb_next
    return seen


# -- 1. timeouts shorter than the call --------------------------------------


@pytest.mark.timeout(90)
# (8, 50) is the reported case; (32, 200) makes the old lock-holder livelock near certain.
@pytest.mark.parametrize(("threads", "callers"), [(8, 50), (32, 200)])
def test_green_timeouts_shorter_than_the_call_leave_the_pool_serving(threads: int, callers: int) -> None:
    pool = fairpool.Pool(threads=threads, name="short-timeouts")
    stop = threading.Event()

    def caller() -> int:
        loops = 0
        while not stop.is_set():
            with eventlet.Timeout(0.0005, False):
                pool.execute(time.sleep, 0.0005)
            loops += 1
        return loops

    greens = [eventlet.spawn(caller) for _ in range(callers)]
    try:
        eventlet.sleep(1.5)
        # A call made while the callers keep timing out is answered all the same.
        probe = _probe(_green_answer, pool, "a call made during the timeouts", lambda: "during")
        assert probe == "during"
        eventlet.sleep(1.5)
    finally:
        stop.set()
    loops = _green_wait_all(greens, 15, "green callers looping with short timeouts")
    assert sum(loops) > 50, f"the callers barely ran: {loops}"
    fresh = _green_answer(10, "a fresh green call after the timeouts", pool.execute, lambda: "fresh")
    assert fresh == "fresh"
    assert _native_answer(10, "a fresh native call after the timeouts", pool.execute, lambda: "n") == "n"
    _pool_is_idle(pool)
    pool.shutdown(timeout=5)


@pytest.mark.timeout(90)
def test_green_and_native_timeouts_shorter_than_the_call_leave_the_pool_serving() -> None:
    pool = fairpool.Pool(threads=64, name="short-timeouts-mixed")  # many lock holders: the race is likely
    stop = threading.Event()

    def green_caller() -> None:
        while not stop.is_set():
            with eventlet.Timeout(0.001, False):
                pool.execute(time.sleep, 0.002)

    def native_caller() -> None:
        while not stop.is_set():
            fut = pool.submit(time.sleep, 0.002)
            try:
                fut.result(timeout=0.001)
            except concurrent.futures.TimeoutError:
                fut.cancel()

    natives = [threading.Thread(target=native_caller, name=f"native-{i}", daemon=True) for i in range(20)]
    for t in natives:
        t.start()
    greens = [eventlet.spawn(green_caller) for _ in range(200)]
    try:
        eventlet.sleep(1.5)
        # Calls made while the callers keep timing out are answered all the same.
        during = _probe(_green_answer, pool, "a green call made during the timeouts", lambda: "g")
        assert during == "g"
        during = _probe(_native_answer, pool, "a native call made during the timeouts", lambda: "n")
        assert during == "n"
        eventlet.sleep(1.5)
    finally:
        stop.set()
    _green_wait_all(greens, 15, "green callers looping with short timeouts")
    _join_all(natives, 15, "native callers looping with short timeouts")
    assert _green_answer(10, "a fresh green call after the timeouts", pool.execute, lambda: "g") == "g"
    assert _native_answer(10, "a fresh native call after the timeouts", pool.execute, lambda: "n") == "n"
    _pool_is_idle(pool)
    pool.shutdown(timeout=5)


# -- 2. shutdown(timeout) racing a call's completion ------------------------


@pytest.mark.timeout(60)
def test_shutdown_timeout_racing_a_call_s_completion_always_answers_the_green_caller() -> None:
    timeout = 0.005
    r = random.Random(2)
    outcomes: Counter[str] = Counter()
    for i in range(200):
        pool = fairpool.Pool(threads=1, name=f"race-{i}")
        started = threading.Event()
        seconds = timeout + r.uniform(-0.003, 0.008)

        def call(token: int = i, seconds: float = seconds, started: threading.Event = started) -> int:
            started.set()
            time.sleep(seconds)
            return token

        def caller(pool: fairpool.Pool = pool) -> object:
            try:
                return pool.execute(call)
            except PoolClosed as exc:
                return exc

        gt = eventlet.spawn(caller)
        wait_until(started.is_set, what="the call to start")
        pool.shutdown(timeout=timeout)
        # Other green threads may keep the hub busy before the caller is resumed.
        time.sleep(r.uniform(0, 0.004))
        got = _green_answer(
            5, f"iteration {i}: the green caller whose call ({seconds * 1000:.1f} ms) raced shutdown", gt.wait
        )
        if isinstance(got, PoolClosed):
            outcomes["closed"] += 1
        else:
            assert got == i, f"iteration {i}: the caller got {got!r}, not its result {i} or PoolClosed"
            outcomes["result"] += 1
    assert outcomes["closed"] and outcomes["result"], f"the race was not exercised both ways: {outcomes}"


# -- 3. shutdown() or killall() inside a pool call --------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["shutdown", "killall"])
@pytest.mark.parametrize("waits", ["native", "green"])
def test_a_call_that_shuts_down_its_own_pool_still_returns_its_value(how: str, waits: str) -> None:
    if how == "shutdown":
        pool = fairpool.Pool(threads=2, name="self-closing")
        execute: Callable[..., Any] = pool.execute

        def call() -> str:
            pool.shutdown()
            return "the real value"

    else:
        fairpool.set_num_threads(2)
        execute = fairpool.execute

        def call() -> str:
            fairpool.killall()
            return "the real value"

    def outcome() -> object:
        try:
            return execute(call)
        except PoolClosed as exc:
            return exc

    answer = _native_answer if waits == "native" else _green_answer
    got = answer(10, f"a {waits} caller whose call ran {how}() on its own pool", outcome)
    assert got == "the real value", f"a {waits} caller whose call ran {how}() got {got!r}, not its value"
    if how == "killall":
        assert fairpool.execute(lambda: "usable again") == "usable again", "killall left the pool unusable"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout", [None, 5.0])
def test_shutdown_inside_the_only_worker_leaves_the_queued_calls_to_run(timeout: float | None) -> None:
    """A timeout bounds the wait for other workers: it does not close calls queued behind the caller."""
    pool = fairpool.Pool(threads=1, name="self-closing-queue")
    queued = threading.Event()
    results: dict[int, object] = {}

    def inner() -> str:
        assert queued.wait(10), "the other callers never queued"
        pool.shutdown(timeout=timeout)
        return "inner"

    def caller(i: int) -> None:
        try:
            results[i] = pool.execute(_pair, i, i)
        except PoolClosed as exc:
            results[i] = exc

    first = threading.Thread(target=lambda: results.__setitem__(-1, pool.execute(inner)))
    first.start()
    wait_until(lambda: pool.statistics().busy == 1, 10, "the first call running")
    others = [threading.Thread(target=caller, args=(i,)) for i in range(3)]
    for t in others:
        t.start()
    wait_until(lambda: pool.statistics().queued == 3, 10, "three calls queued behind it")
    queued.set()
    _join_all([first, *others], 20, "callers of a pool shut down from inside its only worker")
    expected = {-1: "inner", 0: (0, 0), 1: (1, 1), 2: (2, 2)}
    assert results == expected, f"shutdown(timeout={timeout}) from inside: {results}"


@pytest.mark.timeout(60)
def test_a_done_callback_raising_systemexit_does_not_fail_the_next_call() -> None:
    """A future's callback runs in the worker that answers it: its SystemExit is the callback's
    fault, reported, not the worker's (which would answer the call it took next with an error)."""
    pool = fairpool.Pool(threads=1, name="callback-raises")
    release = threading.Event()
    try:
        first = pool.submit(release.wait, 10)

        def callback(_: concurrent.futures.Future[Any]) -> None:
            raise SystemExit("from the first future's done-callback")

        first.add_done_callback(callback)
        wait_until(lambda: pool.statistics().busy == 1, 10, "the first call running")
        out: list[object] = []
        second = threading.Thread(target=lambda: out.append(pool.execute(_pair, 2, 2)))
        second.start()
        wait_until(lambda: pool.statistics().queued == 1, 10, "the second call queued behind it")
        release.set()
        _join_all([second], 10, "the caller queued behind a future whose callback raised")
        assert first.result(timeout=10) is True
        assert out == [(2, 2)], f"the next caller got {out!r}, not its own value"
        assert pool.statistics().worker_faults == 0, "the callback's exception was taken for a worker fault"
    finally:
        release.set()
        pool.shutdown(timeout=5)


# -- 4. resize(0) racing native callers -------------------------------------


def _pair(i: int, t: int) -> tuple[int, int]:
    return (i, t)


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:fairpool pool 'flipping' has 0 threads:RuntimeWarning")
def test_resize_to_zero_racing_native_callers_leaves_no_call_without_a_worker() -> None:
    pool = fairpool.Pool(threads=2, name="flipping")
    stop = threading.Event()
    progress = [0] * 6
    wrong: list[str] = []

    def caller(i: int) -> None:
        token = 0
        while not stop.is_set():
            token += 1
            got = pool.execute(_pair, i, token)
            if got != (i, token):
                wrong.append(f"caller {i}, call {token} got {got!r}")
            progress[i] += 1

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: more interleavings per second
    natives = [threading.Thread(target=caller, args=(i,), name=f"caller-{i}", daemon=True) for i in range(6)]
    try:
        for t in natives:
            t.start()
        end = time.monotonic() + 4.0
        for flip in itertools.count():
            if time.monotonic() > end and flip >= 20:
                break
            pool.resize(0)
            # At size 0 a new call runs inline and a queued one still runs: every caller moves on.
            seen = list(progress)
            try:
                wait_until(
                    lambda seen=seen: all(p > s for p, s in zip(progress, seen, strict=True)),
                    timeout=5,
                    what=f"every native caller to finish a call while the size is 0 (flip {flip})",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; a call is left without a worker: {pool.statistics()}") from None
            pool.resize(2)
            time.sleep(0.0005)
        stop.set()
        _join_all(natives, 10, "native callers racing resize(0)")
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
    assert not wrong, f"callers got another call's answer: {wrong[:5]}"
    pool.shutdown(timeout=5)


# -- 5. the OS refusing a thread --------------------------------------------


@pytest.mark.timeout(30)
def test_a_refused_worker_thread_raises_once_and_leaves_no_stray_wakeup() -> None:
    testing = _testing()
    pool = fairpool.Pool(threads=2, name="refused")

    def green_caller() -> tuple[list[str], object, float]:
        raised: list[str] = []
        try:
            pool.execute(lambda: "ran")
        except FairpoolError as exc:
            raised.append(repr(exc))
        # The same green thread's next, unrelated wait must end only when it is due.
        ev: Any = eventlet.event.Event()
        eventlet.spawn_after(0.2, ev.send, "real")
        start = time.monotonic()
        got = ev.wait()
        return raised, got, time.monotonic() - start

    try:
        with testing.refuse_threads():
            raised, got, took = _green_answer(
                10, "a green caller on a pool refused threads", eventlet.spawn(green_caller).wait
            )
            assert len(raised) == 1, f"the green caller should get one FairpoolError, got {raised}"
            assert got == "real" and took >= 0.15, (
                f"the green caller's next wait was woken early ({took:.3f}s, got {got!r}): a stray wake-up"
            )
            with pytest.raises(FairpoolError):
                _native_answer(10, "a native caller on a pool refused threads", pool.execute, lambda: "ran")
        assert _green_answer(10, "a green call once threads start again", pool.execute, lambda: "g") == "g"
        assert _native_answer(10, "a native call once threads start again", pool.execute, lambda: "n") == "n"
    finally:
        pool.shutdown(timeout=5)


# -- 6. a suspended generator in the call's traceback -----------------------


def test_a_call_through_the_pool_leaves_a_suspended_generator_in_its_traceback_open(
    pool: fairpool.Pool,
) -> None:
    def raise_a_kept_exception(call: Callable[[Callable[[], None]], object]) -> tuple[list[str], Any]:
        finalized: list[str] = []

        def keeper() -> Iterator[KeyError]:
            try:
                try:
                    raise KeyError("kept")
                except KeyError as exc:
                    kept = exc
                while True:
                    yield kept  # suspended here, its frame in kept's traceback
            finally:
                finalized.append("finally ran")

        gen = keeper()

        def fn() -> None:
            raise next(gen)

        with pytest.raises(KeyError, match="kept"):
            call(fn)
        return finalized, gen

    direct_finalized, direct_gen = raise_a_kept_exception(lambda fn: fn())
    assert direct_finalized == [] and isinstance(next(direct_gen), KeyError), "the direct call closed it"
    pooled_finalized, pooled_gen = raise_a_kept_exception(pool.execute)
    assert pooled_finalized == [], "calling through the pool closed a generator suspended in the traceback"
    assert pooled_gen.gi_frame is not None, "calling through the pool finished the suspended generator"
    assert isinstance(next(pooled_gen), KeyError), "the generator no longer steps after a pool call"


# -- 7. one PoolClosed per caller -------------------------------------------


@pytest.mark.timeout(30)
def test_each_caller_left_at_shutdown_gets_its_own_pool_closed(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="closing-many")

    def caller(marker: int, fn: Callable[[], object]) -> BaseException | None:
        try:
            pool.execute(fn)
        except PoolClosed as exc:
            return exc
        return None

    running = eventlet.spawn(caller, 0, lambda: gate.wait(30))
    wait_until(lambda: pool.statistics().busy == 1, what="the blocking call to run")
    queued = [eventlet.spawn(caller, i, int) for i in range(1, 6)]
    wait_until(lambda: pool.statistics().queued == 5, what="five queued calls")
    pool.shutdown(timeout=0.05)
    errors = _green_wait_all([running, *queued], 10, "callers left at shutdown")
    assert all(isinstance(e, PoolClosed) for e in errors), f"every caller should get PoolClosed: {errors}"
    ids = {id(e) for e in errors}
    assert len(ids) == len(errors), f"{len(errors)} callers shared {len(ids)} PoolClosed instance(s)"
    for marker, exc in enumerate(errors):
        assert exc is not None
        seen = _markers_in(exc.__traceback__)
        assert seen == {marker}, (
            f"caller {marker}'s PoolClosed traceback holds the frames of callers {sorted(seen - {marker})}"
        )


# -- 8. an observer that raises ---------------------------------------------


@pytest.mark.timeout(60)
def test_a_failing_observer_never_reaches_a_caller_and_is_reported_once(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    testing = _testing()
    caplog.set_level(logging.DEBUG, logger="fairpool")
    faults_before = testing.observer_faults()

    def fails(token: int) -> None:
        raise ValueError(token)

    with testing.failing_observer() as observer:
        pool = fairpool.Pool(threads=2, name="observed")
        greens = [eventlet.spawn(pool.execute, int, i) for i in range(20)]
        assert _green_wait_all(greens, 10, "green calls under a failing observer") == list(range(20))
        with pytest.raises(ValueError, match=r"^7$"):
            _green_answer(10, "a failing green call under a failing observer", pool.execute, fails, 7)
        native = _native_answer(
            10,
            "native calls under a failing observer",
            lambda: [pool.execute(operator.neg, i) for i in range(10)],
        )
        assert native == [-i for i in range(10)], f"native callers got {native}"
        futures = [pool.submit(operator.mul, i, 10) for i in range(10)]
        futures.append(pool.submit(fails, 8))
        concurrent.futures.wait(futures, timeout=10)
        assert all(f.done() for f in futures), "a future was never settled under a failing observer"
        assert [f.result(0) for f in futures[:-1]] == [i * 10 for i in range(10)]
        exc = futures[-1].exception(0)
        assert isinstance(exc, ValueError) and exc.args == (8,), f"the failing future carried {exc!r}"
        assert (
            _green_answer(10, "a later call under a failing observer", pool.execute, lambda: "still")
            == "still"
        )
        start = time.monotonic()
        pool.shutdown(timeout=5)
        took = time.monotonic() - start
        assert took < 5, f"shutdown under a failing observer took {took:.1f}s"
        raised = observer.raised
    assert raised > 0, "the observer was never called: the test checks nothing"
    assert testing.observer_faults() > faults_before, "observer_faults() did not count the observer's errors"
    records = [
        rec
        for rec in caplog.records
        if "No space left on device" in rec.getMessage()
        or (rec.exc_info is not None and isinstance(rec.exc_info[1], OSError))
    ]
    on_stderr = capfd.readouterr().err.count("OSError: [Errno 28]")
    assert records or on_stderr, "the observer's error was swallowed without a report (log or stderr)"
    assert len(records) <= 1 and on_stderr <= 1, (
        f"the observer's error was reported {len(records)} times in the log and {on_stderr} times "
        f"on stderr for {raised} failures: once per observer is enough"
    )
    assert all(rec.levelno >= logging.ERROR for rec in records), "the observer's fault was logged below ERROR"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_an_observer_raising_a_base_exception_answers_every_caller_all_the_same(
    error: type[BaseException], capfd: pytest.CaptureFixture[str]
) -> None:
    """An observer's SystemExit at any event, a batch of answers at shutdown included: all answered."""
    testing = _testing()
    gate = threading.Event()
    with testing.failing_observer(error=lambda: error("from the observer")) as observer:
        pool = fairpool.Pool(threads=1, name="observed-base")
        try:
            assert _green_answer(10, "a green call", pool.execute, lambda: "g") == "g"
            assert _native_answer(10, "a native call", pool.execute, lambda: "n") == "n"
            assert pool.submit(lambda: "f").result(timeout=10) == "f"
            running = pool.submit(gate.wait, 10)
            wait_until(lambda: running.running(), what="the blocking call to start")
            greens = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(10)]
            wait_until(lambda: pool.statistics().queued == 10, what="ten calls to be queued")
            pool.shutdown(timeout=0.05)  # answers a batch of eleven callers; the observer raises at each
            outcomes = _green_answer(10, "answers at shutdown", lambda: [_outcome(g) for g in greens])
            assert all(isinstance(o, fairpool.PoolClosed) for o in outcomes), outcomes
            assert isinstance(running.exception(timeout=10), fairpool.PoolClosed)
        finally:
            gate.set()
            pool.shutdown(timeout=5)
        assert observer.raised > 0
    assert pool.statistics().worker_faults == 0, "an observer's error cost a worker"
    assert "Exception in thread" not in capfd.readouterr().err, "a fairpool thread died with a traceback"


# -- 9. stress: every caller gets exactly its own answer --------------------


def _echo(token: int, seconds: float) -> int:
    if seconds:
        time.sleep(seconds)
    return token


@pytest.mark.parametrize(
    "duration",
    [
        pytest.param(3.0, marks=pytest.mark.timeout(120), id="3s"),
        pytest.param(60.0, marks=[pytest.mark.soak, pytest.mark.timeout(300)], id="60s-soak"),
    ],
)
def test_every_caller_gets_exactly_its_own_answer_under_short_timeouts(duration: float) -> None:
    pool = fairpool.Pool(threads=64, name="stress")
    tokens = itertools.count(1)  # next() is atomic: safe from green and native callers alike
    wrong: list[str] = []
    native_counts: list[Counter[str]] = []
    stop = threading.Event()

    def green_caller(seed: int) -> Counter[str]:
        r = random.Random(seed)
        seen: Counter[str] = Counter()
        while not stop.is_set():
            token = next(tokens)
            timer = eventlet.Timeout(r.choice([0.0005, 0.0005, 0.001, 0.002, 0.05]))
            try:
                got = pool.execute(_echo, token, r.choice([0.0005, 0.001, 0.002, 0.003]))
            except eventlet.Timeout as exc:
                if exc is not timer:
                    wrong.append(f"green token {token}: a timeout that is not its own: {exc!r}")
                seen["timed out"] += 1
                continue
            finally:
                timer.cancel()
            if got != token:
                wrong.append(f"green token {token} got {got!r}")
            seen["answered"] += 1
        return seen

    def native_caller(seed: int) -> None:
        r = random.Random(seed)
        seen: Counter[str] = Counter()
        try:
            while not stop.is_set():
                token = next(tokens)
                if r.random() < 0.1:
                    got = pool.execute(_echo, token, r.choice([0.0, 0.001]))
                else:
                    fut = pool.submit(_echo, token, r.choice([0.001, 0.002]))
                    try:
                        got = fut.result(timeout=r.choice([0.0005, 0.001, 0.001, 0.05]))
                    except concurrent.futures.TimeoutError:
                        if fut.cancel():
                            seen["cancelled"] += 1
                            continue
                        got = fut.result(timeout=10)  # it runs: its own answer still comes
                if got != token:
                    wrong.append(f"native token {token} got {got!r}")
                seen["answered"] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            wrong.append(f"native caller {seed} failed: {exc!r}")
        native_counts.append(seen)

    natives = [
        threading.Thread(target=native_caller, args=(i,), name=f"native-{i}", daemon=True) for i in range(20)
    ]
    for t in natives:
        t.start()

    def hammer() -> Counter[str]:  # timeouts always shorter than the call, no answer to check
        while not stop.is_set():
            with eventlet.Timeout(0.0005, False):
                pool.execute(time.sleep, 0.0005)
        return Counter()

    greens = [eventlet.spawn(green_caller, 1000 + i) for i in range(200)]
    greens += [eventlet.spawn(hammer) for _ in range(100)]
    deadline = time.monotonic() + duration
    probes = itertools.count(-1, -1)
    try:
        while time.monotonic() < deadline:
            eventlet.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            # While the load goes on, a call without a timeout is answered, green or native.
            token = next(probes)
            got = _probe(_green_answer, pool, "a green call during the load", _echo, token, 0)
            assert got == token, f"a green call during the load got {got!r}, not {token}"
            token = next(probes)
            got = _probe(_native_answer, pool, "a native call during the load", _echo, token, 0)
            assert got == token, f"a native call during the load got {got!r}, not {token}"
    finally:
        stop.set()
    counts: Counter[str] = sum(_green_wait_all(greens, 30, "green callers under load"), Counter())
    _join_all(natives, 30, "native callers under load")
    assert not wrong, f"{len(wrong)} callers got something other than their own answer: {wrong[:5]}"
    counts = sum(native_counts, counts)
    assert counts["timed out"] > 0 and counts["answered"] > 0, f"the load did not race timeouts: {counts}"
    assert _green_answer(10, "a green call after the load", pool.execute, _echo, 0, 0) == 0
    assert _native_answer(10, "a native call after the load", pool.execute, _echo, 0, 0) == 0
    _pool_is_idle(pool)
    pool.shutdown(timeout=5)


# -- found by a second hostile review ---------------------------------------


class _Answers(_hooks.PoolObserver):
    """Records (call name, outcome) of every call_answered."""

    def __init__(self) -> None:
        self.answered: list[tuple[str, str]] = []

    def call_answered(self, call: _hooks.CallInfo, outcome: str) -> None:
        self.answered.append((call.name, outcome))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("what", ["future.cancel()", "shutdown(timeout)"])
def test_a_call_taken_but_not_started_is_cancelled_or_closed_once(what: str) -> None:
    """The worker has taken B and runs A's done-callback before starting B: what happens to B meanwhile
    counts once, B never runs, observers hear one answer, and no worker fault is made of it."""
    pool = fairpool.Pool(threads=1, name="window")
    in_callback, release_callback, ran = threading.Event(), threading.Event(), threading.Event()
    observer = _Answers()
    _hooks.add_observer(observer)
    try:
        first = pool.submit(lambda: "A")
        first.add_done_callback(lambda _: (in_callback.set(), release_callback.wait(10)))
        second = pool.submit(ran.set)
        assert in_callback.wait(10), "A's done-callback never ran"
        wait_until(lambda: pool.statistics().busy == 1 and pool.statistics().queued == 0, 10, "B taken")
        if what == "future.cancel()":
            assert second.cancel(), "a future not yet started could not be cancelled"
        else:
            pool.shutdown(timeout=0.1, wait=True)
        release_callback.set()
        wait_until(lambda: pool.statistics().busy == 0, 10, "the worker done with B")
    finally:
        release_callback.set()
        _hooks.remove_observer(observer)
    stats = pool.statistics()
    pool.shutdown(timeout=5)
    assert not ran.is_set(), "B ran although it was cancelled or closed before it started"
    assert stats.worker_faults == 0, f"a worker fault was made of it: {stats}"
    if what == "future.cancel()":
        assert second.cancelled()
        assert (stats.cancelled, stats.abandoned) == (1, 0), f"B counted wrong: {stats}"
    else:
        assert isinstance(second.exception(timeout=5), PoolClosed)
    outcomes = [outcome for name, outcome in observer.answered if name.endswith("set")]
    assert outcomes == (["cancelled"] if what == "future.cancel()" else ["closed"]), outcomes


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:fairpool pool 'stuck-neighbour' has 0 threads:RuntimeWarning")
def test_resize_to_zero_and_shutdown_inside_a_call_do_not_leave_the_queue_to_a_stuck_worker() -> None:
    pool = fairpool.Pool(threads=2, name="stuck-neighbour")
    stuck, go = threading.Event(), threading.Event()
    try:
        blocked = pool.submit(stuck.wait, 60)  # a call stuck in C, say

        def inner() -> str:
            assert go.wait(10)
            pool.resize(0)
            pool.shutdown(timeout=0.3)
            return "inner"

        inside = pool.submit(inner)
        wait_until(lambda: pool.statistics().busy == 2, 10, "both workers busy")
        queued = [pool.submit(_pair, i, i) for i in range(3)]
        go.set()
        assert inside.result(timeout=10) == "inner"
        assert isinstance(blocked.exception(timeout=10), PoolClosed)
        got = [q.result(timeout=10) for q in queued]  # while the stuck call is still stuck
        assert got == [(0, 0), (1, 1), (2, 2)], got
    finally:
        stuck.set()
        pool.shutdown(timeout=5)


# -- found by a third hostile review ----------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["shutdown", "killall"])
def test_two_calls_that_each_shut_their_pool_down_both_return(how: str) -> None:
    """Each waits for the other workers, but not for one that is itself inside a shutdown."""
    both = threading.Barrier(2)
    if how == "shutdown":
        pool = fairpool.Pool(threads=2, name="two-inside")
        submit, stop = pool.submit, pool.shutdown
    else:
        fairpool.set_num_threads(2)
        submit, stop = fairpool.default_pool().submit, fairpool.killall

    def call(i: int) -> int:
        both.wait(10)
        stop()
        return i

    futures = [submit(call, 1), submit(call, 2)]
    got = [f.result(timeout=20) for f in futures]
    assert got == [1, 2], got


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_fork_inside_a_call_leaves_the_child_a_clean_pool() -> None:
    """The child's copy of the forking worker does not go back into the child's pool."""
    pool = fairpool.Pool(threads=2, name="fork-inside")
    read_end, write_end = os.pipe()

    def report() -> None:
        time.sleep(0.3)  # the call has returned into its worker loop by now
        stats = pool.statistics()
        fresh = pool.submit(_pair, 7, 7).result(timeout=5)
        workers = sorted(t.name for t in threading.enumerate() if t.name.startswith("fairpool-fork-inside"))
        line = f"{stats.busy} {stats.completed} {stats.closed} {fresh == (7, 7)} {','.join(workers)}\n"
        os.write(write_end, line.encode())
        os._exit(0)

    def forking_call() -> int:
        pid = os.fork()
        if pid == 0:
            threading.Thread(target=report).start()  # then this call returns, in the child too
        return pid

    try:
        pid = pool.submit(forking_call).result(timeout=10)
        os.close(write_end)
        with os.fdopen(read_end) as child:
            fields = child.readline().rstrip("\n").split(" ")
        busy, completed, closed, fresh_ok, workers = [*fields, "", "", "", "", ""][:5]
        os.waitpid(pid, 0)
    finally:
        pool.shutdown(timeout=5)
    assert (busy, completed, closed) == ("0", "0", "1"), (
        f"the child's pool: busy={busy} completed={completed} closed={closed}"
    )
    assert fresh_ok == "True", "a new call in the child was not answered"
    assert workers.count("fairpool-fork-inside-0") <= 1 and len(workers.split(",")) <= 2, workers


@pytest.mark.timeout(60)
def test_each_call_is_counted_once_and_refusals_not_at_all() -> None:
    pool = fairpool.Pool(threads=1, max_queue=1, on_full="raise", name="counted-once")
    gate = threading.Event()
    try:
        running = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, 10, "the first call running")
        queued = pool.submit(_pair, 1, 1)
        with pytest.raises(fairpool.QueueFull):
            pool.execute(_pair, 2, 2)  # handed in, refused by the core
        with pytest.raises(fairpool.QueueFull):
            pool.submit(_pair, 3, 3)  # refused before it is handed in
        pool.shutdown(timeout=0.2)  # the running call is closed; the queued one with it
        with pytest.raises(PoolClosed):
            pool.execute(_pair, 4, 4)
        assert isinstance(running.exception(timeout=5), PoolClosed)
        assert isinstance(queued.exception(timeout=5), PoolClosed)
    finally:
        gate.set()
    wait_until(lambda: pool.statistics().busy == 0, 10, "the closed call to return")
    stats = pool.statistics()
    outcomes = (stats.completed, stats.failed, stats.cancelled, stats.abandoned, stats.closed)
    assert outcomes == (0, 0, 0, 0, 2), f"(completed, failed, cancelled, abandoned, closed) = {outcomes}"


class _Outcomes(_hooks.PoolObserver):
    """Counts every call_answered by outcome (the observers' view, to check the pools' tallies)."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def call_answered(self, call: _hooks.CallInfo, outcome: str) -> None:
        self.outcomes.append(outcome)  # list.append is atomic


@pytest.mark.timeout(120)
def test_the_pools_tally_counts_every_call_once_by_its_outcome_whatever_races() -> None:
    # Metrics count calls in the core (fairpool._tally), under the lock it holds to move each call
    # to its final state. Timeouts shorter than the calls, cancels, resizes, green and native
    # callers mixed, and a shutdown with a timeout while calls run: every call is counted once,
    # with the outcome its observers were told.
    from fairpool import _tally

    observer = _Outcomes()
    _hooks.add_observer(observer)
    _tally.factory = lambda name: _tally.Tally(name, 1 << 20)
    attempts = itertools.count()
    stop = threading.Event()
    wrong: list[str] = []
    try:
        pool = fairpool.Pool(threads=16, name="tallied")
        tally = pool._core.tally
        assert tally is not None

        def green_caller(seed: int) -> None:
            r = random.Random(seed)
            while not stop.is_set():
                next(attempts)
                with eventlet.Timeout(r.choice([0.0005, 0.002, 0.05]), False):
                    try:
                        pool.execute(time.sleep, r.choice([0.0, 0.001, 0.005]))
                    except PoolClosed:
                        eventlet.sleep(0.001)

        def native_caller(seed: int) -> None:
            r = random.Random(seed)
            try:
                while not stop.is_set():
                    next(attempts)
                    try:
                        fut = pool.submit(time.sleep, r.choice([0.0, 0.001, 0.002]))
                    except PoolClosed:
                        time.sleep(0.001)
                        continue
                    try:
                        fut.result(timeout=r.choice([0.0005, 0.001, 0.05]))
                    except concurrent.futures.TimeoutError:
                        fut.cancel()
                    except (PoolClosed, concurrent.futures.CancelledError):
                        pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                wrong.append(f"native caller {seed}: {exc!r}")

        def resizer() -> None:
            r = random.Random(7)
            while not stop.is_set():
                pool.resize(r.choice([2, 8, 16]))
                time.sleep(0.005)

        natives = [threading.Thread(target=native_caller, args=(i,), daemon=True) for i in range(8)]
        natives.append(threading.Thread(target=resizer, daemon=True))
        for t in natives:
            t.start()
        greens = [eventlet.spawn(green_caller, i) for i in range(50)]
        eventlet.sleep(1.0)
        for _ in range(20):  # calls still queued or running when the shutdown's timeout ends
            next(attempts)
            pool.submit(time.sleep, 0.3)
        pool.shutdown(timeout=0.001)  # closes what runs and what is queued; later calls are rejected
        eventlet.sleep(0.2)
        stop.set()
        _green_wait_all(greens, 30, "green callers")
        _join_all(natives, 30, "native callers")
        wait_until(lambda: pool.statistics().busy == 0, 10, "the closed calls to return")
    finally:
        stop.set()
        _tally.factory = None
        _hooks.remove_observer(observer)
    assert not wrong, wrong
    made = next(attempts)
    told = Counter(observer.outcomes)
    counted = Counter()
    for _, counts in tally.counts():
        for outcome, n in zip(_tally.OUTCOMES, counts, strict=True):
            counted[outcome] += n
    assert sum(counted.values()) == made, f"{made} calls made, {sum(counted.values())} counted: {counted}"
    assert counted == told, f"the tally {counted} and the observers {told} differ"
    raced = ("returned", "cancelled", "abandoned", "closed", "rejected")
    assert all(counted[o] for o in raced), f"the load raced too little: {counted}"
