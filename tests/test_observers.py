"""The observer slot (fairpool._hooks): plain values, every outcome, calls run in their caller's context."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest

import fairpool
from fairpool import _hooks
from fairpool._hooks import CallInfo, PoolObserver

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
span: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")


class Recorder(PoolObserver):
    def __init__(self, wants_context: bool = False) -> None:
        self.wants_context = wants_context
        self.events: list[tuple[str, int, Any]] = []
        self.lock = threading.Lock()

    def _add(self, event: str, call: CallInfo, extra: Any = None) -> None:
        with self.lock:
            self.events.append((event, call.call_id, extra))

    def call_submitted(self, call: CallInfo) -> None:
        self._add("submitted", call, (call.pool, call.lane))
        if call.context is not None:
            call.context.run(span.set, f"pool span {call.call_id}")  # seen by the call in the worker

    def call_started(self, call: CallInfo) -> None:
        self._add("started", call, call.worker)

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        self._add("finished", call, ok)

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        self._add("answered", call, outcome)


@pytest.fixture
def recorder() -> Any:
    rec = Recorder()
    _hooks.add_observer(rec)
    yield rec
    _hooks.remove_observer(rec)


@pytest.mark.timeout(30)
def test_each_call_sends_its_events_in_order_with_its_outcome(recorder: Recorder) -> None:
    pool = fairpool.Pool(threads=2, name="observed")
    try:
        with fairpool.lane("audit"):
            assert pool.execute(int, "7") == 7
        with pytest.raises(ValueError):
            pool.execute(int, "x")
    finally:
        pool.shutdown()
    by_call: dict[int, list[tuple[str, Any]]] = {}
    for event, call_id, extra in recorder.events:
        by_call.setdefault(call_id, []).append((event, extra))
    (first, second) = by_call.values()
    assert [e for e, _ in first] == ["submitted", "started", "finished", "answered"], first
    assert first[0][1] == ("observed", "audit") and first[1][1].startswith("fairpool-observed-")
    assert first[2][1] is True and first[3][1] == "returned"
    assert second[2][1] is False and second[3][1] == "raised"


@pytest.mark.timeout(30)
def test_an_observer_that_wants_context_has_calls_run_in_their_callers_context() -> None:
    rec = Recorder(wants_context=True)
    pool = fairpool.Pool(threads=1, name="ctx")
    _hooks.add_observer(rec)
    try:
        request_id.set("req-42")
        seen = pool.execute(lambda: (request_id.get(), span.get()))
        assert seen[0] == "req-42", "the caller's context did not travel to the worker"
        assert seen[1].startswith("pool span "), "what the observer set in the call's context was not seen"
        assert span.get() == "none", "the observer's change leaked into the caller's own context"
    finally:
        _hooks.remove_observer(rec)
    request_id.set("req-43")
    assert pool.execute(request_id.get) == "none", "without such an observer, calls run in the worker's"
    pool.shutdown()


@pytest.mark.timeout(30)
def test_refused_calls_are_observed_as_rejected(recorder: Recorder) -> None:
    gate = threading.Event()
    pool = fairpool.Pool(threads=1, max_queue=1, on_full="raise", name="refusing")
    try:
        with pytest.raises(fairpool.QueueFull):
            for _ in range(10):  # one running (or about to), one queued, then the bound
                pool.submit(gate.wait, 10)
    finally:
        gate.set()
        pool.shutdown(timeout=5)
    with pytest.raises(fairpool.PoolClosed):
        pool.execute(int)
    outcomes = [extra for event, _, extra in recorder.events if event == "answered"]
    assert outcomes.count("rejected") == 2, outcomes
    assert "closed" not in outcomes, outcomes
