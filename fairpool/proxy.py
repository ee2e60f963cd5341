"""Proxy: an object whose method calls run in a pool, as eventlet.tpool.Proxy."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._default import check_pool

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["Proxy", "proxy_call"]


# A proxy with no pool of its own calls the ``execute`` it finds at call time, as eventlet's
# does, so that a test's ``mock.patch("eventlet.tpool.execute")`` (under the patch) or
# ``mock.patch("fairpool.tpool.execute")`` reaches it. fairpool.tpool sets these at import;
# the patch sets _via to eventlet.tpool, whose ``execute`` is fairpool's until replaced.
_fair: Any = None  # fairpool.tpool
_fair_execute: Any = None  # fairpool.tpool's own execute
_via: Any = None  # where ``execute`` is looked up first: fairpool.tpool, or eventlet.tpool under the patch


def _route_through(module: Any) -> None:
    """Look ``execute`` up in ``module`` first (None: fairpool.tpool)."""
    global _via
    _via = _fair if module is None else module


def _default_execute(f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    execute = _via.execute
    if execute is _fair_execute:  # not replaced where it was looked up: fairpool.tpool's may be
        execute = _fair.execute
    return execute(f, *args, **kwargs)


def _check_autowrap(autowrap: object) -> tuple[type, ...]:
    if isinstance(autowrap, type):
        return (autowrap,)
    try:
        types: tuple[object, ...] = tuple(autowrap)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"autowrap must be a type or a collection of types, got {autowrap!r}") from None
    checked: list[type] = []
    for t in types:
        if not isinstance(t, type):
            raise TypeError(f"autowrap must hold only types, got {t!r} in {autowrap!r}")
        checked.append(t)
    return tuple(checked)


def _check_autowrap_names(autowrap_names: object) -> tuple[str, ...]:
    # eventlet tests ``attr in autowrap_names``, so a single string works there as one name.
    if isinstance(autowrap_names, str):
        return (autowrap_names,)
    try:
        names: tuple[object, ...] = tuple(autowrap_names)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"autowrap_names must be a name or a collection of names, got {autowrap_names!r}"
        ) from None
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"autowrap_names must hold only strings, got {n!r} in {autowrap_names!r}")
    return names  # type: ignore[return-value]


def proxy_call(
    autowrap: Iterable[type] | type,
    f: Callable[..., Any],
    *args: Any,
    nonblocking: bool = False,
    **kwargs: Any,
) -> Any:
    """Call ``f`` in the default pool and wrap the result in a :class:`Proxy` if its type is in ``autowrap``.

    With ``nonblocking=True``, ``f`` is called directly in the caller, for
    methods that do not block but return objects that should be wrapped.

    Raises:
        TypeError: ``autowrap`` holds something that is not a type.
    """
    types = _check_autowrap(autowrap)
    rv = f(*args, **kwargs) if nonblocking else _default_execute(f, args, kwargs)
    if isinstance(rv, types):
        return Proxy._fp_make(rv, types, (), None, False, None)
    return rv


class Proxy:
    """Wrap an object so that its method calls run in a pool's native threads.

    Same behaviour as ``eventlet.tpool.Proxy``: calling a method runs it in
    the pool and waits for it; reading a plain attribute happens inline;
    ``[]``, ``[]=``, calling the proxy, ``with``, ``copy``, ``deepcopy`` and
    ``next()`` go through the pool; ``==``, ``hash``, ``repr``, ``str``,
    ``len`` and ``bool`` run inline. Iterating a proxy whose object is its
    own iterator steps it in the pool.

    The wrapped object's methods must not use eventlet: they run in a
    native thread.

    A proxy without a pool of its own looks ``execute`` up at each call, as
    eventlet's does: ``fairpool.tpool.execute``, and under
    :func:`fairpool.monkey_patch` ``eventlet.tpool.execute`` first, so that a
    test's ``mock.patch`` of either reaches it.

    Args:
        obj: The object to wrap.
        autowrap: Types: a result or attribute of one of them is returned
            wrapped in a Proxy too (a database connection's cursors).
        autowrap_names: Attribute names whose value, or whose method's
            result, is returned wrapped. A single string is one name.
        autowrap_rule: A callable that returns True for a result that should
            be wrapped, whatever its type (eventlet issue 586).
        autowrap_items: If true, a list or tuple returned by a method has
            each item that ``autowrap`` or ``autowrap_rule`` selects wrapped
            (libvirt's ``listAllDomains()``).
        pool: The :class:`fairpool.Pool` to run in; the default pool if None.

    Raises:
        TypeError: ``obj`` is None (a proxy of None has no method to call),
            ``autowrap`` holds something that is not a type,
            ``autowrap_names`` something that is not a string, or
            ``autowrap_rule`` is not callable.
    """

    def __init__(
        self,
        obj: Any,
        autowrap: Iterable[type] | type = (),
        autowrap_names: Iterable[str] | str = (),
        *,
        autowrap_rule: Callable[[Any], bool] | None = None,
        autowrap_items: bool = False,
        pool: Pool | None = None,
    ) -> None:
        if obj is None:
            raise TypeError("obj must be the object to wrap, got None")
        if autowrap_rule is not None and not callable(autowrap_rule):
            raise TypeError(f"autowrap_rule must be callable or None, got {autowrap_rule!r}")
        check_pool(pool)
        self._fp_init(
            obj,
            _check_autowrap(autowrap),
            _check_autowrap_names(autowrap_names),
            autowrap_rule,
            autowrap_items,
            pool,
        )

    def _fp_init(
        self,
        obj: Any,
        autowrap: tuple[type, ...],
        autowrap_names: tuple[str, ...],
        rule: Callable[[Any], bool] | None,
        items: bool,
        pool: Pool | None,
    ) -> None:
        self._obj = obj
        self._autowrap = autowrap
        self._autowrap_names = autowrap_names
        self._fp_rule = rule
        self._fp_items = items
        self._fp_pool = pool

    @classmethod
    def _fp_make(
        cls,
        obj: Any,
        autowrap: tuple[type, ...],
        autowrap_names: tuple[str, ...],
        rule: Callable[[Any], bool] | None,
        items: bool,
        pool: Pool | None,
    ) -> Proxy:
        # A proxy made by a proxy, from checked arguments. It may wrap None, as
        # eventlet's does: a method named in autowrap_names that returns None.
        proxy = object.__new__(cls)
        proxy._fp_init(obj, autowrap, autowrap_names, rule, items, pool)
        return proxy

    # -- wrapping ---------------------------------------------------------
    def _fp_wants(self, value: Any) -> bool:
        if isinstance(value, self._autowrap):
            return True
        rule = self._fp_rule
        return rule is not None and bool(rule(value))

    def _fp_wrap(self, value: Any) -> Any:
        return Proxy._fp_make(value, self._autowrap, (), self._fp_rule, self._fp_items, self._fp_pool)

    def _fp_result(self, rv: Any) -> Any:
        if isinstance(rv, Proxy):
            return rv
        if self._fp_wants(rv):
            return self._fp_wrap(rv)
        if self._fp_items and type(rv) in (list, tuple):
            items = [self._fp_wrap(x) if self._fp_wants(x) else x for x in rv]
            return items if type(rv) is list else tuple(items)
        return rv

    def _fp_call(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("nonblocking", False):
            rv = f(*args, **kwargs)
        elif self._fp_pool is not None:
            rv = self._fp_pool.execute(f, *args, **kwargs)
        else:  # _default_execute, inline: this is every proxied call's path
            execute = _via.execute
            if execute is _fair_execute:
                execute = _fair.execute
            rv = execute(f, *args, **kwargs)
        return self._fp_result(rv)

    # -- attribute access -------------------------------------------------
    def __getattr__(self, attr_name: str) -> Any:
        if attr_name.startswith("_fp_") or attr_name in ("_obj", "_autowrap", "_autowrap_names"):
            raise AttributeError(attr_name)  # not set yet (during unpickling, copying)
        f = getattr(self._obj, attr_name)
        if not callable(f):
            if isinstance(f, self._autowrap) or attr_name in self._autowrap_names:
                return self._fp_wrap(f)
            return f

        def doit(*args: Any, **kwargs: Any) -> Any:
            result = self._fp_call(f, *args, **kwargs)
            if attr_name in self._autowrap_names and not isinstance(result, Proxy):
                return self._fp_wrap(result)
            return result

        return doit

    # Special methods the interpreter looks up on the type, not through
    # __getattr__, so they are spelled out: these run in the pool ...
    def __getitem__(self, key: Any) -> Any:
        return self._fp_call(self._obj.__getitem__, key)

    def __setitem__(self, key: Any, value: Any) -> Any:
        return self._fp_call(self._obj.__setitem__, key, value)

    # eventlet calls obj.__copy__(memo), which fails for a normal __copy__,
    # and obj.__deepcopy__, which fails for objects without one.
    def __deepcopy__(self, memo: Any = None) -> Any:
        return self._fp_call(copy.deepcopy, self._obj, memo)

    def __copy__(self) -> Any:
        return self._fp_call(copy.copy, self._obj)

    def __call__(self, *a: Any, **kw: Any) -> Any:
        rv = self._fp_call(self._obj, *a, **kw)
        if "__call__" in self._autowrap_names and not isinstance(rv, Proxy):
            return self._fp_wrap(rv)
        return rv

    def __enter__(self) -> Any:
        return self._fp_call(self._obj.__enter__)

    def __exit__(self, *exc: Any) -> Any:
        return self._fp_call(self._obj.__exit__, *exc)

    def __next__(self) -> Any:
        return self._fp_call(next, self._obj)

    next = __next__

    # ... and these run inline: they are called often and are unlikely to block.
    def __eq__(self, rhs: object) -> bool:
        return bool(self._obj == rhs)

    def __hash__(self) -> int:
        return hash(self._obj)

    def __repr__(self) -> str:
        return repr(self._obj)

    def __str__(self) -> str:
        return str(self._obj)

    def __len__(self) -> int:
        return len(self._obj)

    def __bool__(self) -> bool:
        return bool(self._obj)

    def __iter__(self) -> Any:
        it = iter(self._obj)
        if it == self._obj:
            return self
        return Proxy._fp_make(it, (), (), None, False, self._fp_pool)
