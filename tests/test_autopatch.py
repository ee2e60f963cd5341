"""``fairpool run`` and ``FAIRPOOL_AUTOPATCH``: fairpool switched on from outside, against real processes.

Every service here is its own process (``python -m fairpool run -- ...``), as an
operator starts it; each subprocess has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fairpool import autopatch

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds, per process
CONFIRMATION = "fairpool: eventlet.tpool runs on fairpool in pid"

pytestmark = pytest.mark.timeout(180)


def base_env(**extra: str) -> dict[str, str]:
    """The test's environment, with this checkout importable and no fairpool switch inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAIRPOOL_", "EVENTLET_THREADPOOL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.update(extra)
    return env


def fairpool_run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fairpool", "run", *args],
        env=env or base_env(),
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


# A program that never imports eventlet, and refuses to start if it was imported
# (as nova does in native-threading mode).
NATIVE_PROGRAM = """\
import os, sys, threading
if "eventlet" in sys.modules:
    sys.exit("refusing to start: eventlet was imported before set-up")
data = sys.stdin.read()
t = threading.Thread(target=lambda: None, name="worker"); t.start(); t.join()
print("args", sys.argv[1:], "stdin", repr(data))
print("modules", sorted(m for m in ("eventlet", "fairpool", "greenlet") if m in sys.modules))
print("to stderr", file=sys.stderr)
sys.exit(3)
"""


def test_a_program_without_eventlet_runs_exactly_as_without(tmp_path: Path) -> None:
    program = script(tmp_path, "native.py", NATIVE_PROGRAM)
    command = [sys.executable, str(program), "a b", "--flag"]
    env = base_env()
    alone = subprocess.run(
        command, env=env, input="in", capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
    )
    under = fairpool_run("--", *command, env=env, input="in", cwd=tmp_path)
    assert alone.returncode == 3, alone.stderr
    assert (under.returncode, under.stdout, under.stderr) == (alone.returncode, alone.stdout, alone.stderr), (
        f"fairpool run changed a program that never imports eventlet:\n{under}\n---\n{alone}"
    )
    assert "modules []" in under.stdout, under.stdout


def test_with_every_option_a_program_without_eventlet_is_still_left_alone(tmp_path: Path) -> None:
    program = script(tmp_path, "native.py", NATIVE_PROGRAM)
    trace_dir = tmp_path / "traces"
    under = fairpool_run(
        "--threads", "4", "--trace", str(trace_dir), "--hub-watch", "0.05", "--otel", "spans",
        "--", sys.executable, str(program), input="", cwd=tmp_path,
    )  # fmt: skip
    assert under.returncode == 3, under.stderr
    assert "modules []" in under.stdout and under.stderr == "to stderr\n", under
    assert not trace_dir.exists() or not list(trace_dir.iterdir()), "a trace was started without eventlet"


# An eventlet service that imports eventlet late, after checking it was not imported.
LATE_EVENTLET = """\
import os, sys, time
assert "eventlet" not in sys.modules, "eventlet was imported before the service's own set-up"
time.sleep(0.05)  # the service does other things first
import eventlet
eventlet.monkey_patch()
from eventlet import tpool
from eventlet.patcher import original
threading = original("threading")
print(json.dumps({
    "pid": os.getpid(),
    "patched": getattr(tpool, "__fairpool_patched__", False),
    "thread": tpool.execute(lambda: threading.current_thread().name),
    "proxy_thread": tpool.Proxy(threading).current_thread().name,
}) if (json := __import__("json")) else "")
"""


def test_an_eventlet_service_is_patched_after_its_own_late_eventlet_monkey_patch(tmp_path: Path) -> None:
    program = script(tmp_path, "late.py", LATE_EVENTLET)
    proc = fairpool_run("--threads", "3", "--", sys.executable, str(program))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["patched"] is True, report
    assert report["thread"].startswith("fairpool-default-"), f"tpool.execute ran on {report['thread']}"
    assert report["proxy_thread"].startswith("fairpool-default-"), report
    lines = [line for line in proc.stderr.splitlines() if line.startswith(CONFIRMATION)]
    assert lines == [
        f"{CONFIRMATION} {report['pid']} (FAIRPOOL_AUTOPATCH; threads=3, trace=off, hub_watch=off, otel=off)"
    ], proc.stderr


