"""The eventlet.tpool surface: module names, setup/killall, and monkey_patch()."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types

import eventlet
import pytest
from eventlet import tpool as eventlet_tpool

import fairpool
from fairpool import tpool as fair_tpool

from .conftest import run_script, wait_until

EVENTLET_API = ("execute", "proxy_call", "Proxy", "setup", "killall", "set_num_threads")


def test_fairpool_tpool_has_eventlet_tpools_public_names() -> None:
    assert sorted(fair_tpool.__all__) == sorted(eventlet_tpool.__all__)
    for name in (*EVENTLET_API, "QUIET", "EXC_CLASSES", "SYS_EXCS"):
        assert hasattr(fair_tpool, name), name


def test_killall_delivers_calls_in_flight_and_setup_may_follow() -> None:
    fairpool.set_num_threads(2)
    gts = [eventlet.spawn(fairpool.execute, lambda i=i: (time.sleep(0.01), i)[1]) for i in range(6)]
    eventlet.sleep(0)  # all six are queued or running
    fairpool.killall()
    assert [gt.wait() for gt in gts] == list(range(6))
    assert fairpool.statistics().threads == 0
    fairpool.setup()
    assert fairpool.execute(lambda: "again") == "again"
    fairpool.killall()
    assert fairpool.execute(lambda: "without setup") == "without setup"


def test_killall_from_a_native_thread_waits_for_queued_calls() -> None:
    fairpool.set_num_threads(1)
    done: list[int] = []
    callers = [
        threading.Thread(target=lambda i=i: done.append(fairpool.execute(lambda: i))) for i in range(5)
    ]
    for t in callers:
        t.start()
    wait_until(lambda: fairpool.statistics().submitted == 5, what="5 submitted calls")
    fairpool.killall()
    for t in callers:
        t.join(5)
    assert sorted(done) == list(range(5))


def test_monkey_patch_routes_eventlet_tpool_to_fairpool() -> None:
    from eventlet import tpool as imported_before

    assert not fairpool.is_patched()
    fairpool.monkey_patch()
    fairpool.monkey_patch()  # idempotent
    assert fairpool.is_patched()
    assert imported_before.execute is fairpool.execute
    name = eventlet.tpool.execute(lambda: threading.current_thread().name)
    assert name.startswith("fairpool-default-"), name
    assert isinstance(eventlet.tpool.Proxy(object()), fairpool.Proxy)
    fairpool.unpatch()
    assert not fairpool.is_patched()
    assert eventlet.tpool.execute is not fairpool.execute
    assert eventlet.tpool.execute(lambda: 5) == 5
    eventlet.tpool.killall()


def test_eventlets_own_users_of_tpool_run_on_fairpool() -> None:
    from eventlet import db_pool

    class Connection:
        def cursor(self) -> str:
            return threading.current_thread().name

    fake_db = types.ModuleType("fake_db")
    fake_db.connect = lambda *a, **kw: Connection()  # type: ignore[attr-defined]
    fairpool.monkey_patch()
    pool = db_pool.TpooledConnectionPool(fake_db, min_size=0, max_size=1)
    conn = pool.get()
    assert isinstance(conn._base, fairpool.Proxy)
    assert str(conn.cursor()).startswith("fairpool-default-")
    assert fairpool.statistics().completed >= 2


@pytest.mark.parametrize("order", ["fairpool-first", "eventlet-first"])
def test_a_service_written_for_eventlet_tpool_runs_unchanged_after_monkey_patch(order: str) -> None:
    first, second = "import fairpool; fairpool.monkey_patch()", "import eventlet; eventlet.monkey_patch()"
    if order == "eventlet-first":
        first, second = second, first
    out = run_script(
        f"""
        {first}
        {second}
        import threading, time
        import eventlet
        from eventlet import tpool

        class Driver:
            def slow(self, n):
                time.sleep(0.05)  # green after monkey_patch, but this runs in a native worker
                return n, threading.current_thread().name

        conn = tpool.Proxy(Driver())
        ticks = []
        def ticker():
            while True:
                ticks.append(1); eventlet.sleep(0.005)
        eventlet.spawn(ticker)
        results = [gt.wait() for gt in [eventlet.spawn(conn.slow, i) for i in range(10)]]
        assert [n for n, _ in results] == list(range(10)), results
        assert all(name.startswith("fairpool-default-") for _, name in results), results
        assert len(ticks) > 3, ticks
        try:
            with eventlet.Timeout(0.01):
                tpool.execute(time.sleep, 1)
        except eventlet.Timeout:
            print("timeout ok")
        print("ok", fairpool.is_patched())
        """
    )
    assert "timeout ok" in out and "ok True" in out, out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("eventlet_pool", ["never used", "running"])
def test_names_bound_before_the_patch_run_on_fairpool(eventlet_pool: str) -> None:
    out = run_script(
        f"""
        import threading
        import eventlet
        from eventlet.tpool import Proxy, execute, killall, proxy_call, set_num_threads, setup
        if {eventlet_pool == "running"!r}:
            execute(int)  # eventlet's own pool starts
        import fairpool
        fairpool.monkey_patch()
        with eventlet.Timeout(10):
            print(execute(lambda: threading.current_thread().name))
            print(proxy_call((), lambda: "proxy_call"))
            setup()
            set_num_threads(3)
            print(fairpool.default_pool().size)
            import eventlet.tpool
            print(eventlet.tpool._nthreads)
            print(Proxy([1, 2, 1]).count(1))
            killall()
            print(execute(lambda: threading.current_thread().name))
        fairpool.unpatch()
        print(execute(lambda: threading.current_thread().name).startswith("fairpool"))
        """
    )
    lines = out.split()
    assert lines[0].startswith("fairpool-default-"), f"execute copied early ran on {lines[0]}"
    assert lines[1:5] == ["proxy_call", "3", "3", "2"], lines
    assert lines[5].startswith("fairpool-default-"), "execute copied early stopped working after killall"
    assert lines[6] == "False", "after unpatch, the early copy still ran on fairpool"


def test_killall_leaves_nothing_of_fairpool_on_the_hub() -> None:
    from eventlet import hubs

    eventlet.sleep(0)  # the main thread gets its hub (alone, this test may run first)
    assert fair_tpool.execute(lambda: "green") == "green"  # the main greenlet on its hub: waits green
    hub = hubs.get_hub()
    assert hub.get_readers(), "the test needs fairpool's listener on the hub first"
    readers_before = len(hub.get_readers())
    fair_tpool.killall()
    assert len(hub.get_readers()) == readers_before - 1, "killall left the wake-up pipe's listener on the hub"
    assert not hub.get_readers() and not hub.get_writers()
    assert fair_tpool.execute(lambda: "again") == "again", "the pool did not serve after killall"
    fair_tpool.killall()


def test_the_zero_threads_warning_starts_with_eventlets_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTLET_THREADPOOL_SIZE", "0")
    fair_tpool._reset_default_for_tests(None)
    with pytest.warns(RuntimeWarning) as caught:
        assert fair_tpool.execute(lambda: "inline") == "inline"
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith("Zero threads in tpool."), message
    assert "EVENTLET_THREADPOOL_SIZE" in message


@pytest.mark.timeout(60)
def test_a_logging_handler_alive_at_exit_leaves_no_greenlet_error() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            # fairpool first, then eventlet's patcher, as in eventlet's own patcher test: a handler
            # made before the patch, held in a global, is removed while greenlet is being finalized.
            "import fairpool\n"
            "fairpool.monkey_patch()\n"
            "import logging\n"
            "handler = logging.Handler()\n"
            "logging.Logger('test').addHandler(handler)\n"
            "import eventlet.patcher\n"
            "eventlet.patcher.monkey_patch(thread=True)\n"
            "print('pass')\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0 and proc.stdout == "pass\n", proc.stderr
    assert "greenlet is being finalized" not in proc.stderr, proc.stderr
    assert "were not greened" not in proc.stderr, proc.stderr


def test_monkey_patch_logging_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="logging must be True or False, got 'no'"):
        fairpool.monkey_patch(logging="no")  # type: ignore[arg-type]
    assert not fairpool.is_patched()


# Green threads in a loop of eventlet.tpool calls (execute, and methods of an eventlet.tpool.Proxy)
# while the main green thread patches, or unpatches then patches, at a different moment each round:
# some calls queued, some running, some callers about to resume or in eventlet's own setup.
_CALLS_IN_FLIGHT_WHILE_PATCHING = """
import eventlet
eventlet.monkey_patch()
import sys
import eventlet.patcher
from eventlet import tpool
import fairpool

