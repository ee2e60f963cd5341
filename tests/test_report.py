"""``fairpool report`` is safe on any input, streams, and puts many processes and hosts on one timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fairpool import _traceread, report

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
ENV.pop("FAIRPOOL_TRACE", None)


def write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def fails_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    with pytest.raises(SystemExit) as info:
        report.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fairpool report: error:"), captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def span(name: str, ts: float, dur: float, pid: int = 1, tid: int = 1, **extra: Any) -> dict[str, Any]:
    return {"ph": "X", "name": name, "cat": "call", "ts": ts, "dur": dur, "pid": pid, "tid": tid, **extra}


# -- 5. only regular files, limits, one line and exit 2 --------------------------------


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_hanging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "t.json"
    os.mkfifo(fifo)  # no writer: opening it for reading the usual way would hang
    fails_with_one_line(capsys, [str(fifo)], "not a regular file", "FIFO")


def test_a_device_is_refused_before_a_byte_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    fails_with_one_line(capsys, ["/dev/zero"], "/dev/zero", "not a regular file", "character device")


def test_a_file_over_the_size_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = write(tmp_path / "big.json", [span("x", i, 1) for i in range(100)])
    monkeypatch.setattr(_traceread, "MAX_FILE_BYTES", 1000)
    fails_with_one_line(capsys, [str(big)], "big.json", "over the limit")


def test_an_event_over_the_event_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_traceread, "MAX_EVENT_BYTES", 10_000)
    monkeypatch.setattr(_traceread, "CHUNK_BYTES", 1000)
    huge = write(tmp_path / "huge.json", [span("x" * 50_000, 0, 1)])
    fails_with_one_line(capsys, [str(huge)], "huge.json", "an event over")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[" * 100_000, ("nested too deep",)),
        (json.dumps([span("x", 0, 1, args=[1, 2])]), ("args is a list",)),
        (json.dumps([span("x", 0, 1, args={"a": json.loads("[" * 40 + "]" * 40)})]), ("nested deeper than",)),
        ('[{"ph":"X","name":"x","ts":0,"dur":1,"pid":1e999,"tid":1}]', ("pid is inf",)),
        ('[{"ph":"X","name":"x","ts":1e999,"dur":1,"pid":1,"tid":1}]', ("ts is not a finite number",)),
        ('[{"ph":"X","name":"x","ts":"soon","dur":1,"pid":1,"tid":1}]', ("ts is a str",)),
        ('[{"ph":"X","name":"x","ts":0,"dur":1,"pid":true,"tid":1}]', ("pid is a boolean",)),
        ('[{"ph":"X","name":["x"],"ts":0,"dur":1}]', ("name is a list",)),
        ('[{"ph":7}]', ("no 'ph' string",)),
        ("[1, 2]", ("event 1 is a int",)),
        ("3", ("not trace-event JSON",)),
        ('[{"ph":"M","name":"m"} garbage]', ("not trace-event JSON",)),
        ('[{"ph":"X"}]', ("a malformed event", "no 'name'")),
        ('[{"ph":"X","name":"x","ts":0}, {bad json}, {"ph":"X"}]', ("not trace-event JSON",)),
        ('{"metadata": {}}', ("expected a list of events",)),
        ("\x00" * 4096, ("not trace-event JSON",)),
        ("", ("empty",)),
    ],
)
def test_every_malformed_input_gets_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: tuple[str, ...]
) -> None:
    bad = write(tmp_path / "bad.json", content)
    fails_with_one_line(capsys, [str(bad)], "bad.json", *words)


def test_bytes_that_are_not_utf8_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"ph":"X","name":"\xff\xfe","ts":0,"dur":1}]')
    fails_with_one_line(capsys, [str(bad)], "bad.json", "not UTF-8")


def test_a_timeline_into_a_missing_directory_fails_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "t.json", [span("x", 0, 1)])
    fails_with_one_line(
        capsys, [str(good), "--timeline", str(tmp_path / "missing" / "t.png")], "no such directory"
    )


def test_a_directory_without_traces_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fails_with_one_line(capsys, [str(tmp_path)], "no .json trace file")


@pytest.mark.timeout(60)
def test_a_closed_output_pipe_is_quiet(tmp_path: Path) -> None:
    trace = write(tmp_path / "t.json", [span(f"name {i}", i * 10, 5) for i in range(2000)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "fairpool", "report", str(trace), "--top", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # like "| head -1": read a line, then go away
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(30) == 0
    assert err == b"", err.decode()


# -- streaming: memory far below the file's size ---------------------------------------------


@pytest.mark.timeout(120)
def test_memory_stays_far_below_the_file_s_size(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("w") as f:
        f.write("[\n")
        for i in range(150_000):
            event = {
                "ph": "X",
                "name": f"run nova.virt.libvirt.driver.LibvirtDriver.call_{i % 50}",
                "cat": "pool",
                "ts": 1_000_000.0 + i * 7.5,
                "dur": 3.25 + i % 7,
                "pid": 4242,
                "tid": 10_000_000 + i % 40,
                "args": {"pool": "default", "lane": "default", "ok": True, "note": "x" * 40},
            }
            f.write(("," if i else "") + json.dumps(event) + "\n")
        f.write("]\n")
    size = big.stat().st_size
    script = textwrap.dedent(
        f"""
        import resource, sys
        from fairpool import report
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code = report.main([{str(big)!r}])
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("RSS", (after - before) * 1024, code, file=sys.stderr)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=110
    )
    assert proc.returncode == 0, proc.stderr
    assert "150000 spans" in proc.stdout
    grown = int(proc.stderr.split("RSS", 1)[1].split()[0])
    assert grown < size / 3, f"the report grew by {grown:,} bytes reading a {size:,}-byte file"


