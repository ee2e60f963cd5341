"""Carrying answers from worker threads back to an eventlet hub.

One channel per hub (per native thread that runs one): a deque of answered
green waiters and a pipe whose read end the hub watches. A worker appends
the waiter, then writes one byte only if no wake-up is already pending, so a
burst of completions costs one ``write`` and one hub wake-up, not one each.
The hub reads the byte, clears the pending flag and then drains *every*
ready waiter, resuming each in turn (switching to it if it still waits, see
``fairpool._waiters.GreenWaiter``).

The race, and why nothing is lost: a worker appends *before* it looks at
``pending``; the hub clears ``pending`` *before* it drains. A worker that
sees ``pending`` set therefore appended before the hub cleared it, so the
drain that follows finds its waiter. A worker that sees it clear writes a byte,
at worst one wake-up too many, which drains nothing.

Thread rules: ``deliver`` is called from any thread (it only touches the
deque, the flag and the pipe). Everything else runs in the hub's thread.

eventlet's pieces (its hubs, greenlet) are bound the first time a caller is
checked after ``eventlet.hubs`` was imported, by anyone: importing fairpool
imports no eventlet, and until eventlet is imported the check that a caller
is native is one ``sys.modules`` lookup.
"""

from __future__ import annotations

import errno
import logging
import sys
import weakref
from collections import deque
from typing import Any, Protocol

from ._native import get_ident, local, os
from .errors import HubChannelError

# eventlet's pieces, taken by _bind_eventlet() the first time a caller could be on a hub
# (eventlet.hubs is imported). Until then no hub can exist, and nothing imports eventlet.
_modules = sys.modules
_hubs: Any = None
_hub_base: Any = None
_greenlet_getcurrent: Any = None
_hub_local: Any = None  # eventlet keeps each thread's hub here; set last: the "bound" flag

_channels: weakref.WeakSet[HubChannel] = weakref.WeakSet()

#: Seconds between a channel's health checks: the longest a result can wait
#: if its wake-up was lost (the pipe broke). Costs one hub timer a second.
CHECK_INTERVAL = 1.0

log = logging.getLogger("fairpool")


class Resumable(Protocol):
    """What a channel carries: a green waiter (``fairpool._waiters.GreenWaiter``).

    The hub's drain switches to ``greenlet`` only while ``waiting`` is true:
    an answer that arrives when its green thread is not inside its wait
    (it gave up, or has not started waiting) never wakes anything else.
    """

    waiting: bool | None
    greenlet: Any


