"""Traces you can leave on in production (issue 11): the settings where operators leave tracing on.

Each test uses the real thing: a real ``os.fork()``, a real subprocess that
inherits ``FAIRPOOL_TRACE``, a real SIGTERM and SIGKILL, a real file size
limit (RLIMIT_FSIZE, what a full disk looks like to a writer), real symbolic
links, FIFOs and (as root) device nodes and files of another user.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import eventlet
import pytest

import fairpool
from fairpool import trace

from .conftest import run_script, wait_until

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: device nodes and files of another user")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
ENV.pop("FAIRPOOL_TRACE", None)
ENV.pop("FAIRPOOL_HUB_WATCH", None)


def load(path: Path | str) -> list[dict[str, Any]]:
    """A trace file's events; a file cut off by a kill (no closing bracket) is closed first."""
    text = Path(path).read_text()
    assert "\x00" not in text, f"{path} holds NUL bytes"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(text.rstrip().rstrip(",") + "]")
    assert isinstance(data, list)
    return data


def spans(evs: list[dict[str, Any]], name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in evs if e.get("ph") == "X" and (name is None or e["name"] == name)]


def python(
    code: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- 1. nothing slow on the hub or under a lock -------------------------------------


@pytest.mark.timeout(30)
def test_callers_never_wait_for_the_writer_a_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    gate = threading.Event()
    total = trace.BUFFER_EVENTS + 10_000
    with trace.recording(str(out)) as tracer:
        sink = tracer._sink
        write = sink._write_text
        blocked = threading.Event()

        def stuck_write(text: str) -> None:  # a disk that does not answer
            blocked.set()
            gate.wait()
            write(text)

        sink._write_text = stuck_write  # type: ignore[method-assign]
        tracer.complete("first", "call", 1.0, 1.0)
        sink.wake()
        assert blocked.wait(10), "the writer never tried to write"
        peak = 0
        for i in range(total):  # would hang here if a caller waited for the writer
            tracer.complete("tick", "call", float(i), 1.0)
            peak = max(peak, tracer.buffered())
        dropped = tracer.dropped
        assert not gate.is_set()
        gate.set()
    assert peak <= trace.BUFFER_EVENTS
    assert dropped > 0
    evs = load(out)
    assert len(spans(evs, "tick")) + dropped == total, "every event is written, or dropped and counted"
    (recorded,) = [e for e in evs if e.get("name") == "fairpool trace: events dropped"]
    assert recorded["args"]["events"] == dropped, "the drop is recorded in the trace itself"


@pytest.mark.timeout(60)
def test_the_writer_is_a_native_thread_under_monkey_patch_and_writes_within_half_a_second(
    tmp_path: Path,
) -> None:
    out = tmp_path / "t.json"
    result = run_script(
        f"""
        import eventlet
        eventlet.monkey_patch()
        import json, threading
        import fairpool
        from fairpool import trace, _native

        @fairpool.traced
        def step():
            return fairpool.execute(lambda: 1)

        tracer = trace.start({str(out)!r})
        eventlet.spawn(step).wait()
        eventlet.sleep(1.2)  # the hub keeps running meanwhile; nothing stops the writer
        text = open({str(out)!r}).read()
        original = eventlet.patcher.original("threading")
        writers = [t for t in original.enumerate() if t.name == "fairpool-trace-writer"]
        print(json.dumps({{
            "written_before_stop": '"__main__.step"' in text,
            "writer_native_id": writers[0].native_id if writers else None,
            "main_native_id": _native.get_native_id(),
            "green_thread_count": len(threading.enumerate()),
        }}))
        trace.stop()
        """
    )
    info = json.loads(result.splitlines()[-1])
    assert info["written_before_stop"], "events reach the file within the flush interval, not at exit"
    assert info["writer_native_id"] not in (None, info["main_native_id"]), "a real native writer thread"


# -- SIGTERM, SIGKILL ---------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_quiet_service_stopped_by_a_signal_keeps_its_events(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "t.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                import fairpool

                @fairpool.traced
                def handle(i):
                    return fairpool.execute(lambda: i)

                for i in range(5):
                    handle(i)
                print("ready", flush=True)
                time.sleep(60)  # a quiet service: no more events until systemd stops it
                """
            ),
        ],
        env={**ENV, "FAIRPOOL_TRACE": str(out)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(3 * trace.FLUSH_INTERVAL)  # the documented bound, with room for a slow machine
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -sig
    evs = load(out)
    assert len(spans(evs, "__main__.handle")) == 5
    assert len([e for e in spans(evs) if e["name"].startswith("run ")]) == 5


# -- 2. one file per process ------------------------------------------------------------


FORK_SCRIPT = """
import json, os, sys, threading, time
import fairpool
from fairpool import trace

out_dir = sys.argv[1]

@fairpool.traced(name="parent-work", record_args=True)
def parent_work(i):
    return i

@fairpool.traced(name="child-work", record_args=True)
def child_work(i):
    return fairpool.execute(lambda: i)

tracer = trace.start(os.path.join(out_dir, "t.json"))
parent = os.getpid()
sink = tracer._sink
write = sink._write_text
in_write = threading.Event()
release = threading.Event()

def slow_write(text):  # the parent's writer is in the middle of a write at each fork
    if os.getpid() == parent:
        in_write.set()
        release.wait(20)
    write(text)

sink._write_text = slow_write
stop = threading.Event()

def busy():
    i = 0
    while not stop.is_set():
        parent_work(i)
        i += 1
        if i % 200 == 0:
            time.sleep(0.001)

feeder = threading.Thread(target=busy)
feeder.start()
for i in range(300):
    parent_work(-i)
sink.wake()
assert in_write.wait(10)
children = []
for n in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        for i in range(50):
            child_work(n * 1000 + i)
        sys.exit(0)  # atexit finishes the child's own file
    children.append(pid)
statuses = {}
deadline = time.monotonic() + 30
while len(statuses) < len(children) and time.monotonic() < deadline:
    for pid in children:
        if pid not in statuses:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.01)