# -- bounded per-track and per-name state (issue 19) --------------------------------------------


def _measure_report(path: Path) -> tuple[int, str]:
    """Run the report on ``path`` in a fresh interpreter: (the most memory it took, its output).

    The most of: how much the process's peak RSS grew, and the peak of Python's allocations
    (tracemalloc) while the report ran.
    """
    script = textwrap.dedent(
        f"""
        import resource, sys, tracemalloc
        from fairpool import report
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        code = report.main([{str(path)!r}])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("RSS", (after - before) * 1024, "PEAK", peak, code, file=sys.stderr)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=110
    )
    assert proc.returncode == 0, proc.stderr
    words = proc.stderr.split("RSS", 1)[1].split()
    return max(int(words[0]), int(words[2])), proc.stdout


def _write_events(path: Path, n: int, make: Any) -> int:
    with path.open("w") as f:
        f.write("[\n")
        for i in range(n):
            f.write(("," if i else "") + json.dumps(make(i), separators=(",", ":")) + "\n")
        f.write("]\n")
    return path.stat().st_size


def _fairpool_span(i: int, name: str, tid: int) -> dict[str, Any]:
    return {
        "ph": "X",
        "name": name,
        "cat": "pool",
        "ts": 1_000_000.0 + i * 7.5,
        "dur": 3.25 + i % 7,
        "pid": 4242,
        "tid": tid,
        "args": {"pool": "default", "lane": "default", "ok": True},
    }


#: {what each event is: (how to make event i, the line the report must print, the most it may take
#: as a fraction of the file)}. The report keeps about 32 bytes a span, plus at most MAX_TRACKS
#: tracks, MAX_STRINGS names and MAX_OPEN begins (a few MB each, whatever the file), so the fraction
#: falls as files grow; measured here: 0.17, 0.44, 0.28, 0.33, 0.56 of these 8 to 26 MB files.
#: Before: 2.6, 4.9, 1.3, 1.3 and 4.6 times the file.
BOUNDED_CASES = {
    "ends each on a new track": (
        lambda i: {"ph": "E", "ts": 1_000_000.0 + i, "pid": 4242, "tid": 10_000_000 + i},
        None,
        0.25,
    ),
    "begins each on a new track": (
        lambda i: {"ph": "B", "name": f"step {i % 50}", "cat": "call", "ts": 1e6 + i, "pid": 1, "tid": i},
        "140,000 begin events dropped (over 10,000 awaited their end)",
        0.6,
    ),
    "track names each of a new track": (
        lambda i: {
            "ph": "M",
            "name": "thread_name",
            "pid": 1,
            "tid": i,
            "args": {"name": f"green thread {i}"},
        },
        "140,000 events on tracks beyond the first 10,000 put on one track per file",
        0.4,
    ),
    "spans each on a new track": (
        lambda i: _fairpool_span(i, f"run nova.virt.driver.call_{i % 50}", 10_000_000 + i),
        "140,000 events on tracks beyond the first 10,000 put on one track per file",
        0.5,
    ),
    "spans each of a new name": (
        lambda i: _fairpool_span(i, f"run nova.virt.driver.call_{i}", 10_000_000 + i % 40),
        # ten names are the report's own (kinds of '<other>', categories): 9,990 are the file's
        "140,010 names beyond the first 10,000 distinct ones counted as '<other>'",
        0.75,
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BOUNDED_CASES))
def test_per_track_and_per_name_state_is_bounded_and_the_report_says_what_it_folded(
    tmp_path: Path, case: str
) -> None:
    make, said, fraction = BOUNDED_CASES[case]
    path = tmp_path / "many.json"
    n = 150_000
    size = _write_events(path, n, make)
    grown, out = _measure_report(path)
    assert grown < size * fraction, (
        f"{case}: the report grew by {grown:,} bytes reading a {size:,}-byte file (limit {fraction:.0%})"
    )
    if said is None:
        assert "To bound memory" not in out, out
    else:
        (line,) = [line for line in out.splitlines() if line.startswith("To bound memory:")]
        assert said in line, line
    if case.startswith("spans"):
        assert f"{n} spans" in out, out.splitlines()[0]


def test_folded_tracks_and_names_keep_every_span_s_time(tmp_path: Path) -> None:
    events = [span(f"f{i}", i * 10.0, 5.0, pid=1, tid=i) for i in range(report.MAX_TRACKS + 50)]
    events += [span("f0", 0.0, 5.0, pid=1, tid=7)]
    path = write(tmp_path / "t.json", events)
    store, names, infos = report.load([path])
    assert len(store) == len(events), "no span is dropped, only folded"
    assert len(store.tracks) == report.MAX_TRACKS + 1 and store.folded_tracks == 50
    own = len(report.SpanStore().strings)  # the report's own strings ("", "call", "run <other>"...)
    assert store.folded_strings == report.MAX_TRACKS + 50 - (report.MAX_STRINGS - own), store.folded_strings
    assert sum(store.dur) == 5.0 * len(events)
    other = store.tracks[store.track[len(events) - 2]]
    assert other[2] == report.OTHER_TRACKS and names[other] == f"other tracks of {path.name}", names.get(
        other
    )
    text = report.render_store(store, names, 10, infos)
    assert "To bound memory: 50 events on tracks beyond the first 10,000" in text, text


def test_a_directory_of_many_files_is_labelled_in_linear_time(tmp_path: Path) -> None:
    compared = 0

    class Name(str):
        __hash__ = str.__hash__

        def __eq__(self, other: object) -> bool:
            nonlocal compared
            compared += 1
            return str.__eq__(self, other)

    class P:
        def __init__(self, folder: str, name: str) -> None:
            self.name = Name(name)
            self.path = f"{folder}/{name}"

        def __str__(self) -> str:
            return self.path

    n = 3000
    paths = [P("a", f"p{i}.json") for i in range(n)] + [P("b", "p0.json")]
    labels = report._labels(paths)  # type: ignore[arg-type]
    assert labels[0] == "a/p0.json" and labels[-1] == "b/p0.json" and labels[1] == "p1.json"
    assert compared < 10 * n, f"{compared:,} name comparisons for {n + 1} files"


@pytest.mark.timeout(60)
def test_a_directory_of_many_small_files_is_one_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(1500):
        write(tmp_path / f"svc.{i}.json", anchored("h", 1e15, i, [span("work", 100.0 + i, 10, pid=i)]))
    (tmp_path / "sub").mkdir()
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1500 spans on 1500 tracks from 1500 file(s)" in out, out.splitlines()[0]


# -- truncated files ----------------------------------------------------------------------


def test_a_file_cut_anywhere_in_its_last_event_is_read_up_to_there(tmp_path: Path) -> None:
    head = '[\n{"ph":"X","name":"whole","cat":"call","ts":1.5,"dur":2,"pid":1,"tid":1}'
    last = (
        ',\n{"ph":"X","name":"cut","cat":"call","ts":10.25,"dur":3e0,"pid":1,"tid":1,'
        '"args":{"ok":true,"n":null,"s":"a\\u00e9"}}'
    )
    for cut in range(len(last)):
        path = write(tmp_path / "cut.json", head + last[:cut])
        store, _, infos = report.load([path])
        names = [store.strings[n] for n in store.name]
        assert names == ["whole"], (cut, names)
        assert infos[0].truncated or cut == 0
    path = write(tmp_path / "cut.json", head + last)
    store, _, infos = report.load([path])
    assert [store.strings[n] for n in store.name] == ["whole", "cut"] and infos[0].truncated


def test_the_report_says_a_file_was_cut_and_events_were_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "t.json",
        '[\n{"ph":"C","name":"fairpool trace: events dropped","ts":5,"pid":1,"tid":0,'
        '"args":{"events":123}},\n' + json.dumps(span("x", 0, 1)),
    )
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "t.json: ends without its closing bracket" in out
    assert "t.json: the recorder dropped 123 events" in out


# -- one timeline for many processes and hosts -----------------------------------------------


def anchored(
    host: str, wall_minus_mono: float, pid: int, spans: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    mono = 5_000_000.0
    anchor = {
        "ph": "M",
        "name": "fairpool_anchor",
        "pid": pid,
        "tid": 0,
        "args": {
            "wall_us": mono + wall_minus_mono,
            "monotonic_us": mono,
            "uncertainty_us": 0.5,
            "hostname": host,
            "boot_id": f"boot-{host}",
            "pid": pid,
        },
    }
    return [anchor, *spans]


def test_files_from_several_hosts_are_aligned_by_wall_clock(tmp_path: Path) -> None:
    # The same wall-clock instant is monotonic 7,000,000 on host a and 9,500,000 on host b.
    wall = 1_700_000_000_000_000.0
    a = write(tmp_path / "a.json", anchored("a", wall - 7_000_000, 1, [span("on a", 7_000_000, 100, pid=1)]))
    b = write(tmp_path / "b.json", anchored("b", wall - 9_500_000, 2, [span("on b", 9_500_000, 100, pid=2)]))
    store, _, infos = report.load([tmp_path])
    by_name = {store.strings[store.name[i]]: store.ts[i] for i in range(len(store))}
    assert by_name["on a"] == pytest.approx(by_name["on b"], abs=1.0), (
        "one instant, one place on the timeline"
    )
    text = report.alignment(infos)
    assert "2 hosts" in text and "NTP" in text and "0.5 us" in text, text
    assert {i.label for i in infos} == {a.name, b.name}


def test_files_of_one_host_keep_their_shared_monotonic_clock(tmp_path: Path) -> None:
    write(tmp_path / "p1.json", anchored("h", 1e15, 1, [span("one", 100, 10, pid=1)]))
    write(tmp_path / "p2.json", anchored("h", 1e15 + 2000, 2, [span("two", 200, 10, pid=2)]))
    write(tmp_path / "other.json", [span("bare", 300, 10, pid=3)])
    store, _, infos = report.load([tmp_path])
    assert sorted(store.ts) == [100, 200, 300], "nothing moves on one host"
    text = report.alignment(infos)
    assert "one host share its monotonic clock" in text and "Not aligned" in text and "other.json" in text


@pytest.mark.timeout(60)
def test_a_forked_service_s_directory_is_one_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import os, sys
                import fairpool

                work = fairpool.traced(name="work")(lambda: fairpool.execute(lambda: 1))
                work()
                pids = []
                for _ in range(3):
                    pid = os.fork()
                    if pid == 0:
                        work()
                        sys.exit(0)
                    pids.append(pid)
                for pid in pids:
                    os.waitpid(pid, 0)
                """
            ),
        ],
        env={**ENV, "FAIRPOOL_TRACE": str(tmp_path / "svc.json")},
        check=True,
        timeout=50,
    )
    assert len(list(tmp_path.glob("svc*.json"))) == 4
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "from 4 file(s)" in out and "One timeline: 4 file(s) of one host" in out, out
    top = out.split("Top spans by total time", 1)[1].split("\n\n", 1)[0]
    assert any(line.split()[:2] == ["work", "4"] for line in top.splitlines()), top