def _noop(*_args: Any) -> None:
    pass


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class HubChannel:
    """The wake-up pipe and ready queue of one hub."""

    __slots__ = (
        "__weakref__",
        "_finalizer",
        "_timer",  # the health check's hub timer
        "broken",  # the exception that broke the pipe, once it did
        "drains",  # hub wake-ups that drained the queue
        "forked",  # in a forked child: the pipe is gone, wake-ups go through hub timers
        "hub",  # the eventlet hub; only its thread uses it
        "listener",
        "pending",  # a wake-up byte is in the pipe and not yet read
        "ready",  # deque of answered waiters: append from any thread, popleft in the hub
        "rfd",
        "wfd",
        "writes",  # wake-up bytes written (for statistics and benchmarks)
        "waiting",  # green waiters made on this channel, not done waiting (the hub's thread only)
        "closed",  # closed while idle (killall): late wake-ups are dropped
    )

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.ready: deque[Resumable] = deque()
        self.pending = False
        self.forked = False
        self.waiting = 0
        self.closed = False
        self.broken: BaseException | None = None
        self.writes = 0
        self.drains = 0
        self._open_pipe()
        self._timer = hub.schedule_call_global(CHECK_INTERVAL, self._check)
        _channels.add(self)

    def _open_pipe(self) -> None:
        self.rfd, self.wfd = os.pipe()  # not inherited by exec'd children
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.listener = self.hub.add(_hub_base.READ, self.rfd, self._on_readable, _noop, _noop)
        # eventlet's listener keeps the green thread that added it (for a throwback, _noop
        # here): the first green caller, with all it returns, would live as long as the
        # channel. The hub's greenlet stands in for it.
        self.listener.greenlet = self.hub.greenlet
        self._finalizer = weakref.finalize(self, _close_fds, self.rfd, self.wfd)

    def _check(self) -> None:
        """The health check, in the hub: repair a broken pipe, and drain what a lost wake-up left.

        A worker that cannot write the wake-up byte (someone closed our fd)
        leaves its result in ``ready``; without this its waiter would hang.
        """
        self._timer = self.hub.schedule_call_global(CHECK_INTERVAL, self._check)
        if self.broken is not None:
            self.repair()
        if self.ready:
            self.pending = False
            self.drain()

    def repair(self) -> None:
        """Replace a broken wake-up pipe (in the hub's thread).

        Raises:
            HubChannelError: A new pipe cannot be made (no file descriptors left).
        """
        error = self.broken
        try:
            _hub_base.BaseHub.remove(self.hub, self.listener)
        except (KeyError, ValueError):
            pass
        self._finalizer()
        try:
            self._open_pipe()
        except OSError as exc:
            raise HubChannelError(
                f"fairpool's wake-up pipe to the eventlet hub failed ({error!r}) and a new one "
                f"cannot be made ({exc.strerror}): results cannot be handed back to green threads"
            ) from exc
        self.broken = None
        self.pending = False
        log.warning("fairpool: the wake-up pipe to the eventlet hub failed (%r); it was rebuilt", error)

    # -- any thread -------------------------------------------------------
    def deliver(self, waiter: Resumable) -> None:
        """Hand an answered waiter to its hub. Safe from any thread."""
        self.ready.append(waiter)
        if not self.pending:
            self.wake()

    # -- the hub's thread -------------------------------------------------
    def _on_readable(self, _fd: int) -> None:
        try:
            if not os.read(self.rfd, 4096):
                # End of file: the write end was closed under us. The read end
                # would now be readable forever and spin the hub: repair now.
                self.broken = self.broken or BrokenPipeError("the wake-up pipe's write end was closed")
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EINTR:
                self.broken = exc
        self.pending = False
        self.drains += 1
        if self.broken is not None:
            try:
                self.repair()
            except HubChannelError as exc:
                log.error("%s", exc)  # the health check tries again every CHECK_INTERVAL
        self.drain()

    def drain(self) -> None:
        """Resume every ready waiter. Runs in the hub greenlet."""
        self.pending = False
        resume_waiters(self.hub, self.ready.popleft, self._rewake)

    def _rewake(self) -> None:
        if self.ready:
            self.pending = False
            self.wake()

    def wake(self) -> None:
        """Make the hub run a drain soon (if no wake-up is pending)."""
        if not self.pending and not self.closed:
            self.pending = True
            if self.forked:
                # In a forked child only the forking thread lives on: it is this hub's.
                self.hub.schedule_call_global(0, self.drain)
                return
            self.writes += 1
            try:
                os.write(self.wfd, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups: the hub will wake anyway
            except OSError as exc:
                self.broken = exc

    def close(self) -> None:
        """Stop listening, cancel the health check and close the pipe (nobody waits here).

        The hub is left as fairpool found it. Waiters answered later were
        given up on (nobody is inside ``wait``): their wake-ups are dropped.
        The hub's next green caller makes a new channel.
        """
        self.closed = True
        self._timer.cancel()
        self.hub.remove(self.listener)
        self._finalizer()
        self.ready.clear()
        if getattr(self.hub, "_fairpool_channel", None) is self:
            self.hub._fairpool_channel = None

    def forget_after_fork(self) -> None:
        """In a forked child: let go of the parent's pipe without touching the poller.

        The child may share its hub's epoll instance with the parent, so the
        listener is removed from the hub's own tables only (an epoll_ctl would
        remove the parent's registration too), and the fds are closed. Waiters
        answered before or after the fork are resumed from hub timers; the
        hub's next green caller makes a new channel.
        """
        try:
            _hub_base.BaseHub.remove(self.hub, self.listener)
        except (KeyError, ValueError):
            pass
        self._timer.cancel()
        self._finalizer()
        self.forked = True
        self.pending = False
        if getattr(self.hub, "_fairpool_channel", None) is self:
            self.hub._fairpool_channel = None
        if self.ready:
            self.wake()


def resume_waiters(hub: Any, pop: Any, rewake: Any = None) -> None:
    """Resume each waiter ``pop()`` returns, until IndexError. Runs in the hub greenlet.

    Each waiter runs until it blocks again, then the hub comes back here for
    the next one. A waiter may instead *die* (its green thread ends with an
    exception): greenlet raises that exception here, in the parent. It is
    reported as eventlet's hub reports a failing timer, and the drain goes
    on; if it is KeyboardInterrupt or SystemExit it goes on up to the hub,
    after ``rewake()`` makes sure the waiters still ready get a wake-up of
    their own.
    """
    while True:
        try:
            waiter = pop()
        except IndexError:
            return
        try:
            if waiter.waiting:
                waiter.greenlet.switch()
        except hub.SYSTEM_EXCEPTIONS:
            if rewake is not None:
                rewake()
            raise
        except BaseException:  # noqa: BLE001 - a green thread died; the hub reports it
            hub.squelch_generic_exception(sys.exc_info())


def _bind_eventlet() -> bool:
    """Take eventlet's hub pieces once ``eventlet.hubs`` is imported; False while it is not (yet).

    Called only while :data:`_hub_local` is None: one ``sys.modules`` lookup
    per call until eventlet is imported, then never again. Idempotent, so
    threads may race here; ``_hub_local`` is set last.
    """
    global _hubs, _hub_base, _greenlet_getcurrent, _hub_local
    hubs = _modules.get("eventlet.hubs")
    hub_local = getattr(hubs, "_threadlocal", None)
    if hub_local is None or not hasattr(hubs, "get_hub"):
        return False  # not imported, or half-way through its import: no hub exists yet
    import greenlet
    from eventlet.hubs import hub as hub_base

    _hubs, _hub_base, _greenlet_getcurrent = hubs, hub_base, greenlet.getcurrent
    _hub_local = hub_local
    return True


def on_hub() -> bool:
    """Whether the caller should wait green: it runs on an eventlet hub.

    True inside a green thread, or when this thread already has a hub (the
    main greenlet of a program that uses eventlet). False for a plain native
    thread, where the caller blocks on a native lock instead, and always
    while eventlet is not imported.
    """
    if _hub_local is None and not _bind_eventlet():
        return False
    return _greenlet_getcurrent().parent is not None or _hub_dict().get("hub") is not None


def green_channel() -> HubChannel | None:
    """This thread's hub channel if the caller should wait green (see :func:`on_hub`), else None."""
    hub_local = _hub_local
    if hub_local is None:  # eventlet not seen yet: one lookup, no import
        if _modules.get("eventlet.hubs") is None or not _bind_eventlet():
            return None
        hub_local = _hub_local
    hub = hub_local.__dict__.get("hub")  # _hub_dict(), spelled out: this runs for every call
    if hub is None:
        if _greenlet_getcurrent().parent is None:
            return None
        hub = _hubs.get_hub()
    channel: HubChannel | None = getattr(hub, "_fairpool_channel", None)
    if channel is None:
        channel = _channel_of(hub)
    elif channel.broken is not None:
        channel.repair()  # we are in the hub's thread: it can be done now
    return channel


def current_greenlet() -> Any:
    """The calling greenlet, for a caller that waits green (:func:`green_channel` gave it a channel)."""
    return _greenlet_getcurrent()


class _ThreadToken:
    """Who a native thread is, for :func:`getcurrent`: the same before and after greenlet is imported."""

    __slots__ = ("ident",)

    def __init__(self, ident: int) -> None:
        self.ident = ident

    def __repr__(self) -> str:
        return f"<native thread {self.ident}>"


class _Tokens(local):
    token: _ThreadToken | None = None


_tokens = _Tokens()


def getcurrent() -> Any:
    """Who the caller is, for ownership (locks) and trace tracks: its greenlet if it is a green
    thread, else one token per native thread.

    A thread's main greenlet and the thread itself are the same caller: a lock
    taken before eventlet (and greenlet) is imported is released by its owner
    after. The token has no ``parent``, as a main greenlet has none.
    """
    current = _greenlet_getcurrent
    if current is None:
        greenlet = _modules.get("greenlet")
        current = getattr(greenlet, "getcurrent", None)
    if current is not None:
        g = current()
        if g.parent is not None:
            return g
    token = _tokens.token
    if token is None:
        token = _tokens.token = _ThreadToken(get_ident())
    return token


def _hub_dict() -> dict[str, Any]:
    d: dict[str, Any] = _hub_local.__dict__  # this thread's attributes of eventlet's thread-local
    return d


def current_channel() -> HubChannel:
    """The channel of this thread's hub, made on first use (imports eventlet)."""
    if _hub_local is None:
        from ._compat import import_eventlet_quietly

        import_eventlet_quietly()
        _bind_eventlet()
    return _channel_of(_hubs.get_hub())


def _channel_of(hub: Any) -> HubChannel:
    channel: HubChannel | None = getattr(hub, "_fairpool_channel", None)
    if channel is None:
        channel = HubChannel(hub)
        hub._fairpool_channel = channel
    return channel


def close_idle_channel() -> bool:
    """Close this thread's hub channel if no green thread waits on it (``killall``); True if closed.

    eventlet's ``tpool.killall()`` leaves nothing of tpool's on the hub, and
    code (eventlet's own tests among it) checks that the hub has no
    listener left: this does the same for fairpool's channel.
    """
    if _hub_local is None:
        return False  # never bound: no channel was ever made
    hub = _hub_dict().get("hub")
    channel: HubChannel | None = getattr(hub, "_fairpool_channel", None)
    if channel is None or channel.waiting or channel.ready:
        return False
    channel.close()
    return True


def forget_all_after_fork() -> None:
    """In a forked child: every channel lets go of its parent's pipe (see ``forget_after_fork``)."""
    for channel in list(_channels):
        channel.forget_after_fork()
