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


def add_model_data_arguments(parser: argparse.ArgumentParser, *, model: str, limit: str,
                             batch_size: int, model_metavar: str = "FULL.keras") -> None:
    """Add the options every model-on-dataset command takes: --model, --data, --out, --split,
    --batch-size and --limit (``model`` and ``limit`` describe them for this command)."""
    parser.add_argument("--model", required=True, metavar=model_metavar, help=model)
    parser.add_argument("--data", required=True, metavar="DIR", help="prepared dataset folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--split", default="test", help="split to use (default: test)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"images per batch (default: {batch_size})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help=f"{limit} (default: all)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --no-progress and -v/--verbose."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


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
