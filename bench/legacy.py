"""eventlet.tpool's design of 2010-2013, rebuilt for comparison: one queue per worker.

A green thread's calls always go to the worker ``mix(hash(greenlet)) % nthreads``,
so two green threads that hash to the same worker queue behind each other
while other workers sit idle. That is the imbalance the talk found.

This is a model of that design, written for the benchmarks, not eventlet's
code. Results come back as the old pool did: through a pipe, one byte per
result, read by a green thread that wakes each waiter with an Event.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import greenlet
from eventlet import event, hubs, patcher, spawn_n

os = patcher.original("os")
threading = patcher.original("threading")
queue = patcher.original("queue")


def mix(k: int) -> int:
    """The hash mixing step the old pool applied to ``hash(greenlet)``."""
    k = k + 0x2C865FD + (k >> 5)
    k = k ^ 0xC84D1B7 ^ (k >> 7)
    return k


class PerThreadQueuePool:
    """A pool with one FIFO queue per worker thread, chosen by the caller's greenlet."""

    def __init__(self, nthreads: int) -> None:
        self.nthreads = nthreads
        self.queues: list[Any] = [queue.SimpleQueue() for _ in range(nthreads)]
        self.responses: deque[tuple[Any, bool, Any]] = deque()
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.threads = [
            threading.Thread(target=self._work, args=(q,), name=f"legacy-{i}", daemon=True)
            for i, q in enumerate(self.queues)
        ]
        for t in self.threads:
            t.start()
        self._closed = False
        spawn_n(self._read_responses)

    def queue_index(self, g: Any) -> int:
        return mix(hash(g)) % self.nthreads

    def execute(self, fn: Any, *args: Any) -> Any:
        ev: event.Event = event.Event()
        self.queues[self.queue_index(greenlet.getcurrent())].put((ev, fn, args))
        return ev.wait()

    def _work(self, q: Any) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            ev, fn, args = item
            try:
                out = (ev, True, fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                out = (ev, False, exc)
            self.responses.append(out)
            os.write(self.wfd, b" ")  # one byte per result, as the old pool

    def _read_responses(self) -> None:
        while not self._closed:
            try:
                hubs.trampoline(self.rfd, read=True)
            except Exception:  # noqa: BLE001 - the pipe was closed
                return
            try:
                os.read(self.rfd, 4096)
            except (BlockingIOError, OSError):
                pass
            while self.responses:
                ev, ok, value = self.responses.popleft()
                if ok:
                    ev.send(value)
                else:
                    ev.send_exception(value)

    def close(self) -> None:
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join(5)
        self._closed = True
        os.write(self.wfd, b" ")
