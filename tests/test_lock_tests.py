"""CPython's own generic lock tests, run against HybridRLock.

``test.lock_tests`` (``Lib/test/lock_tests.py``, shipped with CPython) holds
the tests every lock of the standard library passes. Its ``RLockTests`` and
its ``ConditionTests`` (on a ``threading.Condition`` over a ``HybridRLock``)
run here in three worlds:

* native: in this process, with native threads;
* green: in a subprocess under ``eventlet.monkey_patch()``, where the tests'
  own threads (``_thread.start_new_thread``) are green threads;
* mixed: in a subprocess under ``eventlet.monkey_patch()``, the test's body
  in the main green thread (on the hub) and its helper threads native, as a
  service's green threads and pool workers share a lock. The Condition there
  is the unpatched ``threading.Condition``: the patched one makes green
  waiter locks, which no native thread can wait on, whatever its lock.

The Condition tests run once more on ``fairpool.HybridCondition``, in each
world: there it is the same class everywhere, and in the mixed world the
body (a green thread) waits green while the native helpers notify it.

The test classes are imported and subclassed, never copied. Every case
passes; none is excluded.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fairpool import HybridCondition, HybridRLock

from .conftest import run_script

try:
    from test import lock_tests
except ImportError as exc:  # some distributions ship CPython without its test package
    pytest.skip(
        f"CPython's lock tests are not installed (the module test.lock_tests: {exc}); "
        "on Debian and Ubuntu they come with the libpython3.X-testsuite package",
        allow_module_level=True,
    )


def hybrid_condition(lock: Any = None) -> threading.Condition:
    """``threading.Condition`` over a new HybridRLock (or over ``lock``, as ``Condition(lock)``)."""
    return threading.Condition(HybridRLock() if lock is None else lock)


class TestHybridRLockNative(lock_tests.RLockTests):  # type: ignore[misc]
    locktype = staticmethod(HybridRLock)


class TestConditionOnHybridRLockNative(lock_tests.ConditionTests):  # type: ignore[misc]
    condtype = staticmethod(hybrid_condition)


class TestHybridConditionNative(lock_tests.ConditionTests):  # type: ignore[misc]
    condtype = staticmethod(HybridCondition)


_SCRIPT = """
import eventlet
eventlet.monkey_patch()
import sys
import unittest
from test import lock_tests
from fairpool import HybridCondition, HybridRLock

WORLD = {world!r}
if WORLD == "mixed":
    # The helper threads native; the test's body stays in the main green thread, on the hub.
    lock_tests.start_new_thread = eventlet.patcher.original("_thread").start_new_thread
    Condition = eventlet.patcher.original("threading").Condition
else:
    import threading
    Condition = threading.Condition
    probe = []
    with lock_tests.Bunch(lambda: probe.append(eventlet.getcurrent().parent is not None), 1):
        pass
    assert probe == [True], f"lock_tests' threads are not green threads: {{probe}}"

def condition(lock=None):
    return Condition(HybridRLock() if lock is None else lock)

if {hybrid!r}:
    condition = HybridCondition

class Case(lock_tests.{cls}):
    locktype = staticmethod(HybridRLock)
    condtype = staticmethod(condition)

suite = unittest.defaultTestLoader.loadTestsFromTestCase(Case)
result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
print("ran", result.testsRun, "failed", len(result.failures) + len(result.errors))
sys.exit(0 if result.wasSuccessful() and result.testsRun else 1)
"""


@pytest.mark.timeout(200)
@pytest.mark.parametrize("world", ["green", "mixed"])
@pytest.mark.parametrize("cls", ["RLockTests", "ConditionTests", "ConditionTests on HybridCondition"])
def test_cpython_lock_tests_pass_in_green_and_mixed_worlds(world: str, cls: str) -> None:
    hybrid = cls.endswith("HybridCondition")
    script = _SCRIPT.format(world=world, cls=cls.split()[0], hybrid=hybrid)
    out = run_script(script, timeout=180)
    assert out.startswith("ran ") and out.strip().endswith("failed 0"), out