def test_the_same_service_without_fairpool_run_is_not_patched(tmp_path: Path) -> None:
    program = script(tmp_path, "late.py", LATE_EVENTLET)
    proc = subprocess.run(
        [sys.executable, str(program)], env=base_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["patched"] is False and not report["thread"].startswith("fairpool"), report
    assert CONFIRMATION not in proc.stderr


def test_quiet_says_nothing_on_stderr_and_still_patches(tmp_path: Path) -> None:
    program = script(tmp_path, "late.py", LATE_EVENTLET)
    proc = fairpool_run("--quiet", "--", sys.executable, str(program))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["patched"] is True
    assert "fairpool" not in proc.stderr, proc.stderr


def test_the_banner_of_eventlet_names_the_services_import_line_as_without(tmp_path: Path) -> None:
    program = script(tmp_path, "imp.py", "import eventlet\n")
    env = base_env(PYTHONWARNINGS="always")
    alone = subprocess.run(
        [sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    under = fairpool_run("--quiet", "--", sys.executable, str(program), env=env)
    assert under.returncode == alone.returncode == 0, under.stderr
    assert under.stderr == alone.stderr, f"with fairpool run:\n{under.stderr}\nwithout:\n{alone.stderr}"


# Children of every kind: forked, multiprocessing spawn, a Python subprocess.
CHILDREN = """\
import json, multiprocessing, os, subprocess, sys
import eventlet
eventlet.monkey_patch()
from eventlet import tpool
from eventlet.patcher import original

def where():
    return tpool.execute(lambda: original("threading").current_thread().name)

def spawned(queue):
    import eventlet.tpool
    queue.put((os.getpid(), getattr(eventlet.tpool, "__fairpool_patched__", False), where()))

if __name__ == "__main__":
    out = {"parent": [os.getpid(), where()]}
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps([os.getpid(), where()]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    out["forked"] = json.loads(os.read(r, 1000))
    for method in ("spawn", "forkserver"):
        ctx = multiprocessing.get_context(method)
        queue = ctx.Queue()
        p = ctx.Process(target=spawned, args=(queue,))
        p.start()
        out[method] = list(queue.get(timeout=50))
        p.join(50)
    code = ("import eventlet, os, json; from eventlet import tpool; "
            "print(json.dumps([os.getpid(), getattr(tpool, '__fairpool_patched__', False)]))")
    child = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, timeout=50)
    out["subprocess"] = json.loads(child.stdout)
    print(json.dumps(out))
"""


def test_forked_spawned_forkserver_and_subprocess_children_are_patched(tmp_path: Path) -> None:
    program = script(tmp_path, "children.py", CHILDREN)
    proc = fairpool_run("--", sys.executable, str(program), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["parent"][1].startswith("fairpool-default-"), out
    assert out["forked"][1].startswith("fairpool-default-"), f"the forked child is not on fairpool: {out}"
    for method in ("spawn", "forkserver"):
        assert out[method][1] is True and out[method][2].startswith("fairpool-default-"), (
            f"the multiprocessing {method} child is not patched: {out}"
        )
    assert out["subprocess"][1] is True, f"the Python subprocess is not patched: {out}"
    # Each process that imported eventlet says so once; the forked child inherited its parent's patch.
    said = sorted(int(line.split()[7]) for line in proc.stderr.splitlines() if line.startswith(CONFIRMATION))
    assert said == sorted(out[name][0] for name in ("parent", "spawn", "forkserver", "subprocess")), (
        proc.stderr
    )


@pytest.mark.timeout(60)
def test_the_command_replaces_fairpool_run_so_signals_and_status_reach_it(tmp_path: Path) -> None:
    program = script(
        tmp_path,
        "sig.py",
        """\
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (print("got SIGTERM", flush=True), os._exit(7)))
        print(os.getpid(), flush=True)
        time.sleep(50)
        """,
    )
    with subprocess.Popen(
        [sys.executable, "-m", "fairpool", "run", "--", sys.executable, str(program)],
        env=base_env(),
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            pid = int(proc.stdout.readline())
            assert pid == proc.pid, "fairpool run did not exec the command: the service has another pid"
            proc.send_signal(signal.SIGTERM)
            rest = proc.stdout.read()
            assert proc.wait(TIMEOUT) == 7
            assert rest == "got SIGTERM\n"
        finally:
            proc.kill()


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text("import builtins\nbuiltins.SITE_RAN = True\nMARK = 'theirs'\n")
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site_dir), env["PYTHONPATH"]])
    code = "import builtins, sitecustomize; print(getattr(builtins, 'SITE_RAN', False), sitecustomize.MARK)"
    proc = fairpool_run("--", sys.executable, "-c", code, env=env)
    assert (proc.returncode, proc.stdout) == (0, "True theirs\n"), proc.stderr
    # and one that fails reports as it would have without fairpool, the program still running
    # (the hook through the environment: fairpool run's own interpreter would report it too)
    (site_dir / "sitecustomize.py").write_text("raise RuntimeError('broken site')\n")
    alone = subprocess.run(
        [sys.executable, "-c", "print('ran')"], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    under = subprocess.run(
        [sys.executable, "-c", "print('ran')"],
        env=autopatch.environment(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (under.returncode, under.stdout, under.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    assert "Error in sitecustomize" in under.stderr


def test_a_failure_in_the_hook_is_one_line_and_the_service_runs_unpatched(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "fairpool"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('no fairpool here')\n")
    env = base_env(FAIRPOOL_AUTOPATCH="1")
    # The hook first, then a fairpool that cannot be imported.
    env["PYTHONPATH"] = os.pathsep.join([autopatch.bootstrap_path(), str(broken.parent)])
    code = "import eventlet; from eventlet import tpool; print(tpool.execute(lambda: 41) + 1)"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
    )
    assert (proc.returncode, proc.stdout) == (0, "42\n"), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "fairpool" in line]
    assert len(lines) == 1, proc.stderr
    assert "could not be applied (RuntimeError: no fairpool here)" in lines[0], lines
    assert "runs unpatched" in lines[0], lines


def test_a_bad_switch_value_is_one_line_and_fairpool_stays_off(tmp_path: Path) -> None:
    env = base_env(FAIRPOOL_AUTOPATCH="maybe")
    env["PYTHONPATH"] = os.pathsep.join([autopatch.bootstrap_path(), env["PYTHONPATH"]])
    code = "import eventlet.tpool as t; print(getattr(t, '__fairpool_patched__', False))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (proc.returncode, proc.stdout) == (0, "False\n"), proc.stderr
    assert proc.stderr.count("FAIRPOOL_AUTOPATCH='maybe' is not one of") == 1, proc.stderr


def test_the_environment_route_patches_a_process_started_without_fairpool_run(tmp_path: Path) -> None:
    printed = fairpool_run("--print-env", "--threads", "5")
    assert printed.returncode == 0, printed.stderr
    env = base_env()
    variables = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    assert variables["FAIRPOOL_AUTOPATCH"] == "1" and variables["EVENTLET_THREADPOOL_SIZE"] == "5"
    assert variables["PYTHONPATH"].split(os.pathsep)[0] == autopatch.bootstrap_path()
    env.update(variables)  # what systemd's EnvironmentFile= does
    program = script(tmp_path, "late.py", LATE_EVENTLET)
    proc = subprocess.run(
        [sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["thread"].startswith("fairpool-default-"), proc.stdout
    assert "threads=5" in proc.stderr, proc.stderr
    # and FAIRPOOL_AUTOPATCH=0 turns it off for that process, the path left as it is
    env["FAIRPOOL_AUTOPATCH"] = "0"
    off = subprocess.run(
        [sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert off.returncode == 0 and json.loads(off.stdout)["patched"] is False, off.stderr
    assert "fairpool" not in off.stderr, off.stderr


def test_print_path_is_the_hook_directory() -> None:
    proc = fairpool_run("--print-path")
    assert (proc.returncode, proc.stdout.strip()) == (0, autopatch.bootstrap_path())
    assert sorted(os.listdir(proc.stdout.strip())) >= ["__init__.py", "sitecustomize.py"]


def test_a_trace_inherited_by_fairpool_run_itself_is_the_services(tmp_path: Path) -> None:
    trace_dir = tmp_path / "traces"
    program = script(tmp_path, "late.py", LATE_EVENTLET)
    env = base_env(FAIRPOOL_TRACE=f"{trace_dir}/")
    proc = fairpool_run("--", sys.executable, str(program), env=env)
    assert proc.returncode == 0, proc.stderr
    pid = json.loads(proc.stdout)["pid"]
    assert sorted(p.name for p in trace_dir.iterdir()) == [f"fairpool-{pid}.json"], proc.stderr
    assert "already exists" not in proc.stderr and "exists" not in proc.stderr, proc.stderr
    events = json.loads((trace_dir / f"fairpool-{pid}.json").read_text())
    names = {e.get("name", "") for e in (events["traceEvents"] if isinstance(events, dict) else events)}
    assert any(n.startswith("run ") for n in names), (
        f"no pool call in the service's trace: {sorted(names)[:20]}"
    )


# -- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--threads", "0", "--threads must be a number of threads >= 1, got '0'"),
        ("--threads", "many", "--threads must be a number of threads >= 1, got 'many'"),
        ("--hub-watch", "0.001", "--hub-watch must be a number of seconds from 0.01 to 3600, got '0.001'"),
        ("--hub-watch", "soon", "--hub-watch must be a number of seconds from 0.01 to 3600, got 'soon'"),
        ("--otel", "logs", "--otel must be spans, metrics or spans,metrics, got 'logs'"),
        ("--trace", "/nonexistent-parent/dir", "--trace must be a directory whose parent exists"),
    ],
)
def test_a_bad_option_is_refused_naming_the_option_and_the_value(
    option: str, value: str, message: str
) -> None:
    proc = fairpool_run(option, value, "--", sys.executable, "-c", "print('ran')")
    assert proc.returncode == 2 and "ran" not in proc.stdout, proc
    assert message in proc.stderr, proc.stderr


def test_a_trace_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    proc = fairpool_run("--trace", str(tmp_path / "f"), "--", sys.executable, "-c", "print('ran')")
    assert proc.returncode == 2 and "exists and is not a directory" in proc.stderr, proc.stderr


def test_no_command_and_a_missing_command() -> None:
    proc = fairpool_run("--threads", "4")
    assert proc.returncode == 2 and "no command" in proc.stderr, proc.stderr
    proc = fairpool_run("--", "no-such-command-fairpool")
    assert proc.returncode == 127 and "no-such-command-fairpool: command not found" in proc.stderr


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("empty name", 127, "'': command not found (the command name is empty"),
        ("directory", 126, "Is a directory"),
        ("not executable", 126, "Permission denied"),
        ("missing interpreter", 126, "bad interpreter /nonexistent/python3 (its #! line)"),
        ("no #! line", 126, "Exec format error"),
        ("missing path", 127, "No such file or directory"),
        ("name with a space", 127, "'no such command': command not found"),
    ],
)
def test_a_command_that_cannot_run_is_one_line_and_a_shell_s_status(
    tmp_path: Path, case: str, status: int, message: str
) -> None:
    (tmp_path / "dir").mkdir()
    script(tmp_path, "plain.py", "print('ran')\n")
    bad = script(tmp_path, "bad.py", "#!/nonexistent/python3\nprint('ran')\n")
    bad.chmod(0o755)
    bare = script(tmp_path, "bare", "echo ran\n")
    bare.chmod(0o755)
    command = {
        "empty name": "",
        "directory": str(tmp_path / "dir"),
        "not executable": str(tmp_path / "plain.py"),
        "missing interpreter": str(bad),
        "no #! line": str(bare),
        "missing path": str(tmp_path / "nothing"),
        "name with a space": "no such command",
    }[case]
    proc = fairpool_run("--", command)
    assert "Traceback" not in proc.stderr, f"{case}: {proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fairpool run: "), f"{case}: not one line: {proc.stderr!r}"
    assert message in lines[0], f"{case}: {lines[0]!r} should say {message!r}"
    assert proc.returncode == status, f"{case}: exit status {proc.returncode}, expected {status}"
    assert "ran" not in proc.stdout


def _main_in_a_child(*argv: str) -> subprocess.CompletedProcess[str]:
    """``autopatch.main(argv)`` in a child (arguments no command line could pass to ``fairpool run``)."""
    code = "import sys, fairpool.autopatch as a; sys.exit(a.main(sys.stdin.read().split(chr(10))))"
    return subprocess.run(
        [sys.executable, "-c", code],
        input="\n".join(argv),
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_a_nul_in_the_command_is_bad_usage() -> None:
    proc = _main_in_a_child("--", "/bin/true", "a\0b")
    assert "Traceback" not in proc.stderr and proc.returncode == 2, proc
    assert "argument 1 contains a NUL character" in proc.stderr, proc.stderr
    proc = _main_in_a_child("--", "tr\0ue")
    assert proc.returncode == 2 and "the command name contains a NUL" in proc.stderr, proc.stderr


def test_an_argument_list_too_long_is_one_line() -> None:
    proc = _main_in_a_child("--", "/bin/true", "x" * 200_000)  # over Linux's 128 KiB for one argument
    assert "Traceback" not in proc.stderr and proc.returncode == 126, proc
    assert proc.stderr.count("\n") == 1 and "Argument list too long (2 arguments" in proc.stderr, proc.stderr


def test_a_command_without_the_separator_after_options_is_named() -> None:
    proc = fairpool_run("--threads", "4", sys.executable, "-c", "print('ran')")
    assert proc.returncode == 2 and "ran" not in proc.stdout, proc
    assert f"unrecognized argument {sys.executable}: put '--' before the command" in proc.stderr, proc.stderr


def test_options_become_the_variables_fairpool_reads() -> None:
    env = autopatch.environment({"PATH": "/bin"}, threads=4, hub_watch="0.1", otel="metrics, spans")
    assert env["EVENTLET_THREADPOOL_SIZE"] == "4" and env["FAIRPOOL_HUB_WATCH"] == "0.1"
    assert env["FAIRPOOL_OTEL"] == "spans,metrics"
    assert autopatch.environment({}, otel="spans")["FAIRPOOL_OTEL"] == "1"  # spans, as every fairpool reads
    assert env["PYTHONPATH"] == autopatch.bootstrap_path() and env["FAIRPOOL_AUTOPATCH"] == "1"
    again = autopatch.environment(env, quiet=True)
    assert again["PYTHONPATH"] == autopatch.bootstrap_path(), "the hook directory is put on the path once"
    assert again["FAIRPOOL_AUTOPATCH"] == "quiet"


# -- --check ---------------------------------------------------------------------------


def test_check_a_console_script_with_a_python_shebang(tmp_path: Path) -> None:
    tool = tmp_path / "nova-compute"
    tool.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('the service ran')\n")
    tool.chmod(0o755)
    proc = fairpool_run("--check", "--hub-watch", "0.05", "--", str(tool), "--config-file", "x")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the service ran" not in proc.stderr
    assert f"is a Python script run by {sys.executable} (its #! line)" in proc.stdout, proc.stdout
    assert "hook: " in proc.stdout and "loaded" in proc.stdout and "FAIRPOOL_HUB_WATCH=0.05" in proc.stdout
    assert proc.stdout.rstrip().endswith(
        "would be patched when it imports eventlet (a process that never imports eventlet is left alone)"
    )


def test_check_an_env_shebang_and_pythons_module_form(tmp_path: Path) -> None:
    tool = tmp_path / "svc"
    tool.write_text("#!/usr/bin/env python3\nraise SystemExit('ran')\n")
    tool.chmod(0o755)
    env = base_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert fairpool_run("--check", "--", str(tool), env=env).returncode == 0
    proc = fairpool_run("--check", "--", sys.executable, "-m", "http.server", env=env)
    assert proc.returncode == 0 and f"{sys.executable} is a Python interpreter" in proc.stdout, proc.stdout


def test_check_says_no_for_a_command_that_is_not_python(tmp_path: Path) -> None:
    proc = fairpool_run("--check", "--", "sh", "-c", "exit 0")
    assert proc.returncode == 1, proc.stdout
    assert "neither a Python interpreter nor a script with a Python #! line" in proc.stdout
    assert "would NOT be patched: the command is not run by a Python interpreter" in proc.stdout
    script_file = tmp_path / "tool"
    script_file.write_text("#!/bin/sh\necho hi\n")
    script_file.chmod(0o755)
    proc = fairpool_run("--check", "--", str(script_file))
    assert proc.returncode == 1 and "is a script run by /bin/sh, not by Python" in proc.stdout, proc.stdout


def test_check_says_no_when_the_interpreter_ignores_the_environment() -> None:
    proc = fairpool_run("--check", "--", sys.executable, "-I", "-c", "pass")
    assert proc.returncode == 1, proc.stdout
    assert "would NOT be patched: the interpreter ignores PYTHONPATH and FAIRPOOL_* (-E or -I)" in proc.stdout


def test_check_says_no_when_eventlet_is_not_installed_for_the_interpreter(tmp_path: Path) -> None:
    # An interpreter that cannot find eventlet: the same Python with no site-packages (-S drops the hook too).
    fake = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fake)], check=True, timeout=TIMEOUT)
    proc = fairpool_run("--check", "--", str(fake / "bin" / "python"), "-m", "svc")
    assert proc.returncode == 1, proc.stdout
    assert "eventlet: NOT importable by this interpreter" in proc.stdout, proc.stdout
    assert (
        "eventlet is not installed for this interpreter: the service runs exactly as without" in proc.stdout
    )


def test_check_reports_bad_option_variables_from_the_environment() -> None:
    proc = fairpool_run("--check", "--", sys.executable, "-c", "pass", env=base_env(FAIRPOOL_HUB_WATCH="x"))
    assert proc.returncode == 1, proc.stdout
    assert "FAIRPOOL_HUB_WATCH must be a number of seconds from 0.01 to 3600, got 'x'" in proc.stdout


def test_the_hook_imports_nothing_at_start_on_or_off(tmp_path: Path) -> None:
    code = "import sys, json; print(json.dumps(sorted(sys.modules)))"

    def modules(env: dict[str, str]) -> set[str]:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=tmp_path,
        )
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return set(json.loads(proc.stdout))

    without = modules(base_env())
    hooked = dict(base_env(), PYTHONPATH=os.pathsep.join([autopatch.bootstrap_path(), str(ROOT)]))
    off = modules(hooked)
    on = modules(dict(hooked, FAIRPOOL_AUTOPATCH="1"))
    # importlib.machinery finds a sitecustomize to chain to (importlib.util loads one, if there is one)
    allowed = {"sitecustomize", "importlib.machinery", "importlib"}
    assert off - without <= allowed, f"the hook, switched off, imported {sorted(off - without - allowed)}"
    assert on - without <= allowed, f"the hook, switched on, imported {sorted(on - without - allowed)}"
    assert not {m for m in on if m.split(".")[0] in ("eventlet", "fairpool", "greenlet", "typing")}


def test_a_service_run_as_python_dash_m_is_patched(tmp_path: Path) -> None:
    script(tmp_path, "svc_module.py", LATE_EVENTLET)
    proc = fairpool_run("--", sys.executable, "-m", "svc_module", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["thread"].startswith("fairpool-default-"), proc.stdout


def test_the_patch_brings_in_no_module_that_fairpool_monkey_patch_does_not(tmp_path: Path) -> None:
    # What eventlet.monkey_patch() later finds already imported is what it would find after a
    # service's own `import eventlet; import fairpool; fairpool.monkey_patch()`, fairpool's modules aside.
    listing = "import sys, json; print(json.dumps(sorted(m for m in sys.modules if 'fairpool' not in m)))"
    by_hand = subprocess.run(
        [sys.executable, "-c", f"import eventlet, fairpool; fairpool.monkey_patch(); {listing}"],
        env=base_env(), capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
    )  # fmt: skip
    hooked = fairpool_run("--", sys.executable, "-c", f"import eventlet; {listing}", cwd=tmp_path)
    assert by_hand.returncode == 0 and hooked.returncode == 0, by_hand.stderr + hooked.stderr
    extra = set(json.loads(hooked.stdout)) - set(json.loads(by_hand.stdout)) - {"sitecustomize"}
    assert not extra, f"the hook imported more than fairpool.monkey_patch() does: {sorted(extra)}"


DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(
    not (DEBIAN_PYTHON.exists() and list(Path("/usr/lib").glob("python3.*/sitecustomize.py"))),
    reason="no Debian python3 with its own /usr/lib/python3.x/sitecustomize.py here",
)
def test_debians_own_sitecustomize_is_chained() -> None:
    probe = "import sitecustomize; print(sitecustomize.__file__)"
    env = autopatch.environment(base_env())
    proc = subprocess.run(
        [str(DEBIAN_PYTHON), "-c", probe], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"/usr/lib/python3\.\d+/sitecustomize\.py\n", proc.stdout), proc.stdout
    check = fairpool_run("--check", "--", str(DEBIAN_PYTHON), "-c", "pass")
    assert "the sitecustomize it hides, run after it: /usr/lib/python3." in check.stdout, check.stdout


@pytest.mark.parametrize(
    ("first_lines", "interpreter"),
    [
        ("#!/usr/bin/python3.11 -s\n", ["/usr/bin/python3.11", "-s"]),
        ("#!/usr/bin/env python3\n", ["python3"]),
        ("#!/usr/bin/env -S python3 -u\n", ["python3", "-u"]),
        # pip's launcher when the interpreter's path is too long for a #! line
        (
            "#!/bin/sh\n'''exec' /very/long/venv/bin/python \"$0\" \"$@\"\n' '''\n",
            ["/very/long/venv/bin/python"],
        ),
        ("#!/bin/bash\necho hi\n", ["/bin/bash"]),
        ("print('no #! line')\n", None),
    ],
)
def test_the_interpreter_of_a_script(tmp_path: Path, first_lines: str, interpreter: list[str] | None) -> None:
    path = tmp_path / "tool"
    path.write_text(first_lines)
    assert autopatch._shebang(str(path)) == interpreter
