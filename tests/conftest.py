"""Shared fixtures. The test process is not monkey-patched: tests that need
``eventlet.monkey_patch()`` run their code in a subprocess (see ``run_script``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import eventlet
import pytest

import fairpool
from fairpool import tpool as fair_tpool


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def pool() -> Iterator[fairpool.Pool]:
    """A private pool of 4 threads, shut down after the test."""
    p = fairpool.Pool(threads=4, name="test")
    yield p
    p.shutdown(timeout=5)


@pytest.fixture(autouse=True)
def fresh_default_pool() -> Iterator[None]:
    """Each test gets its own default pool, so sizes and counters do not leak between tests."""
    old = fair_tpool._reset_default_for_tests(None)
    yield
    new = fair_tpool._reset_default_for_tests(old)
    if new is not None:
        new.shutdown(timeout=5)
    fairpool.unpatch()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """A native event that blocking calls wait on; set at teardown so nothing stays stuck."""
    ev = threading.Event()
    yield ev
    ev.set()


def wait_until(predicate: object, timeout: float = 5.0, what: str = "condition") -> None:
    """Let the hub run until ``predicate()`` is true; fail with ``what`` if it never is."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        eventlet.sleep(0.001)


def run_script(code: str, *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, fail with its stderr."""
    full_env = dict(os.environ)
    full_env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    return proc.stdout
