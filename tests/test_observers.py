"""The observer slot (fairpool._hooks): plain values, every outcome, calls run in their caller's context."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import eventlet
import greenlet
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
    refused: list[BaseException] = []

    def submit_until_refused() -> None:
        # From a native thread: one with a hub (the main thread, after other tests) never waits
        # for the pool's lock, and a refusal then comes back as the future's outcome instead.
        try:
            for _ in range(10):  # one running (or about to), one queued, then the bound
                pool.submit(gate.wait, 10)
        except fairpool.QueueFull as exc:
            refused.append(exc)

    try:
        submitter = threading.Thread(target=submit_until_refused)
        submitter.start()
        submitter.join(10)
        assert len(refused) == 1, "the queue's bound never refused a submit"
    finally:
        gate.set()
        pool.shutdown(timeout=5)
    with pytest.raises(fairpool.PoolClosed):
        pool.execute(int)
    outcomes = [extra for event, _, extra in recorder.events if event == "answered"]
    assert outcomes.count("rejected") == 2, outcomes
    assert "closed" not in outcomes, outcomes


class _YieldingObserver(Recorder):
    """Yields to the hub in call_submitted, as one that takes a green lock or writes to a green socket."""

    def call_submitted(self, call: CallInfo) -> None:
        super().call_submitted(call)
        eventlet.sleep(0.05)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_a_timeout_or_kill_let_in_by_a_yielding_observer_reaches_its_caller_and_cancels_the_call(
    how: str,
) -> None:
    observer = _YieldingObserver()
    _hooks.add_observer(observer)
    pool = fairpool.Pool(threads=1, name="yielding-observer")
    ran = threading.Event()
    try:
        faults_before = _hooks.fault_count()
        got: list[str] = []

        def caller() -> None:
            try:
                if how == "timeout":
                    with eventlet.Timeout(0.005):
                        pool.execute(ran.set)
                else:
                    pool.execute(ran.set)
                got.append("returned")
            except eventlet.Timeout:
                got.append("Timeout")
            except greenlet.GreenletExit:
                got.append("killed")
                raise

        g = eventlet.spawn(caller)
        eventlet.sleep(0.01)  # the caller is inside the observer's call_submitted
        if how == "kill":
            g.kill()
        else:
            g.wait()
        assert got == ["Timeout" if how == "timeout" else "killed"], f"the caller's {how} was lost: {got}"
        assert pool.execute(int, 7) == 7  # the pool serves, and the call before it...
        assert not ran.is_set(), "a call whose caller gave up before it was queued ran anyway"
        faults = _hooks.fault_count() - faults_before
        assert not faults, "the caller's interruption was counted as the observer's fault"
        answered = [extra for event, _, extra in observer.events if event == "answered"]
        assert answered == ["cancelled", "returned"], f"observers saw {answered}"
    finally:
        _hooks.remove_observer(observer)
        pool.shutdown(timeout=5)


class _OwnTimeoutObserver(PoolObserver):
    """Gives up on its own slow green work with a Timeout of its own, and lets it escape."""

    def __init__(self, event: str) -> None:
        self.event = event

    def _slow(self) -> None:
        with eventlet.Timeout(0.01):
            eventlet.sleep(1)

    def call_submitted(self, call: CallInfo) -> None:
        if self.event == "call_submitted":
            self._slow()

    def call_started(self, call: CallInfo) -> None:
        if self.event == "call_started":
            self._slow()  # in the worker: eventlet gives the worker thread a hub of its own


@pytest.mark.timeout(30)
@pytest.mark.parametrize("event", ["call_submitted", "call_started"])
@pytest.mark.parametrize("caller", ["green", "native"])
def test_an_observers_own_timeout_is_its_fault_not_the_callers(event: str, caller: str) -> None:
    observer = _OwnTimeoutObserver(event)
    _hooks.add_observer(observer)
    pool = fairpool.Pool(threads=1, name="own-timeout")
    try:
        faults_before = _hooks.fault_count()
        if caller == "green":
            with eventlet.Timeout(5):
                got = eventlet.spawn(pool.execute, int, 5).wait()
        else:
            out: list[object] = []
            t = threading.Thread(target=lambda: out.append(pool.execute(int, 5)))
            t.start()
            t.join(10)
            got = out[0] if out else "no answer"
        assert got == 5, f"a {caller} caller got {got!r}: the observer's own Timeout reached it"
        faults = _hooks.fault_count() - faults_before
        assert faults == 1, f"the observer's Timeout was counted as {faults} faults, not 1"
        assert pool.statistics().worker_faults == 0
    finally:
        _hooks.remove_observer(observer)
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_a_kill_after_a_timeout_both_let_in_by_yielding_observers_ends_the_green_thread() -> None:
    observers = [_YieldingObserver(), _YieldingObserver()]
    for observer in observers:
        _hooks.add_observer(observer)
    pool = fairpool.Pool(threads=1, name="kill-after-timeout")
    try:
        after: list[str] = []

        def caller() -> None:
            with eventlet.Timeout(0.02, False):  # fires during the first observer's yield
                pool.execute(int)
            after.append("still running after the kill")

        g = eventlet.spawn(caller)
        eventlet.sleep(0.07)  # the Timeout fired in the first observer; now in the second
        g.kill()
        assert g.dead and not after, f"the kill was lost: {after}"
    finally:
        for observer in observers:
            _hooks.remove_observer(observer)
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_killall_while_a_caller_is_inside_a_yielding_observer_still_answers_it() -> None:
    fairpool.execute(int)  # the default pool and this hub's channel exist
    observer = _YieldingObserver()
    _hooks.add_observer(observer)
    try:
        got: list[object] = []

        def caller() -> None:
            with eventlet.Timeout(10, False):
                got.append(fairpool.execute(lambda: "answer"))

        g = eventlet.spawn(caller)
        eventlet.sleep(0.01)  # the caller holds its hub's channel, inside the observer's yield
        fairpool.killall()
        with eventlet.Timeout(5, False):
            g.wait()
        assert got == ["answer"], f"the caller's answer was lost to killall: {got}"
    finally:
        _hooks.remove_observer(observer)
