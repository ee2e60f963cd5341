"""Switching fairpool on from outside a service: ``fairpool run`` and ``FAIRPOOL_AUTOPATCH``.

``fairpool run [OPTIONS] -- COMMAND [ARGS...]`` replaces itself (``exec``) with
COMMAND, in an environment where every Python interpreter that starts (the
service, its forked and spawned workers, the Python subprocesses it runs)
applies ``fairpool.monkey_patch()`` right after its own ``import eventlet``:

* ``PYTHONPATH`` gets fairpool's start-up hook directory first
  (:func:`bootstrap_path`, which holds only a ``sitecustomize.py``; it runs
  the ``sitecustomize`` it hides, so that one keeps working);
* ``FAIRPOOL_AUTOPATCH=1`` switches the hook on (``quiet``: on, without the
  line on stderr; ``0``: off, for one process of the tree);
* the options become the variables fairpool already reads:
  ``EVENTLET_THREADPOOL_SIZE``, ``FAIRPOOL_TRACE``, ``FAIRPOOL_HUB_WATCH``,
  ``FAIRPOOL_OTEL``, ``FAIRPOOL_METRICS_PORT`` and ``FAIRPOOL_METRICS_ADDR``
  (a Prometheus endpoint in the service: :mod:`fairpool.metrics_http`).

A service started by systemd or a container entry point gets the same from
those variables (``fairpool run --print-env`` prints them). Nothing is
imported before the service imports eventlet, fairpool included: a service
that never imports eventlet runs as it would without fairpool.

When a process is patched this way it says so once on stderr (the journal,
under systemd), and on the ``fairpool`` logger at INFO::

    fairpool: eventlet.tpool runs on fairpool in pid 4242 (FAIRPOOL_AUTOPATCH; threads=20, ...)
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

# argparse and shlex are imported where the command needs them: this module is also
# imported inside the service (by the hook, right after eventlet), which should get
# nothing it would not otherwise have.

__all__ = [
    "AUTOPATCH_VARIABLE",
    "OPTION_VARIABLES",
    "CheckResult",
    "bootstrap_path",
    "check",
    "environment",
    "main",
]

log = logging.getLogger("fairpool")

AUTOPATCH_VARIABLE = "FAIRPOOL_AUTOPATCH"
#: How the line that a patched process writes on stderr (and logs) begins.
CONFIRMATION = "fairpool: eventlet.tpool runs on fairpool"
SIZE_VARIABLE = "EVENTLET_THREADPOOL_SIZE"
TRACE_VARIABLE = "FAIRPOOL_TRACE"
HUB_WATCH_VARIABLE = "FAIRPOOL_HUB_WATCH"
OTEL_VARIABLE = "FAIRPOOL_OTEL"
METRICS_PORT_VARIABLE = "FAIRPOOL_METRICS_PORT"  # fairpool.metrics_http.PORT_VARIABLE
METRICS_ADDR_VARIABLE = "FAIRPOOL_METRICS_ADDR"  # fairpool.metrics_http.ADDRESS_VARIABLE
#: The variables behind ``fairpool run``'s options, by option.
OPTION_VARIABLES = {
    "--threads": SIZE_VARIABLE,
    "--trace": TRACE_VARIABLE,
    "--hub-watch": HUB_WATCH_VARIABLE,
    "--otel": OTEL_VARIABLE,
    "--metrics-port": METRICS_PORT_VARIABLE,
    "--metrics-addr": METRICS_ADDR_VARIABLE,
}
#: What ``--otel`` accepts, as a comma list.
OTEL_SIGNALS = ("spans", "metrics")
#: Seconds the ``--check`` probe of the interpreter may take.
PROBE_TIMEOUT = 30.0
# The hub watch's bounds (fairpool.hubwatch's, kept here so the command imports nothing of the pool).
_HUB_WATCH_MIN = 0.01
_HUB_WATCH_MAX = 3600.0
_PYTHON_NAME = re.compile(r"^(python|pypy)(\d+(\.\d+)?)?(-dbg)?$")


def bootstrap_path() -> str:
    """The directory to put first on ``PYTHONPATH``: it holds fairpool's ``sitecustomize.py`` only."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_importlib_bootstrap")


# -- in the service: the patch, applied by the hook ---------------------------------


