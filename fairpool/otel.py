"""OpenTelemetry spans for pool calls, lock waits and hub stalls: fairpool in traces across services.

Switch it on with ``fairpool.otel.instrument()`` (after setting up your
``TracerProvider``, or pass one), or ``FAIRPOOL_OTEL=1`` in the environment
(instrumented when fairpool is imported; spans go to whatever provider the
application sets later). It needs ``opentelemetry-api`` only
(``pip install 'fairpool[otel]'``); the SDK and the exporter are the
application's choice. Metrics (every pool's and lane's queue, threads, calls
by outcome, waits; locks; hub stalls) are :mod:`fairpool.otel_metrics`'s:
``instrument(metrics=True)``, or ``FAIRPOOL_OTEL=metrics`` (``spans,metrics``
for both).

What is recorded (docs/tracing.md, "Across services"):

* each pool call is a span named after the called function, a child of the
  caller's current span. It starts when the call is handed to the pool and
  ends when it finishes in the worker, just before its caller is answered (or
  when the caller gives up, or the pool refuses or closes it); a
  ``fairpool.started`` event marks when a worker took it, so the queue wait is
  the time from the span's start to that event. The span is current in the
  worker while the call runs, so spans the call makes (a database driver's,
  an HTTP client's) nest under it, whatever the caller: a green thread, a
  native thread, a future, an asyncio task;
* a contended wait for an instrumented lock (:func:`fairpool.instrument_lock`,
  the locks of :func:`fairpool.wrap_library`), and a hold over a threshold,
  is a ``fairpool.lock.wait`` / ``fairpool.lock.hold`` event on the span
  current where it happened;
* a hub stall found by :func:`fairpool.watch_hub` is a ``fairpool.hub_stall``
  span with the blocking stack, a child of the span of each caller it held up
  while it waited for a pool call on that hub (or a trace of its own if none
  was): the slow request shows who blocked it.

Under ``eventlet.monkey_patch()`` export with :func:`batch_span_processor`
(a native export thread): the SDK's ``BatchSpanProcessor`` cannot be woken
from the native threads where pool calls' spans end.

While it is off no observer is registered, so the pool does exactly what it
does without this module.

Thread rules: the observer's events come from :mod:`fairpool._hooks` (any
thread, outside every pool lock). A call's span is kept in its ``CallInfo``
notes; ``_inflight`` (call id -> (caller's thread, submitted at, caller's span
context, the call's span)) is changed by single dict operations and read as a
copy, and so is ``_ended`` (the last :data:`ENDED_CALLS` calls: (caller's
thread, submitted at, ended at, caller's span context)), a bounded deque.
``_active`` is changed under ``_lock``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from . import _hooks, _tracefile, hubwatch, locks, otel_metrics
from ._faultlog import report_fault
from ._hooks import CallInfo, PoolObserver
from ._native import Event, allocate_lock, get_ident, monotonic, os, start_thread, thread_name, time
from .errors import FairpoolError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

__all__ = [
    "ENV_VARIABLE",
    "OpenTelemetryNotInstalled",
    "OtelObserver",
    "active",
    "batch_span_processor",
    "instrument",
    "metrics_active",
    "uninstrument",
]

ENV_VARIABLE = "FAIRPOOL_OTEL"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")
_PARTS = ("spans", "metrics")  # FAIRPOOL_OTEL=spans,metrics: what to switch on
#: Default: a lock hold is recorded when it lasts at least this long (seconds).
HOLD_THRESHOLD = 0.01
#: Default: a contended lock wait is recorded when it lasts at least this long (seconds).
WAIT_THRESHOLD = 0.0
#: Longest status description and exception message kept on a span.
DESCRIPTION_LIMIT = 200
#: Most callers a hub stall is recorded under (each gets a span with the stack).
STALL_VICTIMS_LIMIT = 16
#: Ended calls remembered for the hub stalls: a call that ended during a stall held its caller up too.
ENDED_CALLS = 1024

_DESCRIPTIONS = {
    "cancelled": "cancelled: the caller gave up while the call was queued; it never ran",
    "abandoned": "abandoned: the caller gave up while the call ran; its outcome was dropped",
    "closed": "closed: the pool shut down (or failed) before the call was answered",  # after taking it
    "rejected": "rejected: the pool refused the call (it was shut down, or its queue was full)",
}


class OpenTelemetryNotInstalled(FairpoolError, ImportError):
    """OpenTelemetry spans were asked for and ``opentelemetry-api`` is not installed.

    Install it with ``pip install 'fairpool[otel]'``.
    """


def _bounded(text: str) -> str:
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 3] + "..."


def _describe_error(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a raising __str__ must not cost the span
        message = ""
    name = type(exc).__name__
    return _bounded(f"{name}: {message}" if message else name)


def _wall_ns_of(monotonic_us: float) -> int:
    """A :func:`fairpool.trace.now_us` time (monotonic microseconds) as OpenTelemetry's epoch nanoseconds."""
    return int(time.time_ns() - time.monotonic_ns()) + int(monotonic_us * 1000.0)


