"""`hrcam train ...`: half-model pretraining, full-model training with a verified weight
transfer, and the standalone transfer check (library: :mod:`hrcam.train`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from hrcam.cli.common import (
    add_threads_argument,
    apply_threads,
    configure_logging,
    positive_int,
)

log = logging.getLogger("hrcam.train")

PROGRESS = {"bar": 1, "epoch": 2, "none": 0}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` with its subcommands `half`, `full` and `check`."""
    from hrcam.train.transfer import CHECK_IMAGES, PROB_TOLERANCE

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
        "resumes after the last finished epoch (the state is kept in OUT/.training-state until "
        "the run finishes).")
    _add_common(p)
    p.set_defaults(func=_run_half)

    p = sub.add_parser(
        "full", help="train the full model's decoder on top of a trained half model",
        description="Build the full model, copy the half model's weights, freeze encoder + "
        "head and train the decoder (by default on image reconstruction, MSE, as the paper; "
        "see --decoder-loss and --decoder-upsampling). The transfer is verified "
        "before and after training (OUT/transfer_check_before.json, OUT/transfer_check.json); "
        "a failed check exits with status 1 naming the differing layers. Other outputs as for "
        "`half` (best.keras by val_loss, or loss without a validation split).")
    p.add_argument("--half", required=True, metavar="HALF.keras", help="the trained half model")
    _add_common(p)
    p.add_argument("--check-images", type=positive_int, default=None, metavar="N",
                   help=f"test images used by the transfer check (default: {CHECK_IMAGES})")
    from hrcam.models import DECODER_UPSAMPLING
    from hrcam.train.decoder import DECODER_LOSSES

    g = p.add_argument_group("the expansion network (defaults are the paper's)")
    g.add_argument("--decoder-upsampling", choices=DECODER_UPSAMPLING,
                   help="transpose: 3x3 stride-2 transposed convolutions (the paper); resize: "
                   "bilinear x2 upsampling then a 3x3 convolution (default: transpose)")
    g.add_argument("--decoder-loss", metavar="TERM=WEIGHT[,...]",
                   help="weighted loss terms of the decoder among " + ", ".join(DECODER_LOSSES)
                   + " (default: reconstruction=1, the paper's), e.g. "
                   "reconstruction=1,cam_consistency=1,classification=1")
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
    p.add_argument("--n-images", type=positive_int, default=CHECK_IMAGES,
                   help=f"number of images (default: {CHECK_IMAGES})")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--tolerance", type=float, default=PROB_TOLERANCE,
                   help=f"max abs probability difference allowed (default: {PROB_TOLERANCE:g})")
    add_threads_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=_run_check)


def _add_common(p: argparse.ArgumentParser) -> None:
    from hrcam.train.config import OPTIMIZERS, default_of

    def d(name: str) -> str:
        value = default_of(name)
        return f"default: {value:.6g}" if isinstance(value, float) else f"default: {value}"

    p.add_argument("--data", required=True, metavar="DIR",
                   help="prepared dataset: DIR/train/<class>/*, DIR/test/<class>/*")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of the run")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="training options (YAML mapping of hrcam.train.TrainConfig fields)")
    p.add_argument("--restart", action="store_true",
                   help="discard a saved training state (OUT/.training-state) and start over")
    add_threads_argument(p)
    g = p.add_argument_group("training options (override --config; defaults are the paper's)")
    g.add_argument("--batch-size", type=positive_int, help=f"global batch size ({d('batch_size')})")
    g.add_argument("--epochs", type=positive_int, help=f"epochs ({d('epochs')})")
    g.add_argument("--im-size", type=positive_int, help=f"image side in pixels ({d('im_size')})")
    g.add_argument("--arch", help=f"architecture preset of hrcam.models ({d('arch')})")
    g.add_argument("--arch-set", action="append", default=None, metavar="KEY=VALUE",
                   help="override one architecture parameter (repeatable), e.g. growth_rate=8")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=d("optimizer"))
    g.add_argument("--learning-rate", type=float,
                   help=f"{d('learning_rate')} (Adadelta's old Keras default, as the original)")
    g.add_argument("--reduce-lr-patience", type=positive_int,
                   help=f"ReduceLROnPlateau patience ({d('reduce_lr.patience')})")
    g.add_argument("--reduce-lr-factor", type=float,
                   help=f"ReduceLROnPlateau factor ({d('reduce_lr.factor')})")
    g.add_argument("--min-lr", type=float, help=f"ReduceLROnPlateau min_lr ({d('reduce_lr.min_lr')})")
    g.add_argument("--no-reduce-lr", dest="reduce_lr_enabled", action="store_false",
                   default=None, help="no ReduceLROnPlateau")
    g.add_argument("--seed", type=int, help=f"random seed ({d('seed')})")
    g.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help=f"mixed_float16 compute on GPU ({d('mixed_precision')})")
    g.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                   help=f"compile the train step with XLA ({d('xla')})")
    g.add_argument("--cache", nargs="?", const=True, default=None, metavar="PATH",
                   help="cache decoded images in memory, or in files with prefix PATH")
    g.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help=f"draw classes uniformly (oversample small classes; {d('balanced')})")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help=f"the paper's augmentation on the training split ({d('augment')})")
    g.add_argument("--augment-probability", type=float,
                   help=f"probability of the affine and of the flip ({d('augment_probability')})")
    g.add_argument("--train-split", help=f"training split folder ({d('train_split')})")
    g.add_argument("--val-split", help=f"validation split folder ({d('val_split')}; 'none' for "
                   "none)")
    g.add_argument("--steps-per-epoch", type=positive_int,
                   help="batches per epoch (default: one pass)")
    g.add_argument("--validation-steps", type=positive_int,
                   help="validation batches (default: all)")
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
                     "validation_steps", "check_images", "decoder_upsampling",
                     "decoder_loss")
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


def _start(args: argparse.Namespace) -> Any:
    """Logging, the TensorFlow runtime (threads, op determinism), the config, and --restart."""
    configure_logging(args.verbose)
    config = config_from_args(args)
    apply_threads(args, deterministic=True)
    if getattr(args, "restart", False):
        import shutil
        from pathlib import Path

        from hrcam.train import STATE_DIR

        shutil.rmtree(Path(args.out) / STATE_DIR, ignore_errors=True)
    return config


def _run_half(args: argparse.Namespace) -> int:
    config = _start(args)
    from hrcam.train import train_half

    summary = train_half(args.data, args.out, config)
    _print(summary)
    return 0


def _run_full(args: argparse.Namespace) -> int:
    config = _start(args)
    from hrcam.train import TransferCheckError, train_full

    try:
        summary = train_full(args.data, args.out, args.half, config)
    except TransferCheckError as error:
        print(f"hrcam train full: error: {error}", file=sys.stderr)
        return 1
    _print(summary)
    return 0


def _run_check(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    apply_threads(args)
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
