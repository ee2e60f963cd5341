"""Bounds, shutdown, interpreter exit, fork, and statistics."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import eventlet
import pytest

import fairpool
from fairpool import PoolClosed, QueueFull

from .conftest import run_script, wait_until

# -- backpressure -----------------------------------------------------------


def test_a_full_queue_raises_queue_full_naming_the_pool_and_bound(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="bounded", max_queue=2, on_full="raise")
    try:
        busy = eventlet.spawn(pool.execute, gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="the worker to be busy")
        queued = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(2)]
        eventlet.sleep(0)
        with pytest.raises(QueueFull, match="pool 'bounded' has 2 calls queued, its max_queue bound"):
            pool.execute(int)
        gate.set()
        assert busy.wait() is True and [gt.wait() for gt in queued] == [0, 1]
    finally:
        pool.shutdown(timeout=5)


def test_callers_wait_while_the_queue_is_full_and_nothing_is_lost(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=2, name="waits", max_queue=3)
    peak = 0

    def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, pool.statistics().queued)
            eventlet.sleep(0.001)

    watcher = eventlet.spawn(watch)
    try:
        busy = [eventlet.spawn(pool.execute, gate.wait, 10) for _ in range(2)]
        wait_until(lambda: pool.statistics().busy == 2, what="both workers busy")
        green = [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(20)]
        native_results: list[int] = []
        natives = [
            threading.Thread(target=lambda i=i: native_results.append(pool.execute(lambda: 100 + i)))
            for i in range(5)
        ]
        for t in natives:
            t.start()
        wait_until(lambda: pool.statistics().waiting_admission == 22, what="22 callers held back")
        gate.set()
        assert [gt.wait() for gt in green] == list(range(20))
        for t in natives:
            t.join(10)
        assert sorted(native_results) == [100, 101, 102, 103, 104]
        assert peak <= 3, f"the queue held {peak} calls; its bound is 3"
        for gt in busy:
            gt.wait()
    finally:
        watcher.kill()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("idle", [1, 8])
def test_shrinking_a_bounded_pool_does_not_let_calls_past_the_bound(gate: threading.Event, idle: int) -> None:
    """The idle workers woken to retire take no call: no room may be counted for them."""
    pool = fairpool.Pool(threads=idle + 1, max_queue=1, on_full="raise", name="shrinks")
    try:
        warm = [pool.submit(time.sleep, 0.05) for _ in range(idle + 1)]  # every worker started
        assert [f.result(timeout=10) for f in warm] == [None] * (idle + 1)
        busy = pool.submit(gate.wait, 10)
        wait_until(lambda: pool.statistics().busy == 1, what="one worker busy, the others idle")
        pool.resize(1)  # wakes the idle ones, which retire
        accepted, refused = [], 0
        for _ in range(5):
            try:
                accepted.append(pool.submit(gate.wait, 10))
            except QueueFull:
                refused += 1
        wait_until(lambda: pool.statistics().threads == 1, what="the idle workers to retire")
        queued = pool.statistics().queued
        assert (len(accepted), refused, queued) == (1, 4, 1), (
            f"max_queue=1 with its one worker busy: {len(accepted)} accepted, {refused} refused, "
            f"{queued} queued; expected 1, 4 and 1"
        )
        gate.set()
        assert busy.result(timeout=10) is True and [f.result(timeout=10) for f in accepted] == [True]
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_a_worker_woken_for_a_call_takes_it_even_if_the_pool_shrank_meanwhile(gate: threading.Event) -> None:
    """threads=2 idle, max_queue=1: the bound lets a call in for each woken worker; resize(1) before
    they run must not leave those calls queued over the bound with the workers gone."""
    pool = fairpool.Pool(threads=2, max_queue=1, on_full="raise", name="shrinks-late")
    interval = sys.getswitchinterval()
    try:
        warm = [pool.submit(time.sleep, 0.05) for _ in range(2)]
        assert [f.result(timeout=10) for f in warm] == [None, None]
        wait_until(lambda: pool.statistics().busy == 0, what="both workers idle")
        sys.setswitchinterval(30)  # the woken workers cannot run until this thread waits
        try:
            accepted = []
            for _ in range(5):
                try:
                    accepted.append(pool.submit(gate.wait, 10))
                except QueueFull:
                    pass
            pool.resize(1)
        finally:
            sys.setswitchinterval(interval)
        wait_until(lambda: pool.statistics().busy == 2, what="both woken workers to take a call")
        stats = pool.statistics()
        assert (len(accepted), stats.queued) == (3, 1), (
            f"{len(accepted)} calls accepted, {stats.queued} left queued with max_queue=1: {stats}"
        )
        gate.set()
        assert [f.result(timeout=10) for f in accepted] == [True] * 3
        wait_until(lambda: pool.statistics().threads == 1, what="the pool to shrink to 1 once idle")
    finally:
        sys.setswitchinterval(interval)
        gate.set()
        pool.shutdown(timeout=5)


def test_a_call_arriving_while_calls_are_held_waits_behind_them() -> None:
    """Admission: with calls held, a newcomer is held too, even when a worker's coming opened room."""
    from fairpool._admission import Admission
    from fairpool._job import Job

    admission = Admission("order", "fifo", max_queue=1, raise_when_full=False)
    a, b, c = (Job(int, (), {}, "default", 1) for _ in range(3))
    assert admission.admit(a, coming=0) is None and not a.held  # queued
    assert admission.admit(b, coming=0) is None and b.held  # the queue is full: held
    assert admission.admit(c, coming=1) is None  # room for one (a worker is coming for a)...
    assert c.held, "the newcomer went into the queue ahead of the call held before it"
    assert admission.make_room(coming=1) and not b.held  # ...which the held call gets first
    assert list(admission.queue) == [a, b] and list(admission.held) == [c]


