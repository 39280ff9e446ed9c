"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

PIPELINE_CHOICES = {
    "focal_scope": ("global", "local"),
    "maxima_areas": ("small", "large"),
    "merge_type": ("blend", "multiply", "merge"),
    "filter_type": ("percentage", "threshold"),
}


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the refined-CAM postprocessing options (the seed's `pipeline` keywords) to a parser."""
    from hrcam.postprocessing import PIPELINE_DEFAULTS

    group = parser.add_argument_group("refined-CAM postprocessing (hrcam.postprocessing.pipeline)")
    for name, default in PIPELINE_DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        if name in PIPELINE_CHOICES:
            group.add_argument(flag, dest=name, default=default, choices=PIPELINE_CHOICES[name],
                               help=f"default: {default}")
        else:
            group.add_argument(flag, dest=name, type=float, default=default,
                               help=f"default: {default}")


def pipeline_params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The postprocessing keyword arguments chosen on the command line."""
    from hrcam.postprocessing import PIPELINE_DEFAULTS

    return {name: getattr(args, name) for name in PIPELINE_DEFAULTS}


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--workers N` (default: every CPU this process may use)."""
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="parallel worker processes (default: available CPUs)")


def default_workers() -> int:
    """CPUs available to this process (respects affinity masks set by schedulers such as SLURM)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr, so Snakemake's `log:` redirection captures it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