def _on_eventlet_imported(*, quiet: bool = False) -> None:
    """Apply ``fairpool.monkey_patch()`` now (the hook calls this right after ``import eventlet``)."""
    import fairpool

    if fairpool.is_patched():
        return
    fairpool.monkey_patch()
    endpoint = _serve_metrics()
    message = (
        f"{CONFIRMATION} in pid {os.getpid()} ({AUTOPATCH_VARIABLE}; {_describe_in_process()}{endpoint})"
    )
    if not quiet:
        try:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - no stderr to write to: the log line still goes
            pass
    log.info(message)


def _serve_metrics() -> str:
    """``FAIRPOOL_METRICS_PORT``: serve the metrics (:func:`fairpool.metrics_http.serve`).

    Returns the confirmation line's words for it (empty when not asked). A failure
    (packages missing, the port in use) is one line on stderr; the service runs on.
    """
    raw = os.environ.get(METRICS_PORT_VARIABLE, "").strip()
    if not raw:
        return ""
    from . import metrics_http

    address = os.environ.get(METRICS_ADDR_VARIABLE, "").strip() or metrics_http.DEFAULT_ADDRESS
    try:
        port = metrics_http.check_port(raw, METRICS_PORT_VARIABLE)
        address, port = metrics_http.serve(port, address)
    except Exception as exc:  # noqa: BLE001 - a feature from the environment must not stop the service
        line = f"fairpool: metrics not served in pid {os.getpid()}: {exc}"
        if isinstance(exc, OSError):
            line += f" ({address}:{raw})"
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - no stderr: the log line still goes
            pass
        log.warning(line)
        return ", metrics=not served"
    return f", metrics=http://{address}:{port}/metrics"


def _describe_in_process() -> str:
    from . import trace
    from .pool import DEFAULT_THREADS

    tracer = trace.active()
    size = os.environ.get(SIZE_VARIABLE, "").strip() or str(DEFAULT_THREADS)
    return ", ".join(
        [
            f"threads={size}",
            f"trace={tracer.path if tracer is not None else 'off'}",
            f"hub_watch={os.environ.get(HUB_WATCH_VARIABLE, '').strip() or 'off'}",
            f"otel={os.environ.get(OTEL_VARIABLE, '').strip() or 'off'}",
        ]
    )


# -- options -----------------------------------------------------------------------


def _check_threads(raw: str, name: str) -> str:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a number of threads >= 1, got {raw!r}")
    return str(value)


def _check_trace(raw: str, name: str) -> str:
    if not raw.strip():
        raise ValueError(f"{name} must be a directory for the trace files, got {raw!r}")
    path = os.path.abspath(raw)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(
                f"{name} must be a directory (one trace file per process goes in it), "
                f"got {raw!r}, which exists and is not a directory"
            )
    elif not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"{name} must be a directory whose parent exists, got {raw!r}")
    return path.rstrip(os.sep) + os.sep


def _check_hub_watch(raw: str, name: str) -> str:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and _HUB_WATCH_MIN <= value <= _HUB_WATCH_MAX):
        raise ValueError(
            f"{name} must be a number of seconds from {_HUB_WATCH_MIN:g} to {_HUB_WATCH_MAX:g}, got {raw!r}"
        )
    return raw.strip()


def _check_otel(raw: str, name: str) -> str:
    items = [item.strip().lower() for item in raw.split(",")]
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        items = ["spans"]
    if not items or any(item not in OTEL_SIGNALS for item in items):
        raise ValueError(f"{name} must be spans, metrics or spans,metrics, got {raw!r}")
    chosen = [signal for signal in OTEL_SIGNALS if signal in items]
    # Spans alone as "1", which every fairpool since 0.1 reads as spans.
    return "1" if chosen == ["spans"] else ",".join(chosen)


def _check_metrics_port(raw: str, name: str) -> str:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a TCP port from 0 (any free port) to 65535, got {raw!r}")
    return str(value)


def _check_metrics_addr(raw: str, name: str) -> str:
    if not raw.strip() or any(c.isspace() for c in raw.strip()) or "/" in raw:
        raise ValueError(f"{name} must be an address to bind, such as 127.0.0.1 or 0.0.0.0, got {raw!r}")
    return raw.strip()


_CHECKS = {
    SIZE_VARIABLE: _check_threads,
    TRACE_VARIABLE: _check_trace,
    HUB_WATCH_VARIABLE: _check_hub_watch,
    OTEL_VARIABLE: _check_otel,
    METRICS_PORT_VARIABLE: _check_metrics_port,
    METRICS_ADDR_VARIABLE: _check_metrics_addr,
}


