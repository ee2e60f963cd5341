"""fairpool's start-up hook, run by every Python interpreter that has this directory on ``PYTHONPATH``.

``fairpool run`` (or an operator's ``PYTHONPATH`` and ``FAIRPOOL_AUTOPATCH=1``)
puts this directory first on the path, so Python's :mod:`site` imports this
file as ``sitecustomize`` when the interpreter starts. It then:

1. reads ``FAIRPOOL_AUTOPATCH`` (unset, empty or ``0``: it does nothing more);
2. adds a finder to ``sys.meta_path`` that waits for ``eventlet`` to be
   imported: right after the service's own ``import eventlet`` completes it
   calls :func:`fairpool.autopatch._on_eventlet_imported`, which applies
   ``fairpool.monkey_patch()``. Nothing is imported before that, fairpool
   included: a process that never imports eventlet runs as it would without
   this file;
3. runs the ``sitecustomize`` that this file hides (the next one on
   ``sys.path``: the service's own, or the distribution's), so it keeps working.

It uses the standard library only, costs one environment look-up when the
variable is unset, and never stops the interpreter from starting: a failure
of the hook is one line on stderr naming what failed, and the service runs
unpatched. Errors of the chained ``sitecustomize`` reach :mod:`site` as they
would have without this file.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself is not imported at start: it costs more than the rest of this file
if TYPE_CHECKING:
    from typing import Any

VARIABLE = "FAIRPOOL_AUTOPATCH"
#: The values that switch the hook on; "quiet" does not say so on stderr.
ON = ("1", "true", "yes", "on", "quiet")
OFF = ("", "0", "false", "no", "off")


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"fairpool: {message}\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - no stderr (a daemon): nothing to tell, nothing to stop
        pass


class _Loader:
    """Runs eventlet's own loader, then hands the finished module to fairpool."""

    def __init__(self, loader: Any, finder: EventletFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)  # the service's import: its errors are its own
        module.__loader__ = self._loader  # eventlet sees its own loader from now on
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._finder.imported(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class EventletFinder:
    """A ``sys.meta_path`` finder that only watches for the import of ``eventlet``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "eventlet":
            return None
        try:
            spec = None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec  # nothing to wrap: the import goes on as it would have
            spec.loader = _Loader(spec.loader, self)
            return spec
        except Exception as exc:  # noqa: BLE001 - let the normal finders try again, unhooked
            _say(
                f"{VARIABLE}: the import hook failed to find eventlet ({type(exc).__name__}: {exc}); "
                "this process runs unpatched"
            )
            self.remove()
            return None

    def remove(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass

    def imported(self, module: Any) -> None:
        self.remove()
        try:
            from fairpool import autopatch

            autopatch._on_eventlet_imported(quiet=self.quiet)
        except Exception as exc:  # noqa: BLE001 - the service must start, unpatched, with one line
            _say(
                f"eventlet was imported but fairpool.monkey_patch() could not be applied "
                f"({type(exc).__name__}: {exc}); this process (pid {os.getpid()}) runs unpatched"
            )


def _install() -> None:
    raw = os.environ.get(VARIABLE)
    if raw is None:
        return
    value = raw.strip().lower()
    if value in OFF:
        return
    if value not in ON:
        _say(f"{VARIABLE}={raw!r} is not one of {', '.join(v for v in ON + OFF if v)}; fairpool is off")
        return
    if any(isinstance(finder, EventletFinder) for finder in sys.meta_path):
        return
    if "eventlet" in sys.modules:  # already imported (a .pth file, say): patch it now
        EventletFinder(value == "quiet").imported(sys.modules["eventlet"])
        return
    sys.meta_path.insert(0, EventletFinder(value == "quiet"))


def _chain() -> None:
    """Run the ``sitecustomize`` module that this one hides, as :mod:`site` would have."""
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    rest = [p for p in sys.path if os.path.realpath(p or os.curdir) != here]
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin is None:
        return
    if os.path.realpath(spec.origin) == os.path.realpath(__file__):
        return  # this file again, under another name of its directory
    from importlib.util import module_from_spec

    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["sitecustomize"]  # as a failed import leaves it; site reports the error
        raise


if __name__ == "sitecustomize":
    try:
        _install()
    except Exception as exc:  # noqa: BLE001 - never stop an interpreter from starting
        _say(
            f"{VARIABLE}: the start-up hook failed ({type(exc).__name__}: {exc}); this process runs unpatched"
        )
    _chain()
