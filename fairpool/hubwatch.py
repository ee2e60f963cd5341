"""Hub watch: find the green thread that blocks the hub, with its stack.

``fairpool.watch_hub(threshold=0.05)`` (or ``FAIRPOOL_HUB_WATCH=0.05`` in the
environment) starts two watchers for the hub of the calling thread:

* a green heartbeat that notes the time every ``threshold / 4`` seconds;
* a native watchdog thread that, when the heartbeat is late by more than
  ``threshold``, takes the stack of whatever runs on the hub's thread: the
  green thread that is blocking it (a blocking C call, a busy loop).

When the hub runs again, the heartbeat logs a warning on the ``fairpool``
logger with the stall's length and that stack, and records a ``hub blocked``
span in the trace. The warning is logged from the green side: logging's
locks are green under eventlet.monkey_patch(), and a native thread must not
take them.
"""

from __future__ import annotations

import logging
import sys
import traceback
from dataclasses import dataclass

from . import trace
from ._native import get_ident, monotonic, start_thread, threading
from .errors import EventletNotInstalled

__all__ = ["HubStall", "HubWatch", "watch_hub"]

log = logging.getLogger("fairpool")
ENV_VARIABLE = "FAIRPOOL_HUB_WATCH"


@dataclass(frozen=True)
class HubStall:
    """One time the hub was blocked for longer than the threshold."""

    duration: float  #: seconds the heartbeat was late
    stack: str  #: where the hub's thread was, seen while it was blocked ("" if not caught)


class HubWatch:
    """A running hub watch. Made by :func:`watch_hub`; :meth:`stop` ends it."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stalls: list[HubStall] = []  #: every stall seen, oldest first (the last 100)
        self._interval = threshold / 4
        self._hub_ident = get_ident()
        self._hub_tid = threading.get_native_id()  # the hub thread's track in a trace
        tracer = trace.active()
        if tracer is not None:
            tracer.name_track(self._hub_tid, f"hub ({threading.current_thread().name})")
        self._beat = monotonic()
        self._stack = ""  # caught by the watchdog during the current stall
        self._stop = threading.Event()
        try:
            import eventlet
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
        log.warning(
            "fairpool: the eventlet hub was blocked for %.0f ms (threshold %.0f ms)%s",
            late * 1e3,
            self.threshold * 1e3,
            f"; the blocking green thread was at:\n{stall.stack}" if stall.stack else "",
        )
        tracer = trace.active()
        if tracer is not None:
            end = trace.now_us()
            tracer.complete(
                "hub blocked",
                "hub",
                end - late * 1e6,
                late * 1e6,
                self._hub_tid,
                args={"stack": stall.stack, "threshold_ms": self.threshold * 1e3},
            )

    def _watchdog(self) -> None:
        caught_for = None
        while not self._stop.wait(self._interval):
            beat = self._beat
            if monotonic() - beat > self.threshold + self._interval and caught_for != beat:
                frame = sys._current_frames().get(self._hub_ident)
                if frame is not None:
                    self._stack = "".join(traceback.format_stack(frame))
                caught_for = beat
                del frame

    def stop(self) -> None:
        """Stop watching (from the hub's thread)."""
        self._stop.set()
        self._heart.kill()
        self._dog.join(1)


def watch_hub(threshold: float = 0.05) -> HubWatch:
    """Watch the calling thread's hub for stalls longer than ``threshold`` seconds.

    Raises:
        ValueError: ``threshold`` is not a number > 0.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a number of seconds > 0, got {threshold!r}")
    return HubWatch(float(threshold))


def _start_from_environment() -> HubWatch | None:
    import os

    raw = os.environ.get(ENV_VARIABLE)
    if not raw:
        return None
    try:
        threshold = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_VARIABLE} must be a number of seconds > 0, got {raw!r}") from None
    return watch_hub(threshold)
