"""Run eventlet's own test suite without and with fairpool, and report what fairpool breaks.

fairpool claims to be a drop-in for ``eventlet.tpool``. The strongest check of
that claim is eventlet's own test suite: this script runs it twice against the
installed eventlet,

* ``baseline``: as eventlet's tox does (``pytest tests``), fairpool not loaded;
* ``fairpool``: the same, with ``import fairpool; fairpool.monkey_patch()`` run
  at start-up of EVERY Python process of the run (pytest itself and every
  subprocess eventlet's tests start), through a ``sitecustomize.py`` on
  ``PYTHONPATH``,

then compares the two junit reports and lists the tests that pass without
fairpool but fail (or error) with it; a test skipped without fairpool whose
tearDown errors with it counts too (eventlet's unittest tests run tearDown,
and so its hub check, even when they skip). It exits 1 if that list is not
empty, leaving out the differences in :data:`ALLOWED_DIFFERENCES` (each with
its reason), 0 otherwise, 2 if the harness itself could not run.

Usage, from the repository root::

    .venv/bin/python -m tests.eventlet_suite                       # the whole suite, both modes
    .venv/bin/python -m tests.eventlet_suite --only tpool,hubs,patcher,env,db_pool   # CI subset
    .venv/bin/python -m tests.eventlet_suite --fairpool-only       # reuse the cached baseline
    .venv/bin/python -m tests.eventlet_suite --fairpool-src /some/checkout   # test another fairpool

What it does, step by step (everything goes to ``--workdir``, by default
``$TMPDIR/fairpool-eventlet-suite``; nothing is written into the checkout):

1. Reads the installed eventlet's version and downloads its sdist once with
   ``pip download --no-binary :all: --no-deps eventlet==VERSION`` (cached in
   ``WORKDIR/sdist``).
2. Extracts it to ``WORKDIR/eventlet-VERSION``, without its ``eventlet/``
   package, so the tests import the *installed* eventlet (the one
   ``fairpool.monkey_patch()`` patches), and writes an empty ``pytest.ini``
   there so that no other project's pytest configuration applies.
3. Installs what the suite needs into this interpreter's environment if it
   is missing: pytest and pytest-timeout (eventlet's tox.ini adds coverage
   and pytest-cov, for coverage only, and optional drivers: pyzmq,
   pyopenssl, mysqlclient, psycopg2; without them those tests skip, and
   the database tests also need a server and ``EVENTLET_DB_TEST_AUTH``).
4. Runs ``pytest -p no:cacheprovider --timeout=SECONDS --junitxml=...`` on
   the selected test files in each mode, one pytest process per mode, as
   eventlet's CI does (``--per-file``: one process per test file, so state
   left on the hub by one file cannot fail the next; used automatically if
   a one-process run dies without writing its junit report).
5. Prints a table of passed/failed/errors/skipped and seconds per mode and
   the tests that pass without fairpool but not with it, each with the first
   line of its failure message, then the other changes of outcome for
   information. The full pytest output of each mode is in
   ``WORKDIR/results/MODE.log``, the junit reports beside it.

``--only`` picks test files by substring of their name; a word ending in
"s" also matches without it (``hubs`` picks ``hub_test.py``, ``patcher``
picks ``patcher_test.py`` and ``patcher_psycopg_test.py``).

Each test has ``--timeout`` seconds (pytest-timeout, signal method: a stuck
test fails on its own) and each pytest process ``--mode-timeout`` seconds of
wall clock. On 2 cores the whole suite takes about 1.5 min per mode (3 min
for both, plus a few seconds to set up); ``--only tpool,hubs,patcher,env,db_pool``
about 35 s per mode. Set ``EVENTLET_HUB`` (selects, poll, epolls, asyncio) to
run on another hub, as eventlet's tox environments do.

The fairpool that is tested is the package ``fairpool`` inside
``--fairpool-src`` (default: this repository), reached through a symlink in
``WORKDIR/shim``; only that directory goes on ``PYTHONPATH``, so nothing else
of the checkout (its ``tests`` package in particular) can shadow eventlet's.

Three tests are never run (:data:`DESELECTED`): they connect to 192.0.2.1, an
address off this machine.

The script is not collected by pytest (its name does not start with
``test_``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "fairpool-eventlet-suite"

#: Differences accepted on purpose: pytest node id (fnmatch pattern) -> why.
#: A test listed here that passes (or is skipped) without fairpool and fails
#: with it does not make the run fail; it is still printed, marked "allowed".
ALLOWED_DIFFERENCES: dict[str, str] = {
    "tests/env_test.py::test_tpool_negative": (
        "a negative EVENTLET_THREADPOOL_SIZE is a ValueError naming the value, not an assert "
        "(asserts vanish under python -O); docs/migrating.md"
    ),
    "tests/patcher_test.py::test_patcher_existing_logging_module_lock": (
        "fairpool.monkey_patch() gives logging a HybridRLock so that pool threads can log; the test "
        "checks for eventlet's own lock class (it passes with monkey_patch(logging=False)); docs/migrating.md"
    ),
}
if os.environ.get("EVENTLET_HUB") == "asyncio":
    ALLOWED_DIFFERENCES["tests/hub_test.py::test_fork_simple"] = (
        "asyncio hub only: the sitecustomize imports eventlet before the test's own imports, so its "
        "tempfile is green and makes the asyncio hub in the parent before fork; docs/migrating.md"
    )

#: Tests never run, in either mode: node id -> why.
DESELECTED: dict[str, str] = {
    "tests/socket_test.py::test_create_connection_error": "connects to 192.0.2.1: traffic off this machine",
    "tests/greenio_test.py::TestGreenSocket::test_connect_timeout": (
        "connects to 192.0.2.1: traffic off this machine"
    ),
    "tests/greenio_test.py::TestGreenSocket::test_connect_ex_timeout": (
        "connects to 192.0.2.1: traffic off this machine"
    ),
}

#: What the suite needs here: importable module -> pip requirement.
REQUIREMENTS: dict[str, str] = {"pytest": "pytest", "pytest_timeout": "pytest-timeout"}

SITECUSTOMIZE = """\
# Written by fairpool's tests/eventlet_suite.py: patch eventlet.tpool in every process.
import fairpool

