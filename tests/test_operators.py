"""docs/operators.md runs: its ```sh blocks, in order, in one shell, against the example service.

The walk-through is the test's script, so the two cannot drift: every ``sh``
block of the page runs (a shell block in another language is refused, so
none is silently skipped), from the repository's root, with ``python`` and
``fairpool`` on ``PATH`` being this interpreter. The service
(docs/examples/blocking_service.py) is started in the background by the page
itself, as an operator would; whatever is left is killed with the shell's
process group. Then the facts the page claims are checked in the output.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "operators.md"
FENCE = re.compile(r"^(`{3,})\s*([^\s`]*)\s*$")
SHELLS = {"sh", "bash", "shell", "console", "shell-session"}
TIMEOUT = 240  # seconds, for the whole walk-through
MARK = "#### block at line "


def sh_blocks(text: str) -> list[tuple[int, str]]:
    """The ``sh`` blocks of a page, with the line of each opening fence; other shell languages refused."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence.group(1)):
                end += 1
            lang = fence.group(2).lower()
            if lang == "sh":
                found.append((i + 1, "\n".join(lines[i + 1 : end])))
            elif lang in SHELLS:
                raise AssertionError(f"{DOC.name}:{i + 1}: a {lang} block: write ```sh so that it runs in CI")
            i = end
        i += 1
    return found


def shims(directory: Path) -> None:
    """``python`` and ``fairpool`` on PATH as this interpreter (a venv's python, not a bare symlink)."""
    directory.mkdir()
    for name, line in {
        "python": f'exec "{sys.executable}" "$@"',
        "fairpool": f'exec "{sys.executable}" -m fairpool "$@"',
    }.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)


def test_the_parser_finds_sh_blocks_and_refuses_other_shells() -> None:
    assert sh_blocks("x\n```sh\na\nb\n```\n```text\nout\n```\n") == [(2, "a\nb")]
    with pytest.raises(AssertionError, match="write ```sh"):
        sh_blocks("```bash\nls\n```\n")


@pytest.mark.timeout(TIMEOUT + 30)
def test_the_operators_walk_through_runs(tmp_path: Path) -> None:
    blocks = sh_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8, f"{DOC.name}: only {len(blocks)} sh blocks found: is the parser broken?"
    script = "set -euo pipefail\n" + "\n".join(
        f"echo '{MARK}{line}' >&2\necho '{MARK}{line}'\n{code}" for line, code in blocks
    )
    shims(tmp_path / "bin")
    env = dict(os.environ)
    for name in [n for n in env if n.startswith(("FAIRPOOL_", "EVENTLET_THREADPOOL"))]:
        del env[name]
    env["PATH"] = os.pathsep.join([str(tmp_path / "bin"), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the background service is killed with it
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"the walk-through did not finish in {TIMEOUT} s; last block: {_last_block(err)}\n{err[-3000:]}"
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, (
        f"{DOC.name}: the block at line {_last_block(err)} failed (exit {proc.returncode})\n"
        f"stdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    )
    by_block = _split(out)
    lines = [line for line, _ in blocks]

    def output_of(fragment: str) -> str:
        for line, code in blocks:
            if fragment in code:
                return by_block.get(line, "")
        raise AssertionError(f"{DOC.name}: no sh block holds {fragment!r}")

    assert set(by_block) <= set(lines)
    check = output_of("fairpool run --check")
    assert check.rstrip().endswith("would be patched when it imports eventlet (a process that never "
                                   "imports eventlet is left alone)"), check  # fmt: skip
    confirmed = output_of("grep 'fairpool: eventlet.tpool runs on fairpool' \"$WORK/service.log\"")
    assert re.fullmatch(
        r"fairpool: eventlet\.tpool runs on fairpool in pid \d+ \(FAIRPOOL_AUTOPATCH; threads=20, "
        r"trace=off, hub_watch=off, otel=off, metrics=http://127\.0\.0\.1:\d+/metrics\)\n",
        confirmed,
    ), confirmed
    scrape = output_of('curl -s "$METRICS"')
    default = 'fairpool_lane="default",fairpool_pool_name="default"'
    for line in (
        f'fairpool_pool_calls_total{{fairpool_call_outcome="returned",{default}}} 51.0',  # 1 query, 50 audit
        'fairpool_pool_thread_limit{fairpool_pool_name="default"} 20.0',
        f'fairpool_pool_call_queue_wait_duration_seconds_bucket{{{default},le="+Inf"}} 51.0',
        f"fairpool_pool_call_queue_wait_duration_seconds_count{{{default}}} 51.0",
    ):
        assert line in scrape.splitlines(), f"{line!r} not in the scrape:\n{scrape}"
    status = output_of('curl -s "$URL/status"')
    assert '{"thread": "fairpool-default-' in status and '"fairpool": true' in status, status
    contention = output_of('curl -s "$URL/audit')
    assert contention.startswith('{"thread": "fairpool-default-'), contention
    stall = output_of("grep -A 2 'hub was blocked for'")
    assert "the eventlet hub was blocked for" in stall and "threshold 50 ms" in stall, stall
    report = output_of('fairpool report "$WORK/traces"')
    assert "run Hypervisor.query" in report or "query" in report, report
    env_file = output_of("fairpool run --print-env")
    assert env_file.startswith("FAIRPOOL_AUTOPATCH=1\nPYTHONPATH=") and "FAIRPOOL_HUB_WATCH=0.05" in env_file
    systemd = output_of("set -a;")
    assert systemd.startswith('1\n{"thread": "fairpool-default-'), systemd
    off = output_of('python docs/examples/blocking_service.py --port-file "$WORK/port4"')
    assert '"fairpool": false' in off and "fairpool-" not in off, off


def _last_block(stderr: str) -> str:
    marks = [line for line in stderr.splitlines() if line.startswith(MARK)]
    return marks[-1][len(MARK) :] if marks else "?"


def _split(stdout: str) -> dict[int, str]:
    """The walk-through's stdout, by the line of the block that printed it."""
    parts: dict[int, str] = {}
    current = None
    for line in stdout.splitlines(keepends=True):
        if line.startswith(MARK):
            current = int(line[len(MARK) :])
            parts[current] = ""
        elif current is not None:
            parts[current] += line
    return parts
