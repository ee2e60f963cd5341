"""The core, life-cycle and libvirt tests again, under each of eventlet's hubs.

Each hub runs the tests in a fresh interpreter with ``EVENTLET_HUB`` set, so
the hub is chosen before anything makes one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SUITES = ["test_execute.py", "test_cancel.py", "test_lanes.py", "test_tpool_compat.py", "test_libvirt.py"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("hub", ["epolls", "poll", "selects", "asyncio"])
def test_the_core_and_libvirt_tests_pass_under_each_hub(hub: str) -> None:
    env = dict(os.environ, EVENTLET_HUB=hub)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-x",
        *[str(HERE / s) for s in SUITES],
    ]
    check = [
        sys.executable,
        "-W",
        "ignore",
        "-c",
        "import eventlet.hubs, fairpool; fairpool.execute(int); "
        "print(type(eventlet.hubs.get_hub()).__module__)",
    ]
    used = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert used.stdout.strip() == f"eventlet.hubs.{hub}", used.stderr
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=560, cwd=HERE.parent)
    assert proc.returncode == 0, f"under EVENTLET_HUB={hub}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout
