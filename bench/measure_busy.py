"""Measurements on a busy host: CPU-bound processes beside the pool, none, some, one per core.

    python -m bench.measure_busy NAME [--full]

Every design is measured in each round under each condition (none, some, one
per core: see :mod:`bench.busy`), the designs' order turning from round to
round, so that the machine's drift moves them together; each figure is the
median of the rounds with its range, and each comparison the median of the
per-round ratios. The machine's load (1-minute load average, busy CPU share
from ``/proc/stat``) is recorded beside each condition. Unpinned: a busy
host's scheduler places the threads as it likes.

- ``green``: green callers, fairpool with its default settings (and with the
  other ``batch_scheduling``) against eventlet.tpool, 20 threads: 1 ms
  GIL-releasing calls as a share of the ceiling (20 native threads calling
  directly), the no-op round trip (median and p99), 200 callers' no-op
  throughput.
- ``native``: native callers, ``submit(fn).result()``: ThreadPoolExecutor at
  its default size (``min(32, cpu + 4)``), fairpool at its default size (20)
  and at ThreadPoolExecutor's: the same rows, with 20 native callers for the
  no-op throughput (a service's request threads) and 200 for the 1 ms calls.
- ``bootstorm``: the boot storm of ``bench.measure.bootstorm`` (N boots at
  once, 20 threads), median and max creation time.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

warnings.simplefilter("ignore")  # eventlet's deprecation notice

import eventlet  # noqa: E402
from eventlet import patcher  # noqa: E402
from eventlet import tpool as eventlet_tpool  # noqa: E402

import fairpool  # noqa: E402

from . import _cli, clib  # noqa: E402
from ._cli import median, pct, pick  # noqa: E402
from .busy import CONDITIONS, BusyProcesses, LoadMeter  # noqa: E402

native_threading = patcher.original("threading")

#: ThreadPoolExecutor's default size on this machine.
TPE_DEFAULT = min(32, (__import__("os").cpu_count() or 1) + 4)
#: fairpool.Pool's default batch_scheduling, whatever it is today.
BATCH_DEFAULT = inspect.signature(fairpool.Pool).parameters["batch_scheduling"].default

Rows = dict[str, dict[str, dict[str, list[float]]]]  # condition -> metric -> design -> one value per round


def _fairpool_variants(threads: int, name: str) -> dict[str, fairpool.Pool]:
    """fairpool with its default settings, and with each other batch_scheduling, at ``threads``."""
    pools = {"fairpool": fairpool.Pool(threads, name=name)}
    for value in (True, False):
        if value != BATCH_DEFAULT:
            label = "on" if value else "off"
            pools[f"fairpool, SCHED_BATCH {label}"] = fairpool.Pool(
                threads, name=f"{name}-{label}", batch_scheduling=value
            )
    return pools


def _sequential(call: Callable[[], Any], n: int, seconds: float) -> list[float]:
    """Times of up to ``n`` calls made one at a time, for at most about ``seconds``."""
    out = []
    perf = time.perf_counter
    end = perf() + seconds
    for _ in range(n):
        t = perf()
        call()
        t2 = perf()
        out.append(t2 - t)
        if t2 > end:
            break
    return out


def _green_rate(
    execute: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...], callers: int, per: int
) -> float:
    def caller() -> None:
        for _ in range(per):
            execute(fn, *args)

    t = time.perf_counter()
    for gt in [eventlet.spawn(caller) for _ in range(callers)]:
        gt.wait()
    return callers * per / (time.perf_counter() - t)


def _native_rate(call: Callable[[], Any], callers: int, per: int) -> float:
    """Calls per second made by ``callers`` native threads, ``per`` calls each."""
    start = threading.Barrier(callers + 1)

    def run() -> None:
        start.wait()
        for _ in range(per):
            call()

    threads = [threading.Thread(target=run) for _ in range(callers)]
    for th in threads:
        th.start()
    start.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    return callers * per / (time.perf_counter() - t)


def _ceiling(sleep_us: Callable[[int], Any], threads: int, total: int) -> float:
    """1 ms calls per second of ``threads`` native threads calling directly: no hand-off."""

    def work() -> None:
        for _ in range(total // threads):
            sleep_us(1000)

    ths = [native_threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return (total // threads) * threads / (time.perf_counter() - t)


def _rounds(
    designs: list[str],
    rounds: int,
    one: Callable[[str, str, Rows], None],
    before: Callable[[str, Rows], None] | None = None,
) -> tuple[Rows, dict[str, Any]]:
    """Run ``one(condition, design, rows)`` for every design, every condition, every round;
    ``before(condition, rows)`` at the start of each condition's turn in a round."""
    rows: Rows = {c: {} for c in CONDITIONS}
    meters = {c: LoadMeter() for c in CONDITIONS}
    for r in range(rounds):
        order = designs[r % len(designs) :] + designs[: r % len(designs)]
        for condition, count in CONDITIONS.items():
            with BusyProcesses(count):
                meters[condition].start()
                try:
                    if before is not None:
                        before(condition, rows)
                    for design in order:
                        one(condition, design, rows)
                finally:
                    meters[condition].stop()
    return rows, {c: m.summary() for c, m in meters.items()}


