"""A busy host: CPU-bound processes beside the pool (none, some, one per core), every world.

Each measurement runs in a fresh process, unpinned, and records the
machine's load beside each condition; ``python -m bench.report`` shows the
rows and whether fairpool with its defaults wins, ties or loses each.
The full run, for published numbers, is one command::

    python -m pytest bench/test_busy_host.py --bench-full --bench-out bench/results/run-busy
    python -m bench.report --results bench/results/run-busy
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from .busy import CONDITIONS, BusyProcesses, LoadMeter

CONDITION_NAMES = set(CONDITIONS)


def _check(result: dict[str, Any], baseline: str) -> None:
    assert set(result["conditions"]) == CONDITION_NAMES, result["conditions"].keys()
    for name, cond in result["conditions"].items():
        assert cond["busy_processes"] == CONDITIONS[name], name
        assert cond["load"]["loadavg_1min"] is not None, f"{name}: no load recorded"
        for metric, designs in cond.items():
            if isinstance(designs, dict) and baseline in designs:
                assert any(d.startswith("fairpool") for d in designs), f"{name} {metric}: no fairpool row"
                assert all(v["median"] > 0 for v in designs.values()), f"{name} {metric}: {designs}"


@pytest.mark.timeout(900)
def test_busy_host_green_callers(benchmark: Any, measure: Any) -> None:
    """Green callers: fairpool (defaults) against eventlet.tpool, with 0, some, one busy process per core."""
    result = benchmark.pedantic(measure, args=("busy.green",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    _check(result, "eventlet.tpool")


@pytest.mark.timeout(900)
def test_busy_host_native_callers(benchmark: Any, measure: Any) -> None:
    """Native callers: fairpool and ThreadPoolExecutor at their default sizes, and at the same size."""
    result = benchmark.pedantic(measure, args=("busy.native",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    _check(result, result["baseline"])


@pytest.mark.timeout(1800)
def test_busy_host_boot_storm(benchmark: Any, measure: Any) -> None:
    """The boot storm with 0, some, one busy process per core."""
    result = benchmark.pedantic(measure, args=("busy.bootstorm",), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    _check(result, "eventlet.tpool")


@pytest.mark.timeout(60)
def test_busy_processes_spin_and_are_always_stopped() -> None:
    """The busy processes use the CPU while they run and none is left afterwards, even after an error."""
    meter = LoadMeter()
    with pytest.raises(RuntimeError, match="inside"):
        with BusyProcesses(2, lifetime=30) as busy:
            assert len(busy.procs) == 2 and all(p.poll() is None for p in busy.procs), "not spinning"
            meter.start()
            time.sleep(0.3)
            meter.stop()
            procs = list(busy.procs)
            raise RuntimeError("inside")
    assert all(p.poll() is not None for p in procs), "a busy process was left running"
    share = meter.summary()["cpu_busy_share"]
    assert share is None or share > 0.2, f"two spinning processes, yet the CPUs were busy {share:.0%}"


@pytest.mark.timeout(60)
def test_busy_processes_stop_when_their_parent_is_killed() -> None:
    """A measurement killed outright (no finally, no atexit) leaves no busy process spinning."""
    script = (
        "import os\n"
        "from bench.busy import BusyProcesses\n"
        "b = BusyProcesses(1, lifetime=30).__enter__()\n"
        "print(b.procs[0].pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -9, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # gone, waiting to be reaped by init
            return
        time.sleep(0.05)
    raise AssertionError(f"busy process {pid} still runs 10 s after its parent was killed")