fairpool.monkey_patch()
"""

PASSED, FAILED, ERROR, SKIPPED, MISSING = "passed", "failed", "error", "skipped", "missing"
BAD = (FAILED, ERROR, MISSING)


class HarnessError(Exception):
    """The harness could not do its job (as opposed to tests failing)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One test's result in one mode."""

    state: str  # PASSED, FAILED, ERROR, SKIPPED or MISSING
    message: str = ""  # first line of the failure, error or skip message


@dataclasses.dataclass
class ModeResult:
    """One mode's run."""

    mode: str
    outcomes: dict[str, Outcome]
    seconds: float
    log: Path
    junit: Path
    note: str = ""

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.state == state)


# -- preparing the suite ------------------------------------------------------


def log(message: str) -> None:
    print(f"[eventlet-suite] {message}", flush=True)


def eventlet_version() -> str:
    try:
        return importlib.metadata.version("eventlet")
    except importlib.metadata.PackageNotFoundError:
        raise HarnessError(f"eventlet is not installed for {sys.executable}") from None


def fetch_sdist(workdir: Path, version: str) -> Path:
    """The sdist of eventlet ``version``, downloaded into ``workdir/sdist`` once."""
    sdist_dir = workdir / "sdist"
    found = sorted(sdist_dir.glob(f"eventlet-{version}.tar.gz"))
    if found:
        return found[0]
    sdist_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading the sdist of eventlet {version} into {sdist_dir}")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    command = [*pip, "download", "--no-binary", ":all:", "--no-deps", f"eventlet=={version}"]
    command += ["-d", str(sdist_dir)]
    done = subprocess.run(command, check=False)
    found = sorted(sdist_dir.glob(f"eventlet-{version}.tar.gz"))
    if done.returncode != 0 or not found:
        raise HarnessError(f"could not download the sdist of eventlet {version} (pip exit {done.returncode})")
    return found[0]