def environment(
    base: Mapping[str, str] | None = None,
    *,
    threads: int | str | None = None,
    trace: str | None = None,
    hub_watch: float | str | None = None,
    otel: str | None = None,
    metrics_port: int | str | None = None,
    metrics_addr: str | None = None,
    quiet: bool = False,
) -> dict[str, str]:
    """The environment ``fairpool run`` gives its command: ``base`` (default ``os.environ``) plus the hook.

    Args:
        base: The environment to start from.
        threads: The default pool's size (``EVENTLET_THREADPOOL_SIZE``), >= 1.
        trace: A directory for one trace file per process (``FAIRPOOL_TRACE``); made if missing.
        hub_watch: Seconds of hub stall to report (``FAIRPOOL_HUB_WATCH``), 0.01 to 3600.
        otel: OpenTelemetry signals (``FAIRPOOL_OTEL``): ``spans``, ``metrics`` or ``spans,metrics``.
        metrics_port: Serve the metrics for Prometheus on this port in each patched process
            (``FAIRPOOL_METRICS_PORT``; 0: any free port, named in the confirmation line).
        metrics_addr: The address the metrics endpoint binds (``FAIRPOOL_METRICS_ADDR``);
            127.0.0.1 by default. Only with ``metrics_port``.
        quiet: Do not say on stderr that a process was patched (``FAIRPOOL_AUTOPATCH=quiet``).

    Raises:
        ValueError: An option's value is not valid; the message names the option and the value.
    """
    env = dict(os.environ if base is None else base)
    given = {
        SIZE_VARIABLE: (threads, "--threads"),
        TRACE_VARIABLE: (trace, "--trace"),
        HUB_WATCH_VARIABLE: (hub_watch, "--hub-watch"),
        OTEL_VARIABLE: (otel, "--otel"),
        METRICS_PORT_VARIABLE: (metrics_port, "--metrics-port"),
        METRICS_ADDR_VARIABLE: (metrics_addr, "--metrics-addr"),
    }
    for variable, (value, option) in given.items():
        if value is not None:
            env[variable] = _CHECKS[variable](str(value), option)
    if metrics_addr is not None and not env.get(METRICS_PORT_VARIABLE, "").strip():
        raise ValueError(f"--metrics-addr needs --metrics-port (got --metrics-addr {metrics_addr!r} alone)")
    hook = bootstrap_path()
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != hook]
    env["PYTHONPATH"] = os.pathsep.join([hook, *paths])
    env[AUTOPATCH_VARIABLE] = "quiet" if quiet else "1"
    return env


def _option_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the option variables found in ``env``."""
    problems = []
    for variable, check_value in _CHECKS.items():
        raw = env.get(variable)
        if raw is not None and raw.strip():
            try:
                check_value(raw, variable)
            except ValueError as exc:
                problems.append(str(exc))
    return problems


# -- --check -----------------------------------------------------------------------

_PROBE = """\
import importlib.util, json, sys
def where(name):
    try:
        spec = importlib.util.find_spec(name)
    except Exception as exc:
        return "error: %s" % exc
    return spec.origin if spec is not None else None
