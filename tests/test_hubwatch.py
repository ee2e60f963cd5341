"""Hub watch: a green thread that blocks the hub is reported with its stack."""

from __future__ import annotations

import ctypes
import json
import logging
from pathlib import Path

import eventlet
import pytest

import fairpool
from fairpool import trace

from .conftest import run_script, wait_until

_libc = ctypes.CDLL(None)


def blocks_the_hub_in_c() -> None:
    _libc.usleep(150_000)  # a blocking C call made directly on the hub


def test_a_blocked_hub_is_reported_with_the_blocking_stack(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="fairpool")
    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        watch = fairpool.watch_hub(threshold=0.05)
        try:
            eventlet.sleep(0.05)
            eventlet.spawn(blocks_the_hub_in_c).wait()
            wait_until(
                lambda: any("blocks_the_hub_in_c" in s.stack for s in watch.stalls),
                what="the stall to be reported",
            )
        finally:
            watch.stop()
    # A loaded machine may add a stall of its own: the one of the C call is there, with its stack.
    (stall,) = [s for s in watch.stalls if "blocks_the_hub_in_c" in s.stack]
    assert stall.duration >= 0.1
    assert "blocks_the_hub_in_c" in stall.stack, stall.stack
    assert "the eventlet hub was blocked for" in caplog.text and "blocks_the_hub_in_c" in caplog.text
    evs = json.loads(out.read_text())
    (blocked,) = [
        e for e in evs if e.get("name") == "hub blocked" and "blocks_the_hub_in_c" in e["args"]["stack"]
    ]
    assert blocked["dur"] >= 100_000 and "blocks_the_hub_in_c" in blocked["args"]["stack"]


def test_a_hub_that_keeps_running_is_not_reported() -> None:
    # The calls go through the pool, so the hub never stops; the threshold
    # leaves room for a noisy machine's own hiccups.
    watch = fairpool.watch_hub(threshold=0.2)
    try:
        for _ in range(20):
            eventlet.sleep(0.01)
            fairpool.execute(_libc.usleep, 10_000)  # the same kind of call, through the pool
    finally:
        watch.stop()
    assert watch.stalls == []


@pytest.mark.parametrize("bad", [0, -1, "fast", True, float("nan"), float("inf"), 1e-9, 1e9])
def test_a_bad_threshold_is_named(bad: object) -> None:
    with pytest.raises(
        ValueError, match=rf"threshold must be a number of seconds from 0.01 to 3600, got {bad!r}"
    ):
        fairpool.watch_hub(bad)  # type: ignore[arg-type]


def test_the_environment_variable_starts_a_watch() -> None:
    out = run_script(
        """
        import ctypes, logging, sys, eventlet, fairpool
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
        eventlet.sleep(0.05)
        ctypes.CDLL(None).usleep(200000)
        eventlet.sleep(0.1)
        print("done")
        """,
        env={"FAIRPOOL_HUB_WATCH": "0.05"},
    )
    assert "the eventlet hub was blocked for" in out and "done" in out, out
