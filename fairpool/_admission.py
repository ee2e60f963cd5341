"""Admission: the run queue, the calls held back by ``max_queue``, and the bound.

Knows no threads and no waiters: the pool core calls it under its lock.
A call is *queued* (in the run queue, where workers take it) or *held*
(``max_queue`` reached with ``on_full="wait"``: it enters the run queue as
room frees up, in its lane's turn).
"""

from __future__ import annotations

from typing import Any

from ._fairqueue import POLICIES, FairQueue, FifoQueue
from ._job import QUEUED, Job, describe
from .errors import QueueFull

__all__ = ["Admission"]


class Admission:
    """The queue of one pool. Every method is called under the pool's lock."""

    __slots__ = ("held", "max_queue", "name", "queue", "raise_when_full")

    def __init__(self, name: str, policy: str, max_queue: int | None, raise_when_full: bool) -> None:
        queue_type = POLICIES[policy]
        self.name = name
        self.max_queue = max_queue
        self.raise_when_full = raise_when_full
        self.queue: FairQueue[Job] | FifoQueue[Job] = queue_type()  # workers take from here
        self.held: FairQueue[Job] | FifoQueue[Job] = queue_type()  # waiting for room in ``queue``

    def full(self, coming: int = 0) -> bool:
        """At the bound. ``coming``: workers on their way to take a queued call, which it does not count."""
        return self.max_queue is not None and len(self.queue) - coming >= self.max_queue

    def full_error(self, fn: Any) -> QueueFull:
        return QueueFull(
            f"pool {self.name!r} has {len(self.queue)} calls queued, its max_queue bound "
            f"({self.max_queue}); not taking {describe(fn)}"
        )

    def admit(self, job: Job, coming: int) -> QueueFull | None:
        """Queue a NEW job (or hold it for room). Returns the error to answer it with instead."""
        max_queue = self.max_queue  # full(), inline: this runs for every call
        if max_queue is not None and (self.held or len(self.queue) - coming >= max_queue):
            if self.raise_when_full:  # (nothing is ever held then)
                return self.full_error(job.fn)
            job.held = True  # behind the calls held before it, even if there is room: they go first
            self.held.put(job, job.weight)
        else:
            self.queue.put(job, job.weight)
        job.state = QUEUED  # NEW -> QUEUED: only NEW jobs are admitted
        return None

    def withdraw(self, job: Job) -> None:
        """Take a QUEUED job out (its caller gave up), in O(1). Room may have freed up: see make_room."""
        if job.held:
            self.held.remove(job)
        else:
            self.queue.remove(job)

    def make_room(self, coming: int) -> bool:
        """Move the next held call up into the run queue, if the bound allows; True if one moved.

        Called by the core whenever room may have freed up (a call left the
        queue, a worker was woken or started); it then finds the call that
        moved up a worker, and calls this again until nothing moves.
        """
        if self.held and not self.full(coming):
            job = self.held.pop()
            if job is not None:
                job.held = False
                self.queue.put(job, job.weight)
                return True
        return False

    def drain(self) -> list[Job]:
        """Take out every queued and held job, in the order they would have run."""
        jobs = self.queue.drain() + self.held.drain()
        for job in jobs:
            job.held = False
        return jobs

    def __len__(self) -> int:
        """Calls in the run queue (not counting held ones)."""
        return len(self.queue)

    def __iter__(self) -> Any:
        yield from self.queue
        yield from self.held