site = sys.modules.get("sitecustomize")
print(json.dumps({
    "executable": sys.executable,
    "version": sys.version.split()[0],
    "fairpool": where("fairpool"),
    "eventlet": where("eventlet"),
    "hook": any(type(f).__name__ == "EventletFinder" for f in sys.meta_path),
    "sitecustomize": getattr(site, "__file__", None),
    "ignores_environment": bool(sys.flags.ignore_environment or sys.flags.isolated),
    "no_site": bool(sys.flags.no_site),
    "eventlet_imported": "eventlet" in sys.modules,
    "otel_sdk": where("opentelemetry.sdk.metrics"),
    "prometheus_exporter": where("opentelemetry.exporter.prometheus"),
}))
"""


@dataclass
class CheckResult:
    """What ``fairpool run --check`` found: would the command be patched, and how."""

    patched: bool
    lines: list[str] = field(default_factory=list)  #: the report, one line each

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _interpreter_flags(args: Sequence[str]) -> list[str]:
    """The interpreter options at the start of ``python ARGS`` (they change how it starts)."""
    flags: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-m", "-c", "-", "--") or not arg.startswith("-"):
            break
        flags.append(arg)
        if arg in ("-X", "-W") and i + 1 < len(args):
            flags.append(args[i + 1])
            i += 1
        i += 1
    return flags


def _shebang(path: str) -> list[str] | None:
    """The interpreter command of a script (``#!`` line; pip's ``'''exec'`` form too), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    import shlex

    lines = head.decode("utf-8", "replace").splitlines()
    words = shlex.split(lines[0][2:], posix=True) if lines[0][2:].strip() else []
    if words and os.path.basename(words[0]) in ("sh", "bash") and len(lines) > 1:
        # pip's launcher for long paths: #!/bin/sh then '''exec' /path/python "$0" "$@"
        if lines[1].startswith("'''exec' "):
            second = shlex.split(lines[1][len("'''exec' ") :].replace("' '''", ""), posix=True)
            return [w for w in second if w not in ('"$0"', "$0", '"$@"', "$@")][:1]
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
        while words and (words[0].startswith("-") or "=" in words[0]):
            words = words[1:]
    return words or None


def _resolve(command: Sequence[str], env: Mapping[str, str]) -> tuple[list[str] | None, str]:
    """The interpreter (with its start-up flags) that runs ``command``, or None and why not."""
    program = command[0]
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        return None, f"{program}: command not found (PATH={env.get('PATH', '')!r})"
    if _PYTHON_NAME.match(os.path.basename(found)) or _PYTHON_NAME.match(
        os.path.basename(os.path.realpath(found))
    ):
        return [found, *_interpreter_flags(command[1:])], f"{found} is a Python interpreter"
    words = _shebang(found)
    if words is None:
        return None, (
            f"{found} is neither a Python interpreter nor a script with a Python #! line "
            "(a Python process it starts inherits the hook and is patched when it imports eventlet, "
            "but that cannot be checked from here)"
        )
    interpreter = shutil.which(words[0], path=env.get("PATH", os.defpath)) or words[0]
    if not _PYTHON_NAME.match(os.path.basename(interpreter)):
        return None, f"{found} is a script run by {words[0]}, not by Python"
    return [interpreter, *words[1:]], f"{found} is a Python script run by {interpreter} (its #! line)"


def _metrics_line(probe: Mapping[str, object], env: Mapping[str, str]) -> str:
    """``--check``'s line about the metrics endpoint: asked for? can this interpreter serve it?"""
    missing = [
        package
        for package, key in (
            ("opentelemetry-sdk", "otel_sdk"),
            ("opentelemetry-exporter-prometheus", "prometheus_exporter"),
        )
        if probe.get(key) is None or str(probe.get(key)).startswith("error")
    ]
    have = "importable" if not missing else f"NOT importable ({', '.join(missing)} missing)"
    port = env.get(METRICS_PORT_VARIABLE, "").strip()
    if not port:
        return (
            f"metrics endpoint: off (--metrics-port); opentelemetry-sdk and the Prometheus exporter: {have}"
        )
    address = env.get(METRICS_ADDR_VARIABLE, "").strip() or "127.0.0.1"
    where = f"http://{address}:{port}/metrics"
    if port == "0":
        where = f"http://{address}:PORT/metrics (any free port, named in the confirmation line)"
    if missing:
        return f"metrics endpoint: {where} would NOT be served: {', '.join(missing)} missing here"
    return f"metrics endpoint: {where} (opentelemetry-sdk and the Prometheus exporter importable)"


def check(command: Sequence[str], env: Mapping[str, str]) -> CheckResult:
    """Whether ``command`` run in ``env`` (from :func:`environment`) would be patched, and how.

    Runs only the interpreter that would run the service, with a short ``-c``
    that looks (without importing them) for fairpool and eventlet: the
    service itself does not run.

    Args:
        command: The command line, as given to ``fairpool run``.
        env: The environment it would run in.
    """
    import shlex

    result = CheckResult(patched=False, lines=[f"command: {shlex.join(command)}"])
    say = result.lines.append
    interpreter, how = _resolve(command, env)
    say(f"interpreter: {how}")
    if interpreter is None:
        say("would NOT be patched: the command is not run by a Python interpreter")
        return result
    try:
        proc = subprocess.run(
            [*interpreter, "-c", _PROBE],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        probe = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if "proc" in locals() and proc.stderr:
            detail += f"; stderr: {proc.stderr.strip()[-500:]}"
        say(f"would NOT be patched: {shlex.join(interpreter)} could not be asked ({detail})")
        return result
    say(f"python: {probe['executable']} (Python {probe['version']})")
    reasons = []
    if probe["ignores_environment"]:
        reasons.append("the interpreter ignores PYTHONPATH and FAIRPOOL_* (-E or -I)")
    elif probe["no_site"]:
        reasons.append("the interpreter runs no sitecustomize (-S)")
    elif not probe["hook"]:
        reasons.append(f"fairpool's start-up hook did not load ({AUTOPATCH_VARIABLE}, PYTHONPATH?)")
    ours = probe["sitecustomize"] is not None and os.path.dirname(probe["sitecustomize"]) == bootstrap_path()
    chained = probe["sitecustomize"] if probe["sitecustomize"] and not ours else "none"
    say(
        f"hook: {os.path.join(bootstrap_path(), 'sitecustomize.py')} on PYTHONPATH, "
        f"{'loaded' if probe['hook'] else 'NOT loaded'}; it patches right after the service "
        f"imports eventlet; the sitecustomize it hides, run after it: {chained}"
    )
    say(f"fairpool: {probe['fairpool'] or 'NOT importable by this interpreter'}")
    say(f"eventlet: {probe['eventlet'] or 'NOT importable by this interpreter'}")
    if probe["fairpool"] is None or str(probe["fairpool"]).startswith("error"):
        reasons.append(
            "this interpreter cannot import fairpool (install fairpool[eventlet] in its environment)"
        )
    if probe["eventlet"] is None or str(probe["eventlet"]).startswith("error"):
        reasons.append("eventlet is not installed for this interpreter: the service runs exactly as without")
    options = [f"{variable}={env[variable]}" for variable in _CHECKS if env.get(variable, "").strip()]
    say(f"options: {', '.join(options) if options else 'none (20 threads, no trace, no hub watch, no otel)'}")
    reasons += _option_problems(env)
    say(_metrics_line(probe, env))
    autopatch = env.get(AUTOPATCH_VARIABLE, "")
    if autopatch.strip().lower() == "quiet":
        say("confirmation: none on stderr (quiet); an INFO line on the fairpool logger")
    else:
        say(f"confirmation: one line on stderr per patched process: {CONFIRMATION!r}")
    if reasons:
        say("would NOT be patched: " + "; ".join(reasons))
    else:
        result.patched = True
        say("would be patched when it imports eventlet (a process that never imports eventlet is left alone)")
    return result


# -- the command ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="fairpool run",
        usage="fairpool run [OPTIONS] -- COMMAND [ARGS...]",
        description=(
            "Run COMMAND (a Python service: a console script, python -m ..., python script.py) with "
            "fairpool.monkey_patch() applied right after it imports eventlet, in it and in every Python "
            "process it starts. A process that never imports eventlet is left alone."
        ),
    )
    parser.add_argument("--threads", metavar="N", help=f"the default pool's size ({SIZE_VARIABLE})")
    parser.add_argument(
        "--trace", metavar="DIR", help=f"record a trace per process into DIR ({TRACE_VARIABLE}=DIR/)"
    )
    parser.add_argument(
        "--hub-watch", metavar="SECONDS", help=f"log hub stalls longer than SECONDS ({HUB_WATCH_VARIABLE})"
    )
    parser.add_argument(
        "--otel", metavar="SIGNALS", help=f"OpenTelemetry: spans, metrics or spans,metrics ({OTEL_VARIABLE})"
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        help=(
            "serve the metrics for Prometheus at http://127.0.0.1:PORT/metrics in the patched process "
            f"(0: any free port, named in the confirmation line; {METRICS_PORT_VARIABLE}); needs "
            "opentelemetry-sdk and opentelemetry-exporter-prometheus"
        ),
    )
    parser.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        help=f"the address the metrics endpoint binds (default 127.0.0.1; {METRICS_ADDR_VARIABLE})",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no line on stderr when a process is patched (the log line stays)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--check", action="store_true", help="say whether COMMAND would be patched, and how; do not run it"
    )
    what.add_argument("--print-path", action="store_true", help="print the hook's directory (for PYTHONPATH)")
    what.add_argument(
        "--print-env",
        action="store_true",
        help="print the environment to switch fairpool on without this command (systemd EnvironmentFile=)",
    )
    return parser