@pytest.mark.timeout(60)
def test_held_calls_start_before_calls_made_after_them() -> None:
    """threads=1, max_queue=1, fifo: X runs, A is queued, B held; resize(2) (A starts), then C.

    When X returns, its worker takes B, not C.
    """
    for _ in range(10):  # a race: one round was enough, most of the time, before the fix
        gates = {name: threading.Event() for name in "XABC"}
        order: list[str] = []

        def call(name: str, gates: dict[str, threading.Event] = gates, order: list[str] = order) -> str:
            order.append(name)
            gates[name].wait(10)
            return name

        pool = fairpool.Pool(threads=1, max_queue=1, on_full="wait", policy="fifo", name="held-first")
        stats = pool.statistics
        try:
            futures = [pool.submit(call, "X")]
            wait_until(lambda stats=stats: stats().busy == 1, what="X to run")
            futures += [pool.submit(call, name) for name in "AB"]
            assert (stats().queued, stats().waiting_admission) == (1, 1)
            pool.resize(2)
            futures.append(pool.submit(call, "C"))
            wait_until(lambda order=order: order == ["X", "A"], what="X and A running")
            gates["X"].set()
            wait_until(lambda order=order: len(order) == 3, what="X's worker to take the next call")
            assert order == ["X", "A", "B"], f"start order {order}: C was submitted after B was held"
            for gate in gates.values():
                gate.set()
            assert [f.result(timeout=10) for f in futures] == list("XABC")
        finally:
            for gate in gates.values():
                gate.set()
            pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_growing_a_bounded_pool_runs_its_held_calls_too(gate: threading.Event) -> None:
    """threads=1, max_queue=1: X runs, A is queued, B and C are held; resize(3) runs X, A and B."""
    pool = fairpool.Pool(threads=1, max_queue=1, on_full="wait", name="grows")
    try:
        futures = [pool.submit(gate.wait, 10) for _ in "XABC"]
        wait_until(
            lambda: (pool.statistics().busy, pool.statistics().waiting_admission) == (1, 2),
            what="one call running, one queued, two held",
        )
        pool.resize(3)
        wait_until(lambda: pool.statistics().busy == 3, what="three calls running after resize(3)")
        stats = pool.statistics()
        assert (stats.threads, stats.queued, stats.waiting_admission) == (3, 1, 0), stats
        gate.set()
        assert [f.result(timeout=10) for f in futures] == [True] * 4
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(60)
def test_a_native_submit_refused_at_the_bound_raises_even_when_the_bound_filled_meanwhile(
    gate: threading.Event,
) -> None:
    """16 threads submit at once to threads=1, max_queue=1: each gets a future or QueueFull, never a
    future that already failed with QueueFull (the check before the lock and the one under it race)."""
    pool = fairpool.Pool(threads=1, max_queue=1, on_full="raise", name="refuses")
    failed_futures: list[BaseException | None] = []
    accepted: list[object] = []
    start = threading.Barrier(16)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race is narrow

    def producer() -> None:
        start.wait()
        for _ in range(300):
            try:
                future = pool.submit(gate.wait, 10)
            except QueueFull:
                continue
            if future.done() and isinstance(future.exception(0), QueueFull):
                failed_futures.append(future.exception(0))
            else:
                accepted.append(future)

    try:
        threads = [threading.Thread(target=producer) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        sys.setswitchinterval(interval)
        assert failed_futures == [], f"{len(failed_futures)} submit() calls returned a failed future"
        assert len(accepted) <= 2, f"{len(accepted)} calls taken with one worker and max_queue=1"
        gate.set()
        assert all(f.result(timeout=10) is True for f in accepted)  # type: ignore[attr-defined]
    finally:
        sys.setswitchinterval(interval)
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_queue": 0}, "max_queue must be an int >= 1 or None, got 0"),
        ({"on_full": "drop"}, "on_full must be 'wait' or 'raise', got 'drop'"),
        ({"policy": "lifo"}, "policy must be one of \\['fair', 'fifo'\\], got 'lifo'"),
        ({"stats_interval": 0}, r"stats_interval must be a number of seconds > 0 and <= 86400 \(a day\) or"),
        ({"name": ""}, "name must be a non-empty string, got ''"),
        ({"lane_key": "tenant"}, "lane_key must be callable or None, got 'tenant'"),
    ],
)
def test_bad_pool_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fairpool.Pool(**kwargs)


