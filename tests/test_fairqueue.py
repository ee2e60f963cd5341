"""Properties of the fair queue: nothing lost or duplicated, FIFO per lane, bounded wait."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from fairpool._fairqueue import FairQueue, FifoQueue

LANES = ["a", "b", "c", "d"]


@dataclass(eq=False)
class Item:
    lane: str
    seq: int = field(default=0)


# An operation: ("put", lane, weight) | ("pop",) | ("remove", index into what is queued)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(LANES), st.integers(1, 4)),
        st.tuples(st.just("pop")),
        st.tuples(st.just("remove"), st.integers(0, 1000)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_fair_queue_loses_nothing_keeps_lane_order_and_bounds_the_wait(script: list[tuple]) -> None:
    q: FairQueue[Item] = FairQueue()
    weights: dict[str, int] = {}  # the largest weight each lane has had: a change applies next turn
    queued: list[Item] = []  # in put order
    popped: list[Item] = []
    removed: list[Item] = []
    seq = 0
    # For the bounded-wait property, per item that is its lane's head: how many
    # pops it has waited, and its bound, one turn of each other lane waiting
    # when it became the head (lanes that arrive later queue behind it).
    waited: dict[int, int] = {}
    bound: dict[int, int] = {}

    def heads() -> dict[str, Item]:
        out: dict[str, Item] = {}
        for it in queued:
            out.setdefault(it.lane, it)
        return out

    for op in [*script, *[("pop",)] * 300]:
        if op[0] == "put":
            seq += 1
            item = Item(op[1], seq)
            weights[item.lane] = max(weights.get(item.lane, 0), op[2])
            q.put(item, op[2])
            queued.append(item)
        elif op[0] == "remove":
            if queued:
                item = queued[op[1] % len(queued)]
                assert q.remove(item)
                assert not q.remove(item), "an item was removed twice"
                queued.remove(item)
                removed.append(item)
        else:
            before = heads()
            item = q.pop()
            if not queued:
                assert item is None
                continue
            assert item is not None
            assert item is before[item.lane], "FIFO within a lane was broken"
            queued.remove(item)
            popped.append(item)
            for lane, head in before.items():
                if head is not item:
                    waited[head.seq] = waited.get(head.seq, 0) + 1
                    assert waited[head.seq] <= bound[head.seq], (
                        f"lane {lane} waited {waited[head.seq]} pops, more than one turn "
                        f"of each other lane ({bound[head.seq]}), with weights {weights}"
                    )
        now = heads()
        for lane, head in now.items():
            bound.setdefault(head.seq, sum(weights[x] for x in now if x != lane))
        assert len(q) == len(queued)
        assert sorted(q.counts().items()) == sorted(
            (lane, n) for lane in LANES if (n := sum(1 for i in queued if i.lane == lane))
        )
    assert q.pop() is None and len(q) == 0
    assert sorted(i.seq for i in popped + removed) == list(range(1, seq + 1)), "lost or duplicated"


def test_weighted_round_robin_serves_each_lane_its_weight_per_turn() -> None:
    q: FairQueue[Item] = FairQueue()
    for i in range(6):
        q.put(Item("heavy", i), 3)
    for i in range(3):
        q.put(Item("light", i), 1)
    order = "".join(item.lane[0] for item in q.drain())
    assert order == "hhhlhhhll", order


def test_one_lane_is_plain_fifo() -> None:
    q: FairQueue[Item] = FairQueue()
    for i in range(10):
        q.put(Item("default", i))
    assert [item.seq for item in q.drain()] == list(range(10))


def test_fifo_queue_ignores_lanes_but_counts_them() -> None:
    q: FifoQueue[Item] = FifoQueue()
    items = [Item(lane, i) for i, lane in enumerate("abab")]
    for it in items:
        q.put(it)
    assert q.counts() == {"a": 2, "b": 2}
    assert q.remove(items[1]) and q.counts() == {"a": 2, "b": 1}
    assert [it.seq for it in q.drain()] == [0, 2, 3]