def _add(rows: Rows, condition: str, metric: str, design: str, value: float) -> None:
    rows[condition].setdefault(metric, {}).setdefault(design, []).append(value)


def _summarise(
    rows: Rows, load: dict[str, Any], baseline: str, higher_is_better: dict[str, bool]
) -> dict[str, Any]:
    """Per condition and metric: each design's median, min and max over the rounds, and its per-round
    ratio to ``baseline`` (median, min, max), oriented so that > 1 is better than the baseline."""
    out: dict[str, Any] = {}
    for condition, metrics in rows.items():
        cond: dict[str, Any] = {"busy_processes": CONDITIONS[condition], "load": load[condition]}
        for metric, designs in metrics.items():
            base = designs[baseline]
            m: dict[str, Any] = {}
            for design, values in designs.items():
                if higher_is_better[metric]:
                    ratios = [v / b for v, b in zip(values, base, strict=True)]
                else:
                    ratios = [b / v for v, b in zip(values, base, strict=True)]
                m[design] = {
                    "median": median(values),
                    "min": min(values),
                    "max": max(values),
                    "vs_baseline": {"median": median(ratios), "min": min(ratios), "max": max(ratios)},
                }
            cond[metric] = m
        out[condition] = cond
    return {
        "conditions": out,
        "baseline": baseline,
        "higher_is_better": higher_is_better,
        "cores": float(__import__("os").cpu_count() or 1),
    }


# -- green callers -------------------------------------------------------------


def green() -> dict[str, Any]:
    """Green callers on a busy host: fairpool (defaults) and eventlet.tpool, 20 threads each."""
    lib = clib.lib()
    noop, sleep_us = lib.fp_noop, lib.fp_sleep_us
    rounds = pick(3, 9)
    per_1ms, n_rt, per_noop = pick(5, 20), pick(400, 2000), pick(10, 50)
    rt_seconds = pick(0.4, 2.0)
    eventlet.sleep(0)  # a hub exists: the callers wait green
    eventlet_tpool.set_num_threads(20)
    pools = _fairpool_variants(20, "busy")
    executes: dict[str, Callable[..., Any]] = {k: p.execute for k, p in pools.items()}
    executes["eventlet.tpool"] = eventlet_tpool.execute
    for execute in executes.values():  # every worker started
        _green_rate(execute, sleep_us, (1000,), 40, 1)
    ceilings: dict[str, float] = {}

    def before(condition: str, rows: Rows) -> None:  # the ceiling, in each condition's turn
        ceilings[condition] = _ceiling(sleep_us, 20, 200 * per_1ms)
        _add(rows, condition, "ceiling_calls_per_s", "ceiling", ceilings[condition])

    def one(condition: str, design: str, rows: Rows) -> None:
        execute = executes[design]
        rate = _green_rate(execute, sleep_us, (1000,), 200, per_1ms)
        _add(rows, condition, "share_1ms", design, rate / ceilings[condition])
        samples = _sequential(lambda: execute(noop), n_rt, rt_seconds)
        _add(rows, condition, "round_trip_us", design, median(samples) * 1e6)
        _add(rows, condition, "round_trip_p99_us", design, pct(samples, 0.99) * 1e6)
        _add(rows, condition, "noop_200_calls_per_s", design, _green_rate(execute, noop, (), 200, per_noop))

    try:
        rows, load = _rounds(list(executes), rounds, one, before)
    finally:
        for p in pools.values():
            p.shutdown(timeout=5)
    ceiling_rows = {c: rows[c].pop("ceiling_calls_per_s") for c in rows}
    out = _summarise(
        rows,
        load,
        "eventlet.tpool",
        {"share_1ms": True, "round_trip_us": False, "round_trip_p99_us": False, "noop_200_calls_per_s": True},
    )
    for c, ceil in ceiling_rows.items():
        out["conditions"][c]["ceiling_calls_per_s"] = median(ceil["ceiling"])
    out.update(rounds=rounds, threads=20, batch_scheduling_default=BATCH_DEFAULT)
    return out


# -- native callers ------------------------------------------------------------


