"""Importing fairpool adds no warning of its own (not eventlet's banner either), and imports no eventlet.

Each check runs in a fresh interpreter, since the banner is printed once, at
eventlet's first import. ``fairpool._compat`` is loaded from its file, so that
these tests of it do not import the package first.

``import fairpool`` imports neither eventlet nor greenlet: a service that
refuses to start when eventlet was imported before its own set-up (nova in
native-threading mode) can import fairpool first. eventlet is imported when
something needs it (``monkey_patch()``, a hub watch, the demo), and a caller
on a hub is seen as one whenever eventlet was imported, before or after
fairpool, patched or not. Workers started before ``eventlet.monkey_patch()``
stay native threads that end cleanly after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "fairpool" / "_compat.py"
LOAD_COMPAT = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("fairpool_compat", {str(COMPAT)!r})
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
"""
BANNER = "Eventlet is deprecated"


def python(code: str, *options: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    # PYTEST_CURRENT_TEST off: with it, eventlet's monkey_patch() keeps its RLock report quiet.
    drop = ("PYTHONWARNINGS", "EVENTLET_TESTS", "PYTEST_CURRENT_TEST")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (path, ROOT) if p is not None)
    return subprocess.run(
        [sys.executable, *options, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_eventlet_imported_first_by_fairpool_adds_no_warning() -> None:
    proc = python(
        LOAD_COMPAT + "eventlet = compat.import_eventlet_quietly()\nprint(eventlet.__name__)", "-W", "error"
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "eventlet\n", "")


def test_an_application_that_imports_eventlet_itself_sees_its_banner_once_as_its_own() -> None:
    proc = python("import eventlet\n" + LOAD_COMPAT + "assert compat.import_eventlet_quietly() is eventlet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(BANNER) == 1, proc.stderr
    assert proc.stderr.startswith("<string>:1: EventletDeprecationWarning"), proc.stderr


def test_only_the_banner_is_filtered(tmp_path: Path) -> None:
    # A stand-in eventlet that warns its banner and something else on import.
    fake = tmp_path / "eventlet"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            """
            import warnings
            class EventletDeprecationWarning(Warning):
                pass
            warnings.warn("\\nEventlet is deprecated. (stand-in)", EventletDeprecationWarning, stacklevel=2)
            warnings.warn("something else", UserWarning, stacklevel=2)
            """
        )
    )
    proc = python(LOAD_COMPAT + "compat.import_eventlet_quietly()", "-W", "default", path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "something else" in proc.stderr and BANNER not in proc.stderr, proc.stderr
    # The filter lasts for the import only: the same warning later is shown.
    proc = python(
        LOAD_COMPAT + "compat.import_eventlet_quietly()\n"
        "import warnings\nwarnings.warn('Eventlet is deprecated (later)')",
        "-W",
        "default",
        path=tmp_path,
    )
    assert "Eventlet is deprecated (later)" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "code",
    [
        "import fairpool",
        "import fairpool.report",
        "import fairpool; fairpool.tpool.EXC_CLASSES",  # the first read of EXC_CLASSES imports eventlet
        "import fairpool; fairpool.monkey_patch()",  # the patch may be what imports eventlet first
        "import fairpool.demo",
    ],
)
def test_importing_fairpool_prints_nothing(code: str) -> None:
    proc = python(code, "-W", "error")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


@pytest.mark.parametrize("code", ["import eventlet, fairpool", "import fairpool, eventlet"])
def test_an_application_importing_eventlet_sees_its_own_banner_once(code: str) -> None:
    proc = python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(BANNER) == 1, proc.stderr
    assert proc.stderr.startswith("<string>:1: EventletDeprecationWarning"), proc.stderr


ELSEWHERE = """
import json, sys
def imported():
    return sorted(m for m in ("eventlet", "greenlet") if m in sys.modules)
"""


def run(code: str, timeout: float = 60) -> tuple[list[str], str]:
    """Run ``code`` after ``ELSEWHERE`` in a fresh interpreter; (stdout lines, stderr). Fails if it fails."""
    proc = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", ELSEWHERE + textwrap.dedent(code)],
        env={**{k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"the script failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout.splitlines(), proc.stderr


@pytest.mark.timeout(90)
def test_import_fairpool_and_every_native_feature_leave_eventlet_unimported(tmp_path: Path) -> None:
    lines, stderr = run(
        f"""
        import asyncio, logging, threading
        import fairpool
        print(json.dumps(["import", imported()]))

        from fairpool import aio, tpool, trace

        class Obj:
            def twice(self, x):
                return 2 * x

        steps = []
        with trace.recording({str(tmp_path / "t.json")!r}):
            pool = fairpool.Pool(threads=2, name="plain", stats_interval=0.05)
            steps.append(pool.execute(abs, -1) == 1)
            steps.append(pool.submit(pow, 2, 10).result(timeout=5) == 1024)
            steps.append(list(pool.map(abs, [-1, -2])) == [1, 2])
            steps.append(tpool.execute(abs, -3) == 3)
            steps.append(fairpool.execute(abs, -4) == 4)
            steps.append(tpool.Proxy(Obj()).twice(5) == 10)
            steps.append(fairpool.proxy_call((), abs, -6) == 6)
            with fairpool.lane("bulk"):
                steps.append(pool.execute(abs, -5) == 5 and fairpool.current_lane()[0] == "bulk")
            steps.append(asyncio.run(aio.run_sync(abs, -7)) == 7)
            steps.append(asyncio.run(pool.run_sync(abs, -8)) == 8)
            steps.append(pool.statistics().completed >= 5)
            steps.append(tpool.statistics().completed >= 2)
            with fairpool.HybridRLock():
                steps.append(True)
            with fairpool.instrument_lock(threading.Lock(), "plain-lock"):
                steps.append(True)
            tpool.set_num_threads(3)
            tpool.killall()
            pool.resize(1)
            pool.shutdown()
        executor = fairpool.FuturistExecutor(max_workers=2)
        steps.append(executor.submit(abs, -9).result(timeout=5) == 9)
        executor.shutdown()
        try:
            from opentelemetry.sdk.trace import TracerProvider
        except ImportError:
            otel = "no sdk"
        else:
            from fairpool import otel as fotel
            fotel.instrument(TracerProvider())
            steps.append(fairpool.execute(abs, -10) == 10)
            fotel.uninstrument()
            otel = "spans"
        print(json.dumps(["features", steps, otel]))
        print(json.dumps(["after", imported()]))
        """
    )
    assert json.loads(lines[0]) == ["import", []], f"import fairpool imported {lines[0]}"
    _, steps, _ = json.loads(lines[1])
    assert steps and all(steps), f"a native feature did not work without eventlet: {steps}"
    assert json.loads(lines[2]) == ["after", []], f"a native feature imported {lines[2]}"
    assert "Traceback" not in stderr, stderr


@pytest.mark.timeout(90)
@pytest.mark.parametrize("native_first", [False, True], ids=["fresh", "used-natively-first"])
def test_fairpool_first_then_eventlet_monkey_patch_green_callers_wait_green(native_first: bool) -> None:
    lines, stderr = run(
        f"""
        import fairpool
        pool = fairpool.Pool(threads=2, name="p")
        if {native_first!r}:
            # Workers and the default pool started before eventlet exists.
            pool.execute(abs, -1); fairpool.execute(abs, -1); pool.submit(abs, -1).result()
        import eventlet
        eventlet.monkey_patch()
        import greenlet
        from fairpool.demo import c_sleep, ticks_during
        original = eventlet.patcher.original("threading")
        main_id = original.get_native_id()

        def where():
            return (original.get_native_id(), greenlet.getcurrent().parent is None)

        results = {{}}
        def green_calls():
            results["execute"] = fairpool.execute(c_sleep, 0.3)
            results["pool"] = pool.execute(c_sleep, 0.3)
            results["future"] = pool.submit(c_sleep, 0.3).result()
            results["where"] = pool.execute(where)
        ticks, gap = ticks_during(lambda: eventlet.spawn(green_calls).wait())
        native_id, main_greenlet = results["where"]
        print(json.dumps([ticks, gap, native_id != main_id, main_greenlet, sorted(results)]))
        pool.shutdown()
        """
    )
    ticks, gap, own_thread, main_greenlet, done = json.loads(lines[-1])
    assert done == ["execute", "future", "pool", "where"], done
    # Three 0.3 s blocking C calls: a hub blocked by them would tick about 3 times in all.
    stalled = f"the hub stalled while green callers waited: {ticks} ticks, longest gap {gap:.3f} s"
    assert ticks >= 20 and gap < 0.25, stalled
    assert own_thread and main_greenlet, "the call ran on a native worker thread, not on the hub's thread"
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


@pytest.mark.timeout(90)
def test_eventlet_imported_after_fairpool_without_monkey_patch_green_callers_wait_green() -> None:
    lines, stderr = run(
        """
        import fairpool
        fairpool.execute(abs, -1)  # a native call before eventlet is imported
        import eventlet
        from fairpool.demo import c_sleep, ticks_during
        ticks, gap = ticks_during(lambda: eventlet.spawn(fairpool.execute, c_sleep, 0.5).wait())
        print(json.dumps([ticks, gap]))
        """
    )
    ticks, gap = json.loads(lines[-1])
    stalled = f"the hub stalled while a green caller waited: {ticks} ticks, longest gap {gap:.3f} s"
    assert ticks >= 20 and gap < 0.25, stalled
    assert "Traceback" not in stderr, stderr


RETIRE = {
    "resize": "pool.resize(0)",
    "shutdown": "pool.shutdown()",
    "killall": "fairpool.tpool.killall()",
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("eventlet_first", [False, True], ids=["fairpool-first", "eventlet-imported-first"])
@pytest.mark.parametrize("how", sorted(RETIRE))
def test_a_worker_started_before_the_patch_ends_silently_after_it(how: str, eventlet_first: bool) -> None:
    lines, stderr = run(
        f"""
        if {eventlet_first!r}:
            import eventlet
        import logging, threading, time
        import fairpool
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record.threadName)
        logging.getLogger("probe").addHandler(Keep())
        logging.getLogger("probe").setLevel(logging.INFO)
        pool = fairpool.default_pool() if {how!r} == "killall" else fairpool.Pool(threads=2, name="p")
        pool.execute(logging.getLogger("probe").info, "from a worker")
        threads = [w.thread for w in pool._core.workers.all.values()]
        listed = sorted(t.name for t in threading.enumerate() if t.name.startswith("fairpool-"))
        import eventlet
        eventlet.monkey_patch(thread=True)
        {RETIRE[how]}
        for t in threads:
            t.join(10)
        print(json.dumps([records, listed, [t.is_alive() for t in threads]]))
        """
    )
    records, listed, alive = json.loads(lines[-1])
    clean = "Exception ignored" not in stderr and "Traceback" not in stderr
    assert clean, f"a worker did not end cleanly:\n{stderr}"
    assert alive and not any(alive), f"workers still alive after {how}: {alive}"
    assert records and records[0].startswith("fairpool-"), f"logging's threadName in a worker: {records}"
    assert listed and all(name.startswith("fairpool-") for name in listed), listed


@pytest.mark.timeout(60)
def test_native_primitives_made_before_the_patch_stay_native_after_it() -> None:
    lines, stderr = run(
        """
        import fairpool
        from fairpool import _native
        event = _native.Event()
        pool = fairpool.Pool(threads=1, name="p")
        gate = _native.allocate_lock(); gate.acquire()
        future = pool.submit(gate.acquire)  # pending across the patch, its Condition reachable from here
        import eventlet
        eventlet.monkey_patch()
        original = eventlet.patcher.original("threading")
        got = []
        waiter = original.Thread(target=lambda: got.append(event.wait(5)))
        waiter.start()
        original.Event().wait(0.1)  # let it wait
        event.set()
        waiter.join(10)
        gate.release()
        print(json.dumps([got, future.result(timeout=5), type(future._condition._lock).__module__]))
        pool.shutdown()
        """
    )
    got, result, lock_module = json.loads(lines[-1])
    assert got == [True], f"a native Event made before the patch did not wake its native waiter: {got}"
    assert result is True
    assert lock_module != "eventlet.green.thread" and "not greened" not in stderr, (lock_module, stderr)


@pytest.mark.timeout(60)
def test_importing_fairpool_in_a_thread_leaves_that_thread_joinable() -> None:
    # Importing eventlet there made a copy of threading, whose main-thread object took over the
    # importing thread's end-of-life lock: join() never returned, nor did the exit.
    lines, _ = run(
        """
        import threading
        def body():
            import fairpool
            fairpool.execute(abs, -1)
        t = threading.Thread(target=body)
        t.start()
        t.join(10)
        print(json.dumps([t.is_alive(), imported()]))
        """,
        timeout=30,
    )
    alive, modules = json.loads(lines[-1])
    assert not alive, "a thread that imported fairpool never ended for join()"
    assert modules == [], modules


@pytest.mark.timeout(90)
def test_eventlet_imported_while_native_callers_run_every_caller_is_answered() -> None:
    # The race: native threads call through the pool while eventlet is imported and its first
    # green callers bind the hub pieces; every call is answered, each caller waits its own way.
    lines, stderr = run(
        """
        import threading
        import fairpool
        pool = fairpool.Pool(threads=4, name="race")
        stop = False
        counts = []
        def native():
            n = 0
            while not stop:
                assert pool.execute(abs, -n) == n
                n += 1
            counts.append(n)
        natives = [threading.Thread(target=native) for _ in range(6)]
        for t in natives:
            t.start()
        import eventlet
        import greenlet
        results = []
        def green(i):
            for k in range(20):
                results.append(pool.execute(abs, -k) == k and pool.submit(abs, -i).result() == i)
        lock = fairpool.HybridRLock()
        lock.acquire()  # taken before greenlet was used here, released after: the same owner
        threads = [eventlet.spawn(green, i) for i in range(20)]
        for g in threads:
            g.wait()
        lock.release()
        stop = True
        for t in natives:
            t.join(10)
        print(json.dumps([len(results), all(results), len(counts), min(counts)]))
        pool.shutdown()
        """
    )
    n, ok, natives, least = json.loads(lines[-1])
    assert (n, ok, natives) == (400, True, 6), (n, ok, natives)
    assert least > 0, "a native caller made no call"
    assert "Traceback" not in stderr, stderr
