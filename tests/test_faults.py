"""Faults inside fairpool itself: nobody is left waiting."""

from __future__ import annotations

import logging
import os
import threading

import eventlet
import pytest

import fairpool
import fairpool.testing
from fairpool import FairpoolError, _hubchannel

from .conftest import wait_until


def test_a_fault_in_the_worker_loop_replaces_the_worker_and_answers_everyone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="fairpool")
    pool = fairpool.Pool(threads=2, name="faulty")
    try:
        # The fault comes after a call ran, before it is handed back: its real result still goes back.
        with fairpool.testing.fault_in_worker_loop("after run", when=lambda job: True):
            results = [gt.wait() for gt in [eventlet.spawn(pool.execute, lambda i=i: i) for i in range(20)]]
        assert results == list(range(20)), "a call was lost or answered wrongly"
        stats = pool.statistics()
        assert stats.worker_faults == 1 and stats.threads <= 2
        assert pool.execute(lambda: "still works") == "still works"
        # The callers are answered first; the report follows from the worker's thread.
        wait_until(
            lambda: any("failed and was replaced" in r.getMessage() for r in caplog.records),
            what="the worker fault to be logged",
        )
        (fault,) = [r for r in caplog.records if "failed and was replaced" in r.getMessage()]
        assert fault.exc_info and "injected fault" in str(fault.exc_info[1])
    finally:
        pool.shutdown(timeout=5)


def test_a_fault_before_running_a_call_answers_it_with_an_error() -> None:
    pool = fairpool.Pool(threads=1, name="poisoned")
    try:
        with fairpool.testing.fault_in_worker_loop(
            "before run", error=lambda: MemoryError("injected"), when=lambda job: job.args == ("poison",)
        ):
            with pytest.raises(FairpoolError, match="failed while running this call"):
                pool.execute(str, "poison")
            assert pool.execute(str, 42) == "42"
        assert pool.statistics().worker_faults == 1
    finally:
        pool.shutdown(timeout=5)


@pytest.mark.parametrize("how", ["write end closed", "writes refused"])
def test_a_broken_wakeup_pipe_is_rebuilt_and_the_waiter_answered(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fairpool")
    pool = fairpool.Pool(threads=1, name="pipe")
    gate = threading.Event()
    kept = None
    try:
        pool.execute(int)
        channel = _hubchannel.current_channel()
        old_pipe = os.fstat(channel.rfd).st_ino
        caller = eventlet.spawn(pool.execute, lambda: (gate.wait(10), "answered")[1])
        wait_until(lambda: pool.statistics().busy == 1, what="the call to start")
        if how == "writes refused":
            kept = os.dup(channel.wfd)  # the pipe stays open: the reader sees no end of file
        # Break the pipe behind fairpool's back: its write end now refuses writes.
        readonly = os.open("/dev/null", os.O_RDONLY)
        os.dup2(readonly, channel.wfd)
        os.close(readonly)
        gate.set()
        with eventlet.Timeout(5):
            assert caller.wait() == "answered"
        assert channel.broken is None
        assert os.fstat(channel.rfd).st_ino != old_pipe, "the pipe was not rebuilt"
        messages = [r.getMessage() for r in caplog.records]
        assert any("wake-up pipe to the eventlet hub failed" in m for m in messages), messages
        assert pool.execute(lambda: "after repair") == "after repair"
    finally:
        gate.set()
        if kept is not None:
            os.close(kept)
        pool.shutdown(timeout=5)
