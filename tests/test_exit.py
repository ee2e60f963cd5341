"""The exit rule (docs/reliability.md, "At interpreter exit"), in real processes.

At interpreter exit, queued calls still run and running calls finish, but
the exit never waits past a deadline (``exit_timeout``, ``FAIRPOOL_EXIT_TIMEOUT``);
past it, one ExitTimeoutWarning names each call left. Every test runs a
script in a fresh interpreter and looks at what it wrote, printed and warned.
Durations are only upper bounds, with a wide margin, never speed claims.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fairpool

WARNING = "ExitTimeoutWarning"


def run_exit(code: str, *, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[str, str, float]:
    """Run ``code`` in a fresh interpreter until it exits; return its stdout, stderr and duration."""
    full_env = {k: v for k, v in os.environ.items() if k != "FAIRPOOL_EXIT_TIMEOUT"}
    full_env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    full_env.update(env or {})
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    took = time.monotonic() - start
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout, proc.stderr, took


def exit_warnings(stderr: str) -> list[str]:
    """The ExitTimeoutWarning messages in ``stderr``, each with its lines."""
    found = []
    for block in re.split(r"\n(?=\S)", stderr):
        if WARNING in block:
            found.append(block)
    return found


# -- queued calls still run ---------------------------------------------------------------

# Six calls of 0.2 s on two threads, then the main thread ends: concurrent.futures runs
# all six before the process exits, and so must every fairpool entry point.
SIX_RECORDS = {
    "pool": """
        pool = fairpool.Pool(2, name="records")
        for i in range(6):
            pool.submit(write_record, i)
        """,
    "pool, shutdown(wait=False)": """
        pool = fairpool.Pool(2, name="records")
        for i in range(6):
            pool.submit(write_record, i)
        pool.shutdown(wait=False)
        """,
    "default pool": """
        fairpool.set_num_threads(2)
        for i in range(6):
            fairpool.default_pool().submit(write_record, i)
        """,
    "FuturistExecutor": """
        executor = fairpool.FuturistExecutor(max_workers=2)
        for i in range(6):
            executor.submit(write_record, i)
        """,
    "FuturistExecutor, shutdown(wait=False)": """
        executor = fairpool.FuturistExecutor(max_workers=2)
        for i in range(6):
            executor.submit(write_record, i)
        executor.shutdown(wait=False)
        """,
    "aio.install() on the default pool, asyncio.run": """
        import asyncio
        fairpool.set_num_threads(2)

        async def main():
            fairpool.aio.install()
            loop = asyncio.get_running_loop()
            for i in range(6):
                loop.run_in_executor(None, write_record, i)

        asyncio.run(main())
        """,
    "aio.DefaultExecutor of its own, loop left open": """
        import asyncio
        loop = asyncio.new_event_loop()
        loop.set_default_executor(fairpool.aio.DefaultExecutor(threads=2))
        for i in range(6):
            loop.run_in_executor(None, write_record, i)
        """,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", sorted(SIX_RECORDS))
def test_calls_pending_when_the_main_thread_ends_still_run(how: str, tmp_path: Path) -> None:
    records = tmp_path / "records"
    code = textwrap.dedent(f"""
        import time
        import fairpool

        def write_record(i):
            time.sleep(0.2)
            with open({str(records)!r}, "a") as f:
                f.write(f"{{i}}\\n")
        """) + textwrap.dedent(SIX_RECORDS[how])
    _, stderr, took = run_exit(code)
    written = sorted(records.read_text().split()) if records.exists() else []
    assert written == [str(i) for i in range(6)], (
        f"{how}: {len(written)} of 6 pending calls ran before the process exited\n{stderr}"
    )
    assert WARNING not in stderr, stderr
    assert took < 50, f"{how}: the exit took {took:.1f}s"


@pytest.mark.timeout(60)
def test_the_done_callbacks_of_the_last_calls_still_run(tmp_path: Path) -> None:
    # A worker leaves the pool's records once the queue is empty, then answers its last
    # call: its future's done-callbacks run in that thread, and the exit waits for them too.
    records = tmp_path / "records"
    _, stderr, _ = run_exit(
        f"""
        import time
        import fairpool

        def write_record(future):
            time.sleep(0.3)
            with open({str(records)!r}, "a") as f:
                f.write(f"{{future.result()}}\\n")

        pool = fairpool.Pool(2, name="callbacks")
        for i in range(2):
            pool.submit(time.sleep, 0.2).add_done_callback(write_record)
        """
    )
    written = records.read_text().split() if records.exists() else []
    assert written == ["None", "None"], f"{len(written)} of 2 done-callbacks ran before the exit\n{stderr}"


@pytest.mark.timeout(120)
def test_calls_pending_under_the_patch_still_run(tmp_path: Path) -> None:
    # eventlet's own promise (its atexit killall runs the queue), kept under fairpool's patch.
    records = tmp_path / "records"
    _, stderr, _ = run_exit(
        f"""
        import eventlet
        eventlet.monkey_patch()
        import time
        import fairpool
        fairpool.monkey_patch()
        fairpool.set_num_threads(2)

        def write_record(i):
            time.sleep(0.2)
            with open({str(records)!r}, "a") as f:
                f.write(f"{{i}}\\n")

        for i in range(6):
            eventlet.spawn(fairpool.execute, write_record, i)
        eventlet.sleep(0.05)
        """
    )
    written = sorted(records.read_text().split()) if records.exists() else []
    assert written == [str(i) for i in range(6)], f"{len(written)} of 6 pending calls ran\n{stderr}"
    assert WARNING not in stderr, stderr


# -- but the exit never waits past its deadline -------------------------------------------

PATCHES = {
    "eventlet's patch first": """
        import eventlet
        eventlet.monkey_patch()
        import fairpool
        fairpool.monkey_patch()
        """,
    # threading is not patched yet when fairpool patches and the pool is made: only atexit
    # can run fairpool's exit, and it must run before eventlet.tpool's own atexit killall.
    "fairpool's patch first": """
        import fairpool
        fairpool.monkey_patch()
        fairpool.default_pool()
        import eventlet
        eventlet.monkey_patch()
        """,
}

STUCK_UNDER_THE_PATCH = """
    import ctypes
    libc = ctypes.CDLL(None)

    def stuck_in_c(seconds):
        libc.sleep(seconds)  # a real C sleep: time.sleep is green under the patch

    def boot():
        with fairpool.lane("boot"):
            fairpool.execute(stuck_in_c, 30)

    eventlet.spawn(boot)
    eventlet.sleep(0.3)
    print("main ends", flush=True)
    """


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", sorted(PATCHES))
def test_a_call_stuck_in_c_under_the_patch_does_not_hold_up_exit(order: str) -> None:
    # eventlet issue 989, back through the rerouted atexit killall: it waited the full 30 s.
    stdout, stderr, took = run_exit(textwrap.dedent(PATCHES[order]) + textwrap.dedent(STUCK_UNDER_THE_PATCH))
    assert stdout == "main ends\n", stdout
    assert took < 10, f"the process took {took:.1f}s to exit with a call stuck in C for 30 s"
    found = exit_warnings(stderr)
    assert len(found) == 1, f"expected one ExitTimeoutWarning:\n{stderr}"
    line = re.search(
        r"stuck_in_c in pool 'default' \(exit_timeout 5s\), lane 'boot': running for ([\d.]+)s", found[0]
    )
    assert line is not None, f"the warning does not name the call, its pool, lane and time:\n{found[0]}"
    assert 4 < float(line.group(1)) < 10, found[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world", ["native", "eventlet.monkey_patch()"])
def test_a_shutdown_at_exit_waits_no_longer_than_the_exit_deadline(world: str) -> None:
    # A later exit entry point (here a service's own atexit handler, which runs after
    # fairpool's hook) must not wait again: its shutdown() has no timeout of its own.
    patch = "import eventlet\neventlet.monkey_patch()\n" if world != "native" else ""
    stdout, stderr, took = run_exit(
        patch
        + textwrap.dedent("""
        import atexit, ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pool = fairpool.Pool(1, name="service", exit_timeout=1)

        def stop():
            pool.shutdown()
            print("stopped", flush=True)

        atexit.register(stop)
        pool.submit(libc.sleep, 30)
        print("main ends", flush=True)
        """)
    )
    assert stdout == "main ends\nstopped\n", stdout
    assert took < 20, f"the exit took {took:.1f}s: the atexit shutdown() waited for the stuck call"
    assert len(exit_warnings(stderr)) == 1, stderr


@pytest.mark.timeout(60)
def test_n_pools_with_stuck_calls_wait_once_not_n_times() -> None:
    # Five pools of 2 s each: in sequence the exit would wait 10 s; it waits 2 s, once.
    _, stderr, took = run_exit(
        """
        import ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pools = [fairpool.Pool(1, name=f"p{i}", exit_timeout=2) for i in range(5)]
        for pool in pools:
            pool.submit(libc.sleep, 60)
            pool.submit(libc.sleep, 60)  # and one queued behind it
        print("main ends", flush=True)
        """
    )
    found = exit_warnings(stderr)
    assert len(found) == 1, f"expected ONE warning for every pool:\n{stderr}"
    for i in range(5):
        assert f"in pool 'p{i}' (exit_timeout 2s), lane 'default': running for" in found[0], found[0]
        assert re.search(
            rf"in pool 'p{i}' \(exit_timeout 2s\), lane 'default': queued for [\d.]+s, never ran", found[0]
        )
    waited = float(re.search(r"after waiting ([\d.]+)s", found[0]).group(1))  # type: ignore[union-attr]
    assert waited < 6, f"the exit waited {waited}s for five pools of 2 s: once per pool?"
    assert took < 40, f"the exit took {took:.1f}s"


# -- the deadline: the option and the variable ---------------------------------------------

A_CALL_OF_TWO_SECONDS = """
    import time
    import fairpool
    pool = fairpool.Pool(1, name="slow"{options})

    def write_record():
        time.sleep(2)
        with open({records!r}, "a") as f:
            f.write("written\\n")

    pool.submit(write_record)
    time.sleep(0.3)  # running when the main thread ends
    """


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("variable", "option", "runs"),
    [
        (None, None, True),  # the default, 5 s, lets a 2 s call finish
        ("0.3", None, False),  # the variable shortens it
        (None, 0.3, False),  # the option too
        ("0.3", 5, True),  # the option wins over the variable
        ("0", None, False),  # 0: no wait at all, but the call is still named
    ],
)
def test_the_exit_timeout_option_and_variable_set_the_deadline(
    variable: str | None, option: float | None, runs: bool, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    options = "" if option is None else f", exit_timeout={option}"
    env = {} if variable is None else {"FAIRPOOL_EXIT_TIMEOUT": variable}
    _, stderr, took = run_exit(A_CALL_OF_TWO_SECONDS.format(options=options, records=str(records)), env=env)
    assert records.exists() == runs, f"variable={variable} option={option}: ran={records.exists()}\n{stderr}"
    found = exit_warnings(stderr)
    if runs:
        assert not found, stderr
    else:
        deadline = f"{float(option if option is not None else variable):g}"  # type: ignore[arg-type]
        assert len(found) == 1, stderr
        assert re.search(
            rf"write_record in pool 'slow' \(exit_timeout {deadline}s\), lane 'default': running for [\d.]+s",
            found[0],
        ), found[0]
    assert took < 30, f"the exit took {took:.1f}s"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf", "1e9", "3601"])
def test_a_bad_exit_timeout_variable_warns_once_and_the_default_is_used(value: str, tmp_path: Path) -> None:
    records = tmp_path / "records"
    _, stderr, _ = run_exit(
        A_CALL_OF_TWO_SECONDS.format(options="", records=str(records)), env={"FAIRPOOL_EXIT_TIMEOUT": value}
    )
    named = [line for line in stderr.splitlines() if f"FAIRPOOL_EXIT_TIMEOUT={value!r}" in line]
    assert len(named) == 1, f"expected one warning naming the variable and its value:\n{stderr}"
    assert "the default (5s) is used" in named[0], named[0]
    assert records.exists(), f"the default deadline (5 s) should have let the 2 s call finish\n{stderr}"
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), 3601, "5", True])
def test_a_bad_exit_timeout_is_named(value: object) -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(f"exit_timeout must be a number of seconds from 0 to 3600 or None, got {value!r}"),
    ):
        fairpool.Pool(1, exit_timeout=value)  # type: ignore[arg-type]


def test_the_exit_warning_is_a_runtime_warning_of_fairpool_s_own() -> None:
    assert issubclass(fairpool.ExitTimeoutWarning, RuntimeWarning)
    assert "ExitTimeoutWarning" in fairpool.__all__


@pytest.mark.timeout(60)
def test_the_exit_warning_is_printed_even_where_a_filter_makes_warnings_errors() -> None:
    # Raised at exit, it would stop the interpreter's other exit hooks and print a traceback.
    stdout, stderr, _ = run_exit(
        """
        import atexit, ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pool = fairpool.Pool(1, name="strict", exit_timeout=0.2)
        atexit.register(print, "later atexit hooks still ran", flush=True)
        pool.submit(libc.sleep, 30)
        """,
        env={"PYTHONWARNINGS": "error::RuntimeWarning"},
    )
    assert "later atexit hooks still ran" in stdout, stdout
    assert "libc.sleep in pool 'strict'" in stderr or "sleep in pool 'strict'" in stderr, stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.timeout(60)
def test_the_exit_warning_can_be_filtered_by_its_class() -> None:
    _, stderr, _ = run_exit(
        """
        import ctypes, warnings
        import fairpool
        warnings.simplefilter("ignore", fairpool.ExitTimeoutWarning)
        libc = ctypes.CDLL(None)
        fairpool.Pool(1, name="quiet", exit_timeout=0.2).submit(libc.sleep, 30)
        """
    )
    assert WARNING not in stderr, stderr


@pytest.mark.timeout(60)
def test_every_caller_is_answered_exactly_once_when_the_deadline_cuts_a_busy_pool() -> None:
    # Short calls finishing around the deadline, stuck ones, cancelled futures, native callers
    # in non-daemon threads: after the exit's wait each is answered once, never twice.
    stdout, stderr, _ = run_exit(
        """
        import atexit, collections, random, threading, time
        answers = collections.Counter()
        outcomes = collections.Counter()

        def check():  # registered before fairpool's hooks: runs after the exit's wait
            time.sleep(0.3)  # answers handed over by threads that finished at the deadline
            missing = [i for i in range(300) if answers[i] != 1]
            twice = [k for k, n in outcomes.items() if n != 1]
            print("futures not answered once:", missing, "callers not answered:", twice, flush=True)

        atexit.register(check)
        import ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pool = fairpool.Pool(4, name="race", exit_timeout=0.3)
        futures = []
        for i in range(300):
            if i % 97 == 5:
                future = pool.submit(libc.usleep, 5_000_000)
            else:
                future = pool.submit(time.sleep, random.choice([0, 0.001, 0.004, 0.02]))
            future.add_done_callback(lambda f, i=i: answers.update([i]))
            futures.append(future)
        for future in futures[::7]:
            future.cancel()

        def caller(k):
            for j in range(20):
                try:
                    pool.execute(time.sleep, 0.003)
                    outcome = "ran"
                except fairpool.PoolClosed:
                    outcome = "closed"
                outcomes.update([(k, j)])
                if outcome == "closed":
                    for rest in range(j + 1, 20):
                        outcomes.update([(k, rest)])
                    return

        for k in range(4):
            threading.Thread(target=caller, args=(k,)).start()
        time.sleep(0.05)
        """
    )
    assert stdout == "futures not answered once: [] callers not answered: []\n", stdout + stderr
    assert "Traceback" not in stderr, stderr


# -- new calls at exit; a thread waiting on a queued call ----------------------------------


@pytest.mark.timeout(60)
def test_a_non_daemon_thread_waiting_on_a_queued_call_gets_its_result_when_it_runs_in_time() -> None:
    stdout, stderr, _ = run_exit(
        """
        import threading, time
        import fairpool
        pool = fairpool.Pool(1, name="exit")
        pool.submit(time.sleep, 0.5)  # runs, then the queued call behind it

        def waiter():
            print("answered:", pool.execute(lambda: "ran"), flush=True)

        threading.Thread(target=waiter).start()  # not a daemon: the interpreter joins it at exit
        time.sleep(0.2)
        print("main ends", flush=True)
        """
    )
    assert stdout.splitlines() == ["main ends", "answered: ran"], stdout + stderr
    assert WARNING not in stderr, stderr


@pytest.mark.timeout(60)
def test_a_call_made_during_exit_is_refused() -> None:
    stdout, stderr, _ = run_exit(
        """
        import atexit
        import fairpool
        pool = fairpool.Pool(1, name="late")
        pool.execute(int)

        def late():
            try:
                pool.execute(int)
            except fairpool.PoolClosed as exc:
                print("refused:", exc, flush=True)

        atexit.register(late)
        """
    )
    assert stdout == "refused: pool 'late' takes no more calls: the interpreter is exiting\n", stdout + stderr


# -- the exit rule when no fairpool hook has run yet ------------------------------------------


def run_exit_bounded(code: str, *, env: dict[str, str] | None = None) -> tuple[str, str, float]:
    """As run_exit, but a process that hangs fails the test with a message saying so."""
    try:
        return run_exit(code, env=env, timeout=40)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the process never exited (killed after 40s): {exc.stderr!r}") from None


# The pool (or fairpool.monkey_patch()) comes before eventlet.monkey_patch(): fairpool's
# pre-join hook is not registered with eventlet's copy of threading, and the service's own
# atexit handler runs before fairpool's. Its shutdown()/killall still waits only until the
# exit's deadline (it finds threading's exit begun and starts the exit rule itself).
BEFORE_THE_PATCH = {
    "pool": """
        pool = fairpool.Pool(2, name="service", exit_timeout=1)
        stuck = lambda: pool.submit(libc.sleep, 30)
        stop = pool.shutdown
    """,
    "default": """
        fairpool.execute(int)
        fairpool.default_pool()  # the default pool, made before the patch
        stuck = lambda: tpool.default_pool().submit(libc.sleep, 30)
        stop = tpool.killall
    """,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("order", ["none", "fairpool-first"])
@pytest.mark.parametrize("how", sorted(BEFORE_THE_PATCH))
def test_a_shutdown_at_exit_is_bounded_when_the_pool_came_before_eventlet_s_patch(
    how: str, order: str
) -> None:
    fairpool_first = "fairpool.monkey_patch()\n" if order == "fairpool-first" else ""
    stdout, stderr, took = run_exit_bounded(
        "import atexit, ctypes\nimport fairpool\nfrom fairpool import tpool\nlibc = ctypes.CDLL(None)\n"
        + textwrap.dedent(BEFORE_THE_PATCH[how])
        + "import eventlet\n"
        + fairpool_first
        + "eventlet.monkey_patch()\n"
        + textwrap.dedent("""
        def handler():
            stop()
            print("stopped", flush=True)

        atexit.register(handler)
        stuck()
        print("main ends", flush=True)
        """),
        env={"FAIRPOOL_EXIT_TIMEOUT": "1"},
    )
    assert stdout == "main ends\nstopped\n", stdout + stderr
    assert took < 30, f"the exit took {took:.1f}s: the atexit handler waited for the stuck call"
    warned = exit_warnings(stderr)
    assert len(warned) == 1 and "sleep" in warned[0], stderr


@pytest.mark.timeout(60)
def test_a_future_of_a_stuck_call_is_answered_when_a_shutdown_at_exit_returns() -> None:
    # The atexit handler's shutdown() began the exit rule itself: by the time it returns,
    # the stuck call's caller has its PoolClosed (a handler waiting on it does not hang).
    stdout, stderr, _ = run_exit_bounded(
        """
        import atexit, ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pool = fairpool.Pool(1, name="service", exit_timeout=1)
        import eventlet
        eventlet.monkey_patch()
        future = pool.submit(libc.sleep, 30)

        def handler():
            pool.shutdown()
            print(type(future.exception(timeout=20)).__name__, flush=True)

        atexit.register(handler)
        """
    )
    assert stdout == "PoolClosed\n", stdout + stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["atexit", "a non-daemon thread"])
def test_the_first_import_of_fairpool_during_exit_works_and_its_pools_are_closed(where: str) -> None:
    start = (
        "import atexit\natexit.register(late_user)\n"
        if where == "atexit"
        else "threading.Thread(target=lambda: (time.sleep(0.5), late_user())).start()\n"
    )
    stdout, stderr, _ = run_exit_bounded(
        textwrap.dedent("""
        import sys, threading, time  # threading: the interpreter's exit begins with its _shutdown

        def late_user():
            try:
                import fairpool
            except Exception as exc:
                print("import failed:", repr(exc), flush=True)
                return
            try:
                fairpool.execute(lambda: 42)
            except fairpool.PoolClosed as exc:
                print("refused:", exc, flush=True)
        """)
        + start
    )
    refused = "refused: pool 'default' takes no more calls: the interpreter is exiting\n"
    assert stdout == refused, stdout + stderr


@pytest.mark.timeout(60)
def test_a_queued_call_using_a_proxy_on_its_own_pool_still_runs_at_exit() -> None:
    # api.md: a call from one of the pool's own workers runs inline; at exit queued calls
    # still run and running calls finish: a Proxy on its own pool inside them works too.
    stdout, stderr, _ = run_exit_bounded(
        """
        import time
        import fairpool
        pool = fairpool.Pool(1, name="libvirt")

        class Domain:
            def info(self):
                return "running"

        dom = fairpool.Proxy(Domain(), pool=pool)

        def audit():
            time.sleep(0.3)
            try:
                return dom.info()
            except Exception as exc:
                return f"FAILED: {exc!r}"

        pool.submit(audit).add_done_callback(lambda f: print("running:", f.result(), flush=True))
        pool.submit(audit).add_done_callback(lambda f: print("queued:", f.result(), flush=True))
        time.sleep(0.1)
        """
    )
    assert stdout == "running: running\nqueued: running\n", stdout + stderr


@pytest.mark.timeout(60)
def test_asyncio_run_returns_with_its_own_default_executor_once_a_call_is_stuck() -> None:
    # asyncio.run() waits for the default executor's shutdown(wait=True) with no limit;
    # DefaultExecutor bounds it by its pool's exit_timeout and says what it left.
    stdout, stderr, _ = run_exit_bounded(
        """
        import asyncio, ctypes
        import fairpool.aio
        libc = ctypes.CDLL(None)

        async def main():
            asyncio.get_running_loop().set_default_executor(fairpool.aio.DefaultExecutor(threads=2))
            try:
                await asyncio.wait_for(asyncio.to_thread(libc.sleep, 30), 0.3)
            except asyncio.TimeoutError:
                print("gave up", flush=True)

        asyncio.run(main())
        print("returned", flush=True)
        """,
        env={"FAIRPOOL_EXIT_TIMEOUT": "1"},
    )
    assert stdout == "gave up\nreturned\n", stdout + stderr
    assert "asyncio's shutdown of its default executor waited 1s" in stderr, stderr


@pytest.mark.timeout(60)
def test_native_threads_racing_to_start_the_exit_rule_answer_each_caller_once() -> None:
    # Three native threads of a service's atexit handler shut pools down at once, before
    # any fairpool hook ran (the pools came before eventlet's patch): one of them runs the
    # exit's wait, the others wait no longer than its deadline; each caller is answered once.
    stdout, stderr, took = run_exit_bounded(
        """
        import atexit, ctypes
        import fairpool
        libc = ctypes.CDLL(None)
        pools = [fairpool.Pool(1, name=f"p{i}", exit_timeout=1) for i in range(3)]
        import eventlet
        eventlet.monkey_patch()
        real_threading = eventlet.patcher.original("threading")
        answers = []
        futures = [p.submit(libc.sleep, 30) for p in pools]
        for f in futures:
            f.add_done_callback(lambda f: answers.append(type(f.exception()).__name__))

        def handler():
            threads = [real_threading.Thread(target=p.shutdown) for p in pools]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            print("alive:", sum(t.is_alive() for t in threads), "answers:", sorted(answers), flush=True)

        atexit.register(handler)
        """
    )
    assert stdout == "alive: 0 answers: ['PoolClosed', 'PoolClosed', 'PoolClosed']\n", stdout + stderr
    assert len(exit_warnings(stderr)) == 1, stderr
    assert took < 20, f"the exit took {took:.1f}s: it waited for the 30s calls, not for its 1s deadline"
