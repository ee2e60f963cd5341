"""Instrumented locks, wrap_library, and a contended run named by the report."""

from __future__ import annotations

import ctypes
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import eventlet
import eventlet.semaphore
import pytest

import fairpool
from fairpool import report, trace

LOCK_KINDS = {
    "threading.Lock": threading.Lock,
    "threading.RLock": threading.RLock,
    "threading.Semaphore": lambda: threading.Semaphore(1),
    "threading.BoundedSemaphore": lambda: threading.BoundedSemaphore(1),
    "eventlet Semaphore": lambda: eventlet.semaphore.Semaphore(1),
    "eventlet BoundedSemaphore": lambda: eventlet.semaphore.BoundedSemaphore(1),
}


@pytest.mark.parametrize("kind", list(LOCK_KINDS))
def test_an_instrumented_lock_works_like_the_original(kind: str) -> None:
    lock = fairpool.instrument_lock(LOCK_KINDS[kind](), f"lock-{kind}")
    assert lock.acquire()
    lock.release()
    with lock:
        pass
    assert lock.acquire(blocking=False)
    lock.release()
    stats = lock.statistics()
    assert stats.acquisitions == 3 and stats.contended == 0
    assert stats.total_hold >= 0 and stats.max_wait == 0


def test_contended_acquisitions_are_counted_and_traced(tmp_path: Path) -> None:
    lock = fairpool.instrument_lock(eventlet.semaphore.Semaphore(1), "accounting")

    def update() -> None:
        with lock:
            eventlet.sleep(0.01)

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        for gt in [eventlet.spawn(update) for _ in range(5)]:
            gt.wait()
    stats = lock.statistics()
    assert stats.acquisitions == 5 and stats.contended == 4
    assert stats.max_wait >= 0.03 and stats.total_hold >= 0.05
    assert fairpool.lock_statistics()["accounting"] == stats
    evs = json.loads(out.read_text())
    assert sum(1 for e in evs if e.get("name") == "wait accounting") == 4
    assert sum(1 for e in evs if e.get("name") == "hold accounting") == 5


def test_a_non_blocking_acquire_of_a_taken_lock_fails_without_counting() -> None:
    lock = fairpool.instrument_lock(threading.Lock(), "busy")
    with lock:
        assert lock.acquire(False) is False
        assert lock.acquire(True, 0.01) is False  # timed out
    assert lock.statistics().acquisitions == 1


def test_an_rlock_taken_again_is_one_hold() -> None:
    lock = fairpool.instrument_lock(threading.RLock(), "reentrant")
    with lock, lock:
        pass
    assert lock.statistics().acquisitions == 2


def test_instrument_lock_rejects_what_is_not_a_lock() -> None:
    with pytest.raises(TypeError, match="lock must have acquire\\(\\) and release\\(\\), got 42"):
        fairpool.instrument_lock(42, "x")
    with pytest.raises(ValueError, match="name must be a non-empty string, got ''"):
        fairpool.instrument_lock(threading.Lock(), "")


def test_wrap_library_runs_ctypes_functions_in_the_pool_without_blocking_the_hub() -> None:
    libc = fairpool.wrap_library(ctypes.CDLL(None), name="libc")
    ticks = []

    def ticker() -> None:
        while True:
            ticks.append(1)
            eventlet.sleep(0.002)

    t = eventlet.spawn(ticker)
    eventlet.sleep(0)
    before = len(ticks)
    assert libc.usleep(100_000) == 0
    t.kill()
    assert len(ticks) - before >= 10, "the hub was blocked during the C call"
    assert fairpool.statistics().completed == 1


def test_wrap_library_passes_non_functions_through() -> None:
    m = fairpool.wrap_library(math)
    assert m.pi == math.pi
    assert m.sqrt(16.0) == 4.0
    assert fairpool.statistics().completed == 1
    wrapped_threading = fairpool.wrap_library(threading)
    assert wrapped_threading.Thread is threading.Thread, "classes pass through"


def test_wrap_library_with_a_lock_serializes_the_calls() -> None:
    running = 0
    peak = 0

    class Binding:
        """A binding that is not thread-safe: it must never run twice at once."""

        def call(self) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            time.sleep(0.005)
            running -= 1

    lib = fairpool.wrap_library(Binding(), lock="binding-lock")
    for gt in [eventlet.spawn(lib.call) for _ in range(10)]:
        gt.wait()
    assert peak == 1, f"{peak} calls ran at once under the lock"
    stats = fairpool.lock_statistics()["binding-lock"]
    assert stats.acquisitions == 10 and stats.contended >= 1


