"""What OpenTelemetry metrics cost per pool call: off against on with the SDK's in-memory reader
(round trip, 200 green callers, and those callers plus a collection), rounds interleaved in one
process; and under eventlet.monkey_patch(), how long a collection holds the hub, with the green
drain and without (bench/measure_metrics.py). Published in docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk.metrics", reason="opentelemetry-sdk is not installed: pip install -e '.[test]'"
)

ROOT = Path(__file__).resolve().parent.parent


def _run(full: bool, out_dir: Path, pinned: bool, name: str = "metrics_overhead") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.measure_metrics", name] + (["--full"] if full else [])
    if pinned:
        taskset = shutil.which("taskset")
        if taskset is None:
            pytest.skip("taskset (util-linux) is not installed: cannot pin to one CPU")
        cmd = [taskset, "-c", "0", *cmd]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    result["pinned"] = pinned
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}{'_pinned' if pinned else ''}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("pinned", [False, True], ids=["unpinned", "pinned"])
def test_metrics_overhead(benchmark: Any, full: bool, request: pytest.FixtureRequest, pinned: bool) -> None:
    result = benchmark.pedantic(_run, args=(full, _out_dir(full, request), pinned), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    designs = {"off", "observer", "on", "preaggregated", "worker_records"}
    assert set(result["round_trip_us"]) == designs
    assert set(result["callers_calls_per_s"]) == designs | {"on_collected"}
    # Every call made while metrics were on and collected was counted, once.
    assert result["calls_counted"] == result["calls_made"] > 0, result


def _out_dir(full: bool, request: pytest.FixtureRequest) -> Path:
    return request.config.getoption("--bench-out") or (
        Path(__file__).resolve().parent / "results" / ("full-latest" if full else "latest")
    )


@pytest.mark.timeout(1800)
def test_collection_stall(benchmark: Any, full: bool, request: pytest.FixtureRequest) -> None:
    result = benchmark.pedantic(
        _run, args=(full, _out_dir(full, request), False, "collection_stall"), rounds=1, iterations=1
    )
    benchmark.extra_info.update(result)
    assert set(result["longest_hub_gap_during_collection_ms"]) == {"first_collection", "green_drain"}
