"""A busy host: CPU-bound processes beside the pool (none, some, one per core), every world.

Each measurement runs in a fresh process, unpinned, and records the
machine's load beside each condition; ``python -m bench.report`` shows the
rows and whether fairpool with its defaults wins, ties or loses each.
The full run, for published numbers, is one command::

    python -m pytest bench/test_busy_host.py --bench-full --bench-out bench/results/run-busy
    python -m bench.report --results bench/results/run-busy

Several runs (``--results`` with several folders): each figure is the median of
the runs' figures, and each range that of every round of every run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import pytest

from . import report
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


def _run(fairpool_rounds: list[float], baseline_rounds: list[float], load: float) -> dict[str, Any]:
    """A busy_bootstorm result of one run, one condition, from each design's per-round values (s)."""
    ratios = [b / f for f, b in zip(fairpool_rounds, baseline_rounds, strict=True)]  # lower is better

    def cell(values: list[float], against: list[float]) -> dict[str, Any]:
        return {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "vs_baseline": {"median": statistics.median(against), "min": min(against), "max": max(against)},
        }

    design = {
        "eventlet.tpool": cell(baseline_rounds, [1.0]),
        "fairpool": cell(fairpool_rounds, ratios),
    }
    load_seen = {"loadavg_1min": load, "cpu_busy_share": 0.5}
    condition = {"busy_processes": 0, "load": load_seen, "median_s": design}
    return {
        "busy_bootstorm": {
            "baseline": "eventlet.tpool",
            "rounds": len(fairpool_rounds),
            "cores": 2,
            "conditions": {"none": condition},
        }
    }


def test_the_report_gives_the_median_of_several_runs_and_the_range_of_every_round() -> None:
    runs = [
        _run([1.0, 1.0, 1.0], [1.2, 1.2, 1.2], 0.5),  # fairpool 1.2 x, every round
        _run([1.0, 1.0, 1.0], [1.3, 1.3, 1.3], 0.7),  # 1.3 x
        _run([1.0, 2.0, 1.0], [1.1, 1.0, 1.1], 2.5),  # 1.1 x, one round 0.5 x
    ]
    text = report.render_busy(runs, markdown=True)
    assert "3 runs of 3 rounds" in text, text
    assert "| 1-min load average (cores: 2) | 0.5-2.5 |" in text, "the load's range over the runs"
    row = next(line for line in text.splitlines() if line.startswith("| fairpool |"))
    assert "1.20 x (0.50-1.30)" in row, f"median of the runs' ratios, range of every round: {row}"
    verdicts = text.split("fairpool with its defaults against eventlet.tpool")[1]
    assert "wins (the rounds disagree)" in verdicts, verdicts
    one = report.render_busy(runs[:1], markdown=True)
    assert "(3 rounds)" in one and "1.20 x (1.20-1.20)" in one and "| wins |" in one, one