# -- shutdown ---------------------------------------------------------------


def test_shutdown_runs_queued_calls_then_refuses_new_ones() -> None:
    pool = fairpool.Pool(threads=1, name="closing")
    gts = [eventlet.spawn(pool.execute, lambda i=i: (time.sleep(0.005), i)[1]) for i in range(5)]
    eventlet.sleep(0)
    pool.shutdown()
    assert [gt.wait() for gt in gts] == list(range(5))
    assert pool.statistics().threads == 0
    with pytest.raises(PoolClosed, match="pool 'closing' is shut down"):
        pool.execute(int)
    with pytest.raises(PoolClosed):
        pool.submit(int)


@pytest.mark.timeout(60)
def test_shutdown_waits_for_workers_started_after_it_began() -> None:
    """resize() up while a shutdown waits starts workers for the queued calls: it waits for those too."""
    pool = fairpool.Pool(threads=1, name="late-workers")
    running: set[int] = set()
    guard = threading.Lock()

    def call(i: int, seconds: float) -> int:
        with guard:
            running.add(i)
        time.sleep(seconds)
        with guard:
            running.discard(i)
        return i

    futures = [pool.submit(call, 0, 0.3)]
    futures += [pool.submit(call, i, 0.6 if i == 1 else 0.01) for i in range(1, 6)]
    wait_until(lambda: running == {0}, what="the first call to run")
    shutting = threading.Thread(target=pool.shutdown)  # wait=True, no timeout
    shutting.start()

    def refuses() -> bool:  # the shutdown began (a probe call made before that just runs)
        try:
            pool.submit(int)
        except PoolClosed:
            return True
        return False

    wait_until(refuses, what="the shutdown to begin")
    pool.resize(4)  # starts workers for the queued calls, after the shutdown took its list
    shutting.join(30)
    assert not shutting.is_alive()
    with guard:
        still = sorted(running)
    assert still == [], f"shutdown() returned while calls {still} were still running"
    assert [f.result(timeout=0) for f in futures] == [0, 1, 2, 3, 4, 5]


