"""`hrcam report ...`: the report's figures and tables from a run's result files (library:
:mod:`hrcam.report`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `report` with its subcommands `figures` and `readme`."""
    parser = subparsers.add_parser(
        "report", help="report figures and tables from result files (no training, no inference)",
        description="Figures and tables of a workflow run folder (results/<run>): `figures` "
        "writes, for every seed, seed<k>/report/training_curves.png (half model metrics and the "
        "decoder's reconstruction loss), classification.csv and .png (half vs full, side by "
        "side) and transfer_check.csv (every entry of the transfer checks); `readme` copies the "
        "key figures to the folder the README embeds them from.")
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = sub.add_parser("figures", help="the report figures of every seed of a run")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="results/<run>")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="the run's seeds")
    p.set_defaults(func=_run_figures)
    p = sub.add_parser("readme", help="copy a run's key figures for the README")
    p.add_argument("--run-dir", required=True, metavar="DIR", help="results/<run>")
    p.add_argument("--seed", type=int, required=True, help="the seed whose figures are shown")
    p.add_argument("--out", required=True, metavar="DIR", help="e.g. reports/figures")
    p.add_argument("--prefix", default="", help="prefix of the file names (e.g. the run's name)")
    p.set_defaults(func=_run_readme)


def _run_figures(args: argparse.Namespace) -> int:
    from hrcam.report import write_run_report

    for seed, paths in write_run_report(args.run_dir, args.seeds).items():
        print(f"seed {seed}:", *paths.values(), sep="\n  ")
    return 0


def _run_readme(args: argparse.Namespace) -> int:
    from hrcam.report import copy_readme_figures

    print("copied:", *copy_readme_figures(args.run_dir, args.seed, args.out,
                                          args.prefix).values(), sep="\n  ")
    return 0
