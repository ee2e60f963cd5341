"""The ``fairpool`` command: ``fairpool demo``, ``fairpool report TRACE.json ...``,
``fairpool run [OPTIONS] -- COMMAND ...``, ``fairpool --version``."""

from __future__ import annotations

import argparse
import sys

# Help is plain text: the module's docstring is reST.
DESCRIPTION = "fairpool: a fair, cancellable, instrumented drop-in for eventlet.tpool."


def _version() -> str:
    """The installed distribution's version; the package's own when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("fairpool")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["run"]:
        # Its own parser: everything after "--" is the command's, options and all.
        from . import autopatch

        return autopatch.main(args_in[1:])
    parser = argparse.ArgumentParser(prog="fairpool", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"fairpool {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("demo", help="show a blocking C call freezing green threads, and the fix")
    sub.add_parser(
        "run",
        help="run a service with fairpool switched on from outside (fairpool run --help)",
        add_help=False,
    )
    sub.add_parser(
        "report", help="name the contention in trace files (fairpool report --help)", add_help=False
    )
    args, rest = parser.parse_known_args(args_in)
    if args.command == "demo":
        from . import demo

        return demo.main()
    from . import report

    return report.main(rest)


if __name__ == "__main__":
    sys.exit(main())
