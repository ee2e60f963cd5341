"""A state-machine test over the Pool API: submit, cancel, time out, resize, release, shutdown.

Hypothesis runs the operations in any order; after every step the invariants
hold: nothing runs twice, a cancelled call never runs, every finished call
carries its own token, and no more calls run at once than the largest size
the pool has had. At the end every call is answered.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fairpool
from fairpool import PoolClosed


class CallError(Exception):
    pass


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = fairpool.Pool(threads=2, name="machine", max_queue=4)
        self.largest = 2
        self.closed = False
        self.next_token = 0
        self.gate = threading.Event()
        self.gates = [self.gate]
        self.calls: list[tuple[concurrent.futures.Future[Any], str, int]] = []
        self.cancelled: set[int] = set()
        self.ran: list[int] = []
        self.guard = threading.Lock()
        self.running = 0
        self.peak = 0

    # -- what a call does -------------------------------------------------
    def _call(self, token: int, kind: str, gate: threading.Event) -> int:
        with self.guard:
            self.ran.append(token)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if kind == "block":
                gate.wait(10)
            if kind == "error":
                raise CallError(token)
            return token
        finally:
            with self.guard:
                self.running -= 1

    # -- the operations ---------------------------------------------------
    @rule(kind=st.sampled_from(["value", "error", "block"]), lane=st.sampled_from(["a", "b", "c"]))
    def submit(self, kind: str, lane: str) -> None:
        self.next_token += 1
        token = self.next_token
        with fairpool.lane(lane):
            if self.closed:
                with pytest.raises(PoolClosed):
                    self.pool.submit(self._call, token, kind, self.gate)
                return
            future = self.pool.submit(self._call, token, kind, self.gate)
        self.calls.append((future, kind, token))

    @precondition(lambda self: self.calls)
    @rule(index=st.integers(0, 1000))
    def cancel(self, index: int) -> None:
        future, _, token = self.calls[index % len(self.calls)]
        if future.cancel():
            self.cancelled.add(token)

    @precondition(lambda self: self.calls)
    @rule(index=st.integers(0, 1000))
    def time_out(self, index: int) -> None:
        future, _, _ = self.calls[index % len(self.calls)]
        try:
            future.result(timeout=0.001)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, CallError, PoolClosed):
            pass

    @rule()
    def release(self) -> None:
        self.gate.set()
        self.gate = threading.Event()
        self.gates.append(self.gate)

    @rule(size=st.integers(1, 4))
    def resize(self, size: int) -> None:
        self.pool.resize(size)
        self.largest = max(self.largest, size)

    @rule(timeout=st.sampled_from([0.0, 0.01]))
    def shutdown(self, timeout: float) -> None:
        self.pool.shutdown(timeout=timeout)
        self.closed = True

    # -- the invariants ---------------------------------------------------
    @invariant()
    def nothing_runs_twice_and_cancelled_calls_never_run(self) -> None:
        with self.guard:
            ran = list(self.ran)
        assert len(ran) == len(set(ran)), "a call ran twice"
        assert not (self.cancelled & set(ran)), "a cancelled call ran"

    @invariant()
    def the_cap_holds(self) -> None:
        assert self.peak <= self.largest, f"{self.peak} calls at once; the largest size was {self.largest}"
        stats = self.pool.statistics()
        assert stats.busy <= stats.threads <= self.largest, stats

    @invariant()
    def finished_calls_carry_their_own_token(self) -> None:
        for future, kind, token in self.calls:
            if not future.done() or future.cancelled():
                continue
            exc = future.exception()
            if isinstance(exc, PoolClosed):
                continue
            if kind == "error":
                assert isinstance(exc, CallError) and exc.args == (token,), exc
            else:
                assert exc is None and future.result() == token

    def teardown(self) -> None:
        for gate in self.gates:
            gate.set()
        self.pool.shutdown(timeout=10)
        for future, _, token in self.calls:
            assert future.done(), f"call {token} was never answered"
        self.nothing_runs_twice_and_cancelled_calls_never_run()
        self.finished_calls_carry_their_own_token()


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