# -- what the core does not hand over (yet): read from its frame, only for calls that raised ------


class _Call:
    """One observed call's span, when a worker took it, and in which process."""

    __slots__ = ("pid", "span", "started")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.started = 0.0  # monotonic; 0.0 until a worker takes it
        self.pid = _pid  # a forked child's copy of its parent's call is not its to end


class OtelObserver(PoolObserver):
    """Makes the spans and events. Made and registered by :func:`instrument`."""

    wants_context = True  # each call runs in a copy of its caller's context, with its span current

    def __init__(self, tracer: Tracer, wait_threshold: float, hold_threshold: float) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace

        self.tracer = tracer
        self.wait_threshold = wait_threshold
        self.hold_threshold = hold_threshold
        self._inflight: dict[int, tuple[int, float, SpanContext, Span]] = {}  # see the module's docstring
        self._ended: deque[tuple[int, float, float, SpanContext]] = deque(maxlen=ENDED_CALLS)
        self._attach = otel_context.attach
        self._empty_context = otel_context.Context
        self._in_context = otel_trace.set_span_in_context
        self._current_span = otel_trace.get_current_span
        self._status = otel_trace.Status
        self._error = otel_trace.StatusCode.ERROR
        self._non_recording = otel_trace.NonRecordingSpan

    def _make_current(self, span: Span) -> None:
        self._attach(self._in_context(span))

    # -- pool calls ---------------------------------------------------------------
    def call_submitted(self, call: CallInfo) -> None:
        span = self.tracer.start_span(
            call.name,
            attributes={
                "fairpool.pool": call.pool,
                "fairpool.lane": call.lane,
                "fairpool.queue.depth": call.queued,
            },
        )
        if not span.is_recording():
            return  # the API's no-op tracer, or not sampled: the call runs in its caller's context as is
        call.notes[self] = _Call(span)
        context = call.context
        if context is not None:
            context.run(self._make_current, span)
        caller = self._current_span()  # what a hub stall holds up: the caller, not the worker
        waiter = (caller if caller.is_recording() else span).get_span_context()
        self._inflight[call.call_id] = (get_ident(), call.t_queued, waiter, span)

    def call_started(self, call: CallInfo) -> None:
        note: _Call | None = call.notes.get(self)
        if note is None:
            return
        note.started = call.t_started
        if note.span.is_recording():
            note.span.add_event("fairpool.started")

    def call_finished(self, call: CallInfo, ok: bool) -> None:
        """The span ends here, before the caller is answered: when it resumes, its call's span is done."""
        note: _Call | None = call.notes.pop(self, None)
        if note is None or note.pid != os.getpid():
            return  # its caller gave up while it ran (the span ended then), or the parent's, in a child
        self._forget(call.call_id, call.t_finished)
        span = note.span
        if not ok:
            exc = call.error
            if exc is None:
                span.set_status(self._status(self._error, "the call raised"))
            else:
                span.record_exception(exc)
                span.set_status(self._status(self._error, _describe_error(exc)))
        span.set_attributes(
            {
                "fairpool.outcome": "returned" if ok else "raised",
                "fairpool.worker": call.worker,
                "fairpool.queued_s": call.t_started - call.t_queued,
                "fairpool.ran_s": call.t_finished - call.t_started,
            }
        )
        span.end()

    def call_answered(self, call: CallInfo, outcome: str) -> None:
        """A call that did not finish in a worker ends here: cancelled, abandoned, closed, rejected."""
        note: _Call | None = call.notes.pop(self, None)
        if note is None or note.pid != os.getpid():
            return  # it ended when the call finished, or it is the parent's call, in a forked child
        self._forget(call.call_id, monotonic())
        span = note.span
        attributes: dict[str, Any] = {"fairpool.outcome": outcome}
        if note.started:
            attributes["fairpool.worker"] = call.worker
            attributes["fairpool.queued_s"] = note.started - call.t_queued
        else:
            attributes["fairpool.queued_s"] = monotonic() - call.t_queued
        span.set_attributes(attributes)
        description = _DESCRIPTIONS.get(outcome, f"{outcome}: the call did not return")
        if call.error is not None:  # which refusal or closing: PoolClosed, QueueFull, a fault
            description = f"{description}: {_describe_error(call.error)}"
        span.set_status(self._status(self._error, description))
        span.end()

    # -- instrumented locks (fairpool.locks listeners; times in monotonic microseconds) -------
    def lock_waited(self, name: str, start: float, end: float) -> None:
        self._lock_event("wait", name, start, end, self.wait_threshold)

    def lock_held(self, name: str, start: float, end: float) -> None:
        self._lock_event("hold", name, start, end, self.hold_threshold)

    def _lock_event(self, kind: str, name: str, start: float, end: float, threshold: float) -> None:
        """A ``fairpool.lock.<kind>`` event on the current span, if it lasted ``threshold`` seconds."""
        seconds = (end - start) / 1e6
        if seconds < threshold:
            return
        span = self._current_span()
        if span.is_recording():
            attributes: dict[str, Any] = {"fairpool.lock": name, f"fairpool.lock.{kind}_s": seconds}
            span.add_event(f"fairpool.lock.{kind}", attributes, timestamp=_wall_ns_of(start))

    # -- hub stalls (a fairpool.hubwatch listener, in the hub's thread) ----------------------
    def hub_stalled(self, watch: hubwatch.HubWatch, stall: hubwatch.HubStall) -> None:
        """A ``fairpool.hub_stall`` span under the span of each caller it held up, or of its own."""
        end = time.time_ns()
        start = end - int(stall.duration * 1e9)
        hub = get_ident()
        began = monotonic() - stall.duration  # calls submitted since were not held up by it
        # Its callers: those waiting for a pool call on this hub when it began (in flight, or
        # ended during it: they could not be resumed until it was over). They may have ended
        # since (the hub resumes them before this report): a child span can still be theirs.
        waiting = [(i, q, w) for i, q, w, _ in self._inflight.copy().values()]
        waiting += [(i, q, w) for i, q, ended, w in list(self._ended) if ended >= began]
        held_up = {w.span_id: w for ident, queued, w in waiting if ident == hub and queued <= began}
        attributes: dict[str, Any] = {
            "fairpool.hub.stall_s": stall.duration,
            "fairpool.hub.threshold_s": watch.threshold,
            "fairpool.hub.thread": thread_name(),
            "fairpool.hub.held_up": len(held_up),
        }
        if stall.stack:
            attributes["code.stacktrace"] = stall.stack
        parents = [
            self._in_context(self._non_recording(w)) for w in list(held_up.values())[:STALL_VICTIMS_LIMIT]
        ]
        for parent in parents or [self._empty_context()]:  # none held up: a trace of its own
            span = self.tracer.start_span(
                "fairpool.hub_stall", parent, start_time=start, attributes=attributes
            )
            span.end(end_time=end)

    def _forget(self, call_id: int, ended: float) -> None:
        entry = self._inflight.pop(call_id, None)
        if entry is not None:
            self._ended.append((entry[0], entry[1], ended, entry[2]))

    def forget_the_parents_calls(self) -> None:
        """In a forked child: the calls in flight are the parent's; it ends their spans."""
        self._inflight = {}
        self._ended = deque(maxlen=ENDED_CALLS)

    def end_inflight(self) -> None:
        """End the spans of calls still in flight (uninstrumenting: their later events will not come)."""
        for *_, span in self._inflight.copy().values():
            if span.is_recording():
                span.set_attribute("fairpool.outcome", "uninstrumented")
                span.end()
        self._inflight.clear()


