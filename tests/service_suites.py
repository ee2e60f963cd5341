"""Run OpenStack services' own unit tests without and with fairpool, and report what fairpool breaks.

:mod:`tests.eventlet_suite` checks fairpool against eventlet's own tests; this
script checks it against the code fairpool is for: the unit tests of nova and
swift, at pinned versions, run twice,

* ``baseline``: as the service's tox runs them, fairpool not loaded;
* ``fairpool``: the same, with ``fairpool.monkey_patch()`` in EVERY Python
  process of the run, through a ``sitecustomize.py`` on ``PYTHONPATH``,
  applied just after the service's own ``eventlet.monkey_patch()`` (nova's
  tests call it on import), or at interpreter start for a service whose unit
  tests never call it (swift),

then compares the per-test outcomes. A test that passes (or skips) without
fairpool and fails or errors with it is rerun alone ``--rerun`` times in both
modes: if it fails without fairpool too, or passes with fairpool every time,
it is flaky (swift's ``TestCooperativeCachePopulator`` tests fail now and then
without fairpool) and does not count. It exits 1 if a difference remains,
leaving out those in :data:`ALLOWED_DIFFERENCES` (each with its reason), 0
otherwise, 2 if the harness itself could not run (set-up failed, or some test
process of the fairpool mode ran without fairpool patched in).

NOT run by CI: it installs the services from PyPI and takes several minutes
per service and mode (nova's subset about 5 min per mode, swift's about 2 min
on 2 shared cores). Run it by hand before a release or after a change to
``monkey_patch`` or the tpool surface.

Usage, from the repository root::

    .venv/bin/python -m tests.service_suites all          # nova, then swift
    .venv/bin/python -m tests.service_suites swift --rerun 3
    .venv/bin/python -m tests.service_suites nova --targets nova.tests.unit.virt.libvirt.test_host
    .venv/bin/python -m tests.service_suites nova --setup # reinstall the virtualenv's packages first
    .venv/bin/python -m tests.service_suites all --fairpool-src /some/checkout

What it does, step by step (everything goes to ``--workdir``, by default
``$TMPDIR/fairpool-service-suites``; nothing is written into the checkout):

1. Makes a virtualenv ``WORKDIR/venv`` with this interpreter's ``venv``
   module and installs into it, from PyPI, the pinned service
   (:data:`SERVICES`), eventlet and greenlet (fairpool's ``eventlet`` extra)
   and the service's test requirements (unpinned: the newest that install;
   ``pip freeze`` is saved in ``WORKDIR/results/SERVICE/freeze.txt``). Done
   once per service (a marker in the virtualenv); ``--setup`` redoes it,
   upgrading the test requirements, and extracts the sdist again.
   For swift it also downloads the sdist (its tests are not in the wheel) and
   extracts it to ``WORKDIR/swift-VERSION`` without its ``swift/`` package,
   so the tests import the installed swift.
2. The fairpool tested is the package in ``--fairpool-src`` (default: this
   checkout), reached through a symlink in ``WORKDIR/shim``, which is on
   ``PYTHONPATH`` in the fairpool mode only (so no build and no egg-info in
   the checkout). The shim's ``sitecustomize.py`` patches, and records at
   exit of each process whether fairpool was in effect, which fairpool, and
   how many calls its pools answered. Each test process the harness starts
   is found there by its pid: if one left no record, was not patched, or ran
   another fairpool, or ``Error in sitecustomize`` shows in a log, the
   service's run stops with exit 2.
3. Runs the tests as the services' own tooling does: nova with
   ``python -m subunit.run MODULE`` (what stestr runs), one process per
   module; swift with ``python -m pytest FILE`` in the extracted sdist (its
   tox.ini's pytest configuration), one process per file. Each process has
   ``--process-timeout`` seconds of wall clock. ``TMPDIR`` of the tests is
   ``--test-tmpdir`` (default under ``/dev/shm``: swift's diskfile tests need
   large extended attributes, which tmpfs takes and many disks refuse).
4. Prints a table per mode, the differences with their verdicts, and the
   calls that went through fairpool. Logs, raw reports, ``MODE.outcomes.json``
   and ``summary.json`` are in ``WORKDIR/results/SERVICE/``.

``--no-logging-patch`` runs the fairpool mode with
``monkey_patch(logging=False)``: with it swift's ``test_monkey_patch`` passes,
which is how the allowed difference was confirmed.

Run it niced on a shared machine (``nice -n 10 .venv/bin/python -m ...``):
the test processes inherit the niceness.

The script is not collected by pytest (its name does not start with
``test_``); ``tests/test_service_suites.py`` tests its comparison logic.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# What both harnesses share: a test's outcome, its states, the junit reader, the shim directory.
from tests.eventlet_suite import (
    BAD,
    ERROR,
    FAILED,
    MISSING,
    PASSED,
    SKIPPED,
    HarnessError,
    Outcome,
    make_shim,
    parse_junit,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "fairpool-service-suites"
DEFAULT_TEST_TMPDIR = (
    Path("/dev/shm/fairpool-service-suites")
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK)
    else None
)


@dataclasses.dataclass(frozen=True)
class Service:
    """One service: what to install and which of its tests to run."""

    name: str
    version: str
    test_requirements: tuple[str, ...]
    targets: tuple[str, ...]  # nova: test modules; swift: test files of the sdist
    runner: str  # "subunit" (one process per module) or "pytest" (one per file, in the sdist)
    when: str  # "after-eventlet" or "start": when the sitecustomize calls fairpool.monkey_patch()

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


SERVICES: dict[str, Service] = {
    "nova": Service(
        name="nova",
        version="34.0.0",
        test_requirements=(
            "python-subunit",
            "testtools",
            "stestr",
            "ddt",
            "fixtures",
            "requests-mock",
            "oslotest",
            "osprofiler",
            "testresources",
            "testscenarios",
            "wsgi-intercept",
            "python-barbicanclient",
            "PyMySQL",
            "psycopg2-binary",
        ),
        targets=(
            "nova.tests.unit.virt.libvirt.test_host",
            "nova.tests.unit.virt.libvirt.test_guest",
            "nova.tests.unit.virt.libvirt.test_driver",
            "nova.tests.unit.test_utils",
            "nova.tests.unit.image.test_glance",
            "nova.tests.unit.storage.test_rbd",
            "nova.tests.unit.virt.disk.vfs.test_guestfs",
        ),
        runner="subunit",
        when="after-eventlet",
    ),
    "swift": Service(
        name="swift",
        version="2.38.3",
        test_requirements=(
            "pytest",
            "pytest-subtests",
            "python-swiftclient",
            "python-keystoneclient",
            "boto3",
            "mock",
        ),
        targets=(
            "test/unit/obj/test_diskfile.py",
            "test/unit/obj/test_server.py",
            "test/unit/obj/test_replicator.py",
            "test/unit/obj/test_reconstructor.py",
            "test/unit/common/utils/test_logs.py",
            "test/unit/common/test_utils.py",
            "test/unit/container/test_backend.py",
            "test/unit/container/test_replicator.py",
        ),
        runner="pytest",
        when="start",  # swift's unit tests never call eventlet.monkey_patch()
    ),
}

#: Differences accepted on purpose: test id (fnmatch pattern) -> why. A listed
#: test that passes without fairpool and fails with it does not make the run
#: fail; it is still printed, marked "allowed", and not rerun.
ALLOWED_DIFFERENCES: dict[str, str] = {
    "test/unit/common/test_utils.py::TestUtils::test_monkey_patch": (
        "fairpool.monkey_patch() gives logging a HybridRLock so that pool threads can log; the test "
        "checks logging._lock's type (it passes with monkey_patch(logging=False)); docs/migrating.md"
    ),
}

#: What fairpool.monkey_patch() needs besides the service (fairpool's "eventlet" extra).
FAIRPOOL_REQUIREMENTS = ("eventlet", "greenlet")

SITECUSTOMIZE = """\
# Written by fairpool's tests/service_suites.py: fairpool.monkey_patch() in every process.
import atexit as _atexit
import json as _json
import os as _os
import sys as _sys

