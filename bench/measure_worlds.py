"""Measurements outside eventlet: native-thread callers and asyncio tasks, against the standard library.

    python -m bench.measure_worlds NAME [--full]

As in bench/measure.py: each runs in a fresh process, the designs side by side
with rounds interleaved, reported as medians.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

warnings.simplefilter("ignore")

import fairpool  # noqa: E402

from . import _cli, clib  # noqa: E402
from ._cli import median, pick  # noqa: E402


def _throughput(call: Callable[[], Any], callers: int, seconds: float) -> float:
    """Calls per second made by ``callers`` native threads, each calling ``call()`` in a loop."""
    stop = threading.Event()
    start = threading.Barrier(callers + 1)
    counts = [0] * callers

    def run(i: int) -> None:
        start.wait()
        n = 0
        while not stop.is_set():
            call()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def _latency_us(call: Callable[[], Any], n: int) -> float:
    for _ in range(50):
        call()
    perf = time.perf_counter
    out = []
    for _ in range(n):
        t = perf()
        call()
        out.append(perf() - t)
    return median(out) * 1e6


def native_executor() -> dict[str, Any]:
    """20 native callers: fairpool's submit().result() and execute() against ThreadPoolExecutor's."""
    noop = clib.lib().fp_noop
    callers, threads = 20, 20
    rounds, seconds, n = pick(3, 7), pick(0.5, 2.0), pick(2000, 10000)
    tpe = ThreadPoolExecutor(threads)
    pool = fairpool.Pool(threads, name="bench")
    designs: dict[str, Callable[[], Any]] = {
        "threadpoolexecutor submit": lambda: tpe.submit(noop).result(),
        "fairpool submit": lambda: pool.submit(noop).result(),
        "fairpool execute": lambda: pool.execute(noop),
    }
    tput: dict[str, list[float]] = {k: [] for k in designs}
    lat: dict[str, list[float]] = {k: [] for k in designs}
    for _ in range(rounds):
        for name, call in designs.items():
            tput[name].append(_throughput(call, callers, seconds))
            lat[name].append(_latency_us(call, n))
    tpe.shutdown()
    pool.shutdown()
    calls_per_s = {k: median(v) for k, v in tput.items()}
    latency_us = {k: median(v) for k, v in lat.items()}
    base_t, base_l = calls_per_s["threadpoolexecutor submit"], latency_us["threadpoolexecutor submit"]
    return {
        "callers": callers,
        "threads": threads,
        "calls_per_s": calls_per_s,
        "sequential_us": latency_us,
        "submit_throughput_ratio": calls_per_s["fairpool submit"] / base_t,
        "execute_throughput_ratio": calls_per_s["fairpool execute"] / base_t,
        "submit_latency_ratio": latency_us["fairpool submit"] / base_l,
    }


def asyncio_calls() -> dict[str, Any]:
    """asyncio: await run_sync(noop) against run_in_executor (default executor); fairness under a flood."""
    noop = clib.lib().fp_noop
    sleep_us = clib.lib().fp_sleep_us
    n, rounds = pick(2000, 10000), pick(3, 7)
    pool = fairpool.Pool(20, name="bench")

    async def latencies() -> dict[str, list[float]]:
        loop = asyncio.get_running_loop()
        out: dict[str, list[float]] = {"fairpool run_sync": [], "run_in_executor (default)": []}
        perf = time.perf_counter
        for _ in range(rounds):
            for name in out:
                samples = []
                for _ in range(n):
                    t = perf()
                    if name == "fairpool run_sync":
                        await pool.run_sync(noop)
                    else:
                        await loop.run_in_executor(None, noop)
                    samples.append(perf() - t)
                out[name].append(median(samples) * 1e6)
        return out

    async def fairness() -> dict[str, float]:
        """Two threads; a bulk lane floods them with 1 ms calls; then one interactive call."""
        small = fairpool.Pool(2, name="fair")

        async def bulk() -> None:
            with fairpool.lane("bulk"):
                await asyncio.gather(*(small.run_sync(sleep_us, 1000) for _ in range(200)))

        async def interactive() -> float:
            with fairpool.lane("interactive"):
                t = time.perf_counter()
                await small.run_sync(sleep_us, 1000)
                return (time.perf_counter() - t) * 1e3

        flood = asyncio.create_task(bulk())
        await asyncio.sleep(0.01)
        took = [await interactive() for _ in range(5)]
        await flood
        small.shutdown()
        return {"call_ms": 1.0, "interactive_ms_median": median(took), "bulk_calls": 200.0}

    async def main() -> dict[str, Any]:
        lat = await latencies()
        fair = await fairness()
        return {"latency_us": {k: median(v) for k, v in lat.items()}, "fairness": fair}

    result = asyncio.run(main())
    pool.shutdown()
    lat = result["latency_us"]
    result["run_sync_ratio"] = lat["fairpool run_sync"] / lat["run_in_executor (default)"]
    return result


MEASUREMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "native_executor": native_executor,
    "asyncio_calls": asyncio_calls,
}


def main(argv: list[str] | None = None) -> int:
    return _cli.main("bench.measure_worlds", MEASUREMENTS, argv)


if __name__ == "__main__":
    sys.exit(main())
