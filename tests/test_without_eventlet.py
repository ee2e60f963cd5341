"""fairpool without eventlet: native threads and asyncio work, and neither eventlet nor greenlet is imported.

Each test runs a fresh interpreter in which importing eventlet or greenlet
fails, as on a machine where only ``pip install fairpool`` ran.
"""

from __future__ import annotations

import pytest

from .conftest import run_script

WITHOUT_EVENTLET = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("eventlet", "greenlet"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


@pytest.mark.timeout(60)
def test_native_threads_asyncio_and_futures_work_without_eventlet() -> None:
    out = run_script(
        WITHOUT_EVENTLET
        + """
import asyncio, threading
import fairpool

pool = fairpool.Pool(threads=2, name="plain")
print(pool.execute(lambda: threading.current_thread().name))
print(pool.submit(pow, 2, 10).result(timeout=5))
print(list(pool.map(abs, [-1, -2])))
print(asyncio.run(pool.run_sync(lambda: "async")))
with fairpool.lane("bulk"):
    print(fairpool.execute(lambda: "default pool"))
lock = fairpool.HybridRLock()
with lock:
    print("hybrid lock")
with fairpool.instrument_lock(threading.Lock(), "plain-lock"):
    print("instrumented lock")
pool.shutdown()
print(sorted(m for m in ("eventlet", "greenlet") if m in sys.modules))
"""
    )
    lines = out.splitlines()
    assert lines[0].startswith("fairpool-plain-"), lines
    expected = ["1024", "[1, 2]", "async", "default pool", "hybrid lock", "instrumented lock"]
    assert lines[1:7] == expected, lines
    assert lines[7] == "[]", f"eventlet or greenlet was imported: {lines[7]}"


@pytest.mark.timeout(60)
def test_the_green_features_say_what_to_install_without_eventlet() -> None:
    out = run_script(
        WITHOUT_EVENTLET
        + """
import fairpool
for feature in (fairpool.monkey_patch, fairpool.watch_hub):
    try:
        feature()
    except fairpool.EventletNotInstalled as exc:
        assert isinstance(exc, ImportError)
        print(exc)
"""
    )
    lines = out.splitlines()
    assert len(lines) == 2 and all("pip install 'fairpool[eventlet]'" in line for line in lines), lines