def _shown(word: str, limit: int = 200) -> str:
    """``word`` as one short printable line (quoted when it is not plain)."""
    if word and word.isprintable() and len(word) <= limit and " " not in word:
        return word
    return repr(word[:limit]) + ("..." if len(word) > limit else "")


def _find(name: str, env: Mapping[str, str]) -> str | None:
    """The file ``os.execvpe`` would have tried for ``name``: the path itself, or the first on PATH."""
    if os.sep in name:
        return name if os.path.lexists(name) else None
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _exec_failure(command: Sequence[str], env: Mapping[str, str], exc: OSError) -> tuple[str, int]:
    """Why ``os.execvpe(command)`` failed, in a shell's words, and the shell's exit status for it."""
    import errno

    path = _find(command[0], env)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if path is None or not os.path.isfile(path):
            return ("No such file or directory" if os.sep in command[0] else "command not found"), 127
        try:  # the file is there: the interpreter its #! line names is not
            with open(path, "rb") as f:
                first = f.readline(1024)
        except OSError:
            first = b""
        words = first[2:].split() if first.startswith(b"#!") else []
        if words:
            interpreter = _shown(os.fsdecode(words[0]))
            return f"bad interpreter {interpreter} (its #! line): No such file or directory", 126
        return "a file it needs (its loader or interpreter) is missing: No such file or directory", 126
    if path is not None and os.path.isdir(path):
        return "Is a directory", 126
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "Permission denied (not executable, or a directory on its path is not searchable)", 126
    if exc.errno == errno.ENOEXEC:
        return "Exec format error (neither a program nor a script with a #! line)", 126
    if exc.errno == errno.E2BIG:
        size = sum(len(os.fsencode(w)) + 1 for w in command)
        size += sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
        return (
            f"Argument list too long ({len(command)} arguments, {size:,} bytes with the environment; "
            "one argument may hold at most 128 KiB on Linux)"
        ), 126
    return exc.strerror or str(exc), 126