def test_wrap_library_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string or None, got ''"):
        fairpool.wrap_library(math, name="")
    with pytest.raises(TypeError, match="lock must have acquire"):
        fairpool.wrap_library(math, lock=3.5)


def test_a_contended_run_through_wrap_library_is_named_by_the_report(tmp_path: Path) -> None:
    """Green threads calling a C function under one lock: the report's top wait is that lock."""
    libc = fairpool.wrap_library(ctypes.CDLL(None), lock="libc-global", name="libc")
    side = fairpool.instrument_lock(eventlet.semaphore.Semaphore(1), "rarely-contended")

    @fairpool.traced
    def create_instance() -> None:
        with side:
            pass
        for _ in range(5):
            libc.usleep(2000)

    out = tmp_path / "contended.json"
    with trace.recording(str(out)):
        for gt in [eventlet.spawn(create_instance) for _ in range(8)]:
            gt.wait()
    spans, names = report.load_spans([out])
    text = report.render(spans, names)
    lock_table = text.split("Locks by total wait\n", 1)[1].splitlines()
    first_row = lock_table[1].split()
    assert first_row[0] == "libc-global", text
    assert int(first_row[2]) > 0, "the lock was contended"
    assert "run libc.usleep" in text


def _write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_the_report_reads_several_files_and_truncated_ones(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "a.json",
        [
            {"ph": "X", "name": "boot", "cat": "call", "ts": 0, "dur": 1000, "pid": 1, "tid": 1},
        ],
    )
    b = _write(
        tmp_path / "b.json",
        {
            "traceEvents": [
                {"ph": "B", "name": "boot", "ts": 0, "pid": 2, "tid": 1},
                {"ph": "E", "ts": 3000, "pid": 2, "tid": 1},
            ]
        },
    )
    truncated = _write(
        tmp_path / "c.json", '[\n{"ph":"X","name":"boot","cat":"call","ts":0,"dur":2000,"pid":3,"tid":1},\n'
    )
    spans, _ = report.load_spans([a, b, truncated])
    assert sorted(s.dur for s in spans) == [1000, 2000, 3000]
    assert len({s.track for s in spans}) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not trace-event JSON"),
        ('{"traceEvents": 3}', "expected a list of events"),
        ('[{"ph": "X", "name": "x"}]', "a malformed event"),
    ],
)
def test_the_report_rejects_bad_files_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = _write(tmp_path / "bad.json", content)
    with pytest.raises(SystemExit) as info:
        report.main([str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "fairpool report: error:" in err and message in err and "bad.json" in err


def test_the_report_on_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        report.main([str(tmp_path / "nope.json")])
    assert info.value.code == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_the_report_names_stretched_extents_and_what_they_waited_on(tmp_path: Path) -> None:
    evs = [
        {"ph": "X", "name": "spawn", "cat": "call", "ts": i * 10_000, "dur": 2000, "pid": 1, "tid": i}
        for i in range(6)
    ]
    evs.append({"ph": "X", "name": "spawn", "cat": "call", "ts": 100_000, "dur": 50_000, "pid": 1, "tid": 9})
    evs.append(
        {
            "ph": "X",
            "name": "wait libvirt",
            "cat": "lock",
            "ts": 101_000,
            "dur": 40_000,
            "pid": 1,
            "tid": 9,
            "args": {"lock": "libvirt"},
        }
    )
    path = _write(tmp_path / "s.json", evs)
    spans, names = report.load_spans([path])
    text = report.render(spans, names)
    section = text.split("Stretched extents", 1)[1]
    assert "spawn" in section and "wait libvirt 40.0 ms" in section, section


def test_the_command_line_report_and_timeline(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = _write(
        tmp_path / "t.json",
        [
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1, "args": {"name": "main"}},
            {"ph": "X", "name": "boot", "cat": "call", "ts": 0, "dur": 1000, "pid": 1, "tid": 1},
        ],
    )
    png = tmp_path / "t.png"
    proc = subprocess.run(
        [sys.executable, "-m", "fairpool", "report", str(path), "--timeline", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Top spans by total time" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
