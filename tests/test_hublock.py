"""The hub-never-waits protocol (fairpool._hublock): try the lock or leave the item for the holder."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from fairpool import _hublock as hublock
from fairpool._fairqueue import COMPACT_AFTER, FairQueue, FifoQueue
from fairpool._hublock import HubLock


def test_a_free_lock_is_taken_and_the_item_left_for_the_caller() -> None:
    seen: list[int] = []
    lock: HubLock[int, int] = HubLock(lambda item, out: seen.append(item))
    assert lock.acquire_or_leave(1, [])
    assert lock.locked() and seen == [] and not lock.left
    assert lock.release([]) == []
    assert not lock.locked()


def test_a_held_lock_leaves_the_item_and_the_holder_takes_it_in_before_releasing() -> None:
    seen: list[int] = []

    def take_in(item: int, out: list[int]) -> None:
        assert lock.locked(), "an item was taken in without the lock"
        seen.append(item)
        out.append(item * 10)

    lock: HubLock[int, int] = HubLock(take_in)
    lock.acquire()
    assert not lock.acquire_or_leave(7, []), "the hub waited for, or took, a held lock"
    assert not lock.acquire_or_leave(8, [])
    assert seen == [], "taken in before the holder released"
    assert lock.release([1]) == [1, 70, 80], "what to do after unlocking was lost"
    assert seen == [7, 8] and not lock.left and not lock.locked()


def test_leave_is_the_second_half_of_acquire_or_leave() -> None:
    """The pool core tries ``acquire(False)`` itself and calls ``leave`` only when that fails."""
    seen: list[int] = []
    lock: HubLock[int, int] = HubLock(lambda item, out: (seen.append(item), out.append(-item)))  # type: ignore[func-returns-value]
    lock.acquire()
    out: list[int] = []
    assert lock.leave(3, out) is out and out == [], "a held lock was taken, or something was done early"
    assert list(lock.left) == [3] and seen == []
    assert lock.release([]) == [-3] and seen == [3] and not lock.locked()


def test_a_fault_taking_an_item_in_still_releases_the_lock() -> None:
    def take_in(item: int, out: list[int]) -> None:
        raise OSError("injected")

    lock: HubLock[int, int] = HubLock(take_in)
    lock.acquire()
    lock.acquire_or_leave(1, [])
    with pytest.raises(OSError):
        lock.release([])
    assert not lock.locked(), "the lock stayed held after a fault"


@pytest.mark.timeout(60)
def test_every_item_left_under_contention_is_taken_in_exactly_once() -> None:
    taken: Counter[int] = Counter()

    def take_in(item: int, out: list[int]) -> None:
        taken[item] += 1
        out.append(item)

    lock: HubLock[int, int] = HubLock(take_in)
    after_unlock: Counter[int] = Counter()
    count_lock = threading.Lock()
    stop = threading.Event()

    def native_holder() -> None:
        while not stop.is_set():
            lock.acquire()
            time.sleep(0)  # let the hub run while the lock is held
            out = lock.release([])
            with count_lock:
                after_unlock.update(out)
            time.sleep(0)  # and leave it free for a moment

    holders = [threading.Thread(target=native_holder) for _ in range(3)]
    for t in holders:
        t.start()
    items = 50_000
    direct = 0
    try:
        for item in range(items):  # this thread plays the hub: it never waits
            out: list[int] = []
            if lock.acquire_or_leave(item, out):
                direct += 1
                take_in(item, out)
                out = lock.release(out)
            with count_lock:
                after_unlock.update(out)
    finally:
        stop.set()
        for t in holders:
            t.join()
    assert not lock.left, f"{len(lock.left)} items were left with nobody to take them in"
    twice = [i for i, n in taken.items() if n != 1]
    assert not twice, f"items taken in more than once: {twice[:5]}"
    assert sorted(taken) == list(range(items)), "an item was lost"
    assert after_unlock == taken, "what a take-in produced did not reach the thread that released"
    assert direct < items, "the lock was never found held: the test did not exercise leaving an item"


class _ScriptedLock:
    """A lock whose non-blocking and timed tries answer from a script, and whose release runs a
    hook: it puts the two sides of the protocol in the exact interleavings that matter."""

    def __init__(self, tries: list[bool], on_release: Callable[[], None] = lambda: None) -> None:
        self.tries = tries
        self.on_release = on_release
        self.held = False
        self.calls: list[tuple[bool, float]] = []  # (blocking, timeout) of every acquire

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.calls.append((blocking, timeout))
        if not blocking or timeout >= 0:
            got = self.tries.pop(0)
            if got:
                self.held = True
            return got
        self.held = True
        return True

    def release(self) -> None:
        self.held = False
        self.on_release()

    def locked(self) -> bool:
        return self.held


def test_the_hub_takes_its_own_item_in_when_the_holder_released_between_its_two_tries() -> None:
    taken: list[int] = []
    scripted = _ScriptedLock([False, True])
    lock: HubLock[int, int] = HubLock(
        lambda item, out: (taken.append(item), out.append(-item)), lock=scripted
    )
    # First try: held. Second try (after leaving the item): the holder has gone.
    out: list[int] = []
    assert not lock.acquire_or_leave(5, out)
    assert taken == [5], "the item was left although nobody holds the lock any more"
    assert out == [-5], "what the take-in produced did not reach the hub"
    assert not lock.locked() and not lock.left


def test_the_holder_takes_in_an_item_left_just_as_it_released() -> None:
    taken: list[int] = []
    appended = []

    def hub_appends_now() -> None:
        # The hub found the lock held, and appends after the holder's last look but
        # before the holder's look after releasing; its own second try then fails.
        if not appended:
            appended.append(True)
            lock.left.append(9)

    scripted = _ScriptedLock([True], on_release=hub_appends_now)
    lock: HubLock[int, int] = HubLock(lambda item, out: (taken.append(item), out.append(item)), lock=scripted)
    lock.acquire()
    assert lock.release([]) == [9], "the item left during the release was not taken in by it"
    assert taken == [9] and not lock.left and not lock.locked()


@pytest.mark.parametrize("already_left", [0, hublock.BACKLOG - 2])
def test_below_the_backlog_the_hub_never_waits_for_the_lock(already_left: int) -> None:
    scripted = _ScriptedLock([False, False])
    lock: HubLock[int, int] = HubLock(lambda item, out: None, lock=scripted)
    lock.left.extend(range(already_left))
    assert not lock.acquire_or_leave(-1, [])
    assert scripted.calls == [(False, -1), (False, -1)], f"the hub waited: {scripted.calls}"
    assert len(lock.left) == already_left + 1


def test_a_long_backlog_makes_the_hub_wait_for_the_lock_and_take_the_backlog_in() -> None:
    taken: list[int] = []
    scripted = _ScriptedLock([False, True])
    lock: HubLock[int, int] = HubLock(lambda item, out: taken.append(item), lock=scripted)
    lock.left.extend(range(hublock.BACKLOG - 1))
    # First try: held. Then, with BACKLOG items left, the hub waits and gets the lock.
    assert not lock.acquire_or_leave(-1, [])
    assert scripted.calls == [(False, -1), (True, hublock.BACKLOG_WAIT)], f"tries: {scripted.calls}"
    assert taken == [*range(hublock.BACKLOG - 1), -1], "the hub did not take the whole backlog in"
    assert not lock.left and not lock.locked()


def test_a_hub_whose_wait_runs_out_leaves_its_item_for_the_holder() -> None:
    taken: list[int] = []
    scripted = _ScriptedLock([False, False, True])
    lock: HubLock[int, int] = HubLock(lambda item, out: taken.append(item), lock=scripted)
    lock.left.extend(range(hublock.BACKLOG))
    assert not lock.acquire_or_leave(-1, [])  # held, and still held when the wait ran out
    assert scripted.calls[-1] == (True, hublock.BACKLOG_WAIT) and taken == []
    lock.release([])  # the holder leaves: it takes in everything, the hub's item too
    assert taken == [*range(hublock.BACKLOG), -1] and not lock.left


def test_with_a_real_holder_a_long_backlog_is_taken_in_exactly_once() -> None:
    """Threads and the real lock: whether the hub's wait gets the lock or runs out, nothing is lost."""
    taken: list[int] = []
    lock: HubLock[int, int] = HubLock(lambda item, out: taken.append(item))
    lock.acquire()
    lock.left.extend(range(hublock.BACKLOG - 1))
    holder = threading.Timer(0.0005, lock.release, args=([],))
    holder.start()
    # The hub's item makes BACKLOG: it waits for the holder, or leaves the item to it. On a
    # loaded machine the holder may have released before the first try: then the hub holds
    # the lock, handles its own item and releases, as a caller does.
    if lock.acquire_or_leave(-1, []):
        taken.append(-1)
        lock.release([])
    holder.join(10)
    assert not holder.is_alive(), "the holder never released"
    assert sorted(taken) == [-1, *range(hublock.BACKLOG - 1)], "an item was lost or taken twice"
    assert not lock.left and not lock.locked()


class _Item:
    def __init__(self, lane: str, seq: int) -> None:
        self.lane = lane
        self.seq = seq


@pytest.mark.parametrize("queue_type", [FairQueue, FifoQueue])
def test_removing_most_of_a_long_queue_compacts_it_and_keeps_order(queue_type: type) -> None:
    q = queue_type()
    items = [_Item("ab"[i % 2], i) for i in range(COMPACT_AFTER * 4)]
    for it in items:
        q.put(it)
    kept = [it for it in items if it.seq % 10 == 0]
    for it in items:
        if it.seq % 10:
            assert q.remove(it)
    assert len(q) == len(kept)
    assert q._removed <= COMPACT_AFTER, f"{q._removed} removed items still held: no compaction"
    popped = q.drain()
    assert sorted(it.seq for it in popped) == [it.seq for it in kept], "lost or duplicated"
    for lane in "ab":
        seqs = [it.seq for it in popped if it.lane == lane]
        assert seqs == sorted(seqs), f"lane {lane} lost its FIFO order"
