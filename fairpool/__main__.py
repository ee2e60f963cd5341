"""The ``fairpool`` command: ``fairpool demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fairpool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="show a blocking C call freezing green threads, and the fix")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo

        return demo.main()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
