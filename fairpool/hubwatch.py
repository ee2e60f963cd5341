"""Hub watch: find the green thread that blocks the hub, with its stack.

``fairpool.watch_hub(threshold=0.05)`` (or ``FAIRPOOL_HUB_WATCH=0.05`` in the
environment) starts two watchers for the hub of the calling thread:

* a green heartbeat that notes the time every ``threshold / 4`` seconds;
* a native watchdog thread that, when the heartbeat is late by more than
  ``threshold``, takes the stack of whatever runs on the hub's thread: the
  green thread that is blocking it (a blocking C call, a busy loop).

When the hub runs again, the heartbeat logs a warning on the ``fairpool``
logger with the stall's length and that stack, and records a ``hub blocked``
span in the trace, on a track of its own (``hub stalls (<thread>)``), so it
never straddles the spans of the hub's thread. The warning is logged from
the green side: logging's locks are green under eventlet.monkey_patch(), and
a native thread must not take them. Warnings are rate-limited: up to
:data:`WARN_BURST` at once, then one a second (the next one logged says how
many were not); every stall is still in ``stalls`` and in the trace.

The threshold is from :data:`MIN_THRESHOLD` (10 ms: below that the heartbeat
itself would load the hub, and eventlet's own timers are not that precise)
to :data:`MAX_THRESHOLD` (an hour). A bad ``FAIRPOOL_HUB_WATCH`` (not a
number, nan, inf, 0, negative, out of range) gives one warning naming the
variable and the value, and no watch: never an error at import, a thread
traceback or a flood.
"""

from __future__ import annotations

import logging
import math
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import _tracefile, trace
from ._compat import import_eventlet_quietly
from ._faultlog import report_fault
from ._native import Event, get_ident, get_native_id, monotonic, start_thread, thread_name
from .errors import EventletNotInstalled

__all__ = ["MAX_THRESHOLD", "MIN_THRESHOLD", "HubStall", "HubWatch", "watch_hub"]

log = logging.getLogger("fairpool")
ENV_VARIABLE = "FAIRPOOL_HUB_WATCH"
#: The shortest threshold, in seconds.
MIN_THRESHOLD = 0.01
#: The longest threshold, in seconds.
MAX_THRESHOLD = 3600.0
#: Warnings logged at once at most, and then one a second (a token bucket): sparse
#: stalls are all logged, a flood of them is not.
WARN_BURST = 5
#: The longest stack kept per stall (its innermost end).
STACK_LIMIT = 8000


@dataclass(frozen=True)
class HubStall:
    """One time the hub was blocked for longer than the threshold."""

    duration: float  #: seconds the heartbeat was late
    stack: str  #: where the hub's thread was, seen while it was blocked ("" if not caught)


#: Who hears of each stall besides the log and the trace (fairpool.otel): callables
#: ``listener(watch, stall)``, called in the hub's thread just after the stall ended.
#: Replaced, never mutated, so readers need no lock.
stall_listeners: tuple[Callable[[HubWatch, HubStall], None], ...] = ()


def add_stall_listener(listener: Callable[[HubWatch, HubStall], None]) -> None:
    """Call ``listener(watch, stall)`` for each stall that any watch finds."""
    global stall_listeners
    if listener not in stall_listeners:
        stall_listeners = (*stall_listeners, listener)


def remove_stall_listener(listener: Callable[[HubWatch, HubStall], None]) -> None:
    """Stop calling ``listener``; does nothing if it is not listening."""
    global stall_listeners
    stall_listeners = tuple(x for x in stall_listeners if x != listener)


def _tell_stall(watch: HubWatch, stall: HubStall) -> None:
    for listener in stall_listeners:
        try:
            listener(watch, stall)
        except BaseException as exc:  # noqa: BLE001 - a listener must not end the watch
            remove_stall_listener(listener)
            report_fault(f"fairpool: hub stall listener {listener!r} raised; it was removed", exc)


