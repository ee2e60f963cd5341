"""Lanes: which share of the pool a call belongs to.

``with fairpool.lane("audit"):`` sets the lane of every pool call made
inside the block by the current green thread or native thread (each has
its own context: greenlets and threads do not inherit it). Calls made
outside any lane go to :data:`DEFAULT_LANE`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import types
from collections.abc import AsyncGenerator, Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["DEFAULT_LANE", "MAX_WEIGHT", "current_lane", "lane"]

DEFAULT_LANE = "default"
#: Largest weight a lane may have. A lane is served up to ``weight`` calls in
#: a row, so a huge weight would let it starve the others for that long.
MAX_WEIGHT = 1000

# The innermost lane as (name, weight, enclosing value). Each green thread and
# native thread has its own context, so a lane object shared between them
# keeps no per-entry state of its own: __exit__ restores the enclosing value.
_Entry = tuple[str, int, "Any"]
_current: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar("fairpool_lane", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def check_lane_name(name: object, param: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{param} must be a non-empty string, got {name!r}")
    return name


def check_weight(weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise ValueError(f"weight must be an int from 1 to {MAX_WEIGHT}, got {weight!r}")
    return weight


class lane:  # noqa: N801 - used like a function: ``with fairpool.lane("bulk"):``
    """Put every pool call made inside a block (or a function) in a lane.

    Inside one pool's queue, calls in a lane run in the order they were
    made, and lanes take turns: a lane is served ``weight`` calls, then the
    next lane with calls waiting gets its turn. A burst of calls in one lane
    therefore delays a call in another lane by at most the other lanes'
    weights, not by the length of the burst.

    Use it as a context manager or as a decorator::

        with fairpool.lane("audit"):
            for dom in domains:
                conn.info(dom)           # queued in lane "audit"

        @fairpool.lane("boot", weight=2)
        def spawn(instance): ...

    A decorated ``async def``, generator function or async generator function
    runs in the lane for the whole run of its coroutine or generator, across
    awaits and yields, and only while it runs: at each await or yield that
    reaches its caller, the caller's own lane is back.

    Args:
        name: The lane's name, a non-empty string.
        weight: Calls the lane may take per turn, from 1 to :data:`MAX_WEIGHT`.

    Raises:
        TypeError: ``lane`` decorates a function directly (``@fairpool.lane``
            instead of ``@fairpool.lane("name")``).
        ValueError: ``name`` is not a non-empty string, or ``weight`` is out of range.
    """

    __slots__ = ("name", "weight")

    def __init__(self, name: str, weight: int = 1) -> None:
        if callable(name):
            raise TypeError(
                'fairpool.lane must be called with a lane name, as in @fairpool.lane("name"), '
                f"not used bare as @fairpool.lane; name got {name!r}"
            )
        self.name = check_lane_name(name)
        self.weight = check_weight(weight)

    def __enter__(self) -> lane:
        _current.set((self.name, self.weight, _current.get()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = _current.get()
        _current.set(entry[2] if entry is not None else None)

    def __call__(self, fn: F) -> F:
        name, weight = self.name, self.weight
        if inspect.iscoroutinefunction(fn):
            return _coroutine_in_lane(fn, name, weight)  # type: ignore[return-value]
        if inspect.isasyncgenfunction(fn):
            return _async_generator_in_lane(fn, name, weight)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return _generator_in_lane(fn, name, weight)  # type: ignore[return-value]

        @functools.wraps(fn)
        def in_lane(*args: Any, **kwargs: Any) -> Any:
            token = _current.set((name, weight, _current.get()))
            try:
                return fn(*args, **kwargs)
            finally:
                _current.reset(token)

        return in_lane  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"fairpool.lane({self.name!r}, weight={self.weight})"


# -- coroutines and generators ---------------------------------------------------------
# A decorated coroutine or generator runs in its lane for its whole run, but only while
# it runs: each step (a send, a throw, a close) sets the lane the body last left, and
# then gives the caller back its own. ``state[0]`` holds the body's lane value between
# steps (a ``with fairpool.lane(...)`` in the body that spans a yield keeps its lane).


def _call_in(state: list[Any], fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Make the coroutine or generator in its lane (a function that only claims to be one runs here)."""
    token = _current.set(state[0])
    try:
        return fn(*args, **kwargs)
    finally:
        state[0] = _current.get()
        _current.reset(token)


def _stepped(it: Any, state: list[Any]) -> Generator[Any, Any, Any]:
    """Drive ``it`` (a generator, or an awaitable's iterator) one step at a time, each in the lane."""
    value: Any = None
    thrown: BaseException | None = None
    while True:
        token = _current.set(state[0])
        try:
            if thrown is None:
                item = it.send(value)
            else:
                exc, thrown = thrown, None
                item = it.throw(exc)
        except StopIteration as stop:
            return stop.value
        finally:
            state[0] = _current.get()
            _current.reset(token)
        try:
            value = yield item
        except GeneratorExit:  # close(): the body's finally blocks run in the lane too
            token = _current.set(state[0])
            try:
                it.close()
            finally:
                _current.reset(token)
            raise
        except BaseException as exc:  # noqa: BLE001 - thrown in by the caller: on to the body
            thrown, value = exc, None


@types.coroutine
def _awaited_in(awaitable: Any, state: list[Any]) -> Generator[Any, Any, Any]:
    """Await ``awaitable`` one step at a time, each in the lane."""
    return (yield from _stepped(awaitable.__await__(), state))


def _coroutine_in_lane(fn: Callable[..., Any], name: str, weight: int) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def in_lane(*args: Any, **kwargs: Any) -> Any:
        state = [(name, weight, _current.get())]
        return await _awaited_in(_call_in(state, fn, args, kwargs), state)

    return in_lane


def _generator_in_lane(fn: Callable[..., Any], name: str, weight: int) -> Callable[..., Any]:
    @functools.wraps(fn)
    def in_lane(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        state = [(name, weight, _current.get())]
        return (yield from _stepped(_call_in(state, fn, args, kwargs), state))

    return in_lane


def _async_generator_in_lane(fn: Callable[..., Any], name: str, weight: int) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def in_lane(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        state = [(name, weight, _current.get())]
        agen = _call_in(state, fn, args, kwargs)
        value: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                if thrown is None:
                    item = await _awaited_in(agen.asend(value), state)
                else:
                    exc, thrown = thrown, None
                    item = await _awaited_in(agen.athrow(exc), state)
            except StopAsyncIteration:
                return
            try:
                value = yield item
            except GeneratorExit:  # aclose(): the body's finally blocks run in the lane too
                await _awaited_in(agen.aclose(), state)
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in by the caller: on to the body
                thrown, value = exc, None

    return in_lane


def current_lane() -> tuple[str, int] | None:
    """The ``(name, weight)`` set by the innermost :class:`lane`, or None."""
    entry = _current.get()
    return None if entry is None else (entry[0], entry[1])
