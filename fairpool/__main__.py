"""The ``fairpool`` command: ``fairpool demo``, ``fairpool report TRACE.json ...``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairpool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show a blocking C call freezing green threads, and the fix")
    sub.add_parser(
        "report", help="name the contention in trace files (fairpool report --help)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from . import demo

        return demo.main()
    from . import report

    return report.main(rest)


if __name__ == "__main__":
    sys.exit(main())
