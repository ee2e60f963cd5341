"""Bounded reprs of call arguments (``@traced(record_args=True)``): the work is bounded, not only the text.

:func:`render` writes the repr of a value piece by piece into a budget of
``limit`` characters and stops as soon as the budget is spent, so what it
costs does not depend on the value's size:

* a string or bytes (subclasses too) is sliced to the budget before its
  repr is made (the slice is of the base type: a subclass's own
  ``__getitem__`` is not called);
* a container (``list``, ``tuple``, ``dict``, ``set``, ``frozenset``, the
  ``collections`` types, ``array``, dict views, named tuples, and their
  subclasses; and the standard library's wrappers written as what they
  hold: ``types.MappingProxyType``, ``collections.ChainMap`` (by its maps),
  ``UserDict``/``UserList``/``UserString`` (by their ``data``),
  ``types.SimpleNamespace``, the ``collections.abc`` views, dataclasses
  with their generated repr, exceptions (their args), ``slice``,
  ``functools.partial``, ``fractions.Fraction``, a bound method's object,
  ``os.environ``) is walked from its start, in its own order (never sorted),
  and left as soon as the budget is spent: each item written costs at least
  one character (a separator), so at most ``limit`` items are touched in
  all, whatever the nesting; below :data:`MAX_DEPTH` levels a container is
  written ``[...]``;
* an int of more than 640 bits (about 190 digits) is written by its size.

A class that defines its own ``__repr__`` (a subclass of a builtin type
too) is represented by it, since it may hide what it holds: its cost is
its own; its text is cut to the budget. The text is cut with a final
``...`` when anything was left out.

Thread rules: none; :func:`render` keeps its state on its own stack.
"""

from __future__ import annotations

import array
import collections
import collections.abc
import dataclasses
import fractions
import functools
import os
import types
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_DEPTH", "render"]

#: Containers nested deeper than this are written ``[...]``, ``{...}``, ``(...)``.
MAX_DEPTH = 6
#: Ints of more bits than this are written ``<int of N bits>`` (their digits would cost O(n^2)).
MAX_INT_BITS = 640
CUT = "..."


class _Full(Exception):
    """The budget is spent: stop walking."""


class _Out:
    """The pieces written so far, and the characters left."""

    __slots__ = ("left", "pieces")

    def __init__(self, limit: int) -> None:
        self.pieces: list[str] = []
        self.left = limit

    def put(self, text: str) -> None:
        if len(text) > self.left:
            self.pieces.append(text[: self.left + 1])  # one over: the caller sees it was cut
            self.left = -1
            raise _Full
        self.pieces.append(text)
        self.left -= len(text)


def _repr_owner(t: type) -> type:
    """The class in ``t``'s MRO that defines the ``__repr__`` its instances use."""
    for k in t.__mro__:
        if "__repr__" in k.__dict__:
            return k
    return object


def _text(x: Any, base: Any, out: _Out) -> None:
    """A str or bytes-like value, sliced to the budget (by the base type: never the subclass's code)."""
    head = base.__getitem__(x, slice(0, out.left + 1))
    text = repr(head) if base is str else repr(bytes(head))
    cut = base.__len__(head) < base.__len__(x)
    out.put(text[:-1] if cut else text)  # cut: no closing quote, the text goes on
    if cut:
        out.put(CUT)


def _str(x: Any, out: _Out, depth: int) -> None:
    _text(x, str, out)


def _bytes(x: Any, out: _Out, depth: int) -> None:
    _text(x, bytes, out)


