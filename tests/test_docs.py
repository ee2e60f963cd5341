"""The documentation's code runs: every fenced ```python block in README.md and docs/*.md.

Each block runs alone in a fresh interpreter (so a block that imports
nothing fails, as it would for a reader who copies it). A block that cannot
run here (it needs libvirt, a real service, or it is a fragment) is skipped
only when the line before it, blank lines aside, is an HTML comment giving
the reason, which readers of the rendered page do not see::

    <!-- not-run: needs a Ceph cluster -->
    ```python
    ...
    ```
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run\b:?\s*(.*?)\s*-->\s*$")
TIMEOUT = 30  # seconds, per block


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    code: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The python blocks of a Markdown file, and the problems with its not-run markers."""
    found: list[Block] = []
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    where = path.relative_to(ROOT)
    pending: tuple[int, str] | None = None  # a not-run marker waiting for its block
    i = 0
    while i < len(lines):
        text = lines[i]
        marker = NOT_RUN.match(text)
        fence = FENCE.match(text)
        if marker:
            if pending is not None:
                problems.append(f"{where}:{pending[0]}: not-run marker with no python block after it")
            if not marker.group(1):
                problems.append(f"{where}:{i + 1}: not-run marker without a reason")
            pending = (i + 1, marker.group(1))
        elif fence:
            ticks, lang = fence.group(1), fence.group(2).lower()
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(ticks):
                end += 1
            if lang in PYTHON:
                code = "\n".join(lines[i + 1 : end])
                found.append(Block(path, i + 1, code, pending[1] if pending else None))
            elif pending is not None:
                problems.append(f"{where}:{pending[0]}: not-run marker before a {lang or 'plain'} block")
            pending = None
            i = end
        elif text.strip() and pending is not None:
            problems.append(f"{where}:{pending[0]}: not-run marker with no python block after it")
            pending = None
        i += 1
    if pending is not None:
        problems.append(f"{where}:{pending[0]}: not-run marker with no python block after it")
    return found, problems


ALL = [b for path in FILES for b in blocks(path)[0]]


def test_every_doc_file_is_read_and_its_markers_are_well_formed() -> None:
    assert ROOT / "docs" / "design.md" in FILES and ROOT / "docs" / "reliability.md" in FILES
    problems = [p for path in FILES for p in blocks(path)[1]]
    assert not problems, "\n".join(problems)
    assert any(b.not_run is None for b in ALL), "no runnable block found: is the parser broken?"


def test_the_parser_finds_blocks_and_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    doc = tmp_path / "x.md"
    doc.write_text(
        "# x\n\n```python\nprint(1)\n```\n\n<!-- not-run: needs a cluster -->\n\n"
        "```python\nconnect()\n```\n\n```sh\nls\n```\n\n<!-- not-run: -->\n```py\nx\n```\n"
        "<!-- not-run: stray -->\ntext\n"
    )
    found, problems = blocks(doc)
    assert [(b.line, b.code, b.not_run) for b in found] == [
        (3, "print(1)", None),
        (9, "connect()", "needs a cluster"),
        (18, "x", ""),
    ]
    assert problems == [
        "x.md:17: not-run marker without a reason",
        "x.md:21: not-run marker with no python block after it",
    ]


@pytest.mark.parametrize("block", ALL, ids=[b.where for b in ALL])
def test_the_block_runs(block: Block, tmp_path: Path) -> None:
    if block.not_run is not None:
        pytest.skip(f"{block.where}: not run: {block.not_run}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", block.code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the python block did not finish in {TIMEOUT} s")
    if proc.returncode != 0:
        pytest.fail(
            f"{block.where}: the python block failed (exit {proc.returncode}); "
            f"mark it <!-- not-run: reason --> if it cannot run here\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