import eventlet as _eventlet
import eventlet.patcher as _patcher
import fairpool as _fairpool

_how = ["never"]
_pools = []


def _apply(how):
    if _fairpool.is_patched():
        return
    # Remember every pool made (killall() and exit replace the default one), to count at exit
    # the calls that went through fairpool. Diagnostics only.
    _init = _fairpool.Pool.__init__

    def __init__(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        _pools.append(self)

    _fairpool.Pool.__init__ = __init__
    _fairpool.monkey_patch(logging=_os.environ.get("FAIRPOOL_SUITE_LOGGING", "1") != "0")
    _how[0] = how


if _os.environ.get("FAIRPOOL_SUITE_WHEN") == "after-eventlet":
    _monkey_patch = _patcher.monkey_patch

    def monkey_patch(*args, **kwargs):
        result = _monkey_patch(*args, **kwargs)
        _apply("after eventlet.monkey_patch")
        return result

    monkey_patch.__doc__ = _monkey_patch.__doc__
    _patcher.monkey_patch = monkey_patch
    _eventlet.monkey_patch = monkey_patch
else:
    _apply("at interpreter start")


def _record():
    calls = 0
    for pool in _pools:
        try:
            st = pool.statistics()
            calls += st.completed + st.failed + st.inline
        except Exception:
            calls = -1
            break
    record = {
        "pid": _os.getpid(),
        "patched": bool(_fairpool.is_patched()),
        "how": _how[0],
        "file": _os.path.realpath(_fairpool.__file__),
        "argv": " ".join(_sys.argv)[-300:],
        "calls": calls,
    }
    with open(_os.environ["FAIRPOOL_SUITE_MARK"], "a") as f:
        f.write(_json.dumps(record) + "\\n")


if _os.environ.get("FAIRPOOL_SUITE_MARK"):
    _atexit.register(_record)
"""

#: Run with the virtualenv's python: a subunit v2 stream -> {test id: [state, message]} as JSON.
SUBUNIT_TO_JSON = """\
import io, json, sys
import subunit, testtools

STATES = {"success": "passed", "fail": "failed", "skip": "skipped", "xfail": "passed", "uxsuccess": "failed"}
found = {}


def on_test(test):
    if test["status"] == "exists":
        return
    state = STATES.get(test["status"], "error")
    message = ""
    for name in ("traceback", "reason"):
        content = test["details"].get(name)
        if content is not None and state != "passed":
            text = b"".join(content.iter_bytes()).decode("utf-8", "replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                message = lines[-1][:240]
                break
    found[test["id"]] = [state, message]


with open(sys.argv[1], "rb") as f:
    stream = subunit.ByteStreamToStreamResult(io.BytesIO(f.read()), non_subunit_name="stdout")
result = testtools.StreamToDict(on_test)
result.startTestRun()
stream.run(result)
result.stopTestRun()
with open(sys.argv[2], "w") as f:
    json.dump(found, f)
"""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A test that passes (or skips) without fairpool and fails with it, judged."""

    test: str
    before: Outcome
    after: Outcome
    status: str  # "fails" (counts), "allowed" or "flaky" (do not count)
    why: str = ""
    reruns: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # states: baseline, fairpool


# -- comparison (pure; tests/test_service_suites.py) ---------------------------


def allowed_reason(test: str, allowed: Mapping[str, str]) -> str | None:
    for pattern, reason in allowed.items():
        if fnmatch.fnmatchcase(test, pattern):
            return reason
    return None


def compare(
    baseline: Mapping[str, Outcome], patched: Mapping[str, Outcome]
) -> tuple[list[tuple[str, Outcome, Outcome]], list[tuple[str, Outcome, Outcome]]]:
    """The tests broken by fairpool (pass or skip before, fail/error/missing after), and other changes."""
    broken, other = [], []
    for test in sorted(set(baseline) | set(patched)):
        before = baseline.get(test, Outcome(MISSING, "not reported in the baseline run"))
        after = patched.get(test, Outcome(MISSING, "not reported in the fairpool run"))
        if before.state == after.state:
            continue
        if before.state in (PASSED, SKIPPED) and after.state in BAD:
            broken.append((test, before, after))
        else:
            other.append((test, before, after))
    return broken, other


#: reruns(tests) -> {test: (its states without fairpool, its states with fairpool)}
Rerunner = Callable[[list[str]], Mapping[str, tuple[Sequence[str], Sequence[str]]]]


def judge(
    broken: Sequence[tuple[str, Outcome, Outcome]],
    allowed: Mapping[str, str],
    rerun: Rerunner | None,
) -> list[Verdict]:
    """Judge each broken test: allowed by name, flaky on rerun, or a real difference ("fails").

    A rerun test is flaky if it fails without fairpool in some rerun, or
    passes (or skips) with fairpool in every rerun. One that fails with
    fairpool in some reruns and never without it still counts: an
    intermittent failure only under fairpool may be fairpool's race.
    """
    verdicts: list[Verdict] = []
    to_rerun: list[tuple[str, Outcome, Outcome]] = []
    for test, before, after in broken:
        reason = allowed_reason(test, allowed)
        if reason is not None:
            verdicts.append(Verdict(test, before, after, "allowed", reason))
        else:
            to_rerun.append((test, before, after))
    tallies = rerun([t for t, _, _ in to_rerun]) if rerun is not None and to_rerun else {}
    for test, before, after in to_rerun:
        plain, fair = tallies.get(test, ((), ()))
        runs = (tuple(plain), tuple(fair))
        if any(state in BAD for state in plain):
            verdicts.append(Verdict(test, before, after, "flaky", "fails without fairpool on rerun", runs))
        elif fair and all(state not in BAD for state in fair):
            verdicts.append(Verdict(test, before, after, "flaky", "passes with fairpool on rerun", runs))
        else:
            why = "fails with fairpool on rerun" if fair else "not rerun"
            verdicts.append(Verdict(test, before, after, "fails", why, runs))
    return sorted(verdicts, key=lambda v: v.test)


def counts(outcomes: Mapping[str, Outcome]) -> dict[str, int]:
    found = {state: 0 for state in (PASSED, FAILED, ERROR, SKIPPED, MISSING)}
    for outcome in outcomes.values():
        found[outcome.state] += 1
    return found


def report(
    service: str,
    modes: Mapping[str, tuple[Mapping[str, Outcome], float]],
    verdicts: Sequence[Verdict],
    other: Sequence[tuple[str, Outcome, Outcome]],
) -> int:
    """Print the comparison; return 1 if a difference counts, else 0."""
    print()
    print(f"{service}: {'mode':<10} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8} {'time':>7}")
    for mode, (outcomes, seconds) in modes.items():
        c = counts(outcomes)
        print(
            f"{service}: {mode:<10} {c[PASSED]:>7} {c[FAILED]:>7} {c[ERROR] + c[MISSING]:>7} "
            f"{c[SKIPPED]:>8} {seconds:>6.0f}s"
        )
    counted = [v for v in verdicts if v.status == "fails"]
    excused = len(verdicts) - len(counted)
    print(
        f"{service}: pass (or skip) without fairpool, fail with it: {len(counted)}"
        + (f" (+{excused} allowed or flaky)" if excused else "")
    )
    for v in verdicts:
        mark = "" if v.status == "fails" else f"  [{v.status}: {v.why}]"
        print(f"  {v.test}  ({v.before.state} -> {v.after.state}){mark}")
        if v.after.message:
            print(f"      {v.after.message}")
        if v.reruns != ((), ()):
            print(f"      reruns: without fairpool {','.join(v.reruns[0])}; with {','.join(v.reruns[1])}")
    if other:
        print(f"{service}: other changes of outcome (for information): {len(other)}")
        for test, before, after in other:
            print(f"  {test}  ({before.state} -> {after.state})")
    return 1 if counted else 0


# -- setting up ---------------------------------------------------------------


def log(message: str) -> None:
    print(f"[service-suites {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(command: Sequence[str], what: str) -> None:
    done = subprocess.run(list(command), check=False)
    if done.returncode != 0:
        raise HarnessError(f"{what} failed (exit {done.returncode}): {' '.join(map(str, command))}")


def venv_python(workdir: Path) -> Path:
    return workdir / "venv" / "bin" / "python"


def setup(service: Service, workdir: Path, force: bool, results: Path) -> None:
    """Make the virtualenv if needed and install ``service`` with its test requirements into it."""
    python = venv_python(workdir)
    if (workdir / "venv").exists() and not python.exists():
        shutil.rmtree(workdir / "venv")  # a half-made virtualenv
    if not python.exists():
        log(f"making the virtualenv {workdir / 'venv'}")
        run([sys.executable, "-m", "venv", str(workdir / "venv")], "making the virtualenv")
    wanted = [service.requirement, *FAIRPOOL_REQUIREMENTS, *service.test_requirements]
    marker = workdir / "venv" / f".fairpool-{service.name}"
    if force or not marker.exists() or marker.read_text() != "\n".join(wanted):
        log(f"installing {' '.join(wanted)} from PyPI")
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        run([*pip, *(["--upgrade"] if force else []), *wanted], f"installing {service.requirement}")
        marker.write_text("\n".join(wanted))
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False)
    (results / "freeze.txt").write_text(freeze.stdout)
    if service.runner == "pytest":
        if force:
            (workdir / f"{service.name}-{service.version}" / ".extracted").unlink(missing_ok=True)
        extract_tests(service, workdir, python)


def extract_tests(service: Service, workdir: Path, python: Path) -> Path:
    """The service's sdist, less its own package, extracted to ``workdir/NAME-VERSION``."""
    root = workdir / f"{service.name}-{service.version}"
    if (root / ".extracted").exists():
        return root
    sdist_dir = workdir / "sdist"
    name = f"{service.name}-{service.version}.tar.gz"
    if not (sdist_dir / name).exists():
        log(f"downloading the sdist of {service.requirement} (its tests)")
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "download"]
        run(
            [*pip, "--no-binary", ":all:", "--no-deps", service.requirement, "-d", str(sdist_dir)], "download"
        )
    if root.exists():
        shutil.rmtree(root)
    prefix = f"{service.name}-{service.version}/"
    with tarfile.open(sdist_dir / name) as tar:
        members = []
        for member in tar.getmembers():
            relative = member.name[len(prefix) :] if member.name.startswith(prefix) else None
            if relative is None or relative == service.name or relative.startswith(service.name + "/"):
                continue  # test the installed package, not the sdist's copy
            members.append(member)
        tar.extractall(workdir, members=members, filter="data")
    (root / ".extracted").write_text(name + "\n")
    return root


def mode_env(
    service: Service, mode: str, shim: Path, mark: Path, test_tmp: Path, logging: bool
) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write into --fairpool-src
    env["PYTHONHASHSEED"] = "0"
    tmp = test_tmp / f"{service.name}-{mode}"
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    for name in ("OS_STDOUT_CAPTURE", "OS_STDERR_CAPTURE", "OS_LOG_CAPTURE"):  # nova's tox.ini
        env.setdefault(name, "1")
    env.setdefault("OS_TEST_TIMEOUT", "160")
    if mode == "fairpool":
        env["PYTHONPATH"] = str(shim)
        env["FAIRPOOL_SUITE_WHEN"] = service.when
        env["FAIRPOOL_SUITE_MARK"] = str(mark)
        env["FAIRPOOL_SUITE_LOGGING"] = "1" if logging else "0"
    return env


# -- running ------------------------------------------------------------------


def run_process(
    command: list[str], env: dict[str, str], cwd: Path, out: Path, log_file: Path, limit: float
) -> tuple[str, int]:
    """Run ``command`` with stdout to ``out`` (a file: some nova modules hang on a pipe) and stderr to
    ``log_file``; kill its process group past ``limit`` seconds. Returns a note for the log and the pid."""
    with log_file.open("ab") as err, out.open("wb") as stdout:
        err.write(f"\n$ {' '.join(command)}\n".encode())
        err.flush()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return f"exit {proc.wait(timeout=limit)}", proc.pid
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"killed after {limit:.0f} s", proc.pid


def nova_module(test: str, targets: Sequence[str]) -> str | None:
    return next((t for t in targets if test.startswith(t + ".")), None)


@dataclasses.dataclass
class Runner:
    """Runs one service's tests in one mode and collects outcomes and process records."""

    service: Service
    workdir: Path
    results: Path
    shim: Path
    test_tmp: Path
    limit: float
    logging: bool = True
    calls: dict[str, int] = dataclasses.field(default_factory=dict)  # per test process, last fairpool run

    def run(
        self, mode: str, tag: str, targets: Sequence[str], only: Sequence[str] = ()
    ) -> dict[str, Outcome]:
        python = str(venv_python(self.workdir))
        mark = self.results / f"{mode}-{tag}.mark"
        mark.unlink(missing_ok=True)
        log_file = self.results / f"{mode}-{tag}.log"
        log_file.unlink(missing_ok=True)
        env = mode_env(self.service, mode, self.shim, mark, self.test_tmp, self.logging)
        outcomes: dict[str, Outcome] = {}
        started: dict[int, str] = {}  # pid of each test process -> its module or file
        if self.service.runner == "subunit":
            for module in targets:
                ids = [t for t in only if nova_module(t, targets) == module]
                command = [python, "-m", "subunit.run"]
                if only:
                    if not ids:
                        continue
                    load_list = self.results / f"{mode}-{tag}.{module}.ids"
                    load_list.write_text("\n".join(ids) + "\n")
                    command += ["--load-list", str(load_list)]
                stream = self.results / f"{mode}-{tag}.{module}.subunit"
                note, pid = run_process([*command, module], env, self.workdir, stream, log_file, self.limit)
                started[pid] = module
                parsed = self.results / f"{mode}-{tag}.{module}.json"
                run([python, "-c", SUBUNIT_TO_JSON, str(stream), str(parsed)], f"reading {stream}")
                found = {t: Outcome(s, m) for t, (s, m) in json.loads(parsed.read_text()).items()}
                if not found:
                    found[f"{module} (module)"] = Outcome(ERROR, f"no tests reported: {note}")
                outcomes.update(found)
        else:
            root = self.workdir / f"{self.service.name}-{self.service.version}"
            for index, target in enumerate(targets):
                items = [t for t in only if t.startswith(target + "::")] if only else [target]
                if not items:
                    continue
                junit = self.results / f"{mode}-{tag}-{index}.xml"
                junit.unlink(missing_ok=True)
                command = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
                command += ["-o", "junit_family=xunit1", f"--junitxml={junit}", *items]
                note, pid = run_process(
                    command, env, root, self.results / f"{mode}-{tag}-{index}.out", log_file, self.limit
                )
                started[pid] = target
                found = parse_junit(junit, root) if junit.exists() else {}
                if not found:
                    found[f"{target} (file)"] = Outcome(ERROR, f"no junit report: {note}")
                outcomes.update(found)
        if mode == "fairpool":
            self.check_patched(mark, log_file, started)
        return outcomes

    def check_patched(self, mark: Path, log_file: Path, started: Mapping[int, str]) -> None:
        """Every test process of the fairpool mode must have run the wanted fairpool, patched in.

        Each process the sitecustomize loads in records its state at exit;
        the test processes the harness started are found by pid. Other
        processes (ones the tests start) are not checked: with the patch
        applied after eventlet.monkey_patch(), one that never calls it runs
        unpatched, as it would in the service.
        """
        records = [json.loads(line) for line in mark.read_text().splitlines()] if mark.exists() else []
        by_pid = {r["pid"]: r for r in records}
        expected = (self.shim / "fairpool").resolve()
        problems = []
        for pid, label in started.items():
            record = by_pid.get(pid)
            if record is None:
                problems.append(f"{label}: no record at exit (sitecustomize not loaded, or the process died)")
            elif not record["patched"]:
                problems.append(f"{label}: fairpool.monkey_patch() never ran ({record['how']})")
            elif Path(record["file"]).parent != expected:
                problems.append(f"{label}: ran the fairpool in {record['file']}, not {expected}")
        logs = [log_file, *self.results.glob(f"{log_file.stem}-*.out")]
        if any("Error in sitecustomize" in p.read_text(errors="replace") for p in logs if p.exists()):
            problems.append(f"'Error in sitecustomize' in {log_file}: some process ran unpatched")
        if problems:
            raise HarnessError(
                f"fairpool was NOT in effect in some test processes: {'; '.join(problems[:3])}"
            )
        calls = {started[pid]: by_pid[pid]["calls"] for pid in started}
        hows = sorted({by_pid[pid]["how"] for pid in started})
        log(f"fairpool in effect in all {len(started)} test processes ({', '.join(hows)}; {expected})")
        log(f"calls through fairpool per test process: {', '.join(f'{k}={v}' for k, v in calls.items())}")
        self.calls.update(calls)


def run_service(service: Service, args: argparse.Namespace, workdir: Path, shim: Path) -> int:
    results = workdir / "results" / service.name
    results.mkdir(parents=True, exist_ok=True)
    setup(service, workdir, args.setup, results)
    targets = args.targets.split(",") if args.targets else list(service.targets)
    runner = Runner(
        service, workdir, results, shim, args.test_tmpdir, args.process_timeout, not args.no_logging_patch
    )
    log(
        f"{service.requirement}: {len(targets)} target(s); "
        f"fairpool.monkey_patch() {service.when}; results in {results}"
    )
    modes: dict[str, tuple[Mapping[str, Outcome], float]] = {}
    for mode in ("baseline", "fairpool"):
        log(f"{service.name}: running mode {mode}")
        start = time.monotonic()
        outcomes = runner.run(mode, "full", targets)
        modes[mode] = (outcomes, time.monotonic() - start)
        data = {t: [o.state, o.message] for t, o in outcomes.items()}
        (results / f"{mode}.outcomes.json").write_text(json.dumps(data, indent=0))
        log(f"{service.name}: {mode}: {counts(outcomes)} in {modes[mode][1]:.0f} s")

    def rerun(tests: list[str]) -> dict[str, tuple[list[str], list[str]]]:
        tally: dict[str, tuple[list[str], list[str]]] = {t: ([], []) for t in tests}
        log(f"{service.name}: rerunning {len(tests)} difference(s) alone, {args.rerun} time(s) per mode")
        for n in range(args.rerun):
            for index, mode in enumerate(("baseline", "fairpool")):
                got = runner.run(mode, f"rerun{n}", targets, only=tests)
                for test in tests:
                    tally[test][index].append(got.get(test, Outcome(MISSING)).state)
        return tally

    calls = dict(runner.calls)  # of the full run, before reruns replace them
    broken, other = compare(modes["baseline"][0], modes["fairpool"][0])
    verdicts = judge(broken, ALLOWED_DIFFERENCES, rerun if args.rerun > 0 else None)
    status = report(service.name, modes, verdicts, other)
    print(f"{service.name}: calls through fairpool in the fairpool run: {sum(calls.values())}")
    summary = {
        "service": service.requirement,
        "targets": targets,
        "fairpool": describe_source(args.fairpool_src.resolve()),
        "counts": {mode: counts(outcomes) for mode, (outcomes, _) in modes.items()},
        "seconds": {mode: round(seconds) for mode, (_, seconds) in modes.items()},
        "calls_through_fairpool": calls,
        "differences": [dataclasses.asdict(v) for v in verdicts],
        "other_changes": [[t, b.state, a.state] for t, b, a in other],
        "status": status,
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{service.name}: summary in {results / 'summary.json'}")
    return status


def describe_source(src: Path) -> str:
    """``src`` with its git commit, if it is a checkout, and whether its fairpool/ has changes."""
    git = ["git", "-C", str(src)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return str(src)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "fairpool"], capture_output=True, text=True, check=False
    )
    return f"{src} {head.stdout.strip()}" + (
        " + uncommitted changes in fairpool/" if dirty.stdout.strip() else ""
    )


# -- main ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.service_suites",
        description="Run OpenStack services' own unit tests without and with fairpool.monkey_patch(), "
        "and list the tests that pass only without it. Not run by CI: several minutes per service.",
    )
    parser.add_argument("service", nargs="?", default="all", choices=[*SERVICES, "all"], help="default all")
    parser.add_argument("--setup", action="store_true", help="reinstall the service's packages first")
    parser.add_argument(
        "--targets", help="comma-separated test modules (nova) or files (swift) instead of the subset"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"virtualenv, sdists and reports; outside the checkout (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--fairpool-src",
        type=Path,
        default=REPO,
        help="the directory holding the fairpool package to test (default: this repository)",
    )
    parser.add_argument(
        "--test-tmpdir",
        type=Path,
        default=DEFAULT_TEST_TMPDIR,
        help="TMPDIR of the tests, on a filesystem with large xattrs "
        f"(default {DEFAULT_TEST_TMPDIR or 'WORKDIR/tmp'})",
    )
    parser.add_argument("--rerun", type=int, default=2, help="reruns per mode of each difference (default 2)")
    parser.add_argument(
        "--process-timeout",
        type=float,
        default=1800,
        help="wall-clock limit of one test process, s (default 1800)",
    )
    parser.add_argument(
        "--no-logging-patch",
        action="store_true",
        help="fairpool.monkey_patch(logging=False) in the fairpool mode",
    )
    args = parser.parse_args(argv)
    if args.rerun < 0:
        parser.error(f"--rerun must be >= 0, got {args.rerun}")
    if args.targets and args.service == "all":
        parser.error("--targets needs one service (nova or swift), not all")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir: Path = args.workdir.resolve()
    if workdir == REPO or REPO in workdir.parents:
        print(
            f"service_suites: --workdir {workdir} is inside the checkout {REPO}; choose another",
            file=sys.stderr,
        )
        return 2
    if args.test_tmpdir is None:
        args.test_tmpdir = workdir / "tmp"
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        shim = make_shim(workdir, args.fairpool_src.resolve(), SITECUSTOMIZE)
    except HarnessError as exc:
        print(f"service_suites: {exc}", file=sys.stderr)
        return 2
    status = 0
    for name in list(SERVICES) if args.service == "all" else [args.service]:
        try:
            status = max(status, run_service(SERVICES[name], args, workdir, shim))
        except HarnessError as exc:  # the next service may still run
            print(f"service_suites: {name}: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