def _bytearray(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}(")
    _text(x, bytearray, out)
    out.put(")")


def _int(x: Any, out: _Out, depth: int) -> None:
    bits = int.bit_length(x)
    out.put(f"<int of {bits} bits>" if bits > MAX_INT_BITS else int.__repr__(x))


def _items(out: _Out, depth: int, items: Iterable[Any], one: Callable[[Any, _Out, int], None]) -> None:
    """Write ``items`` one by one, ``, `` between them, until they end or the budget is spent."""
    first = True
    for item in items:
        if not first:
            out.put(", ")  # every item but the first costs two characters: at most limit/2 are touched
        first = False
        one(item, out, depth)


def _value(x: Any, out: _Out, depth: int) -> None:
    _render(x, out, depth + 1)


def _pair(kv: tuple[Any, Any], out: _Out, depth: int) -> None:
    _render(kv[0], out, depth + 1)
    out.put(": ")
    _render(kv[1], out, depth + 1)


def _pair_tuple(kv: tuple[Any, Any], out: _Out, depth: int) -> None:
    out.put("(")
    _pair_tuple_body(kv, out, depth)
    out.put(")")


def _pair_tuple_body(kv: tuple[Any, Any], out: _Out, depth: int) -> None:
    _render(kv[0], out, depth + 1)
    out.put(", ")
    _render(kv[1], out, depth + 1)


def _seq(open_: str, close: str, items: Iterable[Any], size: int, out: _Out, depth: int) -> None:
    """``open_ item, item ... close``; below MAX_DEPTH a non-empty one is ``open_...close``."""
    if depth >= MAX_DEPTH and size:
        out.put(f"{open_}...{close}")
        return
    out.put(open_)
    _items(out, depth, items, _value)
    out.put(close)


def _list(x: Any, out: _Out, depth: int) -> None:
    _seq("[", "]", list.__iter__(x), list.__len__(x), out, depth)


def _tuple(x: Any, out: _Out, depth: int) -> None:
    size = tuple.__len__(x)
    if size == 1 and depth < MAX_DEPTH:
        out.put("(")
        _render(tuple.__getitem__(x, 0), out, depth + 1)
        out.put(",)")
        return
    _seq("(", ")", tuple.__iter__(x), size, out, depth)


def _namedtuple(x: Any, out: _Out, depth: int) -> None:
    """A named tuple as its generated repr writes it: ``Name(field=value, ...)``."""
    out.put(f"{type(x).__name__}(")
    if depth >= MAX_DEPTH:
        out.put("...)")
        return
    first = True
    for name, value in zip(type(x)._fields, tuple.__iter__(x), strict=False):
        if not first:
            out.put(", ")
        first = False
        out.put(f"{name}=")
        _render(value, out, depth + 1)
    out.put(")")


def _dict_body(x: Any, items: Iterable[Any], out: _Out, depth: int) -> None:
    """``{k: v, ...}`` in the mapping's own order, never sorted."""
    if depth >= MAX_DEPTH and dict.__len__(x):
        out.put("{...}")
        return
    out.put("{")
    _items(out, depth, items, _pair)
    out.put("}")


def _dict(x: Any, out: _Out, depth: int) -> None:
    _dict_body(x, dict.items(x), out, depth)


def _ordered_dict(x: Any, out: _Out, depth: int) -> None:
    _named_dict(x, collections.OrderedDict.items(x), out, depth)


def _counter(x: Any, out: _Out, depth: int) -> None:
    _named_dict(x, dict.items(x), out, depth)  # in its own order: sorting by count would touch them all


def _named_dict(x: Any, items: Iterable[Any], out: _Out, depth: int) -> None:
    """``Name({...})``, or ``Name()`` when empty."""
    if not dict.__len__(x):
        out.put(f"{type(x).__name__}()")
        return
    out.put(f"{type(x).__name__}(")
    _dict_body(x, items, out, depth)
    out.put(")")


def _defaultdict(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}(")
    _render(x.default_factory, out, depth + 1)
    out.put(", ")
    _dict_body(x, dict.items(x), out, depth)
    out.put(")")


def _set(x: Any, out: _Out, depth: int) -> None:
    """``{a, b}``; ``Name({a, b})`` for a frozenset or a subclass; ``Name()`` when empty."""
    base = frozenset if isinstance(x, frozenset) else set
    size = base.__len__(x)
    if not size:
        out.put(f"{type(x).__name__}()")
        return
    named = type(x) is not set
    if named:
        out.put(f"{type(x).__name__}(")
    _seq("{", "}", base.__iter__(x), size, out, depth)
    if named:
        out.put(")")


def _deque(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}(")
    _seq("[", "]", collections.deque.__iter__(x), collections.deque.__len__(x), out, depth)
    out.put(")" if x.maxlen is None else f", maxlen={x.maxlen})")


def _array(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}({x.typecode!r}")
    if array.array.__len__(x):
        out.put(", ")
        _seq("[", "]", array.array.__iter__(x), 1, out, depth)
    out.put(")")


def _memoryview(x: Any, out: _Out, depth: int) -> None:
    out.put(f"<memoryview of {x.nbytes} bytes>")


def _view(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}([")
    _items(out, depth, iter(x), _pair_tuple if isinstance(x, _ITEMS_VIEW) else _value)
    out.put("])")


def _mappingproxy(x: Any, out: _Out, depth: int) -> None:
    """``mappingproxy({...})``: the wrapped mapping's items, walked lazily (never copied)."""
    out.put("mappingproxy(")
    items = types.MappingProxyType.items(x)
    if depth >= MAX_DEPTH and types.MappingProxyType.__len__(x):
        out.put("{...}")
    else:
        out.put("{")
        _items(out, depth, items, _pair)
        out.put("}")
    out.put(")")


def _chainmap(x: Any, out: _Out, depth: int) -> None:
    """``ChainMap({...}, {...})``: its maps one by one (iterating a ChainMap itself copies them all)."""
    out.put(f"{type(x).__name__}(")
    _items(out, depth, iter(x.maps), _value)
    out.put(")")


def _user_data(x: Any, out: _Out, depth: int) -> None:
    """``UserDict``, ``UserList``, ``UserString``: written as their ``data``, as their repr does."""
    _render(x.data, out, depth)


def _namespace(x: Any, out: _Out, depth: int) -> None:
    """``namespace(a=1, ...)`` (a subclass by its own name)."""
    name = "namespace" if type(x) is types.SimpleNamespace else type(x).__name__
    out.put(f"{name}(")
    if depth >= MAX_DEPTH:
        out.put("...)")
        return
    _keywords(iter(vars(x).items()), out, depth)
    out.put(")")


def _keywords(items: Iterable[tuple[Any, Any]], out: _Out, depth: int) -> None:
    """``name=value, ...`` until they end or the budget is spent."""
    first = True
    for name, value in items:
        if not first:
            out.put(", ")
        first = False
        out.put(f"{name}=")
        _render(value, out, depth + 1)


def _dataclass(x: Any, out: _Out, depth: int) -> None:
    """A dataclass as its generated repr writes it: ``Name(field=value, ...)``, its repr=True fields."""
    out.put(f"{type(x).__qualname__}(")
    if depth >= MAX_DEPTH:
        out.put("...)")
        return
    fields = (f for f in dataclasses.fields(x) if f.repr)
    _keywords(((f.name, getattr(x, f.name)) for f in fields), out, depth)
    out.put(")")


def _mapping_view(x: Any, out: _Out, depth: int) -> None:
    """``KeysView({...})`` and the other ``collections.abc`` views: their mapping, walked."""
    out.put(f"{type(x).__name__}(")
    _render(x._mapping, out, depth + 1)
    out.put(")")


def _exception(x: Any, out: _Out, depth: int) -> None:
    """``Name(arg, ...)`` as ``BaseException.__repr__`` writes it (one arg: no trailing comma)."""
    out.put(f"{type(x).__name__}(")
    _items(out, depth, iter(x.args), _value)
    out.put(")")


def _slice(x: Any, out: _Out, depth: int) -> None:
    out.put("slice(")
    _items(out, depth, iter((x.start, x.stop, x.step)), _value)
    out.put(")")


def _partial(x: Any, out: _Out, depth: int) -> None:
    """``functools.partial(func, arg, ..., key=value)``."""
    out.put(f"{type(x).__module__}.{type(x).__qualname__}(")
    _render(x.func, out, depth + 1)
    for arg in x.args:
        out.put(", ")
        _render(arg, out, depth + 1)
    for name, value in x.keywords.items():
        out.put(f", {name}=")
        _render(value, out, depth + 1)
    out.put(")")


def _fraction(x: Any, out: _Out, depth: int) -> None:
    out.put(f"{type(x).__name__}(")
    _int(x.numerator, out, depth)
    out.put(", ")
    _int(x.denominator, out, depth)
    out.put(")")


def _method(x: Any, out: _Out, depth: int) -> None:
    """``<bound method C.f of SELF>``: the object it is bound to is written like any argument."""
    func = x.__func__
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or "?"
    out.put(f"<bound method {name} of ")
    _render(x.__self__, out, depth + 1)
    out.put(">")


def _environ(x: Any, out: _Out, depth: int) -> None:
    """``environ({...})``: ``os.environ``, key by key (it may have been filled in-process)."""
    out.put("environ({")
    _items(out, depth, ((key, x[key]) for key in x), _pair)
    out.put("})")


_ITEMS_VIEW: type = type({}.items())

_RENDERERS: dict[type, Callable[[Any, _Out, int], None]] = {
    str: _str,
    bytes: _bytes,
    bytearray: _bytearray,
    int: _int,
    list: _list,
    tuple: _tuple,
    dict: _dict,
    set: _set,
    frozenset: _set,
    collections.OrderedDict: _ordered_dict,
    collections.Counter: _counter,
    collections.defaultdict: _defaultdict,
    collections.deque: _deque,
    array.array: _array,
    memoryview: _memoryview,
    type({}.keys()): _view,
    type({}.values()): _view,
    _ITEMS_VIEW: _view,
    types.MappingProxyType: _mappingproxy,
    collections.ChainMap: _chainmap,
    collections.UserDict: _user_data,
    collections.UserList: _user_data,
    collections.UserString: _user_data,
    types.SimpleNamespace: _namespace,
    collections.abc.MappingView: _mapping_view,
    BaseException: _exception,
    slice: _slice,
    functools.partial: _partial,
    fractions.Fraction: _fraction,
    types.MethodType: _method,
    type(os.environ): _environ,
}


def _renderer(t: type) -> Callable[[Any, _Out, int], None] | None:
    """How instances of ``t`` are written here, or None: by their own ``__repr__``."""
    found = _RENDERERS.get(t)
    if found is not None:
        return found
    owner = _repr_owner(t)
    found = _RENDERERS.get(owner)
    if found is None and issubclass(t, tuple) and isinstance(getattr(t, "_fields", None), tuple):
        fn = owner.__dict__.get("__repr__")
        if getattr(fn, "__module__", None) == "collections":  # the repr namedtuple() generates
            found = _namedtuple
    if found is None and dataclasses.is_dataclass(t):
        wrapped = getattr(owner.__dict__.get("__repr__"), "__wrapped__", None)
        if getattr(wrapped, "__qualname__", "").startswith("__create_fn__."):  # dataclass()'s repr
            found = _dataclass
    return found


def _render(x: Any, out: _Out, depth: int) -> None:
    renderer = _renderer(type(x))
    if renderer is None:
        out.put(repr(x))  # its own __repr__ (it may hide what it holds): its cost is its own, cut here
    else:
        renderer(x, out, depth)


def render(value: Any, limit: int) -> str:
    """The repr of ``value`` in at most ``limit`` characters, ending in ``...`` if anything was left out.

    Raises:
        Exception: Whatever a ``__repr__`` of the value's own raises (the caller contains it).
    """
    out = _Out(limit)
    try:
        _render(value, out, 0)
    except _Full:
        text = "".join(out.pieces)
        return text[: max(limit - len(CUT), 0)] + CUT
    except RecursionError:
        return f"<{type(value).__name__} (nested too deep)>"[:limit]
    return "".join(out.pieces)
