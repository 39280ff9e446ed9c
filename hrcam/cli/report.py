"""`hrcam report`: the report's figures and tables from a run's result files."""

from __future__ import annotations

import argparse


def _label_and_path(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {text!r}")
    return label, path


def register(subparsers) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="report figures and tables from result files (no training, no inference)",
        description="Write OUT/training_curves.png (half model metrics and the decoder's "
        "reconstruction loss), OUT/classification.csv and .png (half vs full, side by side) and "
        "OUT/transfer_check.csv (every entry of the transfer checks).",
    )
    parser.add_argument("--half-history", required=True, help="history.csv of the half model")
    parser.add_argument("--full-history", required=True, help="history.csv of the full model")
    parser.add_argument("--half-metrics", required=True, help="metrics.json of the half model")
    parser.add_argument("--full-metrics", required=True, help="metrics.json of the full model")
    parser.add_argument("--transfer", type=_label_and_path, action="append", default=[],
                        metavar="LABEL=PATH", help="a transfer-check JSON (repeatable)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hrcam.report import write_report

    paths = write_report(args.out, half_history=args.half_history,
                         full_history=args.full_history, half_metrics=args.half_metrics,
                         full_metrics=args.full_metrics, transfer_checks=dict(args.transfer))
    print("report files written:", *paths.values(), sep="\n  ")
    return 0