def test_shutdown_timeout_answers_whatever_is_left_with_pool_closed(gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="stuck")
    running = eventlet.spawn(pool.execute, gate.wait, 30)
    wait_until(lambda: pool.statistics().busy == 1, what="the stuck call")
    queued = eventlet.spawn(pool.execute, int)
    native_out: list[BaseException] = []

    def native() -> None:
        try:
            pool.execute(int)
        except PoolClosed as exc:
            native_out.append(exc)

    t = threading.Thread(target=native)
    t.start()
    wait_until(lambda: pool.statistics().queued == 2, what="two queued calls")
    pool.shutdown(timeout=0.1)
    for gt in (running, queued):
        with pytest.raises(PoolClosed, match="timeout"):
            gt.wait()
    t.join(5)
    assert len(native_out) == 1
    assert pool.statistics().closed == 3


def test_shutdown_from_a_native_thread_with_a_stuck_call_returns() -> None:
    pool = fairpool.Pool(threads=1, name="native-stuck")
    gate = threading.Event()
    fut = pool.submit(gate.wait, 30)
    wait_until(lambda: pool.statistics().busy == 1, what="the stuck call")
    pool.shutdown(timeout=0.05)
    with pytest.raises(PoolClosed):
        fut.result(1)
    gate.set()


def test_a_process_whose_last_call_is_stuck_in_c_exits() -> None:
    # eventlet issue 989: tpool's atexit killall joins a thread stuck in C forever.
    code = textwrap.dedent(
        """
        import ctypes, eventlet, fairpool
        libc = ctypes.CDLL(None)
        eventlet.spawn(fairpool.execute, libc.sleep, 1000)
        eventlet.sleep(0.1)
        pool = fairpool.Pool(threads=1, name="other")
        pool.submit(libc.sleep, 1000)
        print("main code ended", flush=True)
        """
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert "main code ended" in proc.stdout
    assert took < 20, f"the process took {took:.1f}s to exit with a call stuck in C"


# -- fork -------------------------------------------------------------------


def test_a_forked_child_gets_a_fresh_pool_sharing_no_fd_or_thread() -> None:
    out = run_script(
        """
        import os, threading, eventlet, fairpool
        from fairpool import _hubchannel

        def pipe_inodes():
            out = set()
            for fd in os.listdir("/proc/self/fd"):
                try:
                    st = os.fstat(int(fd))
                except OSError:
                    continue
                out.add(st.st_ino)
            return out

        fairpool.set_num_threads(3)
        for gt in [eventlet.spawn(fairpool.execute, eventlet.patcher.original("time").sleep, 0.05)
                   for _ in range(3)]:
            gt.wait()
        parent_pipe = os.fstat(_hubchannel.current_channel().rfd).st_ino
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                name = fairpool.execute(lambda: threading.current_thread().name)
                child_pipe = os.fstat(_hubchannel.current_channel().rfd).st_ino
                checks = [
                    name.startswith("fairpool-default-"),
                    child_pipe != parent_pipe,
                    parent_pipe not in pipe_inodes(),
                    len(os.listdir("/proc/self/task")) == 2,  # the main thread and one new worker
                ]
                os.write(w, str(checks).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(r, 100).decode())
        print(fairpool.execute(lambda: "parent fine"))
        """
    )
    assert out.splitlines() == ["[True, True, True, True]", "parent fine"], out


def test_fork_while_calls_are_in_flight_answers_the_child_s_waiters() -> None:
    out = run_script(
        """
        import os, threading, time, eventlet, fairpool
        from fairpool import PoolClosed

        gate = threading.Event()
        fairpool.set_num_threads(1)
        running = eventlet.spawn(fairpool.execute, gate.wait, 5)
        queued = eventlet.spawn(fairpool.execute, lambda: "queued result")
        eventlet.sleep(0.05)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                outcomes = []
                for gt in (running, queued):
                    try:
                        outcomes.append(repr(gt.wait()))
                    except PoolClosed:
                        outcomes.append("PoolClosed")
                outcomes.append(fairpool.execute(lambda: "child call"))
                os.write(w, " ".join(outcomes).encode())
            finally:
                os._exit(0)
        gate.set()
        print(running.wait(), queued.wait())
        os.waitpid(pid, 0)
        print(os.read(r, 200).decode())
        """
    )
    parent, child = out.strip().splitlines()
    assert parent == "True queued result"
    assert child == "PoolClosed PoolClosed child call"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("holder", ["the forking thread", "another thread"])
def test_a_future_whose_answer_was_on_its_way_at_the_fork_is_answered_in_the_child(holder: str) -> None:
    # The worker has finished the call and is settling its future, but waits for the future's
    # lock (held here, as concurrent.futures.wait() holds it): the process forks then. In the
    # child that worker is gone; the future must still be answered there, never left pending.
    out = run_script(
        """
        import os, threading, time, fairpool
        from fairpool import PoolClosed
        from fairpool._job import DONE

        pool = fairpool.Pool(threads=1, name="fork-answering")
        gate = threading.Event()
        future = pool.submit(lambda: (gate.wait(5), "parent result")[1])
        job = future._fairpool_job
        deadline = time.monotonic() + 5
        while not future.running() and time.monotonic() < deadline:
            time.sleep(0.001)  # the call started: the worker is inside it, waiting for the gate
        lock = future._condition  # the future's own lock, as concurrent.futures.wait() takes it
        held, let_go = threading.Event(), threading.Event()
        def hold():
            with lock:
                held.set()
                let_go.wait(10)
        if HOLDER == "another thread":
            threading.Thread(target=hold, daemon=True).start()
            held.wait(5)
        else:
            lock.acquire()
        gate.set()
        deadline = time.monotonic() + 5
        while not (future._fairpool_answered and job.state == DONE) and time.monotonic() < deadline:
            time.sleep(0.001)  # DONE under the pool's lock; its answer waits for the future's lock
        time.sleep(0.05)
        assert future._state == "RUNNING", "the answer must still be on its way at the fork"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                try:
                    outcome = repr(future.result(timeout=3))
                except PoolClosed as exc:
                    outcome = "PoolClosed: " + str(exc)
                except BaseException as exc:
                    outcome = "never answered: " + type(exc).__name__
                os.write(w, outcome.encode())
            finally:
                os._exit(0)
        if HOLDER == "another thread":
            let_go.set()
        else:
            lock.release()
        print(future.result(timeout=5))
        os.waitpid(pid, 0)
        print(os.read(r, 500).decode())
        """.replace("HOLDER", repr(holder))
    )
    parent, child = out.strip().splitlines()
    assert parent == "parent result", out
    assert child.startswith("PoolClosed: the process forked while this call's answer was on its way"), child


# -- statistics -------------------------------------------------------------


def test_statistics_count_what_happened(pool: fairpool.Pool) -> None:
    pool.execute(time.sleep, 0.01)
    with pytest.raises(ZeroDivisionError):
        pool.execute(lambda: 1 / 0)
    stats = pool.statistics()
    assert (stats.submitted, stats.completed, stats.failed) == (2, 1, 1)
    assert stats.run_max >= 0.01 and stats.run_p50 <= stats.run_p99 <= stats.run_max
    assert stats.wait_p50 <= stats.wait_p99 <= stats.wait_max
    assert stats.threads >= 1 and stats.busy == 0 and stats.size == 4
    with pytest.raises(AttributeError):
        stats.busy = 3  # type: ignore[misc]
    assert fairpool.statistics().name == "default"


def test_stats_interval_logs_a_line_periodically(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fairpool")
    pool = fairpool.Pool(threads=1, name="logged", stats_interval=0.02)
    try:
        pool.execute(int)
        wait_until(lambda: "fairpool pool 'logged'" in caplog.text, what="a statistics log line")
        assert "completed=1" in caplog.text
    finally:
        pool.shutdown(timeout=5)


def test_fds_are_not_leaked_by_pools_coming_and_going() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        p = fairpool.Pool(threads=2, name=f"tmp{i}")
        p.execute(int)
        p.shutdown()
    assert len(os.listdir("/proc/self/fd")) <= before + 2


# -- under load -------------------------------------------------------------


@pytest.mark.parametrize("how", ["shutdown", "killall"])
def test_shutdown_and_killall_under_load_answer_every_caller(how: str) -> None:
    fairpool.set_num_threads(4)
    pool = fairpool.default_pool()
    answers: dict[int, object] = {}
    stop = threading.Event()
    counter = iter(range(10**9))

    def green_caller() -> None:
        while not stop.is_set():
            token = next(counter)
            try:
                answers[token] = pool.execute(lambda t=token: (time.sleep(0.001), t)[1])
            except PoolClosed:
                answers[token] = "closed"
                return  # the pool takes no more calls

    def native_caller() -> None:
        while not stop.is_set():
            token = next(counter)
            try:
                answers[token] = pool.execute(lambda t=token: t)
            except PoolClosed:
                answers[token] = "closed"
                return

    greens = [eventlet.spawn(green_caller) for _ in range(100)]
    natives = [threading.Thread(target=native_caller) for _ in range(10)]
    for t in natives:
        t.start()
    eventlet.sleep(0.3)
    if how == "shutdown":
        pool.shutdown(timeout=0.05)
        stop.set()
    else:
        stop.set()
        for t in natives:  # so that no native call starts during killall
            t.join(20)
        fairpool.killall()  # green calls are still in flight
    with eventlet.Timeout(20):
        for gt in greens:
            gt.wait()
    for t in natives:
        t.join(20)
        assert not t.is_alive(), "a native caller is stuck"
    assert answers, "no call was made"
    wrong = {k: v for k, v in answers.items() if v != k and v != "closed"}
    assert not wrong, f"calls got another call's answer: {list(wrong.items())[:5]}"
    if how == "killall":
        assert "closed" not in answers.values(), "killall must run every queued call"
        assert fairpool.execute(lambda: "usable again") == "usable again"


def test_fork_under_load_answers_every_waiter_in_the_child() -> None:
    out = run_script(
        """
        import os, eventlet, fairpool
        from eventlet import patcher
        from fairpool import PoolClosed
        sleep = patcher.original("time").sleep

        fairpool.set_num_threads(4)
        calls = [eventlet.spawn(fairpool.execute, lambda i=i: (sleep(0.02), i)[1]) for i in range(30)]
        eventlet.sleep(0.01)  # some running, most queued
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                seen = []
                for gt in calls:
                    try:
                        seen.append(gt.wait())
                    except PoolClosed:
                        seen.append("closed")
                assert fairpool.execute(lambda: 7) == 7
                os.write(w, f"{len(seen)} {seen.count('closed')}".encode())
            finally:
                os._exit(0)
        parent = [gt.wait() for gt in calls]
        os.waitpid(pid, 0)
        print(parent == list(range(30)), os.read(r, 100).decode())
        """
    )
    ok, answered, closed = out.split()
    assert ok == "True", "the parent lost a result"
    assert answered == "30", "a waiter in the child was never answered"
    assert int(closed) > 0, "the child should answer calls in flight with PoolClosed"


def test_stats_interval_logs_from_a_green_thread_under_monkey_patch() -> None:
    # Under monkey-patching logging's locks are green: the logger must not be a native thread.
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import logging, sys
        import fairpool
        logging.basicConfig(level=logging.INFO, format="%(threadName)s %(message)s", stream=sys.stdout)
        pool = fairpool.Pool(threads=2, name="periodic", stats_interval=0.05)
        pool.execute(int)
        eventlet.sleep(0.3)
        pool.shutdown()
        """
    )
    lines = [line for line in out.splitlines() if "fairpool pool 'periodic'" in line]
    assert lines, out
    assert not any(line.startswith("fairpool-") for line in lines), "logged from a native thread"


@pytest.mark.timeout(60)
def test_a_non_daemon_thread_waiting_on_a_queued_call_does_not_hold_up_exit() -> None:
    out = run_script(
        """
        import threading, time
        import fairpool
        pool = fairpool.Pool(1, name="exit", exit_timeout=0.5)
        pool.submit(time.sleep, 1000)  # stuck in "C" for good: the exit waits 0.5 s for it

        def waiter():
            try:
                pool.execute(lambda: "ran")
            except fairpool.PoolClosed as exc:
                print("answered:", type(exc).__name__, flush=True)

        threading.Thread(target=waiter).start()  # not a daemon: the interpreter joins it at exit
        time.sleep(0.2)
        print("main ends", flush=True)
        """,
        timeout=30,
    )
    assert out.split("\n")[:2] == ["main ends", "answered: PoolClosed"], out
