"""The soak: a mixed load, every call checked for its own answer, exactly once.

The default run takes about 20 seconds; ``--soak`` runs the long version
(10 minutes, over a million calls). Each call carries its own token; at the
end every token must have returned itself exactly once, raised its own
exception, or been given up on (timed out or killed) and then run at most
once: never if the pool counted it cancelled. Afterwards the pool is idle,
no file descriptor has leaked, and fairpool's own memory is flat.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import threading
import time
import tracemalloc
from collections import Counter
from typing import Any

import eventlet
import pytest
from greenlet import GreenletExit

import fairpool


class CallError(Exception):
    pass


class Outcome:
    """What the caller of one token saw."""

    __slots__ = ("kind", "seen")

    def __init__(self, kind: str, seen: Any) -> None:
        self.kind = kind  # value | error | base | gave-up
        self.seen = seen


def run_soak(duration: float, seed: int) -> dict[str, Any]:
    pool = fairpool.Pool(threads=8, name="soak", max_queue=2000)
    ran: list[int] = []  # tokens, appended by the worker that ran them (list.append is atomic)
    outcomes: dict[int, Outcome] = {}
    issued: list[int] = []
    # itertools.count: next() is atomic. A threading.Lock here would be unfair: the
    # native callers would pass it among themselves and starve the hub's thread.
    counter = itertools.count(1)
    stop = threading.Event()
    lanes = ["boot", "audit", "api", "default"]

    def next_token() -> int:
        token = next(counter)
        issued.append(token)
        return token

    def value(token: int) -> int:
        ran.append(token)
        return token

    def error(token: int) -> None:
        ran.append(token)
        raise CallError(token)

    def base(token: int) -> None:
        ran.append(token)
        raise SystemExit(token)

    def slow(token: int, seconds: float) -> int:
        ran.append(token)
        time.sleep(seconds)  # native: the test process is not monkey-patched
        return token

    def one_green_call(r: random.Random) -> None:
        token = next_token()
        kind = r.random()
        with fairpool.lane(r.choice(lanes)):
            try:
                if kind < 0.6:
                    outcomes[token] = Outcome("value", pool.execute(value, token))
                elif kind < 0.75:
                    pool.execute(error, token)
                    outcomes[token] = Outcome("no error", None)
                elif kind < 0.8:
                    pool.execute(base, token)
                    outcomes[token] = Outcome("no error", None)
                else:
                    with eventlet.Timeout(r.choice([0.0005, 0.001, 0.003])):
                        outcomes[token] = Outcome("value", pool.execute(slow, token, r.choice([0.0, 0.002])))
            except CallError as exc:
                outcomes[token] = Outcome("error", exc.args[0])
            except SystemExit as exc:
                outcomes[token] = Outcome("base", exc.args[0])
            except eventlet.Timeout:
                outcomes[token] = Outcome("gave-up", None)

    def green_caller(i: int) -> None:
        r = random.Random(seed * 1000 + i)
        while not stop.is_set():
            one_green_call(r)

    def killed_callers() -> None:
        """Green threads killed while they wait for their call."""
        r = random.Random(seed)
        while not stop.is_set():
            token = next_token()

            def call(token: int = token) -> None:
                outcomes[token] = Outcome("value", pool.execute(slow, token, 0.001))

            gt = eventlet.spawn(call)
            eventlet.sleep(r.choice([0, 0.0005, 0.002]))
            gt.kill()
            try:
                gt.wait()
            except GreenletExit:
                outcomes.setdefault(token, Outcome("gave-up", None))

    def native_caller(i: int) -> None:
        r = random.Random(seed * 7919 + i)
        while not stop.is_set():
            token = next_token()
            kind = r.random()
            try:
                if kind < 0.7:
                    outcomes[token] = Outcome("value", pool.execute(value, token))
                elif kind < 0.85:
                    pool.execute(error, token)
                    outcomes[token] = Outcome("no error", None)
                else:
                    future = pool.submit(slow, token, 0.001)
                    if future.cancel():
                        outcomes[token] = Outcome("gave-up", None)
                    else:
                        outcomes[token] = Outcome("value", future.result(10))
            except CallError as exc:
                outcomes[token] = Outcome("error", exc.args[0])

    def resizer() -> None:
        r = random.Random(seed)
        while not stop.is_set():
            pool.resize(r.choice([2, 4, 8, 16]))
            eventlet.sleep(0.05)

    threads_before = threading.active_count()
    eventlet.spawn(pool.execute, int).wait()  # a green call: the hub and its wake-up pipe exist now
    fds_before = len(os.listdir("/proc/self/fd"))
    tracemalloc.start()
    natives = [threading.Thread(target=native_caller, args=(i,)) for i in range(20)]
    for t in natives:
        t.start()
    greens = [eventlet.spawn(green_caller, i) for i in range(200)]
    greens.append(eventlet.spawn(killed_callers))
    greens.append(eventlet.spawn(resizer))
    # Warm up under the full load (every pool size, the statistics window
    # full), then measure what fairpool itself holds on to from here on.
    eventlet.sleep(duration * 0.3)
    gc.collect()
    before = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*fairpool*")])
    eventlet.sleep(duration * 0.7)
    stop.set()
    for gt in greens:
        gt.wait()
    for t in natives:
        t.join(30)
        assert not t.is_alive(), "a native caller is stuck"
    pool.resize(8)
    deadline = time.monotonic() + 10
    while pool.statistics().busy or pool.statistics().threads > 8:
        assert time.monotonic() < deadline, f"the pool did not settle: {pool.statistics()}"
        eventlet.sleep(0.01)

    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*fairpool*")])
    tracemalloc.stop()
    diff = after.compare_to(before, "lineno")
    growth = sum(s.size_diff for s in diff)
    top = [str(s) for s in diff[:5]]
    stats = pool.statistics()
    pool.shutdown(timeout=10)
    fds_after = len(os.listdir("/proc/self/fd"))
    return {
        "issued": issued,
        "outcomes": outcomes,
        "ran": Counter(ran),
        "stats": stats,
        "memory_growth": growth,
        "memory_top": top,
        "fds": (fds_before, fds_after),
        "threads": (threads_before, threading.active_count()),
    }


def check(result: dict[str, Any]) -> dict[str, int]:
    issued, outcomes, ran, stats = result["issued"], result["outcomes"], result["ran"], result["stats"]
    assert len(set(issued)) == len(issued)
    missing = [t for t in issued if t not in outcomes]
    assert not missing, f"{len(missing)} calls got no answer, e.g. {missing[:5]}"
    gave_up = {"never ran": 0, "ran": 0}
    for token in issued:
        o = outcomes[token]
        runs = ran.get(token, 0)
        if o.kind == "gave-up":
            assert runs <= 1, f"token {token} ran {runs} times"
            gave_up["never ran" if runs == 0 else "ran"] += 1
        else:
            assert o.kind in ("value", "error", "base"), f"token {token}: {o.kind}"
            assert o.seen == token, f"token {token} got the answer of {o.seen}"
            assert runs == 1, f"token {token} ran {runs} times"
    extra = set(ran) - set(issued)
    assert not extra, f"calls ran that nobody made: {sorted(extra)[:5]}"
    # What the pool counted agrees with what the callers saw.
    assert stats.cancelled == gave_up["never ran"], (stats, gave_up)
    assert stats.abandoned == gave_up["ran"], (stats, gave_up)
    assert stats.queued == 0 and stats.waiting_admission == 0 and stats.busy == 0, stats
    assert stats.threads <= 8, stats
    fds_before, fds_after = result["fds"]
    assert fds_after <= fds_before, f"file descriptors leaked: {fds_before} -> {fds_after}"
    threads_before, threads_after = result["threads"]
    assert threads_after <= threads_before, f"threads leaked: {threads_before} -> {threads_after}"
    assert result["memory_growth"] < 64 * 1024, (
        f"fairpool's memory grew by {result['memory_growth']} bytes after warm-up: {result['memory_top']}"
    )
    return {"calls": len(issued), "gave up, never ran": gave_up["never ran"], "gave up, ran": gave_up["ran"]}


@pytest.mark.timeout(120)
def test_soak_every_call_answered_exactly_once() -> None:
    summary = check(run_soak(duration=15.0, seed=1))
    assert summary["calls"] > 10_000, summary
    assert summary["gave up, never ran"] > 0 and summary["gave up, ran"] > 0, summary
    print("soak:", summary)


@pytest.mark.soak
@pytest.mark.timeout(2400)  # 10 minutes of load, then checking 15 million calls (about 6 GB)
def test_long_soak_a_million_calls() -> None:
    summary = check(run_soak(duration=600.0, seed=2))
    assert summary["calls"] >= 1_000_000, summary
    print("long soak:", summary)
