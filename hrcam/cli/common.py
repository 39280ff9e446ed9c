"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def int_at_least(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum`` (else a usage error naming the value, exit
    status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


#: argparse type: an integer >= 1 (a batch size, a limit, a worker count).
positive_int = int_at_least(1)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the refined-CAM postprocessing options (the seed's `pipeline` keywords) to a parser."""
    from hrcam.postprocessing import PIPELINE_CHOICES, PIPELINE_DEFAULTS

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
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"images per batch (default: {batch_size})")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help=f"{limit} (default: all)")
    add_threads_argument(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --no-progress and -v/--verbose."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--workers N` (default: every CPU this process may use)."""
    from hrcam.runtime import available_cpus

    parser.add_argument("--workers", type=positive_int, default=available_cpus(),
                        help="parallel worker processes (default: available CPUs)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--threads N`: TensorFlow's thread pools (default: TensorFlow's own, every core)."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="TensorFlow intra- and inter-op threads (default: all cores; the "
                        "workflow passes the job's threads)")


def apply_threads(args: argparse.Namespace, deterministic: bool = False) -> None:
    """Configure TensorFlow from `--threads` (before any model is built)."""
    from hrcam.runtime import configure_tensorflow

    configure_tensorflow(getattr(args, "threads", None), deterministic=deterministic)


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr, so Snakemake's `log:` redirection captures it."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