hung = [pid for pid in children if pid not in statuses]
for pid in hung:
    os.kill(pid, 9)
release.set()
stop.set()
feeder.join()
path = trace.stop()
print(json.dumps({"parent": parent, "path": path, "statuses": statuses, "hung": hung}))
"""


@pytest.mark.timeout(90)
def test_forked_children_each_write_their_own_file_and_never_hang(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(tmp_path), "12"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["hung"] == [], "children hung at exit on a lock inherited from the parent"
    assert set(info["statuses"].values()) == {0}
    parent = info["parent"]
    parent_evs = load(tmp_path / "t.json")
    assert {e["pid"] for e in parent_evs} == {parent}, "no child event in the parent's file"
    assert not spans(parent_evs, "child-work")
    seen: set[str] = set()
    for pid_text in info["statuses"]:
        pid = int(pid_text)
        child_file = tmp_path / f"t.{pid}.json"
        evs = json.loads(child_file.read_text())  # closed properly by the child's exit
        assert {e["pid"] for e in evs} == {pid}, "a child's events carry its own pid"
        assert not spans(evs, "parent-work"), "the parent's buffer was not carried into the child"
        work = spans(evs, "child-work")
        assert len(work) == 50
        assert len([e for e in spans(evs) if e["name"].startswith("run ")]) == 50
        (anchor,) = [e for e in evs if e.get("name") == "fairpool_anchor"]
        assert anchor["args"]["pid"] == pid and anchor["args"]["ppid"] == parent
        for e in work:
            key = e["args"]["args"][0]
            assert key not in seen, "an event written twice"
            seen.add(key)
    assert stat.S_IMODE((tmp_path / f"t.{next(iter(info['statuses']))}.json").stat().st_mode) == 0o600


@pytest.mark.timeout(60)
def test_forked_workers_of_a_monkey_patched_service_each_write_their_own_file(tmp_path: Path) -> None:
    """As oslo.service does: monkey_patch, then fork the API workers; each serves green threads."""
    result = run_script(
        """
        import eventlet
        eventlet.monkey_patch()
        import os, sys
        import fairpool

        @fairpool.traced(name="request")
        def request(i):
            return fairpool.execute(lambda: i)

        request(-1)
        children = []
        for n in range(3):
            pid = os.fork()
            if pid == 0:
                eventlet.hubs.use_hub()  # a fresh hub in the child, as oslo.service does
                for gt in [eventlet.spawn(request, i) for i in range(20)]:
                    gt.wait()
                sys.exit(0)
            children.append(pid)
        for pid in children:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        print(" ".join(map(str, children)))
        """,
        env={"FAIRPOOL_TRACE": str(tmp_path / "api.json")},
    )
    parent_evs = load(tmp_path / "api.json")
    assert len(spans(parent_evs, "request")) == 1
    for pid in map(int, result.split()):
        evs = json.loads((tmp_path / f"api.{pid}.json").read_text())
        assert {e["pid"] for e in evs} == {pid}
        assert len(spans(evs, "request")) == 20
        assert len([e for e in spans(evs) if e["name"].startswith("run ")]) == 20


@pytest.mark.timeout(60)
def test_a_subprocess_inheriting_the_trace_variable_never_touches_the_parent_s_file(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    child = "import os, fairpool; fairpool.traced(name='child-work')(lambda: None)(); print(os.getpid())"
    result = run_script(
        f"""
        import subprocess, sys, os
        import fairpool

        work = fairpool.traced(name="parent-work")(lambda: fairpool.execute(lambda: 1))
        work()
        child = subprocess.run([sys.executable, "-c", {child!r}], capture_output=True, text=True, check=True)
        work()
        print(os.getpid(), child.stdout.strip())
        """,
        env={"FAIRPOOL_TRACE": str(out)},
    )
    parent, child_pid = (int(x) for x in result.split())
    evs = load(out)
    assert {e["pid"] for e in evs} == {parent}
    assert len(spans(evs, "parent-work")) == 2, "the parent's events are all there"
    child_evs = load(tmp_path / f"t.{child_pid}.json")
    assert {e["pid"] for e in child_evs} == {child_pid}
    assert len(spans(child_evs, "child-work")) == 1


def test_a_pid_placeholder_names_each_process_s_file(tmp_path: Path) -> None:
    pid = run_script(
        "import os, fairpool; fairpool.traced(name='w')(lambda: None)(); print(os.getpid())",
        env={"FAIRPOOL_TRACE": str(tmp_path / "svc-{pid}.json")},
    ).strip()
    assert spans(load(tmp_path / f"svc-{pid}.json"), "w")


def test_a_directory_gets_one_file_per_process(tmp_path: Path) -> None:
    pid = run_script(
        "import os, fairpool; fairpool.traced(name='w')(lambda: None)(); print(os.getpid())",
        env={"FAIRPOOL_TRACE": str(tmp_path) + "/"},
    ).strip()
    assert spans(load(tmp_path / f"fairpool-{pid}.json"), "w")


# -- a path that names a directory is a directory (issue 19) ------------------------------


def test_a_missing_directory_named_with_a_slash_is_created_owner_only(tmp_path: Path) -> None:
    with trace.recording(str(tmp_path / "missing") + "/") as tracer:
        fairpool.traced(name="w")(lambda: None)()
    made = tmp_path / "missing"
    assert made.is_dir() and not made.is_symlink(), f"{made} is not a directory: {made.stat()}"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700, oct(made.stat().st_mode)
    assert tracer.path == str(made / f"fairpool-{os.getpid()}.json")
    assert stat.S_IMODE(os.stat(tracer.path).st_mode) == 0o600
    assert spans(load(tracer.path), "w")


def test_a_missing_directory_from_the_variable_is_created_owner_only(tmp_path: Path) -> None:
    made = tmp_path / "traces"
    pid = run_script(
        "import os, fairpool; fairpool.traced(name='w')(lambda: None)(); print(os.getpid())",
        env={"FAIRPOOL_TRACE": str(made) + "/"},
    ).strip()
    assert made.is_dir(), f"{made} should be a directory, is {made.stat() if made.exists() else 'missing'}"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700, oct(made.stat().st_mode)
    assert [p.name for p in made.iterdir()] == [f"fairpool-{pid}.json"]
    assert spans(load(made / f"fairpool-{pid}.json"), "w")


@pytest.mark.parametrize("how", ["dangling", "to a directory"])
def test_a_symlink_at_a_trace_directory_is_refused(tmp_path: Path, how: str) -> None:
    target = tmp_path / "target"
    if how == "to a directory":
        target.mkdir()
    link = tmp_path / "traces"
    link.symlink_to(target)
    with pytest.raises(fairpool.TraceError, match=r"refusing the trace directory .*traces.*symbolic link"):
        trace.start(str(link) + "/")
    assert trace.active() is None
    assert not target.exists() or list(target.iterdir()) == [], "nothing is created through the link"
    proc = python(
        "import fairpool; from fairpool import trace; assert trace.active() is None; "
        "print(fairpool.execute(lambda: 'served'))",
        env={"FAIRPOOL_TRACE": str(link) + "/"},
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "served", proc.stderr
    (line,) = warning_lines(proc.stderr)
    assert "symbolic link" in line and "tracing is off" in line, line
    assert not target.exists() or list(target.iterdir()) == [], "nothing is created through the link"


def test_a_trace_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(fairpool.TraceError, match=r"its parent .*no-parent.* does not exist"):
        trace.start(str(tmp_path / "no-parent" / "traces") + "/")
    assert not (tmp_path / "no-parent").exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(fairpool.TraceError, match=r"refusing the trace directory .*file.*regular file"):
        trace.start(str(tmp_path / "file") + "/")
    assert (tmp_path / "file").read_text() == "mine"
    assert trace.active() is None


FORK_AFTER_REMOVAL = """
import json, os, shutil, sys
import fairpool
from fairpool import trace

