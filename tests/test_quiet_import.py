"""Importing fairpool adds no warning of its own: not eventlet's deprecation banner either.

Each check runs in a fresh interpreter, since the banner is printed once, at
eventlet's first import. ``fairpool._compat`` is loaded from its file, so that
these tests of it do not import the package (and eventlet with it) first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "fairpool" / "_compat.py"
LOAD_COMPAT = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("fairpool_compat", {str(COMPAT)!r})
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
"""
BANNER = "Eventlet is deprecated"


def python(code: str, *options: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "EVENTLET_TESTS")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (path, ROOT) if p is not None)
    return subprocess.run(
        [sys.executable, *options, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_eventlet_imported_first_by_fairpool_adds_no_warning() -> None:
    proc = python(
        LOAD_COMPAT + "eventlet = compat.import_eventlet_quietly()\nprint(eventlet.__name__)", "-W", "error"
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "eventlet\n", "")


def test_an_application_that_imports_eventlet_itself_sees_its_banner_once_as_its_own() -> None:
    proc = python("import eventlet\n" + LOAD_COMPAT + "assert compat.import_eventlet_quietly() is eventlet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(BANNER) == 1, proc.stderr
    assert proc.stderr.startswith("<string>:1: EventletDeprecationWarning"), proc.stderr


def test_only_the_banner_is_filtered(tmp_path: Path) -> None:
    # A stand-in eventlet that warns its banner and something else on import.
    fake = tmp_path / "eventlet"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            """
            import warnings
            class EventletDeprecationWarning(Warning):
                pass
            warnings.warn("\\nEventlet is deprecated. (stand-in)", EventletDeprecationWarning, stacklevel=2)
            warnings.warn("something else", UserWarning, stacklevel=2)
            """
        )
    )
    proc = python(LOAD_COMPAT + "compat.import_eventlet_quietly()", "-W", "default", path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "something else" in proc.stderr and BANNER not in proc.stderr, proc.stderr
    # The filter lasts for the import only: the same warning later is shown.
    proc = python(
        LOAD_COMPAT + "compat.import_eventlet_quietly()\n"
        "import warnings\nwarnings.warn('Eventlet is deprecated (later)')",
        "-W",
        "default",
        path=tmp_path,
    )
    assert "Eventlet is deprecated (later)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("code", ["import fairpool", "import fairpool, eventlet", "import fairpool.report"])
def test_importing_fairpool_prints_nothing(code: str) -> None:
    proc = python(code, "-W", "error")
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


def test_importing_fairpool_after_eventlet_prints_only_the_applications_banner() -> None:
    proc = python("import eventlet, fairpool")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(BANNER) == 1, proc.stderr
    assert proc.stderr.startswith("<string>:1: EventletDeprecationWarning"), proc.stderr
