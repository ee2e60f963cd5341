"""Benchmark plumbing: run a measurement in a fresh (optionally pinned) process, keep its JSON.

    python -m pytest bench                                   # quick mode, fit for CI
    python -m pytest bench --bench-full --bench-out DIR      # one long run (docs/benchmarks.md)

Results go to bench/results/latest/ (quick) or bench/results/full-latest/
(full), both untracked, unless ``--bench-out`` names a folder. Nothing tracked
is written unless asked. ``python -m bench.report --results DIR [DIR ...]``
prints them as tables of ratios, the median of the runs with their spread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench-full", action="store_true", help="run the long benchmarks (published numbers)")
    parser.addoption(
        "--bench-out",
        type=Path,
        default=None,
        help="write the results here (default: bench/results/latest, or full-latest with --bench-full)",
    )


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bench-full"))


@pytest.fixture(scope="session")
def measure(full: bool, request: pytest.FixtureRequest) -> Any:
    """``measure(name, pinned=False)``: run ``bench.measure NAME`` in a fresh process; returns its JSON.

    A name ``worlds.NAME`` runs ``bench.measure_worlds NAME`` (native threads and asyncio),
    ``busy.NAME`` runs ``bench.measure_busy NAME`` (busy processes beside it), kept as ``busy_NAME``,
    ``metrics.NAME`` runs ``bench.measure_metrics NAME`` (OpenTelemetry metrics' cost).
    """
    out_dir = request.config.getoption("--bench-out") or RESULTS / ("full-latest" if full else "latest")
    out_dir.mkdir(parents=True, exist_ok=True)

    def run(name: str, pinned: bool = False) -> dict[str, Any]:
        module, _, short = name.rpartition(".")
        module = {
            "worlds": "bench.measure_worlds",
            "busy": "bench.measure_busy",
            "metrics": "bench.measure_metrics",
        }.get(module, "bench.measure")
        cmd = [sys.executable, "-m", module, short] + (["--full"] if full else [])
        if pinned:
            taskset = shutil.which("taskset")
            if taskset is None:
                pytest.skip("taskset (util-linux) is not installed: cannot pin to one CPU")
            cmd = [taskset, "-c", "0", *cmd]
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600, env=env)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}"
        result: dict[str, Any] = json.loads(proc.stdout)
        result["pinned"] = pinned
        key = f"busy_{short}" if module == "bench.measure_busy" else short
        key = f"{key}_pinned" if pinned else key
        (out_dir / f"{key}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        return result

    return run