spelling, where = sys.argv[1], sys.argv[2]
tracer = trace.start(where + "/" if spelling == "slash" else where)
fairpool.traced(name="parent-work")(lambda: None)()
shutil.rmtree(where)  # log clean-up removed the directory while the service runs
pid = os.fork()
if pid == 0:
    fairpool.traced(name="child-work")(lambda: None)()
    trace.stop()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child": pid, "status": os.waitstatus_to_exitcode(status), "parent": tracer.path}))
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("spelling", ["slash", "existing directory"])
def test_a_forked_child_whose_trace_directory_was_removed_writes_inside_it(
    tmp_path: Path, spelling: str
) -> None:
    where = tmp_path / "traces"
    where.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_REMOVAL, spelling, str(where)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.splitlines()[-1])
    assert info["status"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["traces"], "a file outside the trace directory"
    assert where.is_dir(), f"{where} is not a directory"
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    (child_file,) = list(where.iterdir())
    assert child_file.name == f"fairpool-{info['child']}.json"
    assert stat.S_IMODE(child_file.stat().st_mode) == 0o600
    evs = load(child_file)
    assert {e["pid"] for e in evs} == {info["child"]}
    assert spans(evs, "child-work") and not spans(evs, "parent-work")


# -- 3. the anchor --------------------------------------------------------------------


def test_each_file_starts_with_an_anchor_of_both_clocks(tmp_path: Path) -> None:
    import socket

    out = tmp_path / "t.json"
    before_wall, before_mono = time.time() * 1e6, time.monotonic() * 1e6
    with trace.recording(str(out)):
        pass
    after_wall, after_mono = time.time() * 1e6, time.monotonic() * 1e6
    (anchor,) = [e["args"] for e in load(out) if e.get("name") == "fairpool_anchor"]
    assert before_wall <= anchor["wall_us"] <= after_wall
    assert before_mono <= anchor["monotonic_us"] <= after_mono
    assert anchor["hostname"] == socket.gethostname() and anchor["pid"] == os.getpid()
    assert 0 < anchor["uncertainty_us"] < 1e6


# -- 4. safe files ----------------------------------------------------------------------


def test_a_symlink_at_the_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    victim.chmod(0o644)
    link = tmp_path / "t.json"
    link.symlink_to(victim)
    with pytest.raises(fairpool.TraceError, match="symbolic link"):
        trace.start(str(link))
    assert trace.active() is None
    assert victim.read_text() == "precious" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_a_dangling_symlink_is_refused_and_nothing_is_created_through_it(tmp_path: Path) -> None:
    link = tmp_path / "t.json"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(fairpool.TraceError, match="symbolic link"):
        trace.start(str(link))
    assert not (tmp_path / "would-be-created").exists()


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "t.json"
    os.mkfifo(fifo)
    with pytest.raises(fairpool.TraceError, match="FIFO"):
        trace.start(str(fifo))


@needs_root
def test_a_device_node_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    before = node.stat()
    with pytest.raises(fairpool.TraceError, match="character device"):
        trace.start(str(node))
    after = node.stat()
    assert (after.st_mode, after.st_uid, after.st_rdev) == (before.st_mode, before.st_uid, before.st_rdev)


@needs_root
def test_a_file_pre_created_by_another_user_is_not_used(tmp_path: Path) -> None:
    trap = tmp_path / "t.json"
    trap.write_text("")
    os.chown(trap, 65534, 65534)  # nobody: would read root's trace if it were written there
    trap.chmod(0o644)
    with trace.recording(str(trap)) as tracer:
        pass
    assert trap.read_text() == "" and trap.stat().st_uid == 65534
    written = Path(tracer.path)
    assert written != trap
    st = written.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600


@pytest.mark.parametrize("kind", ["missing directory", "symlink", "fifo"])
def test_a_bad_trace_variable_warns_once_and_the_service_runs_on(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "t.json"
    if kind == "missing directory":
        path = tmp_path / "missing" / "t.json"
    elif kind == "symlink":
        path.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(path)
    proc = python(
        "import fairpool; from fairpool import trace; assert trace.active() is None; "
        "print(fairpool.execute(lambda: 'served'))",
        env={"FAIRPOOL_TRACE": str(path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "served"
    (line,) = warning_lines(proc.stderr)
    assert f"FAIRPOOL_TRACE={str(path)!r}" in line and "tracing is off" in line


@pytest.mark.timeout(60)
def test_a_full_disk_warns_once_turns_tracing_off_and_the_service_runs_on(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    limit = 64 * 1024
    proc = python(
        f"""
        import resource, time
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # what a full disk is to a writer
        import fairpool
        from fairpool import trace

        work = fairpool.traced(name="work")(lambda i: fairpool.execute(lambda: i))
        trace.start({str(out)!r})
        deadline = time.monotonic() + 20
        i = 0
        while trace.active() is not None and time.monotonic() < deadline:
            work(i)
            i += 1
            if i % 500 == 0:
                time.sleep(0.05)
        assert trace.active() is None, "tracing did not turn itself off"
        assert trace.failures() == 1
        for i in range(100):  # the service runs on
            assert work(i) == i
        print("served")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "served"
    (line,) = warning_lines(proc.stderr)
    assert "tracing is off" in line and str(out) in line, line
    assert out.stat().st_size <= limit


# -- 6. record_args ----------------------------------------------------------------------


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr for you")


def test_an_argument_whose_repr_raises_never_changes_the_outcome(tmp_path: Path) -> None:
    @fairpool.traced(record_args=True)
    def returns(x: object) -> str:
        return "own result"

    @fairpool.traced(record_args=True)
    def raises(x: object) -> None:
        raise KeyError("own error")

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        assert returns(BadRepr()) == "own result"
        with pytest.raises(KeyError, match="own error"):
            raises(x=BadRepr())
    (r,) = [e for e in spans(load(out)) if e["name"].endswith("returns")]
    assert r["args"]["args"] == ["<BadRepr (repr raised ValueError)>"]


def test_a_huge_argument_is_cut_before_its_repr_is_made(tmp_path: Path) -> None:
    @fairpool.traced(record_args=True)
    def take(*args: object, **kwargs: object) -> int:
        return len(args)

    big_str = "x" * 50_000_000
    big_bytes = b"y" * 50_000_000
    big_int = 10**20_000  # past the int-to-str limit: repr() would raise
    nested: list[Any] = [1]
    nested.append(nested)
    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        tracemalloc.start()
        try:
            assert take(big_str, big_bytes, big_int, nested, k=big_str) == 4
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 5_000_000, f"{peak} bytes allocated to record the arguments"
    (span,) = [e for e in spans(load(out)) if e["name"].endswith("take")]
    recorded = span["args"]["args"] + list(span["args"]["kwargs"].values())
    assert all(len(r) <= trace.ARG_REPR_LIMIT for r in recorded), recorded
    assert recorded[0].startswith("'xxx") and recorded[1].startswith("b'yyy")
    assert "int of" in recorded[2]


def test_bounded_repr_never_raises() -> None:
    class Weird:
        def __repr__(self) -> str:
            raise SystemError("broken")

    assert trace.bounded_repr(Weird()) == "<Weird (repr raised SystemError)>"
    assert len(trace.bounded_repr(list(range(10_000)))) <= trace.ARG_REPR_LIMIT


# -- record_args: the work is bounded, whatever the argument's type (issue 19) --------------


class _Str(str):
    pass


class _Bytes(bytes):
    pass


class _List(list):  # type: ignore[type-arg]
    pass


N = 1_000_000


def _huge(kind: str) -> Any:
    """A huge argument of the kind named, and the start its rendering must have."""
    from collections import Counter, OrderedDict, defaultdict

    if kind == "str subclass":
        return _Str("s" * 50_000_000), "'sss"
    if kind == "bytes subclass":
        return _Bytes(b"b" * 50_000_000), "b'bbb"
    if kind == "OrderedDict":
        return OrderedDict((i, i) for i in range(N)), "OrderedDict({0: 0, 1: 1, 2: 2"
    if kind == "defaultdict":
        return defaultdict(list, ((i, [i]) for i in range(N))), "defaultdict(<class 'list'>, {0: [0], 1: [1]"
    if kind == "Counter":
        return Counter({i: 1 for i in range(N)}), "Counter({0: 1, 1: 1, 2: 1"
    if kind == "dict":
        return {N - i: i for i in range(N)}, f"{{{N}: 0, {N - 1}: 1"  # the dict's own order, not sorted
    if kind == "set":
        return set(range(N)), "{0, 1, 2, 3"
    if kind == "frozenset":
        return frozenset(range(N)), "frozenset({0, 1, 2"
    if kind == "nested":  # a list subclass of dicts of sets of str subclasses of 100 KB, then a huge set
        inner = {_Str("k" * 100_000): {_Str(str(j) * 100_000) for j in range(10)}}
        return _List([dict(inner) for _ in range(100)] + [set(range(N))]), "[{'kkk"
    raise AssertionError(kind)


#: What rendering one argument may allocate at most (bytes), whatever its size: measured 3 to 7 KB
#: (before: a 1M-item dict or set sorted whole, 8 MB; a 50 MB str subclass, 50 MB; a 1M-item
#: OrderedDict, 104 MB; a Counter, 127 MB).
RENDER_PEAK = 64 * 1024


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "kind",
    [
        "str subclass",
        "bytes subclass",
        "OrderedDict",
        "defaultdict",
        "Counter",
        "dict",
        "set",
        "frozenset",
        "nested",
    ],
)
def test_a_huge_argument_of_any_builtin_kind_is_rendered_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    value, start = _huge(kind)

    @fairpool.traced(record_args=True)
    def take(x: object) -> str:
        return "own result"

    tracemalloc.start()
    try:
        text = trace.bounded_repr(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < RENDER_PEAK, f"{kind}: {peak:,} bytes allocated to render it"
    assert len(text) <= trace.ARG_REPR_LIMIT, f"{kind}: {len(text)} characters"
    assert text.startswith(start), f"{kind}: {text!r} should start with {start!r}"
    assert text.endswith("..."), f"{kind}: {text!r} is not marked as cut"
    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        assert take(value) == "own result"
    (span,) = [e for e in spans(load(out)) if e["name"].endswith("take")]
    assert span["args"]["args"] == [text]


class _Key:
    """A key that counts how often it is rendered or compared (sorting compares)."""

    touched = 0
    compared = 0
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        _Key.touched += 1
        return f"K{self.n}"

    def __lt__(self, other: object) -> bool:
        _Key.compared += 1
        return isinstance(other, _Key) and self.n < other.n

    def __hash__(self) -> int:
        return self.n


@pytest.mark.parametrize("kind", ["dict", "set", "OrderedDict", "Counter", "defaultdict", "list of dicts"])
def test_rendering_a_huge_container_touches_a_bounded_number_of_items(kind: str) -> None:
    from collections import Counter, OrderedDict, defaultdict

    keys = [_Key(i) for i in range(200_000)]
    value: Any = {
        "dict": lambda: dict.fromkeys(keys, 0),
        "set": lambda: set(keys),
        "OrderedDict": lambda: OrderedDict.fromkeys(keys, 0),
        "Counter": lambda: Counter(dict.fromkeys(keys, 1)),
        "defaultdict": lambda: defaultdict(int, dict.fromkeys(keys, 0)),
        "list of dicts": lambda: [dict.fromkeys(keys[i : i + 1000], 0) for i in range(0, len(keys), 1000)],
    }[kind]()
    _Key.touched = _Key.compared = 0
    text = trace.bounded_repr(value)
    assert _Key.compared == 0, f"{kind}: sorted ({_Key.compared:,} comparisons)"
    assert 0 < _Key.touched <= trace.ARG_REPR_LIMIT // 2, f"{kind}: {_Key.touched:,} items rendered"
    assert "K0" in text and text.endswith("..."), text


_WRAPPER_KINDS = [
    "MappingProxyType",
    "ChainMap",
    "UserDict",
    "UserList",
    "UserString",
    "SimpleNamespace",
    "KeysView",
    "ItemsView",
    "ValuesView",
    "odict_items",
    "dataclass",
    "exception",
    "slice",
    "partial",
    "bound method",
]


def _wrapped(kind: str, keys: list[Any]) -> Any:
    """A standard-library wrapper of kind ``kind`` around ``len(keys)`` items."""
    import collections.abc as abc
    import dataclasses
    import functools
    import types
    from collections import ChainMap, OrderedDict, UserDict, UserList, UserString

    @dataclasses.dataclass
    class Holder:
        table: dict[Any, int]

    table = dict.fromkeys(keys, 0)
    return {
        "MappingProxyType": lambda: types.MappingProxyType(table),
        "ChainMap": lambda: ChainMap({}, table),
        "UserDict": lambda: UserDict(table),
        "UserList": lambda: UserList(keys),
        "UserString": lambda: UserString("x" * (len(keys) * 10)),
        "SimpleNamespace": lambda: types.SimpleNamespace(table=table),
        "KeysView": lambda: abc.KeysView(table),
        "ItemsView": lambda: abc.ItemsView(table),
        "ValuesView": lambda: abc.ValuesView(dict.fromkeys(range(len(keys)), keys[0])),
        "odict_items": lambda: OrderedDict.fromkeys(keys, 0).items(),
        "dataclass": lambda: Holder(table),
        "exception": lambda: ValueError("bad table", table),
        "slice": lambda: slice(keys, None),
        "partial": lambda: functools.partial(print, table),
        "bound method": lambda: UserDict(table).keys,
    }[kind]()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", _WRAPPER_KINDS)
def test_a_huge_standard_library_wrapper_is_walked_in_bounded_work(kind: str) -> None:
    """The standard library's wrappers around a container are walked like it, not repr'd whole.

    Checked (types an argument may be whose stock repr is O(n) of what it holds): walked here are
    ``types.MappingProxyType``, ``collections.ChainMap`` (its maps; iterating it copies them all),
    ``UserDict``/``UserList``/``UserString`` (their ``data``), ``types.SimpleNamespace``, the
    ``collections.abc`` views (``KeysView``, ``ItemsView``, ``ValuesView``), ``OrderedDict``'s views,
    dataclasses (the generated repr), exceptions (``BaseException.__repr__``: their args),
    ``slice``, ``functools.partial``, ``fractions.Fraction`` (huge ints by size), a bound method
    (``<bound method C.f of SELF>`` writes its object's repr), ``os.environ``. Were already:
    the builtin containers, ``deque``, ``array``, ``memoryview``, dict views, named tuples.
    Left to their repr, O(1) or sized by the value itself: ``range``, ``enum`` members, ``float``,
    ``complex``, ``decimal.Decimal`` (linear in its digits, as a str is before the cut),
    ``weakref`` dicts, ``queue.Queue``, ``threading`` objects (the default ``<... at 0x>`` repr).
    Not walked (their repr holds a value's repr, rare as arguments): ``itertools.repeat``,
    ``operator.itemgetter`` with many keys, an enum member whose value is huge.
    """
    keys = [_Key(i) for i in range(200_000)]
    value = _wrapped(kind, keys)
    _Key.touched = _Key.compared = 0
    tracemalloc.start()
    try:
        text = trace.bounded_repr(value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < RENDER_PEAK, f"{kind}: {peak:,} bytes allocated to render it"
    assert _Key.compared == 0, f"{kind}: sorted ({_Key.compared:,} comparisons)"
    assert _Key.touched <= trace.ARG_REPR_LIMIT // 2, f"{kind}: {_Key.touched:,} items rendered"
    assert len(text) <= trace.ARG_REPR_LIMIT and text.endswith("..."), f"{kind}: {text!r}"


def test_small_standard_library_wrappers_are_rendered_as_repr_renders_them() -> None:
    import collections.abc as abc
    import dataclasses
    import fractions
    import functools
    import types
    from collections import ChainMap, OrderedDict, UserDict, UserList, UserString

    @dataclasses.dataclass
    class Point:
        x: int
        hidden: str = dataclasses.field(default="h", repr=False)

    for value in [
        types.MappingProxyType({1: 2}),
        types.MappingProxyType({}),
        ChainMap({1: 2}, {3: 4}),
        ChainMap(),
        UserDict({1: 2}),
        UserList([1]),
        UserString("ab"),
        types.SimpleNamespace(a=1, b=[2]),
        abc.KeysView({1: 2}),
        abc.ItemsView({1: 2}),
        OrderedDict(a=1).items(),
        OrderedDict(a=1).keys(),
        OrderedDict(a=1).values(),
        Point(1),
        ValueError(),
        ValueError("x"),
        KeyError(1, {2: 3}),
        slice(1, {2: 3}),
        functools.partial(print, 1, sep="-"),
        fractions.Fraction(3, 4),
        UserDict({1: 2}).keys,
        _Key(7).__repr__,
    ]:
        assert trace.bounded_repr(value) == repr(value), value
    assert trace.bounded_repr(os.environ).startswith("environ({"), "os.environ as its repr starts"


def test_a_class_s_own_repr_is_kept_and_cut() -> None:
    class Secret(dict):  # type: ignore[type-arg]
        def __repr__(self) -> str:
            return "Secret(<hidden>)"

    class Loud:
        def __repr__(self) -> str:
            return "L" * 10_000

    assert trace.bounded_repr(Secret(password="hunter2")) == "Secret(<hidden>)", "its own repr hides it"
    assert trace.bounded_repr([Secret(password="x")]) == "[Secret(<hidden>)]"
    loud = trace.bounded_repr(Loud())
    assert len(loud) == trace.ARG_REPR_LIMIT and loud.endswith("...")


def test_small_arguments_are_rendered_as_repr_renders_them() -> None:
    from array import array
    from collections import Counter, OrderedDict, defaultdict, deque, namedtuple

    point = namedtuple("point", "x y")
    for value in [
        "a'b",
        b"\x00b",
        bytearray(b"c"),
        (1,),
        [1, (2, 3), {"k": {4}}],
        {"a": 1},
        frozenset({1}),
        _Str("sub"),
        Counter("aab"),
        defaultdict(list, {1: [2]}),
        deque([1], maxlen=3),
        array("i", [1, 2]),
        point(1, y="2"),
        {1: 2}.items(),
        10**50,
        None,
    ]:
        assert trace.bounded_repr(value) == repr(value), value
    assert trace.bounded_repr(OrderedDict(a=1)) == "OrderedDict({'a': 1})"
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert trace.bounded_repr(cyclic).startswith("[1, [1, [1, ") and "[...]" in trace.bounded_repr(cyclic)


# -- 7. valid timelines -----------------------------------------------------------------


def assert_nested(evs: list[dict[str, Any]], tolerance: float = 0.5) -> None:
    """On every track, any two spans are disjoint or one holds the other."""
    by_track: dict[tuple[Any, Any], list[tuple[float, float, str]]] = {}
    for e in spans(evs):
        by_track.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    for track, items in by_track.items():
        items.sort(key=lambda s: (s[0], -s[1]))
        stack: list[tuple[float, float, str]] = []
        for start, end, name in items:
            while stack and stack[-1][1] <= start + tolerance:
                stack.pop()
            if stack:
                assert end <= stack[-1][1] + tolerance, f"track {track}: {name} straddles {stack[-1][2]}"
            stack.append((start, end, name))


@pytest.mark.timeout(30)
def test_slices_nest_on_every_track_with_hub_stalls_on_their_own(tmp_path: Path) -> None:
    import ctypes

    libc = ctypes.CDLL(None)
    lock = fairpool.instrument_lock(threading.Lock(), "nest-lock")

    @fairpool.traced
    def locked_call() -> None:
        with lock:
            libc.usleep(2000)

    @fairpool.traced
    def caller() -> None:
        fairpool.execute(locked_call)

    @fairpool.traced
    def blocks_the_hub() -> None:
        libc.usleep(150_000)  # on the hub's own thread, inside a traced span

    out = tmp_path / "t.json"
    with trace.recording(str(out)):
        watch = fairpool.watch_hub(threshold=0.05)
        try:
            eventlet.sleep(0.05)
            greens = [eventlet.spawn(caller) for _ in range(8)]
            blocks_the_hub()
            for gt in greens:
                gt.wait()
            deadline = time.monotonic() + 5
            while not any("blocks_the_hub" in s.stack for s in watch.stalls) and time.monotonic() < deadline:
                eventlet.sleep(0.01)
        finally:
            watch.stop()
    evs = load(out)
    (stall,) = [e for e in spans(evs, "hub blocked") if "blocks_the_hub" in e["args"]["stack"]]
    names = {e["tid"]: e["args"]["name"] for e in evs if e.get("name") == "thread_name"}
    assert names[stall["tid"]].startswith("hub stalls"), "hub stalls have a track of their own"
    assert stall["tid"] not in {e["tid"] for e in spans(evs) if e["name"] != "hub blocked"}
    assert_nested(evs)


@pytest.mark.timeout(60)
def test_flow_ids_are_unique_under_concurrency(tmp_path: Path) -> None:
    pool = fairpool.Pool(threads=4, name="flows")
    out = tmp_path / "t.json"
    n_native, n_green, per = 4, 20, 50

    def calls() -> None:
        for _ in range(per):
            pool.execute(int)

    try:
        with trace.recording(str(out)):
            natives = [threading.Thread(target=calls) for _ in range(n_native)]
            for t in natives:
                t.start()
            greens = [eventlet.spawn(calls) for _ in range(n_green)]
            for gt in greens:
                gt.wait()
            for t in natives:
                t.join(30)
    finally:
        pool.shutdown()
    evs = load(out)
    starts = [e["id"] for e in evs if e["ph"] == "s"]
    finishes = [e["id"] for e in evs if e["ph"] == "f"]
    total = (n_native + n_green) * per
    assert len(starts) == len(set(starts)) == total
    assert sorted(starts) == sorted(finishes)
    assert_nested(evs)


@pytest.mark.timeout(30)
def test_a_refused_call_leaves_a_closed_span_and_no_open_flow(tmp_path: Path, gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="full", max_queue=1, on_full="raise")
    out = tmp_path / "t.json"
    try:
        with trace.recording(str(out)):
            running = pool.submit(gate.wait)
            wait_until(lambda: pool.statistics().busy == 1, what="the first call to run")
            queued = pool.submit(gate.wait)
            with pytest.raises(fairpool.QueueFull):
                pool.execute(gate.wait)
            gate.set()
            running.result(10)
            queued.result(10)
    finally:
        gate.set()
        pool.shutdown(timeout=5)
    evs = load(out)
    waits = [e for e in spans(evs) if e["name"].startswith("wait ")]
    outcomes = [e["args"]["outcome"] for e in waits]
    assert len(outcomes) == 3 and outcomes.count("returned") == 2
    assert set(outcomes) - {"returned"} <= {"rejected", "closed"}
    assert sorted(e["id"] for e in evs if e["ph"] == "s") == sorted(e["id"] for e in evs if e["ph"] == "f")


def test_a_call_refused_as_full_is_recorded_as_rejected(tmp_path: Path, gate: threading.Event) -> None:
    pool = fairpool.Pool(threads=1, name="full", max_queue=1, on_full="raise")
    out = tmp_path / "t.json"
    try:
        with trace.recording(str(out)):
            pool.submit(gate.wait)
            wait_until(lambda: pool.statistics().busy == 1, what="the first call to run")
            pool.submit(gate.wait)
            with pytest.raises(fairpool.QueueFull):
                pool.execute(gate.wait)
            gate.set()
    finally:
        gate.set()
        pool.shutdown(timeout=5)
    outcomes = [e["args"]["outcome"] for e in spans(load(out)) if e["name"].startswith("wait ")]
    assert "rejected" in outcomes


# -- 8. environment variables -----------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf", "1e-9", "1e999", "fast", "1e9"])
def test_a_bad_hub_watch_variable_warns_once_and_the_watch_stays_off(value: str) -> None:
    proc = python(
        """
        import fairpool, eventlet, threading
        eventlet.sleep(0.2)
        watching = any(t.name == "fairpool-hub-watch" for t in threading.enumerate())
        print(fairpool.execute(lambda: "served"), watching)
        """,
        env={"FAIRPOOL_HUB_WATCH": value},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["served", "False"], "the watch stays off"
    (line,) = warning_lines(proc.stderr)
    assert f"FAIRPOOL_HUB_WATCH={value!r}" in line and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.timeout(30)
def test_a_hub_that_stalls_again_and_again_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    import ctypes
    import logging

    from fairpool import hubwatch

    libc = ctypes.CDLL(None)
    caplog.set_level(logging.WARNING, logger="fairpool")
    watch = fairpool.watch_hub(threshold=0.01)
    try:
        for _ in range(20):
            eventlet.sleep(0.01)
            libc.usleep(30_000)  # blocks the hub for 3x the threshold
        eventlet.sleep(0.05)
    finally:
        watch.stop()
    logged = [r for r in caplog.records if "hub was blocked" in r.getMessage()]
    assert len(watch.stalls) >= 15, "every stall is still kept"
    assert 1 <= len(logged) <= hubwatch.WARN_BURST + 2, f"{len(logged)} warnings for about a second of stalls"


def test_no_writer_thread_means_no_trace_and_the_service_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fairpool import _tracefile

    def refuse(*args: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_tracefile, "start_thread", refuse)
    with pytest.raises(fairpool.TraceError, match="cannot start the trace writer thread"):
        trace.start(str(tmp_path / "a.json"))
    assert trace.active() is None
    monkeypatch.setenv("FAIRPOOL_TRACE", str(tmp_path / "b.json"))
    failures = trace.failures()
    assert trace._start_from_environment() is None
    assert trace.active() is None and trace.failures() == failures + 1
    (record,) = [r for r in caplog.records if "FAIRPOOL_TRACE" in r.getMessage()]
    assert "tracing is off" in record.getMessage()
    assert fairpool.execute(lambda: "served") == "served"


@pytest.mark.timeout(60)
def test_the_last_call_before_recording_stops_is_recorded_whole(tmp_path: Path) -> None:
    """A worker tells the tracer a call was answered after waking its caller, who may stop at once."""
    pool = fairpool.Pool(threads=2, name="last")
    incomplete = []
    try:
        for i in range(30):
            out = tmp_path / f"t{i}.json"
            with trace.recording(str(out)):
                pool.execute(int)  # a native caller: resumes on another thread than the one answering
            evs = load(out)
            kinds = sorted(e["ph"] for e in evs if e.get("cat") == "pool")
            if kinds != ["X", "X", "X", "f", "s"]:
                incomplete.append((i, kinds))
    finally:
        pool.shutdown()
    assert not incomplete
