"""The API's edges: each mistake is an error naming the parameter and the value, where it is made;
what eventlet.tpool accepts, fairpool accepts."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import fairpool
from fairpool import Proxy
from fairpool.__main__ import main as fairpool_main


def test_lane_used_bare_as_a_decorator_says_to_give_a_name() -> None:
    with pytest.raises(TypeError, match=r'called with a lane name, as in @fairpool\.lane\("name"\)') as info:

        @fairpool.lane  # type: ignore[arg-type]
        def spawn() -> None:
            pass

    assert "name got <function" in str(info.value) and "spawn" in str(info.value)


def test_lane_with_a_name_still_decorates() -> None:
    @fairpool.lane("boot")
    def spawn() -> tuple[str, int] | None:
        return fairpool.current_lane()

    assert spawn() == ("boot", 1)


def test_a_proxy_of_none_is_refused_where_it_is_made() -> None:
    with pytest.raises(TypeError, match="obj must be the object to wrap, got None"):
        Proxy(None)


def test_a_method_named_in_autowrap_names_may_still_return_none_wrapped_as_eventlet_does() -> None:
    class Conn:
        def cursor(self) -> None:
            return None

    result = Proxy(Conn(), autowrap_names=("cursor",)).cursor()
    assert isinstance(result, Proxy) and result == None  # noqa: E711 - Proxy.__eq__ compares the object
    assert not result


def test_wrap_library_of_none_is_refused() -> None:
    with pytest.raises(TypeError, match="lib must be the library, module or object to wrap, got None"):
        fairpool.wrap_library(None)


class _Conn:
    def __init__(self) -> None:
        self.child = object()
        self.c = object()

    def cursor(self) -> object:
        return object()


def test_autowrap_names_as_one_string_is_one_name() -> None:
    p = Proxy(_Conn(), autowrap_names="cursor")
    assert isinstance(p.cursor(), Proxy)
    p = Proxy(_Conn(), autowrap_names="child")
    assert isinstance(p.child, Proxy)
    assert not isinstance(p.c, Proxy), "a single string must not be read as its characters"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "autowrap_names must be a name or a collection of names, got None"),
        (3, "autowrap_names must be a name or a collection of names, got 3"),
        (("cursor", 1), r"autowrap_names must hold only strings, got 1 in \('cursor', 1\)"),
    ],
)
def test_bad_autowrap_names_are_named(bad: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Proxy(_Conn(), autowrap_names=bad)


@pytest.mark.parametrize("bad", ["-1", "0", "many", "2.5"])
def test_report_top_must_be_a_positive_int(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.json"
    trace.write_text("[]")
    with pytest.raises(SystemExit) as info:
        fairpool_main(["report", str(trace), "--top", bad])
    assert info.value.code == 2
    assert f"argument --top: must be an int >= 1, got {bad!r}" in capsys.readouterr().err


def test_report_top_accepts_a_positive_int(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.json"
    trace.write_text("[]")
    assert fairpool_main(["report", str(trace), "--top", "3"]) == 0


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"]])
def test_help_is_plain_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        fairpool_main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fairpool" in out
    assert "``" not in out and ":data:" not in out and ":func:" not in out, out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        fairpool_main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fairpool {metadata.version('fairpool')}"


def test_version_falls_back_to_the_package_version(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit):
        fairpool_main(["--version"])
    assert capsys.readouterr().out.strip() == f"fairpool {fairpool.__version__}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["submit", "green execute"])
def test_the_queue_bound_does_not_count_a_call_a_worker_is_about_to_take(how: str) -> None:
    """threads=1, max_queue=2: one call running (or about to) plus two waiting, then QueueFull."""
    import threading

    import eventlet

    gate = threading.Event()
    pool = fairpool.Pool(threads=1, max_queue=2, on_full="raise", name="bound")
    try:
        if how == "submit":
            # From a native thread: this one may have a hub (an earlier test's), and a hub's
            # submit() that finds the lock held gets its refusal in the future instead (docs/api.md).
            outcome: list[object] = []

            def produce() -> None:
                outcome.extend(pool.submit(gate.wait, 10) for _ in range(3))  # the worker takes one
                try:
                    pool.submit(gate.wait, 10)
                except fairpool.QueueFull as exc:
                    outcome.append(exc)

            producer = threading.Thread(target=produce)
            producer.start()
            producer.join(10)
            assert len(outcome) == 4 and isinstance(outcome[3], fairpool.QueueFull), outcome
            futures = outcome[:3]  # type: ignore[assignment]
        else:
            greens = [eventlet.spawn(pool.execute, gate.wait, 10) for _ in range(4)]
            eventlet.sleep(0)  # all four submit before any worker runs
            eventlet.sleep(0.1)
            with pytest.raises(fairpool.QueueFull):
                greens[3].wait()
            futures = greens[:3]  # type: ignore[assignment]
        gate.set()
        for f in futures:
            assert (f.result(timeout=10) if how == "submit" else f.wait()) is True  # type: ignore[union-attr]
    finally:
        gate.set()
        pool.shutdown(timeout=5)


@pytest.mark.timeout(30)
def test_the_queue_bound_does_not_count_a_call_an_idle_worker_was_woken_for() -> None:
    """threads=1, max_queue=1, the worker idle: the call it is woken for does not fill the queue.

    A long switch interval keeps the woken worker from running between the
    submits, so the call it was woken for is still queued when the next comes.
    """
    import sys
    import threading

    gate = threading.Event()
    pool = fairpool.Pool(threads=1, max_queue=1, on_full="raise", name="bound-idle")
    interval = sys.getswitchinterval()
    try:
        assert pool.execute(int) == 0  # the worker exists and is idle once this returns
        sys.setswitchinterval(30)
        try:
            first = pool.submit(gate.wait, 10)  # wakes the idle worker, which will take it
            second = pool.submit(gate.wait, 10)  # the queue's one place
            with pytest.raises(fairpool.QueueFull, match="max_queue bound"):
                pool.submit(gate.wait, 10)
        finally:
            sys.setswitchinterval(interval)
        gate.set()
        assert first.result(timeout=10) is True and second.result(timeout=10) is True
    finally:
        sys.setswitchinterval(interval)
        gate.set()
        pool.shutdown(timeout=5)
