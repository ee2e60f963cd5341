"""A job's states (fairpool._job): the one table of moves, and the stores that bypass move()."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from fairpool import _job
from fairpool._job import STATE_NAMES, TRANSITIONS, Job, move

PACKAGE = Path(_job.__file__).parent
STATES = {name.upper(): index for index, name in enumerate(STATE_NAMES)}


def _job_in(state: int) -> Job:
    job = Job(print, (), {}, "default", 1)
    job.state = state
    return job


def test_move_allows_exactly_the_moves_in_the_table() -> None:
    wrong = []
    for a, b in itertools.product(range(len(STATE_NAMES)), repeat=2):
        job = _job_in(a)
        moved = move(job, b)
        if moved != ((a, b) in TRANSITIONS) or job.state != (b if moved else a):
            wrong.append(f"{STATE_NAMES[a]} -> {STATE_NAMES[b]}: move() said {moved}, now {job.state}")
    assert not wrong, "move() disagrees with TRANSITIONS:\n" + "\n".join(wrong)


def test_every_final_state_is_reached_and_left_by_no_move() -> None:
    final = {"done", "cancelled", "abandoned", "closed"}
    assert {STATE_NAMES[b] for _, b in TRANSITIONS} >= final
    assert not [(a, b) for a, b in TRANSITIONS if STATE_NAMES[a] in final], "a final state can be left"


def test_every_direct_store_of_a_state_names_a_move_the_table_allows() -> None:
    """A store that bypasses move() (the hot path) must say which move it makes, and the
    table must allow it: ``job.state = RUNNING  # QUEUED -> RUNNING``."""
    store = re.compile(r"\.state = ([A-Z]+)\b(.*)$")
    named = re.compile(r"#\s*([A-Z]+) -> ([A-Z]+)\b")
    problems, seen = [], 0
    for path in sorted(PACKAGE.glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            found = store.search(line)
            if found is None:
                continue
            where = f"{path.name}:{number}: {line.strip()}"
            if path.name == "_job.py" and found.group(1) == "NEW":
                continue  # Job.__init__: where every job starts
            seen += 1
            comment = named.search(found.group(2))
            if comment is None:
                problems.append(f"{where}\n    names no move (add '# FROM -> TO')")
                continue
            a, b = comment.groups()
            if b != found.group(1):
                problems.append(f"{where}\n    names a move to {b} but stores {found.group(1)}")
            elif (STATES.get(a), STATES.get(b)) not in TRANSITIONS:
                problems.append(f"{where}\n    {a} -> {b} is not in TRANSITIONS")
    assert seen >= 3, f"found only {seen} direct stores: the pattern no longer matches the code"
    assert not problems, "\n".join(problems)