def native() -> dict[str, Any]:
    """Native callers on a busy host: ThreadPoolExecutor and fairpool, each at its default size, and
    fairpool at ThreadPoolExecutor's size."""
    lib = clib.lib()
    noop, sleep_us = lib.fp_noop, lib.fp_sleep_us
    rounds = pick(3, 9)
    per_1ms, n_rt, per_noop = pick(3, 10), pick(400, 2000), pick(100, 500)
    rt_seconds = pick(0.4, 2.0)
    tpe_label = f"ThreadPoolExecutor ({TPE_DEFAULT}, its default)"
    tpe = ThreadPoolExecutor()
    pools = _fairpool_variants(fairpool.pool.DEFAULT_THREADS, "busy")
    pools = {f"{k} ({fairpool.pool.DEFAULT_THREADS}, its default)": p for k, p in pools.items()}
    same = f"fairpool ({TPE_DEFAULT}, ThreadPoolExecutor's size)"
    pools[same] = fairpool.Pool(TPE_DEFAULT, name="busy-same")
    submits: dict[str, Callable[..., Any]] = {k: p.submit for k, p in pools.items()}
    submits[tpe_label] = tpe.submit
    sizes = {k: p.size for k, p in pools.items()}
    sizes[tpe_label] = TPE_DEFAULT
    for submit in submits.values():  # every worker started
        for f in [submit(sleep_us, 2000) for _ in range(40)]:
            f.result()
    ceilings: dict[tuple[str, int], float] = {}

    def before(condition: str, rows: Rows) -> None:  # the ceilings, in each condition's turn
        for s in sorted(set(sizes.values())):
            ceilings[condition, s] = _ceiling(sleep_us, s, 200 * per_1ms)

    def one(condition: str, design: str, rows: Rows) -> None:
        submit, size = submits[design], sizes[design]
        rate = _native_rate(lambda: submit(sleep_us, 1000).result(), 200, per_1ms)
        _add(rows, condition, "calls_1ms_per_s", design, rate)
        _add(rows, condition, "share_1ms", design, rate / ceilings[condition, size])
        samples = _sequential(lambda: submit(noop).result(), n_rt, rt_seconds)
        _add(rows, condition, "round_trip_us", design, median(samples) * 1e6)
        _add(rows, condition, "round_trip_p99_us", design, pct(samples, 0.99) * 1e6)
        _add(
            rows,
            condition,
            "noop_20_calls_per_s",
            design,
            _native_rate(lambda: submit(noop).result(), 20, per_noop),
        )

    try:
        rows, load = _rounds(list(submits), rounds, one, before)
    finally:
        tpe.shutdown()
        for p in pools.values():
            p.shutdown(timeout=5)
    out = _summarise(
        rows,
        load,
        tpe_label,
        {
            "calls_1ms_per_s": True,
            "share_1ms": True,
            "round_trip_us": False,
            "round_trip_p99_us": False,
            "noop_20_calls_per_s": True,
        },
    )
    out.update(rounds=rounds, sizes=sizes, batch_scheduling_default=BATCH_DEFAULT)
    return out


# -- the boot storm ------------------------------------------------------------


def bootstorm() -> dict[str, Any]:
    """The boot storm (``bench.measure.bootstorm``, without the audit) on a busy host: N boots at once."""
    lib = clib.lib()
    rounds, n = pick(3, 7), pick(10, 20)
    eventlet_tpool.set_num_threads(20)
    pools = _fairpool_variants(20, "boot")
    executes: dict[str, Callable[..., Any]] = {k: p.execute for k, p in pools.items()}
    executes["eventlet.tpool"] = eventlet_tpool.execute
    for execute in executes.values():
        _green_rate(execute, lib.fp_sleep_us, (1000,), 40, 1)

    def boot(execute: Callable[..., Any], acct: Any) -> float:
        start = time.perf_counter()
        for _ in range(3):
            with acct:
                eventlet.sleep(0.010)  # the RPC to the conductor, under the host lock
        for i in range(30):
            execute(lib.fp_locked_sleep_us, 500)
            if i % 10 == 5:
                execute(lib.fp_sleep_us, 60_000)
        return time.perf_counter() - start

    def one(condition: str, design: str, rows: Rows) -> None:
        acct = eventlet.semaphore.Semaphore(1)
        times = [gt.wait() for gt in [eventlet.spawn(boot, executes[design], acct) for _ in range(n)]]
        _add(rows, condition, "median_s", design, median(times))
        _add(rows, condition, "max_s", design, max(times))

    try:
        rows, load = _rounds(list(executes), rounds, one)
    finally:
        for p in pools.values():
            p.shutdown(timeout=5)
    out = _summarise(rows, load, "eventlet.tpool", {"median_s": False, "max_s": False})
    out.update(rounds=rounds, n=n, batch_scheduling_default=BATCH_DEFAULT)
    return out


MEASUREMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "green": green,
    "native": native,
    "bootstorm": bootstorm,
}


def main(argv: list[str] | None = None) -> int:
    return _cli.main("bench.measure_busy", MEASUREMENTS, argv, after=eventlet_tpool.killall)


if __name__ == "__main__":
    sys.exit(main())
