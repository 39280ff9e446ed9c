"""`hrcam train ...`: half-model pretraining, full-model training with a verified weight
transfer, and the standalone transfer check (library: :mod:`hrcam.train`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from hrcam.cli.common import configure_logging

log = logging.getLogger("hrcam.train")

PROGRESS = {"bar": 1, "epoch": 2, "none": 0}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` with its subcommands `half`, `full` and `check`."""
    parser = subparsers.add_parser(
        "train", help="train the half model, the full model, or check a weight transfer",
        description="Train the two stages of the paper: `half` (the classifier, low-res CAM), "
        "then `full` (the decoder for the high-res CAM, on top of the frozen half model), and "
        "`check` a full model against its half model. Options come from --config (YAML, keys "
        "= hrcam.train.TrainConfig fields) and are overridden by flags.")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)

    p = sub.add_parser(
        "half", help="train the half model (classifier)",
        description="Train the half model on DATA/train (validation on DATA/test). Writes "
        "OUT/best.keras (best val_accuracy), last.keras, history.csv, tensorboard/, "
        "classes.json, train_config.json. Rerunning the same command after an interruption "
        "resumes after the last finished epoch (OUT/backup).")
    _add_common(p)
    p.set_defaults(func=_run_half)

    p = sub.add_parser(
        "full", help="train the full model's decoder on top of a trained half model",
        description="Build the full model, copy the half model's weights, freeze encoder + "
        "head and train the decoder on image reconstruction (MSE). The transfer is verified "
        "before and after training (OUT/transfer_check_before.json, OUT/transfer_check.json); "
        "a failed check exits with status 1 naming the differing layers. Other outputs as for "
        "`half` (best.keras by val_loss, or loss without a validation split).")
    p.add_argument("--half", required=True, metavar="HALF.keras", help="the trained half model")
    _add_common(p)
    p.add_argument("--check-images", type=int, default=None, metavar="N",
                   help="test images used by the transfer check (default: 64)")
    p.set_defaults(func=_run_full)

    p = sub.add_parser(
        "check", help="verify that a full model carries its half model's classifier unchanged",
        description="Every shared layer's weights identical, same predicted classes and "
        "probabilities within the tolerance on a fixed sample of DATA/SPLIT images. Writes the "
        "report (JSON) to --out; exit status 1 when the check fails.")
    p.add_argument("--half", required=True, metavar="HALF.keras")
    p.add_argument("--full", required=True, metavar="FULL.keras")
    p.add_argument("--data", required=True, metavar="DIR", help="prepared dataset folder")
    p.add_argument("--out", default=None, metavar="FILE", help="report file (JSON)")
    p.add_argument("--split", default="test", help="split to take the images from (default: test)")
    p.add_argument("--n-images", type=int, default=64, help="number of images (default: 64)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tolerance", type=float, default=1e-6,
                   help="max abs probability difference allowed (default: 1e-6)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_run_check)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR",
                   help="prepared dataset: DIR/train/<class>/*, DIR/test/<class>/*")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the run")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="training options (YAML mapping of TrainConfig fields)")
    g = p.add_argument_group("training options (override --config; defaults are the paper's)")
    g.add_argument("--batch-size", type=int, help="global batch size (default: 16)")
    g.add_argument("--epochs", type=int, help="epochs (default: 50)")
    g.add_argument("--im-size", type=int, help="image side in pixels (default: 224)")
    g.add_argument("--arch", help="architecture preset of hrcam.models (default: paper)")
    g.add_argument("--arch-set", action="append", default=None, metavar="KEY=VALUE",
                   help="override one architecture parameter (repeatable), e.g. growth_rate=8")
    g.add_argument("--optimizer", choices=("adadelta", "adam", "sgd", "rmsprop"),
                   help="default: adadelta")
    g.add_argument("--learning-rate", type=float, help="default: 1.0 (Adadelta as the original)")
    g.add_argument("--reduce-lr-patience", type=int, help="ReduceLROnPlateau patience (10)")
    g.add_argument("--reduce-lr-factor", type=float, help="ReduceLROnPlateau factor (sqrt(0.1))")
    g.add_argument("--min-lr", type=float, help="ReduceLROnPlateau min_lr (1e-5)")
    g.add_argument("--no-reduce-lr", dest="reduce_lr_enabled", action="store_false",
                   default=None, help="no ReduceLROnPlateau")
    g.add_argument("--seed", type=int, help="random seed (default: 0)")
    g.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed_float16 compute on GPU (default: off)")
    g.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the train step with XLA (default: off)")
    g.add_argument("--cache", nargs="?", const=True, default=None, metavar="PATH",
                   help="cache decoded images in memory, or in files with prefix PATH")
    g.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="draw classes uniformly (oversample small classes; default: off)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="the paper's augmentation on the training split (default: on)")
    g.add_argument("--augment-probability", type=float,
                   help="probability of the affine and of the flip (default: 0.5)")
    g.add_argument("--train-split", help="training split folder (default: train)")
    g.add_argument("--val-split", help="validation split folder (default: test; 'none' for none)")
    g.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass)")
    g.add_argument("--validation-steps", type=int, help="validation batches (default: all)")
    g.add_argument("--progress", choices=tuple(PROGRESS),
                   help="bar (1), one line per epoch (2) or none; default: bar on a terminal, "
                   "epoch otherwise")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _parse_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def config_from_args(args: argparse.Namespace) -> Any:
    """The `TrainConfig` of --config overridden by the flags given."""
    from hrcam.train import load_config

    overrides: dict[str, Any] = {
        name: getattr(args, name, None)
        for name in ("batch_size", "epochs", "im_size", "arch", "optimizer", "learning_rate",
                     "seed", "mixed_precision", "xla", "cache", "balanced", "augment",
                     "augment_probability", "train_split", "val_split", "steps_per_epoch",
                     "validation_steps", "check_images")
    }
    if getattr(args, "arch_set", None):
        arch = {}
        for item in args.arch_set:
            if "=" not in item:
                raise ValueError(f"--arch-set expects KEY=VALUE, got {item!r}")
            key, value = item.split("=", 1)
            arch[key.strip()] = _parse_value(value)
        overrides["arch_overrides"] = arch
    reduce = {k: v for k, v in (("patience", args.reduce_lr_patience),
                                ("factor", args.reduce_lr_factor), ("min_lr", args.min_lr),
                                ("enabled", args.reduce_lr_enabled)) if v is not None}
    if reduce:
        overrides["reduce_lr"] = reduce
    if args.progress is not None:
        overrides["verbose"] = PROGRESS[args.progress]
    return load_config(args.config, **overrides)


def _print(summary: Any) -> None:
    print(json.dumps(summary, indent=2, default=str))


def _run_half(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.train import train_half

    summary = train_half(args.data, args.out, config_from_args(args))
    _print(summary)
    return 0


def _run_full(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.train import TransferCheckError, train_full

    try:
        summary = train_full(args.data, args.out, args.half, config_from_args(args))
    except TransferCheckError as error:
        print(f"hrcam train full: error: {error}", file=sys.stderr)
        return 1
    _print(summary)
    return 0


def _run_check(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.train import TransferCheckError, check_transfer_files

    try:
        report = check_transfer_files(args.half, args.full, args.data, args.out,
                                      split=args.split, n_images=args.n_images,
                                      batch_size=args.batch_size, tolerance=args.tolerance)
    except TransferCheckError as error:
        print(f"hrcam train check: error: {error}", file=sys.stderr)
        return 1
    _print(report)
    return 0
