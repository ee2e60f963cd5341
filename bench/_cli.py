"""What the measurement modules share: quick or full sizes, medians, and the command line."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from typing import Any

_full = [False]  # set once by main(), before the measurement runs


def pick(quick: Any, full: Any) -> Any:
    """``full`` in a ``--full`` run, else ``quick``."""
    return full if _full[0] else quick


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main(
    prog: str,
    measurements: dict[str, Callable[[], dict[str, Any]]],
    argv: list[str] | None = None,
    after: Callable[[], None] | None = None,
) -> int:
    """``python -m PROG NAME [--full]``: run one measurement, print its JSON, then ``after()``."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("name", choices=sorted(measurements))
    parser.add_argument("--full", action="store_true", help="the long run, for published numbers")
    args = parser.parse_args(argv)
    _full[0] = args.full
    json.dump(measurements[args.name](), sys.stdout)
    sys.stdout.flush()
    if after is not None:
        after()
    return 0