class HubWatch:
    """A running hub watch. Made by :func:`watch_hub`; :meth:`stop` ends it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stalls: list[HubStall] = []  #: every stall seen, oldest first (the last 100)
        self._interval = threshold / 4
        self._hub_ident = get_ident()
        # The stalls' own track in a trace: a stall ends at a heartbeat, so it would
        # straddle the spans on the hub thread's track.
        self._hub_tid = trace.HUB_TRACK_BASE + get_native_id()
        self._track_name = f"hub stalls ({thread_name()})"
        self._named_for: object = None  # the tracer (and fork generation) the track was named in
        self._tokens = float(WARN_BURST)
        self._tokens_at = monotonic()
        self._unlogged = 0
        self._beat = monotonic()
        self._stack = ""  # caught by the watchdog during the current stall
        self._stop = Event()
        try:
            eventlet = import_eventlet_quietly()
        except ImportError:
            raise EventletNotInstalled(
                "fairpool.watch_hub() watches an eventlet hub: pip install 'fairpool[eventlet]'"
            ) from None
        self._sleep = eventlet.sleep
        self._heart = eventlet.spawn(self._heartbeat)
        self._dog = start_thread(self._watchdog, (), "fairpool-hub-watch")

    def _heartbeat(self) -> None:
        interval = self._interval
        while not self._stop.is_set():
            self._sleep(interval)
            now = monotonic()
            late = now - self._beat - interval
            self._beat = now
            if late > self.threshold:
                self._report(late)

    def _report(self, late: float) -> None:
        stall = HubStall(late, self._stack)
        self._stack = ""
        self.stalls.append(stall)
        del self.stalls[:-100]
        now = monotonic()
        self._tokens = min(float(WARN_BURST), self._tokens + (now - self._tokens_at))
        self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            unlogged, self._unlogged = self._unlogged, 0
            log.warning(
                "fairpool: the eventlet hub was blocked for %.0f ms (threshold %.0f ms)%s%s",
                late * 1e3,
                self.threshold * 1e3,
                f" ({unlogged} stalls before it were not logged)" if unlogged else "",
                f"; the blocking green thread was at:\n{stall.stack}" if stall.stack else "",
            )
        else:
            self._unlogged += 1
        if stall_listeners:
            _tell_stall(self, stall)
        tracer = trace.active()
        if tracer is not None:
            end = trace.now_us()
            named = (tracer, tracer.generation)
            if self._named_for != named:
                self._named_for = named
                tracer.name_track(self._hub_tid, self._track_name)
            tracer.complete(
                "hub blocked",
                "hub",
                end - late * 1e6,
                late * 1e6,
                self._hub_tid,
                args={"stack": stall.stack, "threshold_ms": self.threshold * 1e3},
            )

    def _watchdog(self) -> None:
        try:
            caught_for = None
            while not self._stop.wait(self._interval):
                beat = self._beat
                if monotonic() - beat > self.threshold + self._interval and caught_for != beat:
                    frame = sys._current_frames().get(self._hub_ident)
                    if frame is not None:
                        self._stack = "".join(traceback.format_stack(frame))[-STACK_LIMIT:]
                    caught_for = beat
                    del frame
        except Exception as exc:  # noqa: BLE001 - never a thread traceback: reported once, watch ends
            report_fault("fairpool: the hub watch's watchdog thread failed; stalls are no longer caught", exc)

    def stop(self) -> None:
        """Stop watching (from the hub's thread)."""
        self._stop.set()
        self._heart.kill()
        self._dog.join(1)


def _threshold_error(value: object) -> str | None:
    """Why ``value`` is not a threshold, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if not math.isfinite(value) or not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
        return "out of range"
    return None


def watch_hub(threshold: float = 0.05) -> HubWatch:
    """Watch the calling thread's hub for stalls longer than ``threshold`` seconds.

    Raises:
        ValueError: ``threshold`` is not a number of seconds from
            :data:`MIN_THRESHOLD` (0.01) to :data:`MAX_THRESHOLD` (3600).
    """
    if _threshold_error(threshold) is not None:
        raise ValueError(
            f"threshold must be a number of seconds from {MIN_THRESHOLD:g} to {MAX_THRESHOLD:g}, "
            f"got {threshold!r}"
        )
    return HubWatch(float(threshold))


def _start_from_environment() -> HubWatch | None:
    """``FAIRPOOL_HUB_WATCH``: start a watch; a bad value gives one warning and no watch."""
    from ._native import seconds_from_environment

    found = seconds_from_environment(ENV_VARIABLE)
    if found is None:
        return None
    raw, threshold = found
    if _threshold_error(threshold) is not None:
        _tracefile.warn(
            f"fairpool: {ENV_VARIABLE}={raw!r} is not a number of seconds from {MIN_THRESHOLD:g} "
            f"to {MAX_THRESHOLD:g}; the hub watch is off"
        )
        return None
    try:
        return watch_hub(threshold)
    except Exception as exc:  # noqa: BLE001 - a feature from the environment must not stop the service
        _tracefile.warn(f"fairpool: {ENV_VARIABLE}={raw!r}: the hub watch could not start ({exc}); it is off")
        return None
