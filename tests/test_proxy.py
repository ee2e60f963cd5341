"""Proxy and proxy_call: eventlet.tpool.Proxy's behaviour, plus autowrap rules."""

from __future__ import annotations

import copy
import re
import threading
import time
from typing import Any

import pytest

import fairpool
from fairpool import Proxy


class Thing:
    """Records the thread of every method call."""

    label = "plain attribute"

    def __init__(self) -> None:
        self.threads: list[int] = []
        self.data: dict[Any, Any] = {}

    def where(self) -> int:
        self.threads.append(threading.get_ident())
        return threading.get_ident()

    def child(self) -> Thing:
        return Thing()

    def __getitem__(self, key: Any) -> Any:
        self.where()
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.where()
        self.data[key] = value

    def __call__(self, x: int) -> tuple[int, int]:
        return x * 2, threading.get_ident()

    def __enter__(self) -> int:
        return threading.get_ident()

    def __exit__(self, *exc: Any) -> None:
        self.where()

    def __copy__(self) -> tuple[str, int]:
        return "copied", threading.get_ident()

    def __deepcopy__(self, memo: Any) -> tuple[str, int]:
        return "deepcopied", threading.get_ident()


def test_methods_run_in_the_pool_and_plain_attributes_inline() -> None:
    p = Proxy(Thing())
    assert p.where() != threading.get_ident()
    assert p.label == "plain attribute"
    assert isinstance(p.threads, list)


def test_special_methods_go_through_the_pool() -> None:
    thing = Thing()
    p = Proxy(thing)
    me = threading.get_ident()
    p["k"] = "v"
    assert p["k"] == "v"
    assert thing.threads and me not in thing.threads, "[] or []= ran in the caller"
    doubled, ident = p(21)
    assert doubled == 42 and ident != me
    with p as entered:
        assert entered != me
    assert copy.copy(p)[1] != me
    assert copy.deepcopy(p)[1] != me


def test_eq_hash_repr_str_len_bool_run_inline() -> None:
    p = Proxy([1, 2, 3])
    assert p == [1, 2, 3]
    assert hash(Proxy("abc")) == hash("abc")
    assert repr(p) == "[1, 2, 3]" and str(p) == "[1, 2, 3]"
    assert len(p) == 3 and bool(p) and not bool(Proxy([]))


def test_wrapping_builtin_values() -> None:
    assert Proxy((1, 2))[1] == 2
    assert Proxy("hello").upper() == "HELLO"
    assert Proxy({"a": 1})["a"] == 1
    assert Proxy(re).match("a", "abc") is not None
    assert Proxy(3) == 3


def test_iterators_and_generators_step_in_the_pool() -> None:
    def gen() -> Any:
        for _ in range(3):
            yield threading.get_ident()

    me = threading.get_ident()
    assert all(ident != me for ident in Proxy(gen()))
    assert list(Proxy([1, 2, 3])) == [1, 2, 3]
    it = Proxy(iter([4, 5]))
    assert next(it) == 4 and next(it) == 5
    with pytest.raises(StopIteration):
        next(it)


def test_autowrap_by_type_and_by_name() -> None:
    p = Proxy(Thing(), autowrap=(Thing,))
    assert isinstance(p.child(), Proxy)
    q = Proxy(Thing(), autowrap_names=("child", "data"))
    assert isinstance(q.child(), Proxy)
    assert isinstance(q.data, Proxy)
    assert not isinstance(Proxy(Thing()).child(), Proxy)


def test_call_in_autowrap_names_wraps_the_result() -> None:
    p = Proxy(lambda: [1], autowrap_names=("__call__",))
    assert isinstance(p(), Proxy)


def test_autowrap_rule_decides_what_is_wrapped() -> None:
    p = Proxy(Thing(), autowrap_rule=lambda v: isinstance(v, Thing))
    assert isinstance(p.child(), Proxy)
    assert not isinstance(p.where(), Proxy)


def test_autowrap_items_wraps_the_items_of_a_returned_list() -> None:
    class Conn:
        def list_all(self) -> list[Any]:
            return [Thing(), Thing(), "not wrapped"]

    p = Proxy(Conn(), autowrap=(Thing,), autowrap_items=True)
    items = p.list_all()
    assert type(items) is list
    assert [type(x) for x in items] == [Proxy, Proxy, str]
    assert items[0].where() != threading.get_ident()