def extract_suite(sdist: Path, workdir: Path, version: str) -> Path:
    """Extract the sdist, less its ``eventlet`` package, to ``workdir/eventlet-VERSION``; return it."""
    root = workdir / f"eventlet-{version}"
    marker = root / ".extracted"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    prefix = f"eventlet-{version}/"
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix) :]
            if relative == "eventlet" or relative.startswith("eventlet/"):
                continue  # test the installed eventlet, not the sdist's copy
            members.append(member)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse paths out of workdir
            tar.extractall(workdir, members=members, filter="data")
        else:
            tar.extractall(workdir, members=members)
    if not (root / "tests" / "__init__.py").exists():
        raise HarnessError(f"{sdist} has no tests/ package")
    # An empty config makes this directory pytest's rootdir and keeps any
    # other project's pytest configuration (ours: filterwarnings=error) out.
    (root / "pytest.ini").write_text("[pytest]\n")
    marker.write_text(f"{sdist.name}\n")
    return root


def ensure_requirements() -> None:
    """pip install what the suite needs and this environment lacks."""
    missing = [req for module, req in REQUIREMENTS.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return
    log(f"installing {', '.join(missing)} into {sys.prefix}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=False)
    if done.returncode != 0:
        raise HarnessError(f"could not install {', '.join(missing)}")


def suite_files(root: Path) -> list[str]:
    """Every file pytest would collect under ``tests`` (test_*.py, *_test.py), relative to ``root``."""
    files = []
    for path in sorted((root / "tests").rglob("*.py")):
        if path.name.startswith("test_") or path.name.endswith("_test.py"):
            relative = path.relative_to(root)
            if "isolated" in relative.parts or "manual" in relative.parts:
                continue  # scripts the tests run, not tests
            files.append(relative.as_posix())
    return files


def select_files(files: Sequence[str], only: str | None) -> list[str]:
    """The files whose name contains one of the comma-separated words of ``only``.

    A word ending in "s" also matches without it, so ``hubs`` selects
    ``tests/hub_test.py``.
    """
    if not only:
        return list(files)
    words = [w.strip() for w in only.split(",") if w.strip()]
    chosen: list[str] = []
    for word in words:
        forms = {word, word[:-1]} if word.endswith("s") and len(word) > 1 else {word}
        matched = [f for f in files if any(form in Path(f).name for form in forms)]
        if not matched:
            raise HarnessError(f"--only {word!r} matches no test file; they are: {', '.join(files)}")
        chosen.extend(f for f in matched if f not in chosen)
    return [f for f in files if f in chosen]


def make_shim(workdir: Path, fairpool_src: Path, sitecustomize: str = SITECUSTOMIZE) -> Path:
    """A directory with ``sitecustomize.py`` (``sitecustomize``'s text) and a ``fairpool`` symlink
    into ``fairpool_src``."""
    package = (fairpool_src / "fairpool").resolve()
    if not (package / "__init__.py").exists():
        raise HarnessError(f"--fairpool-src {fairpool_src}: no fairpool/__init__.py there")
    # One shim per source, so runs testing different checkouts can share a workdir.
    shim = workdir / "shim" / hashlib.sha256(str(package).encode()).hexdigest()[:12]
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "fairpool"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(package, target_is_directory=True)
    (shim / "sitecustomize.py").write_text(sitecustomize)
    return shim


def mode_env(mode: str, shim: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # nothing of the caller's; only the shim in fairpool mode
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # as eventlet's tox; never write into --fairpool-src
    env["EVENTLET_TESTS"] = "1"  # eventlet's conftest sets it; early, so the import warns nowhere
    if mode == "fairpool":
        assert shim is not None
        env["PYTHONPATH"] = str(shim)
    return env


def check_patched(env: dict[str, str], root: Path, fairpool_src: Path) -> None:
    """Make sure a Python started with ``env`` runs the wanted fairpool, patched in."""
    code = textwrap.dedent("""\
        import json, os, sys
        import fairpool
        print(json.dumps({"file": os.path.realpath(fairpool.__file__),
                          "patched": bool(fairpool.is_patched())}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    try:
        info = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise HarnessError(f"sitecustomize check failed:\n{done.stdout}{done.stderr}") from None
    expected = (fairpool_src / "fairpool").resolve()
    if not info["patched"] or Path(info["file"]).parent != expected:
        raise HarnessError(f"sitecustomize did not patch with {expected}: got {info}\n{done.stderr}")


# -- running ------------------------------------------------------------------


def pytest_command(files: Sequence[str], junit: Path, timeout: int) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    # signal: a stuck test fails alone; the thread method would end the whole run, report and all.
    command += [f"--timeout={timeout}", "--timeout-method=signal"]
    command += [f"--junitxml={junit}", "-o", "junit_family=xunit2"]
    for node_id in DESELECTED:
        command += ["--deselect", node_id]
    return command + list(files)


def run_pytest(command: list[str], env: dict[str, str], root: Path, log_file: Path, limit: float) -> int:
    """Run ``command`` in ``root`` with output to ``log_file``; kill its process group past ``limit`` s."""
    with log_file.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.write(f"\n[eventlet-suite] killed after {limit:.0f} s\n".encode())
            return -signal.SIGKILL


def run_mode(
    mode: str,
    root: Path,
    files: Sequence[str],
    results: Path,
    env: dict[str, str],
    timeout: int,
    limit: float,
    per_file: bool,
) -> ModeResult:
    log_file = results / f"{mode}.log"
    junit = results / f"{mode}.xml"
    for stale in [log_file, junit, *results.glob(f"{mode}.part*.xml")]:
        stale.unlink(missing_ok=True)
    log(f"{mode}: running {len(files)} test file(s); output in {log_file}")
    start = time.monotonic()
    note = ""
    outcomes: dict[str, Outcome] | None = None
    if not per_file:
        code = run_pytest(pytest_command(files, junit, timeout), env, root, log_file, limit)
        if junit.exists():
            outcomes = parse_junit(junit, root)
        else:
            note = f"one-process run died (exit {code}) without a junit report; reran per file"
            log(f"{mode}: {note}")
    if outcomes is None:
        outcomes = {}
        for index, name in enumerate(files):
            part = results / f"{mode}.part{index:03d}.xml"
            code = run_pytest(pytest_command([name], part, timeout), env, root, log_file, limit)
            if part.exists():
                outcomes.update(parse_junit(part, root))
            else:
                outcomes[name] = Outcome(ERROR, f"pytest died (exit {code}) without a junit report")
        merge_junit(sorted(results.glob(f"{mode}.part*.xml")), junit)
    seconds = time.monotonic() - start
    result = ModeResult(mode, outcomes, seconds, log_file, junit, note)
    counts = ", ".join(f"{result.count(state)} {state}" for state in (PASSED, FAILED, ERROR, SKIPPED))
    log(f"{mode}: {counts} in {seconds:.0f} s")
    return result


def merge_junit(parts: Iterable[Path], target: Path) -> None:
    suites = ET.Element("testsuites")
    for part in parts:
        suites.extend(ET.parse(part).getroot().iter("testsuite"))
        part.unlink()
    ET.ElementTree(suites).write(target, encoding="utf-8", xml_declaration=True)


# -- reading results ----------------------------------------------------------


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 240 else line[:237] + "..."
    return ""


def node_id(root: Path, classname: str, name: str) -> str:
    """pytest's node id from junit's ``classname`` (dotted) and ``name``."""
    if not classname:  # a module-level report, e.g. a module skipped at collection
        return name.replace(".", "/") + ".py"
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (root / path).exists():
            return "::".join([path, *parts[cut:], name])
    return f"{classname}::{name}"


def parse_junit(path: Path, root: Path) -> dict[str, Outcome]:
    """Each test's outcome. A test with a failure and a teardown error counts as failed;
    a skipped test whose teardown errors counts as an error."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from None
    outcomes: dict[str, Outcome] = {}
    for case in tree.getroot().iter("testcase"):
        test = node_id(root, case.get("classname", ""), case.get("name", ""))
        found = {child.tag: child for child in case if child.tag in ("failure", "error", "skipped")}
        for tag, state in (("failure", FAILED), ("error", ERROR), ("skipped", SKIPPED)):
            child = found.get(tag)
            if child is not None:
                outcome = Outcome(state, first_line(child.get("message")) or first_line(child.text))
                break
        else:
            outcome = Outcome(PASSED)
        previous = outcomes.get(test)
        if previous is None or rank(outcome.state) > rank(previous.state):
            outcomes[test] = outcome
    return outcomes


def rank(state: str) -> int:
    return (PASSED, SKIPPED, ERROR, FAILED, MISSING).index(state)


def allowed_reason(test: str) -> str | None:
    for pattern, reason in ALLOWED_DIFFERENCES.items():
        if fnmatch.fnmatchcase(test, pattern):
            return reason
    return None


# -- the baseline cache (for --fairpool-only) ---------------------------------


def baseline_key(version: str, files: Sequence[str]) -> str:
    data = json.dumps(
        {
            "eventlet": version,
            "python": sys.version,
            "files": list(files),
            "deselected": sorted(DESELECTED),
            "hub": os.environ.get("EVENTLET_HUB", ""),
        },
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def save_baseline(results: Path, key: str, result: ModeResult) -> None:
    cached = results / f"baseline-{key}.xml"
    shutil.copyfile(result.junit, cached)
    (results / f"baseline-{key}.json").write_text(json.dumps({"seconds": result.seconds}))


def load_baseline(results: Path, key: str, root: Path) -> ModeResult | None:
    cached = results / f"baseline-{key}.xml"
    if not cached.exists():
        return None
    meta = json.loads((results / f"baseline-{key}.json").read_text())
    return ModeResult(
        "baseline",
        parse_junit(cached, root),
        float(meta["seconds"]),
        results / "baseline.log",
        cached,
        note="cached from an earlier run",
    )


# -- reporting ----------------------------------------------------------------


def report(baseline: ModeResult | None, patched: ModeResult) -> int:
    """Print the comparison; return the exit status (1 if a test fails only with fairpool)."""
    modes = [m for m in (baseline, patched) if m is not None]
    print()
    print(f"{'mode':<10} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8} {'total':>7} {'time':>8}")
    for m in modes:
        print(
            f"{m.mode:<10} {m.count(PASSED):>7} {m.count(FAILED):>7} {m.count(ERROR):>7} "
            f"{m.count(SKIPPED):>8} {len(m.outcomes):>7} {m.seconds:>7.0f}s"
        )
    for m in modes:
        if m.note:
            print(f"  {m.mode}: {m.note}")
    if baseline is None:
        print("  no baseline cached for this selection: every test is taken to pass without fairpool")

    broken: list[tuple[str, Outcome, Outcome, str | None]] = []
    other: list[tuple[str, Outcome, Outcome]] = []
    base = baseline.outcomes if baseline is not None else {}
    for test in sorted(set(base) | set(patched.outcomes)):
        if baseline is None:
            before = Outcome(PASSED)
        else:
            before = base.get(test, Outcome(MISSING, "not reported in the baseline run"))
        after = patched.outcomes.get(test, Outcome(MISSING, "not reported in the fairpool run"))
        if before.state == after.state or (baseline is None and after.state not in BAD):
            continue
        # A skipped unittest test still runs its tearDown: an error there is fairpool's too.
        if before.state in (PASSED, SKIPPED) and after.state in BAD:
            broken.append((test, before, after, allowed_reason(test)))
        else:
            other.append((test, before, after))

    counted = [b for b in broken if b[3] is None]
    allowed = [b for b in broken if b[3] is not None]
    print()
    print(
        f"Pass (or skip) without fairpool, fail with it: {len(counted)}"
        + (f" (+{len(allowed)} allowed)" if allowed else "")
    )
    for test, before, after, reason in broken:
        mark = f"  [allowed: {reason}]" if reason else ""
        print(f"  {test}  ({before.state} -> {after.state}){mark}")
        if after.message:
            print(f"      {after.message}")
    if other:
        print()
        print(f"Other changes of outcome (for information): {len(other)}")
        for test, before, after in other:
            print(f"  {test}  ({before.state} -> {after.state})")
    print()
    print(f"logs: {', '.join(str(m.log) for m in modes)}")
    print(f"junit reports: {', '.join(str(m.junit) for m in modes)}")
    return 1 if counted else 0


# -- main ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.eventlet_suite",
        description="Run eventlet's own test suite without and with fairpool.monkey_patch(), "
        "and list the tests that pass only without it.",
    )
    parser.add_argument(
        "--only",
        metavar="WORDS",
        help="comma-separated words; run only the test files whose name contains one "
        "(e.g. tpool,hubs,patcher,env,db_pool)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where the sdist, the extracted suite and the reports go (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--fairpool-only",
        action="store_true",
        help="run only the fairpool mode; compare with the baseline cached in --workdir "
        "for the same selection, if any",
    )
    parser.add_argument(
        "--fairpool-src",
        type=Path,
        default=REPO,
        help="the directory holding the fairpool package to test (default: this repository)",
    )
    parser.add_argument(
        "--timeout", type=int, default=60, help="pytest-timeout per test, seconds (default 60)"
    )
    parser.add_argument(
        "--mode-timeout",
        type=float,
        default=1800,
        help="wall-clock limit of one pytest process, seconds (default 1800)",
    )
    parser.add_argument(
        "--per-file", action="store_true", help="one pytest process per test file instead of one per mode"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        workdir: Path = args.workdir.resolve()
        fairpool_src: Path = args.fairpool_src.resolve()
        version = eventlet_version()
        root = extract_suite(fetch_sdist(workdir, version), workdir, version)
        ensure_requirements()
        files = select_files(suite_files(root), args.only)
        results = workdir / "results"
        results.mkdir(parents=True, exist_ok=True)
        shim = make_shim(workdir, fairpool_src)
        patched_env = mode_env("fairpool", shim)
        check_patched(patched_env, root, fairpool_src)
        log(f"eventlet {version}, suite in {root}; fairpool from {fairpool_src / 'fairpool'}")
        log(f"{len(files)} test file(s): {' '.join(Path(f).name for f in files)}")

        key = baseline_key(version, files)
        baseline: ModeResult | None
        if args.fairpool_only:
            baseline = load_baseline(results, key, root)
        else:
            baseline = run_mode(
                "baseline",
                root,
                files,
                results,
                mode_env("baseline", None),
                args.timeout,
                args.mode_timeout,
                args.per_file,
            )
            save_baseline(results, key, baseline)
        patched = run_mode(
            "fairpool", root, files, results, patched_env, args.timeout, args.mode_timeout, args.per_file
        )
    except HarnessError as exc:
        print(f"eventlet_suite: {exc}", file=sys.stderr)
        return 2
    return report(baseline, patched)


if __name__ == "__main__":
    sys.exit(main())
