"""The `hrcam` command line: a thin dispatcher over the library's functions.

Each concern registers its own subcommands (`prepare`, `train`, `evaluate`, `cams`) from a module
of this package, so the command line mirrors the package layout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hrcam import __version__

SUBCOMMAND_MODULES = ("prepare", "train", "evaluate", "cams", "report")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand module registered."""
    parser = argparse.ArgumentParser(
        prog="hrcam",
        description="High Resolution Class Activation Mapping: data preparation, training, "
        "evaluation and CAM rendering.",
    )
    parser.add_argument("--version", action="version", version=f"hrcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"hrcam.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hrcam` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"hrcam {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