native_sleep = eventlet.patcher.original("time").sleep
MODE = {mode!r}
CALLERS, CALLS = 6, 25

def work(k, i):
    native_sleep(0.0002 * (i % 4))
    return k * 1000 + i

class Driver:
    def work(self, k, i):
        return work(k, i)

def caller(k):
    out = []
    for i in range(CALLS):
        if k % 2:
            out.append(tpool.Proxy(Driver()).work(k, i))
        else:
            out.append(tpool.execute(work, k, i))
    return out

def yield_for(moment):
    if moment < 6:
        for _ in range(moment):
            eventlet.sleep(0)
    else:
        eventlet.sleep(0.0003 * (moment - 5))

tpool.set_num_threads(3)
if MODE == "unpatch-then-patch":
    fairpool.monkey_patch()
for round_ in range({rounds}):
    moment = round_ % 12
    callers = [eventlet.spawn(caller, k) for k in range(CALLERS)]
    yield_for(moment)
    if MODE == "patch":
        fairpool.monkey_patch()
    else:
        fairpool.unpatch()
        yield_for((moment * 5) % 12)  # the callers move to eventlet's pool, which starts
        fairpool.monkey_patch()
    try:
        with eventlet.Timeout(10):
            results = [gt.wait() for gt in callers]
    except eventlet.Timeout:
        waiting = sum(not gt.dead for gt in callers)
        print(f"round {{round_}} (moment {{moment}}): {{waiting}} of {{CALLERS}} callers waiting after 10 s")
        sys.exit(1)
    for k, out in enumerate(results):
        assert out == [k * 1000 + i for i in range(CALLS)], f"round {{round_}}: caller {{k}} got {{out}}"
    if MODE == "patch":
        fairpool.unpatch()  # the next round's callers start eventlet's own pool again