# -- switching it on and off ----------------------------------------------------------

_active: OtelObserver | None = None
_lock = allocate_lock()
_pid = os.getpid()  # this process's; the pool's own fork hook may answer calls before ours runs


def _after_fork_in_child() -> None:
    global _pid, _lock
    _pid = os.getpid()
    _lock = allocate_lock()  # the parent's may have been held by another thread
    observer = _active
    if observer is not None:
        observer.forget_the_parents_calls()


os.register_at_fork(after_in_child=_after_fork_in_child)


def active() -> OtelObserver | None:
    """The observer making spans now, or None."""
    return _active


def metrics_active() -> otel_metrics.MetricsRecorder | None:
    """The recorder taking metrics now, or None."""
    return otel_metrics.active()


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fairpool")
    except metadata.PackageNotFoundError:
        return "unknown"


def instrument(
    tracer_provider: TracerProvider | None = None,
    *,
    wait_threshold: float = WAIT_THRESHOLD,
    hold_threshold: float = HOLD_THRESHOLD,
    spans: bool = True,
    metrics: bool = False,
    meter_provider: MeterProvider | None = None,
) -> OtelObserver | None:
    """Make OpenTelemetry spans for every pool call, and events for lock waits and hub stalls;
    with ``metrics``, record the pools', locks' and hub's metrics too (docs/tracing.md, "Metrics").

    Replaces an earlier instrumentation (the one ``FAIRPOOL_OTEL`` made, say), spans and metrics.

    Args:
        tracer_provider: Where the spans go; the global provider by default
            (``opentelemetry.trace.set_tracer_provider``), also when it is set later.
        wait_threshold: A contended wait for an instrumented lock is recorded
            when it lasts at least this many seconds (default: every one).
        hold_threshold: A hold of an instrumented lock is recorded when it
            lasts at least this many seconds (default 0.01).
        spans: Make the spans (default). False: metrics only.
        metrics: Record the metrics (:mod:`fairpool.otel_metrics`).
        meter_provider: Where the metrics go; the global provider by default
            (``opentelemetry.metrics.set_meter_provider``), also when it is set later.

    Returns:
        The span observer, or None when ``spans`` is False.

    Raises:
        OpenTelemetryNotInstalled: ``opentelemetry-api`` is not installed.
        ValueError: A threshold is not a finite number of seconds >= 0, or
            ``spans``/``metrics`` is not a bool.
    """
    global _active
    wait = _check_threshold("wait_threshold", wait_threshold)
    hold = _check_threshold("hold_threshold", hold_threshold)
    for name, value in (("spans", spans), ("metrics", metrics)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
    try:
        from opentelemetry import trace as otel_trace
    except ImportError:
        raise OpenTelemetryNotInstalled(
            "fairpool.otel needs opentelemetry-api: pip install 'fairpool[otel]'"
        ) from None
    observer = None
    if spans:
        tracer = otel_trace.get_tracer("fairpool", _version(), tracer_provider=tracer_provider)
        observer = OtelObserver(tracer, wait, hold)
    with _lock:
        _uninstrument_locked()
        if metrics:
            otel_metrics.start(meter_provider, _version())
        if observer is not None:
            _active = observer
            _hooks.add_observer(observer)
            locks.add_listener(observer)
            hubwatch.add_stall_listener(observer.hub_stalled)
    return observer


def _uninstrument_locked() -> None:
    global _active
    otel_metrics.stop()
    observer, _active = _active, None
    if observer is not None:
        _hooks.remove_observer(observer)
        locks.remove_listener(observer)
        hubwatch.remove_stall_listener(observer.hub_stalled)
        observer.end_inflight()


def uninstrument() -> None:
    """Stop making spans and recording metrics; the spans of calls in flight end now, the metrics
    recorded so far go out with the next collection. Does nothing if it is off."""
    with _lock:
        _uninstrument_locked()


def _start_from_environment() -> OtelObserver | None:
    """``FAIRPOOL_OTEL``: instrument; a bad value, or no opentelemetry-api: one warning, it stays off.

    ``1`` (``true``, ``yes``, ``on``): spans, as always; else a comma-separated
    list of ``spans`` and ``metrics`` (``metrics``, ``spans,metrics``).
    """
    raw = os.environ.get(ENV_VARIABLE)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _OFF:
        return None
    if value in _ON:
        wanted = {"spans"}
    else:
        wanted = {part.strip() for part in value.split(",")}
        if not wanted <= set(_PARTS) or "" in wanted:
            _tracefile.warn(
                f"fairpool: {ENV_VARIABLE}={raw!r} is not one of {', '.join(_ON + _OFF)} nor a "
                f"comma-separated list of {' and '.join(_PARTS)}; OpenTelemetry spans are off (metrics too)"
            )
            return None
    try:
        return instrument(spans="spans" in wanted, metrics="metrics" in wanted)
    except Exception as exc:  # noqa: BLE001 - a feature from the environment must not stop the service
        _tracefile.warn(f"fairpool: {ENV_VARIABLE}={raw!r}: {exc}; OpenTelemetry spans are off (metrics too)")
        return None


# -- a batch span processor whose thread is native ------------------------------------


def batch_span_processor(
    exporter: SpanExporter,
    *,
    max_queue_size: int = 8192,
    max_export_batch_size: int = 512,
    schedule_delay: float = 0.5,
) -> SpanProcessor:
    """The SDK's batching (``BatchSpanProcessor``), with a native export thread and wake-up.

    Under ``eventlet.monkey_patch()`` the SDK's own batch processor has a green
    thread woken by a green Event. Spans that end in native threads (each pool
    call's span ends in the worker that answered it, and so do the spans the
    call makes there) cannot wake it: it exports only every 5 s, and its queue
    overflows and drops spans meanwhile. This one's export thread and wake-up
    are native, so it is right in every world; elsewhere it works like the SDK's.
    Needs ``opentelemetry-sdk``. ``dropped`` counts the spans a full queue turned away.

    Args:
        exporter: Where the spans go (any SDK ``SpanExporter``).
        max_queue_size: Spans held at most; past this they are dropped and counted.
        max_export_batch_size: Spans handed to the exporter at a time; a queue this
            long wakes the export thread early.
        schedule_delay: Seconds between exports at most.
    """
    from opentelemetry.sdk.trace import SpanProcessor

    for name, value in (("max_queue_size", max_queue_size), ("max_export_batch_size", max_export_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    delay = _check_threshold("schedule_delay", schedule_delay)
    if delay <= 0.0:
        raise ValueError(f"schedule_delay must be a finite number of seconds > 0, got {schedule_delay!r}")

    class NativeBatchSpanProcessor(SpanProcessor):
        def __init__(self) -> None:
            self.exporter = exporter
            self.dropped = 0
            self._queue: deque[Any] = deque()
            self._wake = Event()  # native: set from any thread, waited for by a native one
            self._export_lock = allocate_lock()
            self._closed = False
            self._failed = False
            self._start()

        def _start(self) -> None:
            self._pid = os.getpid()
            self._thread = start_thread(self._run, (), "fairpool-otel-export")

        def on_end(self, span: Any) -> None:
            if self._closed:
                return
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue.clear()
                self._start()
            queue = self._queue
            if len(queue) >= max_queue_size:
                self.dropped += 1
                return
            queue.append(span)
            if len(queue) >= max_export_batch_size and not self._wake.is_set():
                self._wake.set()

        def _run(self) -> None:
            while not self._closed:
                self._wake.wait(delay)
                self._wake.clear()
                self._export()
            self._export()

        def _export(self) -> None:
            with self._export_lock:
                queue = self._queue
                while queue:
                    batch = [queue.popleft() for _ in range(min(len(queue), max_export_batch_size))]
                    try:
                        self.exporter.export(batch)
                    except Exception as exc:  # noqa: BLE001 - an exporter's fault must not end the thread
                        if not self._failed:
                            self._failed = True
                            report_fault(
                                "fairpool: a span exporter raised; its later errors are not reported", exc
                            )

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            self._export()
            return True

        def shutdown(self) -> None:
            if self._closed:
                return
            self._closed = True
            self._wake.set()
            if self._pid == os.getpid():
                self._thread.join(30)
            self.exporter.shutdown()

    return NativeBatchSpanProcessor()
