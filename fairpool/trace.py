"""Recording a trace: Chrome trace-event JSON that opens in Perfetto and chrome://tracing.

Switch it on for a whole process with ``FAIRPOOL_TRACE=/path/trace.json`` in
the environment (recording starts when fairpool is imported and the file is
written as the process runs, finished at exit), or for a block of code::

    with fairpool.trace.recording("/tmp/boot.json"):
        boot_instances()

What is recorded:

* every pool call: on the caller's track a ``wait <fn>`` span holding a
  ``queued <fn>`` span, on the worker's track a ``run <fn>`` span, and a flow
  arrow from the one to the other (its id is the call's process-wide id);
  counter tracks of queue depth and busy threads per pool;
* every call of a function decorated with :func:`traced` (or of the
  functions of a module passed to :func:`trace_module`);
* waits for and holds of the locks made by :func:`fairpool.instrument_lock`;
* hub stalls found by :func:`fairpool.watch_hub`, on a track of their own.

Each native thread and each green thread has its own named track.

Safe to leave on (see docs/tracing.md): a caller only appends a tuple to a
bounded buffer (when it is full the event is dropped and counted, never
waited for); a native writer thread encodes and writes at least every half
second (:mod:`fairpool._tracefile`). One file per process: a forked child or
a subprocess never writes into its parent's file. The file is created
readable by its owner only, never over an existing path, and call arguments
are never recorded unless a function asks for it (``@traced(record_args=True)``,
each argument's repr bounded): traces leave the machine in bug reports. If the
file cannot be started (from the environment) or written, one warning, counted
(:func:`failures`), tracing off, and the service runs on.

Thread rules: events are appended from any thread with no lock;
``_active`` is read without a lock and changed under ``_active_lock``; the
pool-call events come from :mod:`fairpool._hooks`, outside every pool lock.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar, overload

from . import _argrepr, _hooks, _tracefile
from ._hooks import CallInfo, PoolObserver
from ._hubchannel import getcurrent as _getcurrent
from ._native import allocate_lock, get_native_id, local, os, thread_name, time
from .errors import FairpoolError

__all__ = [
    "ARG_REPR_LIMIT",
    "BUFFER_EVENTS",
    "ENV_VARIABLE",
    "FLUSH_INTERVAL",
    "TraceError",
    "Tracer",
    "active",
    "bounded_repr",
    "failures",
    "recording",
    "start",
    "stop",
    "trace_module",
    "traced",
]

ENV_VARIABLE = "FAIRPOOL_TRACE"
#: Events held in memory at most; past this they are dropped and counted.
BUFFER_EVENTS = _tracefile.BUFFER_EVENTS
#: Seconds between writes at most.
FLUSH_INTERVAL = _tracefile.FLUSH_INTERVAL
#: Longest repr of one argument when arguments are recorded.
ARG_REPR_LIMIT = 200
#: Arguments recorded at most per call (positional, and keyword).
ARG_COUNT_LIMIT = 16
#: The track ids of green threads start here, those of hub stalls at HUB_TRACK_BASE (native ids are lower).
GREEN_TRACK_BASE = 10_000_000
HUB_TRACK_BASE = 20_000_000

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")

_monotonic_ns = time.monotonic_ns  # the clock of the jobs' monotonic() times (eventlet leaves it alone)


class TraceError(FairpoolError):
    """A trace could not be started or written."""


def now_us() -> float:
    """The trace clock: CLOCK_MONOTONIC in microseconds, shared by every process of a host."""
    ns: int = _monotonic_ns()
    return ns / 1000.0


def failures() -> int:
    """How many times in this process a trace could not be started or written (each warned once)."""
    return _tracefile.failures()


# -- bounded reprs ----------------------------------------------------------------


def bounded_repr(value: Any) -> str:
    """A repr of ``value`` of at most :data:`ARG_REPR_LIMIT` characters that never raises.

    Its cost is bounded too, whatever the value's type and size
    (:mod:`fairpool._argrepr`): strings are cut before their repr is made,
    containers (subclasses and ``collections`` types included) are walked
    from their start, never sorted, and left when the limit is reached. A
    class's own ``__repr__`` is used as it is (it may hide secrets) and cut.
    """
    try:
        text = _argrepr.render(value, ARG_REPR_LIMIT)
    except Exception as exc:  # noqa: BLE001 - a raising __repr__ must not change the call's outcome
        try:
            return f"<{type(value).__name__} (repr raised {type(exc).__name__})>"[:ARG_REPR_LIMIT]
        except Exception:  # noqa: BLE001
            return "<unrepresentable>"
    return text if len(text) <= ARG_REPR_LIMIT else text[: ARG_REPR_LIMIT - 3] + "..."


def _record_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"args": [bounded_repr(a) for a in args[:ARG_COUNT_LIMIT]]}
    if len(args) > ARG_COUNT_LIMIT:
        out["args"].append(f"... {len(args) - ARG_COUNT_LIMIT} more")
    items = list(kwargs.items())
    out["kwargs"] = {str(k)[:ARG_REPR_LIMIT]: bounded_repr(v) for k, v in items[:ARG_COUNT_LIMIT]}
    if len(items) > ARG_COUNT_LIMIT:
        out["kwargs"]["..."] = f"{len(items) - ARG_COUNT_LIMIT} more"
    return out


class _Tracks:
    """Gives each native thread and green thread a track id and a name (made afresh in a forked child)."""

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
                tid = self.native.tid = get_native_id()
                tracer.name_track(tid, thread_name())
            return tid
        tid = self.green.get(g)
        if tid is None:
            with self.lock:
                tid = self.green[g] = GREEN_TRACK_BASE + self.next_green
                self.next_green += 1
            tracer.name_track(tid, f"green thread {tid - GREEN_TRACK_BASE}{_green_label(g)}")
        return tid


def _green_label(g: Any) -> str:
    frame = getattr(g, "gr_frame", None)
    while frame is not None and frame.f_back is not None:
        frame = frame.f_back
    if frame is not None:
        return f" ({frame.f_code.co_name})"
    return ""


class Tracer(PoolObserver):
    """Collects trace events for one process's file. Use :func:`start` or :func:`recording`.

    ``path`` is the file being written (it may differ from the one asked
    for: see :mod:`fairpool._tracefile`); ``dropped`` counts the events the
    full buffer turned away; ``error`` says why writing stopped, if it did.
    """

    def __init__(self, path: str) -> None:
        self.template = path
        self.pid = os.getpid()
        self.generation = 0  # +1 in each forked child: notes from the parent's calls are not ours
        self.tracks = _Tracks()
        self.closed = False
        # Calls that ran but whose caller's answer is not yet told to us: a worker tells
        # "answered" after waking the caller, who may stop recording at once.
        self._unanswered: set[int] = set()
        self._sink = _tracefile.TraceSink(path, _process_label(), self._writer_failed)
        self.emit_tuple = self._sink.append
        try:
            self._sink.start()
        except _tracefile.TraceFileError as exc:
            raise TraceError(str(exc)) from None

    @property
    def path(self) -> str:
        return self._sink.path

    @property
    def dropped(self) -> int:
        return self._sink.dropped

    @property
    def error(self) -> str | None:
        return self._sink.error

    def buffered(self) -> int:
        """Events waiting for the writer now."""
        return self._sink.buffered()

    # -- writing ------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Add one event given as a trace-event dict (any thread; ``pid`` is filled in)."""
        self.emit_tuple(("D", event))

    def close(self) -> None:
        """Write what is buffered and finish the file."""
        self.closed = True
        self._sink.close()

    def settle(self, timeout: float = 0.1) -> None:
        """Wait (at most ``timeout``) for the answers to calls that ran, before recording stops."""
        deadline = time.monotonic() + timeout
        while self._unanswered and time.monotonic() < deadline:
            time.sleep(0.0002)

    def _writer_failed(self, why: str) -> None:
        _turn_off(self)

    def after_fork_in_child(self) -> None:
        self.pid = os.getpid()
        self.generation += 1
        self.tracks = _Tracks()
        self._sink.after_fork_in_child()

    # -- events ---------------------------------------------------------------
    def track(self) -> int:
        return self.tracks.current(self)

    def name_track(self, tid: int, name: str) -> None:
        self.emit_tuple(("M", "thread_name", tid, {"name": name}))

    def complete(
        self,
        name: str,
        cat: str,
        ts: float,
        dur: float,
        tid: int | None = None,
        args: dict[str, Any] | None = None,
    ) -> None:
        """A span from ``ts`` lasting ``dur`` (microseconds) on track ``tid`` (default: the caller's)."""
        track = self.track() if tid is None else tid
        self.emit_tuple(("X", name, cat, ts, dur if dur > 0.0 else 0.0, track, args))

    def instant(self, name: str, cat: str, args: dict[str, Any] | None = None) -> None:
        self.emit_tuple(("i", name, cat, now_us(), self.track(), args))

    def counter(self, name: str, values: dict[str, float], ts: float | None = None) -> None:
        self.emit_tuple(("C", name, now_us() if ts is None else ts, values))

    # -- pool calls (events from fairpool._hooks, with the calls' monotonic times) --
    def call_submitted(self, call: CallInfo) -> None:
        call.notes[self] = (self.generation, self.track())  # the caller's track, for its wait span
        self.emit_tuple(("C", f"pool {call.pool}", now_us(), {"queued": call.queued, "busy": call.busy}))

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        tid = self.track()
        start = call.t_started * 1e6
        emit = self.emit_tuple
        emit(
            (
                "X",
                f"run {call.name}",
                "pool",
                start,
                max(call.t_finished * 1e6 - start, 0.0),
                tid,
                {"pool": call.pool, "lane": call.lane, "ok": ok},
            )
        )
        note = call.notes.get(self)
        if note is not None and note[0] == self.generation:  # not answered yet (else: abandoned, closed)
            emit(("f", call.call_id, start, tid))
            self._unanswered.add(call.call_id)

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        """The caller got its answer (or gave up, or was refused): its wait and queued spans."""
        note = call.notes.get(self)
        if note is None or note[0] != self.generation:
            return  # submitted before recording started, or in the parent before a fork
        call.notes[self] = _ANSWERED  # a run that ends later draws no flow arrow's end
        self._unanswered.discard(call.call_id)
        tid = note[1]
        queued = call.t_queued * 1e6
        # A worker sends "answered" after its caller may have resumed and queued its next
        # call: ending the span now would straddle that call's. A call that ran ends at
        # its finish, which comes before the answer; the others are answered in the
        # caller's own thread (cancelled, abandoned) or by a shutdown.
        t_finished = call.t_finished
        end = t_finished * 1e6 if t_finished and outcome in ("returned", "raised") else now_us()
        started = call.t_started * 1e6 if call.t_started else end
        lane = call.lane
        emit = self.emit_tuple
        emit(
            (
                "X",
                f"wait {call.name}",
                "pool",
                queued,
                max(end - queued, 0.0),
                tid,
                {"pool": call.pool, "lane": lane, "outcome": outcome},
            )
        )
        emit(
            (
                "X",
                f"queued {call.name}",
                "pool",
                queued,
                max(min(started, end) - queued, 0.0),
                tid,
                {"pool": call.pool, "lane": lane},
            )
        )
        if call.t_started:
            emit(("s", call.call_id, queued, tid))

    # -- lock hooks ------------------------------------------------------------
    def lock_waited(self, name: str, start: float, end: float) -> None:
        self.complete(f"wait {name}", "lock", start, end - start, args={"lock": name})

    def lock_held(self, name: str, start: float, end: float) -> None:
        self.complete(f"hold {name}", "lock", start, end - start, args={"lock": name})


