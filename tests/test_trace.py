"""Tracing: @traced, recording, pool-call spans, file safety, bounded memory."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import trace

from .conftest import run_script


def events(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    assert isinstance(data, list), "fairpool writes the JSON Array form"
    return data


def spans(path: Path, name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events(path) if e["ph"] == "X" and (name is None or e["name"] == name)]


def test_traced_functions_methods_and_classes_record_spans(tmp_path: Path) -> None:
    @fairpool.traced
    def plain(x: int) -> int:
        return x + 1

    @fairpool.traced(name="custom name")
    def named() -> None:
        pass

    @fairpool.traced
    class Service:
        def boot(self) -> str:
            return "booted"

        @staticmethod
        def helper() -> int:
            return 3

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        assert plain(1) == 2
        named()
        assert Service().boot() == "booted"
        assert Service.helper() == 3
    names = [e["name"] for e in spans(out)]
    assert any(n.endswith("plain") for n in names), names
    assert "custom name" in names
    assert any(n.endswith("Service.boot") for n in names), names
    assert any(n.endswith("Service.helper") for n in names), names
    assert all(e["dur"] >= 0 and e["ts"] > 0 for e in spans(out))


def test_traced_costs_nothing_observable_when_not_recording() -> None:
    calls = []

    @fairpool.traced
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert trace.active() is None
    assert f(21) == 42 and calls == [21]
    assert f.__name__ == "f"


def test_arguments_are_recorded_only_when_asked(tmp_path: Path) -> None:
    @fairpool.traced
    def connect(uri: str) -> None:
        pass

    @fairpool.traced(record_args=True)
    def lookup(name: str) -> None:
        pass

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        connect("qemu+ssh://admin:s3cret@host/system")
        lookup("vm-42")
    text = out.read_text()
    assert "s3cret" not in text, "an argument value was recorded without being asked for"
    (span,) = [e for e in spans(out) if e["name"].endswith("lookup")]
    assert span["args"]["args"] == ["'vm-42'"]


def test_the_trace_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    with trace.recording(str(out)) as tracer:
        pass
    assert tracer.path == str(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_an_existing_file_is_never_truncated_or_chmodded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "t.json"
    out.write_text("old")
    out.chmod(0o644)
    with trace.recording(str(out)) as tracer:
        pass
    assert out.read_text() == "old" and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert tracer.path == str(tmp_path / f"t.{os.getpid()}.json"), "a per-process name beside it"
    assert stat.S_IMODE(os.stat(tracer.path).st_mode) == 0o600
    assert json.loads(Path(tracer.path).read_text())[0]["name"] == "process_name"
    assert f"tracing to {tracer.path!r}" in caplog.text, "the warning says which file"


def test_a_trace_path_that_cannot_be_written_fails_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "missing-dir" / "t.json"
    with pytest.raises(fairpool.TraceError, match="cannot write the trace file"):
        trace.start(str(bad))
    assert trace.active() is None


def test_only_one_recording_at_a_time(tmp_path: Path) -> None:
    with trace.recording(str(tmp_path / "a.json")):
        with pytest.raises(fairpool.TraceError, match="already being recorded"):
            trace.start(str(tmp_path / "b.json"))


def test_memory_stays_bounded_while_recording(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    with trace.recording(str(out)) as tracer:
        peak = 0
        for i in range(30_000):
            tracer.complete("tick", "call", float(i), 1.0)
            peak = max(peak, tracer.buffered())
        dropped = tracer.dropped
    assert peak <= trace.BUFFER_EVENTS, f"{peak} events held in memory"
    assert len(spans(out, "tick")) + dropped == 30_000, "every event is written, or dropped and counted"


def test_recording_is_safe_from_green_and_native_threads_at_once(tmp_path: Path) -> None:
    @fairpool.traced
    def work() -> None:
        pass

    def many() -> None:
        for _ in range(2000):
            work()

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        natives = [threading.Thread(target=many) for _ in range(4)]
        for t in natives:
            t.start()
        greens = [eventlet.spawn(many) for _ in range(4)]
        for gt in greens:
            gt.wait()
        for t in natives:
            t.join(30)
    work_spans = [e for e in spans(out) if e["name"].endswith("work")]
    assert len(work_spans) == 16_000
    assert len({e["tid"] for e in work_spans}) == 8, "each thread and green thread has its own track"


def test_pool_calls_are_traced_with_queued_wait_run_spans_and_a_flow(tmp_path: Path) -> None:
    pool = fairpool.Pool(threads=2, name="traced")
    out = tmp_path / "t.json"

    def blocking_call() -> str:
        return "done"

    try:
        with trace.recording(str(out)):
            gts = [eventlet.spawn(pool.execute, blocking_call) for _ in range(5)]
            for gt in gts:
                gt.wait()
    finally:
        pool.shutdown()
    evs = events(out)
    name = next(e["name"] for e in evs if e["ph"] == "X" and e["name"].startswith("run "))
    fn = name[4:]
    assert fn.endswith("blocking_call"), name
    run = [e for e in evs if e["ph"] == "X" and e["name"] == f"run {fn}"]
    wait = [e for e in evs if e["ph"] == "X" and e["name"] == f"wait {fn}"]
    queued = [e for e in evs if e["ph"] == "X" and e["name"] == f"queued {fn}"]
    assert len(run) == len(wait) == len(queued) == 5
    thread_names = {e["tid"]: e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert all(thread_names[e["tid"]].startswith("fairpool-traced-") for e in run)
    assert all(thread_names[e["tid"]].startswith("green thread") for e in wait)
    for q, w in zip(queued, wait, strict=True):
        assert q["tid"] == w["tid"] and q["ts"] == w["ts"] and q["dur"] <= w["dur"]
    starts = {e["id"] for e in evs if e["ph"] == "s"}
    finishes = {e["id"] for e in evs if e["ph"] == "f"}
    assert starts == finishes and len(starts) == 5, "every call has a flow arrow from caller to worker"
    counters = [e for e in evs if e["ph"] == "C" and e["name"] == "pool traced"]
    assert counters and all({"queued", "busy"} <= set(e["args"]) for e in counters)


def test_environment_variable_records_the_whole_process(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    run_script(
        """
        import fairpool, eventlet

        @fairpool.traced
        def step():
            return fairpool.execute(lambda: 1)

        for _ in range(3):
            eventlet.spawn(step).wait()
        """,
        env={"FAIRPOOL_TRACE": str(out)},
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    names = [e["name"] for e in spans(out)]
    assert sum(1 for n in names if n.endswith("step")) == 3
    assert sum(1 for n in names if n.startswith("run ")) == 3


def test_a_trace_path_from_the_environment_that_cannot_be_written_warns_once_and_the_service_runs(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    bad = str(tmp_path / "no" / "such" / "dir.json")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fairpool; from fairpool import trace; "
            "assert trace.active() is None and trace.failures() == 1; "
            "print(fairpool.execute(lambda: 'served'))",
        ],
        env=dict(os.environ, FAIRPOOL_TRACE=bad, PYTHONWARNINGS="ignore::DeprecationWarning"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "served"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "FAIRPOOL_TRACE=" in lines[0] and bad in lines[0] and "tracing is off" in lines[0], lines[0]


def test_trace_module_traces_its_own_functions_only(tmp_path: Path) -> None:
    import types

    mod = types.ModuleType("fake_driver")
    exec(
        "import os\ndef create(): return 'created'\nclass Conn:\n    def close(self): return 'closed'\n",
        mod.__dict__,
    )
    for value in vars(mod).values():
        if callable(value) and not isinstance(value, types.ModuleType):
            value.__module__ = "fake_driver"
    traced = fairpool.trace_module(mod)
    assert sorted(traced) == ["Conn", "create"]
    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        assert mod.create() == "created"
        assert mod.Conn().close() == "closed"
    names = [e["name"] for e in spans(out)]
    assert "fake_driver.create" in names and "fake_driver.Conn.close" in names
    with pytest.raises(TypeError, match="takes a module"):
        fairpool.trace_module("fake_driver")  # type: ignore[arg-type]