def test_autowrap_must_hold_types() -> None:
    with pytest.raises(TypeError, match="autowrap must hold only types, got 'x'"):
        Proxy(object(), autowrap=("x",))  # type: ignore[arg-type]


def test_proxy_runs_on_the_pool_it_is_given() -> None:
    pool = fairpool.Pool(threads=1, name="proxied")
    try:
        name = Proxy(threading, pool=pool).current_thread().name
        assert name.startswith("fairpool-proxied-"), name
        assert pool.statistics().completed == 1
    finally:
        pool.shutdown(timeout=5)


def test_proxy_call_autowraps_and_nonblocking_runs_inline() -> None:
    assert isinstance(fairpool.proxy_call((Thing,), Thing), Proxy)
    assert fairpool.proxy_call((), threading.get_ident, nonblocking=True) == threading.get_ident()
    assert fairpool.proxy_call((), threading.get_ident) != threading.get_ident()


def test_exceptions_from_proxied_methods_reach_the_caller() -> None:
    with pytest.raises(KeyError):
        Proxy({})["missing"]


def test_a_replaced_fairpool_tpool_execute_is_what_proxy_and_proxy_call_call() -> None:
    from unittest import mock

    from fairpool import tpool

    thing = Thing()
    with mock.patch("fairpool.tpool.execute", side_effect=lambda f, *a, **kw: f(*a, **kw)) as execute:
        assert Proxy(thing).where() == threading.get_ident(), "a proxied method did not go through the mock"
        assert tpool.proxy_call((), thing.where) == threading.get_ident(), "proxy_call bypassed the mock"
        assert execute.call_count == 2
    assert Proxy(thing).where() != threading.get_ident(), "after the mock, the call did not go to the pool"
    pool = fairpool.Pool(1, name="own")
    try:
        with mock.patch("fairpool.tpool.execute") as execute:
            assert Proxy(thing, pool=pool).where() != threading.get_ident()  # its own pool: no lookup
            execute.assert_not_called()
    finally:
        pool.shutdown()


class _Domain:
    def info(self) -> str:
        return "ok"


def _audit(proxy: Any, started: threading.Event | None = None) -> Any:
    def audit() -> str:
        if started is not None:
            started.set()
        time.sleep(0.2)  # the shutdown / killall comes meanwhile
        try:
            return str(proxy.info())
        except Exception as exc:  # noqa: BLE001 - the test reports what it got
            return f"FAILED {exc!r}"

    return audit


@pytest.mark.timeout(30)
def test_a_queued_call_using_a_proxy_on_its_own_pool_runs_while_shutdown_drains_it() -> None:
    # api.md: a call from one of the pool's own workers runs inline, closed pool or not.
    pool = fairpool.Pool(1, name="drained")
    futures = [pool.submit(_audit(Proxy(_Domain(), pool=pool))) for _ in range(2)]
    pool.shutdown(wait=True)
    assert [f.result(timeout=10) for f in futures] == ["ok", "ok"], "a nested Proxy call was refused"


@pytest.mark.timeout(30)
def test_a_queued_call_using_a_tpool_proxy_runs_while_killall_drains_it() -> None:
    from fairpool import tpool

    audit = _audit(tpool.Proxy(_Domain()))
    futures = [fairpool.default_pool().submit(audit) for _ in range(2)]
    tpool.killall()
    assert [f.result(timeout=10) for f in futures] == ["ok", "ok"], "a nested Proxy call was refused"


@pytest.mark.timeout(30)
def test_submit_from_a_worker_of_a_shut_down_pool_is_still_refused() -> None:
    # concurrent.futures semantics: only execute() (inline) is allowed from the pool's own workers.
    pool = fairpool.Pool(1, name="refusing")
    started = threading.Event()

    def nested_submit() -> str:
        started.set()
        time.sleep(0.2)
        try:
            pool.submit(int)
        except fairpool.PoolClosed:
            return "refused"
        return "accepted"

    future = pool.submit(nested_submit)
    assert started.wait(10)
    pool.shutdown(wait=True)
    assert future.result(timeout=10) == "refused"


@pytest.mark.timeout(30)
def test_execute_from_another_pool_s_worker_is_refused_once_shut_down() -> None:
    closed = fairpool.Pool(1, name="closed")
    closed.shutdown()
    other = fairpool.Pool(1, name="other")
    try:
        with pytest.raises(fairpool.PoolClosed):
            other.execute(closed.execute, int)
    finally:
        other.shutdown()
