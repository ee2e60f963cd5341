"""OpenStack's threading mode: no eventlet.monkey_patch(), callers are native threads."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import eventlet.hubs

import fairpool
from fairpool import trace


def _run_in_threads(n: int, target: object) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a caller thread is stuck"


def test_fifty_native_threads_share_a_pool_of_four(tmp_path: Path) -> None:
    pool = fairpool.Pool(threads=4, name="native")
    running = 0
    peak = 0
    guard = threading.Lock()
    results: dict[int, list[int]] = {}
    hubs_made: list[int] = []

    def work(i: int, j: int) -> int:
        nonlocal running, peak
        with guard:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with guard:
            running -= 1
        return i * 100 + j

    class Driver:
        def call(self, i: int, j: int) -> int:
            return work(i, j)

    proxy = fairpool.Proxy(Driver(), pool=pool)

    def caller(i: int) -> None:
        lane = fairpool.lane("even" if i % 2 == 0 else "odd")
        with lane:
            out = [pool.execute(work, i, j) for j in range(5)]
            out += [proxy.call(i, j) for j in range(5, 10)]
        results[i] = out
        if hasattr(eventlet.hubs._threadlocal, "hub"):
            hubs_made.append(i)

    out = tmp_path / "native.json"
    try:
        with trace.recording(str(out)):
            _run_in_threads(50, caller)
        stats = pool.statistics()
    finally:
        pool.shutdown()
    assert results == {i: [i * 100 + j for j in range(10)] for i in range(50)}
    assert peak <= 4, f"{peak} calls ran at once on a pool of 4"
    assert hubs_made == [], "a native caller made an eventlet hub"
    assert stats.completed == 500 and stats.threads == 4
    events = json.loads(out.read_text())
    runs = [e for e in events if e.get("ph") == "X" and e["name"].startswith("run ")]
    waits = [e for e in events if e.get("ph") == "X" and e["name"].startswith("wait ")]
    assert len(runs) == len(waits) == 500
    assert {e["args"]["lane"] for e in runs} == {"even", "odd"}
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert len({e["tid"] for e in waits}) == 50, "each caller thread has its own track"
    assert all(names[e["tid"]].startswith("Thread-") for e in waits)


def test_lanes_are_fair_between_native_callers() -> None:
    pool = fairpool.Pool(threads=1, name="native-fair")
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = pool.submit(gate.wait, 10)
        while pool.statistics().busy != 1:
            time.sleep(0.001)
        futures = []
        with fairpool.lane("bulk"):
            futures += [pool.submit(order.append, "bulk") for _ in range(20)]
        with fairpool.lane("api"):
            futures.append(pool.submit(order.append, "api"))
        gate.set()
        blocker.result(5)
        for f in futures:
            f.result(5)
    finally:
        gate.set()
        pool.shutdown()
    assert order.index("api") <= 1, order