def _stop_own_trace() -> None:
    """Stop the trace that ``import fairpool`` started in this process from an inherited ``FAIRPOOL_TRACE``.

    This process becomes the service (same pid): its trace file must be the service's.
    """
    trace = sys.modules.get("fairpool.trace")
    if trace is None:
        return
    path = trace.stop()
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """``fairpool run``: returns an exit status, or does not return (the command replaces it)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--" in args_in:
        split = args_in.index("--")
        options, command = args_in[:split], args_in[split + 1 :]
    elif args_in and not args_in[0].startswith("-"):
        options, command = [], args_in
    else:
        options, command = args_in, []
    parser = _parser()
    args, extra = parser.parse_known_args(options)
    if extra:
        if not extra[0].startswith("-"):
            parser.error(
                f"unrecognized argument {_shown(extra[0])}: put '--' before the command "
                f"(fairpool run [OPTIONS] -- COMMAND [ARGS...])"
            )
        parser.error(f"unrecognized arguments: {' '.join(_shown(word) for word in extra)}")
    try:
        env = environment(
            threads=args.threads,
            trace=args.trace,
            hub_watch=args.hub_watch,
            otel=args.otel,
            metrics_port=args.metrics_port,
            metrics_addr=args.metrics_addr,
            quiet=args.quiet,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.print_path:
        print(bootstrap_path())
        return 0
    if args.print_env:
        for variable in (AUTOPATCH_VARIABLE, "PYTHONPATH", *_CHECKS):
            if env.get(variable, "").strip():
                print(f"{variable}={env[variable]}")
        return 0
    if not command:
        parser.error("no command: fairpool run [OPTIONS] -- COMMAND [ARGS...]")
    for i, word in enumerate(command):
        if "\0" in word:
            which = "the command name" if i == 0 else f"argument {i}"
            parser.error(f"{which} contains a NUL character, which no command line can carry: {_shown(word)}")
    if args.check:
        result = check(command, env)
        print(result)
        return 0 if result.patched else 1
    if not command[0]:
        empty = "'': command not found (the command name is empty: an unset variable?)"
        print(f"fairpool run: {empty}", file=sys.stderr)
        return 127
    _stop_own_trace()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        problem, status = _exec_failure(command, env, exc)
        print(f"fairpool run: {_shown(command[0])}: {problem}", file=sys.stderr)
        return status
    except ValueError as exc:  # nothing os.execvpe refuses is left unchecked above; kept one line regardless
        print(f"fairpool run: {_shown(command[0])}: {exc}", file=sys.stderr)
        return 2
