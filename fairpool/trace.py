"""Recording a trace: Chrome trace-event JSON that opens in Perfetto and chrome://tracing.

Switch it on for a whole process with ``FAIRPOOL_TRACE=/path/trace.json`` in
the environment (recording starts when fairpool is imported and the file is
written as the process runs, finished at exit), or for a block of code::

    with fairpool.trace.recording("/tmp/boot.json"):
        boot_instances()

What is recorded:

* every pool call: on the caller's track a ``wait <fn>`` span holding a
  ``queued <fn>`` span, on the worker's track a ``run <fn>`` span, and a flow
  arrow from the one to the other; counter tracks of queue depth and busy
  threads per pool;
* every call of a function decorated with :func:`traced` (or of the
  functions of a module passed to :func:`trace_module`);
* waits for and holds of the locks made by :func:`fairpool.instrument_lock`;
* hub stalls found by :func:`fairpool.watch_hub`.

Each native thread and each green thread has its own named track.

The file is written as events come (the JSON Array form, which viewers read
even when the closing bracket is missing after a crash), so memory stays
bounded: at most :data:`FLUSH_EVENTS` events wait in memory. The file is
created readable by its owner only, and call arguments are never recorded
unless a function asks for it (``@traced(record_args=True)``): traces leave
the machine in bug reports.

Thread rules: events are appended to a deque from any thread; whichever
thread finds the buffer full writes it out, under a native lock that no other
thread waits for (the others just keep appending).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import itertools
import json
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar, overload

from . import _hooks
from ._hooks import CallInfo, PoolObserver
from ._hubchannel import getcurrent as _getcurrent
from ._native import allocate_lock, local, os, threading
from .errors import FairpoolError

__all__ = [
    "ENV_VARIABLE",
    "FLUSH_EVENTS",
    "TraceError",
    "Tracer",
    "active",
    "recording",
    "start",
    "stop",
    "trace_module",
    "traced",
]

ENV_VARIABLE = "FAIRPOOL_TRACE"
#: Events held in memory before they are written to the file.
FLUSH_EVENTS = 4096
#: Longest repr of one argument when arguments are recorded.
ARG_REPR_LIMIT = 200

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")

_real_threading = __import__("threading")
_monotonic_ns = time.monotonic_ns  # the clock of the jobs' monotonic() times (eventlet leaves it alone)


class TraceError(FairpoolError):
    """A trace could not be started or written."""


def now_us() -> float:
    """The trace clock: CLOCK_MONOTONIC in microseconds, shared by every process of a host."""
    return _monotonic_ns() / 1000.0


class _Tracks:
    """Gives each native thread and green thread a track id and a name."""

    def __init__(self) -> None:
        self.native = local()
        self.green: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.next_green = 1
        self.lock = allocate_lock()

    def current(self, tracer: Tracer) -> int:
        g = _getcurrent()
        if getattr(g, "parent", None) is None:  # a thread's main greenlet (or no eventlet): its own track
            tid: int | None = getattr(self.native, "tid", None)
            if tid is None:
                tid = self.native.tid = threading.get_native_id()
                tracer.name_track(tid, _thread_name())
            return tid
        tid = self.green.get(g)
        if tid is None:
            with self.lock:
                tid = self.green[g] = 10_000_000 + self.next_green
                self.next_green += 1
            tracer.name_track(tid, f"green thread {tid - 10_000_000}{_green_label(g)}")
        return tid


def _thread_name() -> str:
    name: str = threading.current_thread().name
    if name.startswith("Dummy"):
        name = _real_threading.current_thread().name
    return name


def _green_label(g: Any) -> str:
    frame = getattr(g, "gr_frame", None)
    while frame is not None and frame.f_back is not None:
        frame = frame.f_back
    if frame is not None:
        return f" ({frame.f_code.co_name})"
    return ""


class Tracer(PoolObserver):
    """Collects trace events and streams them to a file. Use :func:`start` or :func:`recording`."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise TraceError(f"cannot write the trace file {path!r}: {exc.strerror}") from exc
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on O_TRUNC
        self._file = open(fd, "w", encoding="utf-8")
        self._file.write("[\n")
        self._first = True
        self.pid = os.getpid()
        self._events: deque[dict[str, Any]] = deque()
        self._flush_lock = allocate_lock()
        self._flow_ids = itertools.count(1)  # next() is atomic: ids stay unique across threads
        self.tracks = _Tracks()
        self.closed = False
        self.emit(
            {
                "ph": "M",
                "name": "process_name",
                "pid": self.pid,
                "tid": 0,
                "args": {"name": f"{_process_label()} (pid {self.pid})"},
            }
        )

    # -- writing ------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Add one event (any thread)."""
        self._events.append(event)
        if len(self._events) >= FLUSH_EVENTS:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        if not self._flush_lock.acquire(wait):
            return  # another thread is writing; the events keep for the next flush
        try:
            if self.closed:
                return
            pop = self._events.popleft
            out = []
            while True:
                try:
                    event = pop()
                except IndexError:
                    break
                out.append(json.dumps(event, separators=(",", ":"), default=repr))
            if out:
                sep = ",\n"
                text = sep.join(out)
                self._file.write(text if self._first else sep + text)
                self._first = False
                self._file.flush()
        finally:
            self._flush_lock.release()

    def close(self) -> None:
        self.flush()
        with self._flush_lock:
            if not self.closed:
                self.closed = True
                self._file.write("\n]\n")
                self._file.close()

    # -- events ---------------------------------------------------------------
    def track(self) -> int:
        return self.tracks.current(self)

    def name_track(self, tid: int, name: str) -> None:
        self.emit({"ph": "M", "name": "thread_name", "pid": self.pid, "tid": tid, "args": {"name": name}})

    def complete(
        self,
        name: str,
        cat: str,
        ts: float,
        dur: float,
        tid: int | None = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        event = {
            "ph": "X",
            "name": name,
            "cat": cat,
            "ts": ts,
            "dur": max(dur, 0.0),
            "pid": self.pid,
            "tid": self.track() if tid is None else tid,
        }
        if args:
            event["args"] = args
        self.emit(event)

    def instant(self, name: str, cat: str, args: dict[str, Any] | None = None) -> None:
        event = {
            "ph": "i",
            "s": "t",
            "name": name,
            "cat": cat,
            "ts": now_us(),
            "pid": self.pid,
            "tid": self.track(),
        }
        if args:
            event["args"] = args
        self.emit(event)

    def counter(self, name: str, values: dict[str, float], ts: float | None = None) -> None:
        self.emit(
            {
                "ph": "C",
                "name": name,
                "ts": now_us() if ts is None else ts,
                "pid": self.pid,
                "tid": 0,
                "args": values,
            }
        )

    def next_flow_id(self) -> int:
        return next(self._flow_ids)

    # -- pool calls (events from fairpool._hooks, with the calls' monotonic times) --
    def call_submitted(self, call: CallInfo) -> None:
        call.notes[self] = self.track()  # the caller's track, for its wait span
        self.counter(f"pool {call.pool}", {"queued": call.queued, "busy": call.busy})

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        tid = self.track()
        start = call.t_started * 1e6
        self.complete(
            f"run {call.name}",
            "pool",
            start,
            call.t_finished * 1e6 - start,
            tid,
            {"pool": call.pool, "lane": call.lane, "ok": ok},
        )
        if self in call.notes:
            self.emit(
                {
                    "ph": "f",
                    "bp": "e",
                    "name": "pool call",
                    "cat": "pool",
                    "id": call.call_id,
                    "ts": start,
                    "pid": self.pid,
                    "tid": tid,
                }
            )

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        """The caller got its answer (or gave up): its wait and queued spans."""
        tid = call.notes.get(self)
        if tid is None:
            return  # submitted before recording started
        queued = call.t_queued * 1e6
        end = now_us()
        started = call.t_started * 1e6 if call.t_started else end
        self.complete(
            f"wait {call.name}",
            "pool",
            queued,
            end - queued,
            tid,
            {"pool": call.pool, "lane": call.lane, "outcome": outcome},
        )
        self.complete(
            f"queued {call.name}",
            "pool",
            queued,
            min(started, end) - queued,
            tid,
            {"pool": call.pool, "lane": call.lane},
        )
        if call.t_started:
            self.emit(
                {
                    "ph": "s",
                    "name": "pool call",
                    "cat": "pool",
                    "id": call.call_id,
                    "ts": queued,
                    "pid": self.pid,
                    "tid": tid,
                }
            )

    # -- lock hooks ------------------------------------------------------------
    def lock_waited(self, name: str, start: float, end: float) -> None:
        self.complete(f"wait {name}", "lock", start, end - start, args={"lock": name})

    def lock_held(self, name: str, start: float, end: float) -> None:
        self.complete(f"hold {name}", "lock", start, end - start, args={"lock": name})


def _process_label() -> str:
    import sys

    argv = getattr(sys, "argv", None) or ["python"]
    return os.path.basename(argv[0]) or "python"


# -- the one active tracer ------------------------------------------------------

_active: Tracer | None = None
_active_lock = allocate_lock()


def active() -> Tracer | None:
    """The tracer now recording, or None."""
    return _active


def start(path: str) -> Tracer:
    """Start recording the whole process to ``path``.

    Raises:
        TraceError: Recording is already on, or ``path`` cannot be written
            (raised now, not at exit).
    """
    global _active
    with _active_lock:
        if _active is not None:
            raise TraceError(f"a trace is already being recorded to {_active.path!r}")
        tracer = Tracer(os.fspath(path))
        _active = tracer
        _hooks.add_observer(tracer)
    return tracer


def stop() -> str | None:
    """Stop recording and finish the file; returns its path (None if nothing was recording)."""
    global _active
    with _active_lock:
        tracer, _active = _active, None
        if tracer is None:
            return None
        _hooks.remove_observer(tracer)
    tracer.close()
    return tracer.path


@contextmanager
def recording(path: str) -> Iterator[Tracer]:
    """Record everything that happens inside the block to ``path``.

    Raises:
        TraceError: Recording is already on, or ``path`` cannot be written.
    """
    tracer = start(path)
    try:
        yield tracer
    finally:
        stop()


def _start_from_environment() -> None:
    path = os.environ.get(ENV_VARIABLE)
    if path and _active is None:
        start(path)


atexit.register(stop)


# -- @traced ---------------------------------------------------------------------


def _wrap(fn: Callable[..., Any], name: str, record_args: bool) -> Callable[..., Any]:
    if getattr(fn, "__fairpool_traced__", False):
        return fn

    @functools.wraps(fn)
    def traced_call(*args: Any, **kwargs: Any) -> Any:
        tracer = _active
        if tracer is None:
            return fn(*args, **kwargs)
        tid = tracer.track()
        start = now_us()
        try:
            return fn(*args, **kwargs)
        finally:
            span_args = None
            if record_args:
                span_args = {
                    "args": [repr(a)[:ARG_REPR_LIMIT] for a in args],
                    "kwargs": {k: repr(v)[:ARG_REPR_LIMIT] for k, v in kwargs.items()},
                }
            tracer.complete(name, "call", start, now_us() - start, tid, span_args)

    traced_call.__fairpool_traced__ = True  # type: ignore[attr-defined]
    return traced_call


def _trace_class(cls: type, record_args: bool) -> None:
    for attr, value in list(vars(cls).items()):
        if attr.startswith("__") and attr not in ("__call__", "__enter__", "__exit__", "__init__"):
            continue
        name = f"{cls.__module__}.{cls.__qualname__}.{attr}"
        if isinstance(value, staticmethod):
            setattr(cls, attr, staticmethod(_wrap(value.__func__, name, record_args)))
        elif isinstance(value, classmethod):
            setattr(cls, attr, classmethod(_wrap(value.__func__, name, record_args)))
        elif inspect.isfunction(value):
            setattr(cls, attr, _wrap(value, name, record_args))


@overload
def traced(target: F, /) -> F: ...
@overload
def traced(*, name: str | None = None, record_args: bool = False) -> Callable[[F], F]: ...
def traced(target: Any = None, /, *, name: str | None = None, record_args: bool = False) -> Any:
    """Record a span for each call of a function, a method, or every method of a class.

    While no trace is recording, a traced function costs one global lookup
    per call. Arguments are not recorded unless ``record_args=True`` (their
    ``repr``, cut to 200 characters): they may hold secrets.

    Use as ``@traced``, ``@traced(name="...")`` or ``@traced(record_args=True)``.

    Raises:
        TypeError: ``target`` is neither a function nor a class.
    """

    def decorate(obj: Any) -> Any:
        if isinstance(obj, type):
            _trace_class(obj, record_args)
            return obj
        if not callable(obj):
            raise TypeError(f"traced() takes a function or a class, got {obj!r}")
        label = name or f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
        return _wrap(obj, label, record_args)

    if target is None:
        return decorate
    return decorate(target)


def trace_module(module: ModuleType, *, record_args: bool = False) -> list[str]:
    """Trace every function and class defined in ``module`` (not those it imports).

    Returns the names traced.

    Raises:
        TypeError: ``module`` is not a module.
    """
    if not isinstance(module, ModuleType):
        raise TypeError(f"trace_module() takes a module, got {module!r}")
    done = []
    for attr, value in list(vars(module).items()):
        if getattr(value, "__module__", None) != module.__name__ or attr.startswith("__"):
            continue
        if isinstance(value, type):
            _trace_class(value, record_args)
            done.append(attr)
        elif inspect.isfunction(value):
            setattr(module, attr, _wrap(value, f"{module.__name__}.{attr}", record_args))
            done.append(attr)
    return done