_ANSWERED = (-1, 0)  # a call's note once its caller's answer is recorded


def _process_label() -> str:
    argv = getattr(sys, "argv", None) or ["python"]
    return os.path.basename(str(argv[0])) or "python"


# -- the one active tracer ------------------------------------------------------

_active: Tracer | None = None
_active_lock = allocate_lock()


def active() -> Tracer | None:
    """The tracer now recording, or None."""
    return _active


def _turn_off(tracer: Tracer) -> None:
    """Stop sending events to ``tracer`` (its writer failed); never waits for a lock."""
    global _active
    _hooks.remove_observer(tracer)
    if _active is tracer:
        _active = None


def start(path: str) -> Tracer:
    """Start recording the whole process to ``path`` (``{pid}`` and ``{host}`` are expanded).

    If ``path`` exists, the trace goes to ``<stem>.<pid><ext>`` beside it
    (``Tracer.path`` says which, and a warning too); an existing path is never
    overwritten. A ``path`` that ends with ``/`` or is a directory gets
    ``fairpool-<pid>.json`` inside it; a missing directory is made (mode
    0700; its parent must exist).

    Raises:
        TraceError: Recording is already on, or ``path`` cannot be created
            (raised now, not at exit): a missing parent directory, a
            symbolic link, a device, no permission.
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
        tracer.settle()
        _hooks.remove_observer(tracer)
    tracer.close()
    return tracer.path


@contextmanager
def recording(path: str) -> Iterator[Tracer]:
    """Record everything that happens inside the block to ``path`` (see :func:`start`).

    Raises:
        TraceError: Recording is already on, or ``path`` cannot be created.
    """
    tracer = start(path)
    try:
        yield tracer
    finally:
        stop()


def _start_from_environment() -> Tracer | None:
    """``FAIRPOOL_TRACE``: start recording; if it cannot start, one warning and tracing stays off."""
    path = os.environ.get(ENV_VARIABLE)
    if not path or _active is not None:
        return None
    try:
        return start(path)
    except TraceError as exc:
        _tracefile.count_failure()
        _tracefile.warn(f"fairpool: {ENV_VARIABLE}={path!r}: {exc}; tracing is off, the service runs on")
        return None


def _after_fork_in_child() -> None:
    global _active_lock
    _active_lock = allocate_lock()  # the parent's may have been held by another thread
    tracer = _active
    if tracer is not None:
        tracer.after_fork_in_child()


atexit.register(stop)
os.register_at_fork(after_in_child=_after_fork_in_child)


# -- @traced ---------------------------------------------------------------------


def _wrap(fn: Callable[..., Any], name: str, record_args: bool) -> Callable[..., Any]:
    if getattr(fn, "__fairpool_traced__", False):
        return fn

    @functools.wraps(fn)
    def traced_call(*args: Any, **kwargs: Any) -> Any:
        tracer = _active
        if tracer is None:
            return fn(*args, **kwargs)
        span_args = _record_args(args, kwargs) if record_args else None
        tid = tracer.track()
        start = now_us()
        try:
            return fn(*args, **kwargs)
        finally:
            tracer.emit_tuple(("X", name, "call", start, now_us() - start, tid, span_args))

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
    ``repr``, bounded to 200 characters and never raising): they may hold secrets.

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