print("ok")
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["patch", "unpatch-then-patch"])
def test_patching_while_green_threads_call_tpool_leaves_no_caller_waiting(mode: str) -> None:
    script = _CALLS_IN_FLIGHT_WHILE_PATCHING.format(mode=mode, rounds=24)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        f"a caller of eventlet.tpool was left waiting or wrong when patching ({mode}):\n"
        f"{proc.stdout}\n{proc.stderr[-3000:]}"
    )


@pytest.mark.timeout(60)
def test_a_mock_of_eventlet_tpool_execute_is_what_proxy_and_proxy_call_call() -> None:
    # As nova's, cinder's and os-win's unit tests: mock.patch("eventlet.tpool.execute") (running the
    # call inline, or returning a sentinel) around code that uses tpool.Proxy and proxy_call.
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        from eventlet.tpool import Proxy as ProxyCopiedBeforeThePatch
        import fairpool
        fairpool.monkey_patch()
        import threading
        from unittest import mock
        from eventlet import tpool

        class Cursor:
            def fetch(self):
                return threading.current_thread().name

        class Connection:
            def __init__(self):
                self.ran = []
            def lookup(self, name):
                self.ran.append(name)
                return threading.current_thread().name
            def cursor(self):
                return Cursor()

        conn = Connection()
        proxy = tpool.Proxy(conn, autowrap=(Cursor,))
        inline = lambda f, *a, **kw: f(*a, **kw)
        with mock.patch("eventlet.tpool.execute", side_effect=inline) as execute:
            assert proxy.lookup("vm1") == "MainThread", "a proxied method did not go through the mock"
            execute.assert_called_once_with(conn.lookup, "vm1")
            cursor = proxy.cursor()
            assert isinstance(cursor, tpool.Proxy), cursor
            assert cursor.fetch() == "MainThread", "an autowrapped result's method bypassed the mock"
            assert tpool.proxy_call((), conn.lookup, "vm2") == "MainThread", "proxy_call bypassed the mock"
            assert ProxyCopiedBeforeThePatch(conn).lookup("vm3") == "MainThread", "eventlet's Proxy copy"
            assert execute.call_count == 5, execute.call_args_list
        with mock.patch.object(tpool, "execute") as execute:
            execute.return_value = "sentinel"
            assert proxy.lookup("vm4") == "sentinel"
            assert "vm4" not in conn.ran, "the real object ran under the mock"
        # The mock removed: fairpool's pool again.
        assert proxy.lookup("vm5").startswith("fairpool-default-")
        assert tpool.proxy_call((), conn.lookup, "vm6").startswith("fairpool-default-")
        # fairpool.tpool.execute replaced: the drop-in's own name reaches the proxies too.
        with mock.patch("fairpool.tpool.execute", side_effect=inline) as execute:
            assert fairpool.Proxy(conn).lookup("vm7") == "MainThread"
            assert tpool.Proxy(conn).lookup("vm8") == "MainThread"
            assert execute.call_count == 2
        print("ok")
        """
    )
    assert out.strip() == "ok", out


@pytest.mark.timeout(60)
def test_writes_to_eventlet_tpool_nthreads_size_the_pool_at_its_next_start() -> None:
    # As cinder's test base between tests: tpool.killall(); tpool._nthreads = 20. eventlet's pool
    # takes _nthreads each time it starts; the default pool must too.
    out = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        from eventlet import tpool
        import fairpool
        tpool._nthreads = 3  # written before the first start
        fairpool.monkey_patch()
        import eventlet.patcher
        native_sleep = eventlet.patcher.original("time").sleep
        threading = eventlet.patcher.original("threading")

        def concurrency(calls=8):
            # How many calls ran at once: at most the pool's size.
            lock, state = threading.Lock(), {"now": 0, "most": 0}
            def call():
                with lock:
                    state["now"] += 1
                    state["most"] = max(state["most"], state["now"])
                native_sleep(0.03)
                with lock:
                    state["now"] -= 1
            with eventlet.Timeout(20):
                for gt in [eventlet.spawn(tpool.execute, call) for _ in range(calls)]:
                    gt.wait()
            return state["most"]

        def size():
            return fairpool.default_pool().size

        print("first", concurrency(), size(), tpool._nthreads)
        tpool.killall()
        tpool._nthreads = 2  # cinder's order: killall, then the size
        print("after", concurrency(), size(), tpool._nthreads)
        tpool.set_num_threads(5)  # a manager sets its size: live, and _nthreads says so
        print("set", size(), tpool._nthreads)
        tpool._nthreads = 4  # the other order: the size, then killall
        tpool.killall()
        tpool.setup()
        print("setup", size(), tpool._nthreads)
        fairpool.default_pool().resize(6)  # resized directly, _nthreads left alone: kept
        tpool.killall()
        print("kept", concurrency(), size())
        tpool.killall()
        tpool._nthreads = -1
        try:
            tpool.execute(int)
        except ValueError as exc:
            print("bad", exc)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "first 3 3 3", f"_nthreads written before the first start was ignored: {lines}"
    assert lines[1] == "after 2 2 2", f"killall(); _nthreads = 2 left the old size: {lines}"
    assert lines[2] == "set 5 5", lines
    assert lines[3] == "setup 4 4", f"_nthreads = 4; killall(); setup() left the old size: {lines}"
    assert lines[4] == "kept 6 6", lines
    assert lines[5] == "bad eventlet.tpool._nthreads must be an int >= 0, got -1", lines


@pytest.mark.timeout(60)
@pytest.mark.parametrize("patch_first", [True, False])
def test_eventlet_tpool_nthreads_reads_the_default_pools_size(patch_first: bool) -> None:
    out = run_script(
        f"""
        import fairpool
        if {patch_first!r}:
            fairpool.monkey_patch()
        import eventlet
        eventlet.monkey_patch()
        from eventlet import tpool
        if not {patch_first!r}:
            fairpool.set_num_threads(7)  # before the patch: the patch writes it to _nthreads
            fairpool.monkey_patch()
        print(tpool._nthreads, fairpool.default_pool().size)
        tpool.killall()
        tpool.execute(int)
        print(tpool._nthreads, fairpool.default_pool().size)
        """,
        env={"EVENTLET_THREADPOOL_SIZE": "3"},
    )
    expected = "3 3" if patch_first else "7 7"
    assert out.split("\n")[:2] == [expected, expected], out
