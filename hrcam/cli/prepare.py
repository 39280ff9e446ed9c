"""`hrcam prepare ...`: dataset preparation subcommands (library: :mod:`hrcam.data`)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
from collections.abc import Callable

from hrcam.cli.common import add_workers_argument, configure_logging, int_at_least

log = logging.getLogger("hrcam.prepare")

PAPER_TEST_FRACTION = 114114 / 510530


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `prepare` with its subcommands `synthetic`, `imagenet`, `imagenet-val`, `folder`,
    `imagenet-merge`."""
    parser = subparsers.add_parser(
        "prepare", help="prepare a dataset (synthetic, ImageNet, ImageNet val, own folders)",
        description="Prepare a dataset in hrcam's layout: OUT/{train,test,val}/<class>/<image>, "
        "classes.txt, manifest.csv, summary.json (+ boxes.csv, masks/ where annotated). A "
        "preparation locks --out (a second one into the same folder fails at once) and "
        "publishes the dataset only when it is complete.")
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    # -- synthetic ---------------------------------------------------------------------------
    from hrcam.data.synthetic import (
        DEFAULT_CLASSES,
        DEFAULT_DISTRACTORS,
        DEFAULT_IM_SIZE,
        DEFAULT_PER_CLASS,
        DEFAULT_SEED,
        DEFAULT_SIZE_RANGE,
        DEFAULT_TEST_FRACTION,
        SHAPES,
    )

    p = sub.add_parser("synthetic", help="generate the embedded shapes dataset (masks, boxes)",
                       description="Generate the embedded default dataset: one shape per image "
                       f"({', '.join(SHAPES)}) on a cluttered background, with masks and boxes.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--classes", default=str(DEFAULT_CLASSES),
                   help=f"number of classes (first N of {','.join(SHAPES)}) or a comma-separated "
                   f"list of shape names (default: {DEFAULT_CLASSES})")
    p.add_argument("--per-class", type=int, default=DEFAULT_PER_CLASS,
                   help=f"images per class (default: {DEFAULT_PER_CLASS})")
    p.add_argument("--im-size", type=int, default=DEFAULT_IM_SIZE,
                   help=f"image side in pixels (default: {DEFAULT_IM_SIZE})")
    p.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION,
                   help=f"test fraction per class (default: {DEFAULT_TEST_FRACTION})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: 0)")
    p.add_argument("--size-range", type=_size_range, default=DEFAULT_SIZE_RANGE,
                   metavar="LO,HI",
                   help="the object's size as fractions of the image side, 0 < LO < HI <= 1 "
                   f"(default: {DEFAULT_SIZE_RANGE[0]:g},{DEFAULT_SIZE_RANGE[1]:g})")
    p.add_argument("--distractors", type=int_at_least(0), default=DEFAULT_DISTRACTORS,
                   metavar="N",
                   help="look-alike objects per image, of the shapes that are not classes, "
                   "placed beside the object (at most 3%% overlap); label, mask and box stay "
                   f"the object's (default: {DEFAULT_DISTRACTORS}; needs at most "
                   f"{len(SHAPES) - 1} classes)")
    add_workers_argument(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run_synthetic)

    # -- imagenet train ----------------------------------------------------------------------
    p = sub.add_parser(
        "imagenet", help="ILSVRC-2012 train archive (or extracted tree) -> resized split classes",
        description="Stream the per-class tars out of ILSVRC2012_img_train.tar (never unpacking "
        "it), convert to RGB, resize, split train/test per class. Resumable: per-class outputs "
        "are complete or absent, marked by OUT/parts/<wnid>.csv.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--train-tar", help="ILSVRC2012_img_train.tar (outer tar of nXXXXXXXX.tar)")
    src.add_argument("--train-dir",
                     help="extracted tree: DIR/nXXXXXXXX/*.JPEG or DIR/nXXXXXXXX.tar")
    p.add_argument("--out", required=True, help="output folder")
    _add_class_selection(p)
    p.add_argument("--wnids", action="append", default=None, metavar="WNID[,WNID...]",
                   help="process only these classes (of the selection) and skip the merge: "
                   "one job per class on a cluster; finish with `hrcam prepare imagenet-merge`")
    p.add_argument("--no-merge", action="store_true",
                   help="do not write classes.txt / manifest.csv / summary.json at the end")
    _add_conversion(p, test_fraction=True)
    add_workers_argument(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run_imagenet)

    # -- imagenet merge ----------------------------------------------------------------------
    p = sub.add_parser("imagenet-merge",
                       help="merge per-class parts (OUT/parts/*.csv) into manifest and summary",
                       description="After per-class `prepare imagenet --wnids` jobs: check every "
                       "selected class is complete and write classes.txt, manifest.csv, "
                       "summary.json.")
    p.add_argument("--out", required=True, help="the output folder of the per-class jobs")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--synsets", default=None,
                   help="file of 'wnid [name]' lines: exactly these classes")
    g.add_argument("--num-classes", type=int, default=None,
                   help="the first N classes of the selection made by the per-class jobs "
                   "(default: all of it)")
    p.add_argument("--class-names", default=None,
                   help="LOC_synset_mapping.txt, synset_words.txt or meta.mat for human names")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run_imagenet_merge)

    # -- imagenet val ------------------------------------------------------------------------
    p = sub.add_parser(
        "imagenet-val", help="ILSVRC-2012 validation images of the chosen classes with boxes",
        description="Keep the validation images of the chosen classes, resize them like the "
        "train set, write OUT/val/<wnid>/<image> and boxes rescaled to the output size.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--val-tar", help="ILSVRC2012_img_val.tar")
    src.add_argument("--val-dir", help="extracted validation folder (flat *.JPEG, or <wnid>/ "
                     "subfolders)")
    lab = p.add_mutually_exclusive_group(required=True)
    lab.add_argument("--solution-csv", help="LOC_val_solution.csv (labels and boxes)")
    lab.add_argument("--bbox-xml", help="folder of PASCAL-VOC XMLs or ILSVRC2012_bbox_val_v3.tgz")
    p.add_argument("--out", required=True, help="output folder")
    _add_class_selection(p)
    _add_conversion(p, test_fraction=False)
    add_workers_argument(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run_imagenet_val)

    # -- folder ------------------------------------------------------------------------------
    p = sub.add_parser(
        "folder", help="your own dataset: SRC/train,test/<class>/ or SRC/<class>/",
        description="Prepare a user's dataset: either already split (SRC/train/<class>, "
        "SRC/test/<class>) or one class-folder tree (SRC/<class>/) to split per class.")
    p.add_argument("--src", required=True, help="source folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--class-names", default=None,
                   help="optional file of '<class-id> <human name>' lines (class id: the folder "
                   "name with whitespace replaced by '_')")
    p.add_argument("--boxes", default=None, metavar="CSV",
                   help="bounding boxes: a CSV with the columns image,xmin,ymin,xmax,ymax "
                   "(image: path relative to --src; coordinates: inclusive pixel indices of the "
                   "source image; one row per box)")
    p.add_argument("--masks", default=None, metavar="DIR",
                   help="masks: a folder mirroring --src with one .png per image (same relative "
                   "path, suffix .png; non-zero = object)")
    _add_conversion(p, test_fraction=True, default_fraction=0.2)
    add_workers_argument(p)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_run_folder)


def _size_range(text: str) -> tuple[float, float]:
    """argparse type of --size-range: two numbers 'LO,HI' (their range is checked by
    :func:`hrcam.data.synthetic.check_size_range`)."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two fractions LO,HI of the image side (e.g. 0.15,0.45), got {text!r}"
        ) from None


def _add_class_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--synsets", default=None,
                   help="file of 'wnid [name]' lines: exactly these classes")
    g.add_argument("--num-classes", type=int, default=398,
                   help="the first N wnids in sorted order (default: 398 = the animal subset, "
                   "n01440764 tench ... n02655020 puffer)")
    p.add_argument("--class-names", default=None,
                   help="LOC_synset_mapping.txt, synset_words.txt or meta.mat for human names")


def _add_conversion(p: argparse.ArgumentParser, test_fraction: bool,
                    default_fraction: float = PAPER_TEST_FRACTION) -> None:
    p.add_argument("--im-size", type=int, default=224, help="output side (default: 224)")
    p.add_argument("--resize", choices=("stretch", "center-crop"), default="stretch",
                   help="stretch to a square (default, as the paper) or crop the centre square")
    if test_fraction:
        p.add_argument("--test-fraction", type=float, default=default_fraction,
                       help=f"test fraction per class (default: {default_fraction:.6g})")
        p.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    p.add_argument("--format", choices=("jpeg", "png"), default="jpeg",
                   help="output format (default: jpeg; png costs ~50x more to encode)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default: 95)")


def _class_args(args: argparse.Namespace) -> dict:
    return {"synsets": args.synsets, "num_classes": args.num_classes,
            "class_names": args.class_names}


def _print_summary(summary: dict) -> None:
    short = {k: summary[k] for k in ("num_classes", "num_sources", "num_images", "num_skipped",
                                     "totals") if k in summary}
    print(json.dumps(short))


def _clear_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn an operating-system error (no permission, disk full, ...) into a one-line error
    (exit 2) naming the file, like every other bad input."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (FileNotFoundError, FileExistsError):
            raise
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise ValueError(f"cannot read or write {where}{error.strerror or error}") from error

    return wrapped


@_clear_errors
def _run_synthetic(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.data.synthetic import generate_synthetic

    classes: int | list[str]
    classes = int(args.classes) if args.classes.strip().isdigit() else \
        [c.strip() for c in args.classes.split(",") if c.strip()]
    summary = generate_synthetic(args.out, classes=classes, per_class=args.per_class,
                                 im_size=args.im_size, test_fraction=args.test_fraction,
                                 seed=args.seed, size_range=args.size_range,
                                 distractors=args.distractors, workers=args.workers)
    _print_summary(summary)
    return 0


@_clear_errors
def _run_imagenet(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.data.imagenet import prepare_imagenet

    wnids = None
    if args.wnids:
        wnids = [w.strip() for item in args.wnids for w in item.split(",") if w.strip()]
    summary = prepare_imagenet(
        out_dir=args.out, train_tar=args.train_tar, train_dir=args.train_dir,
        wnids=wnids, merge=not args.no_merge and wnids is None, im_size=args.im_size,
        resize=args.resize, test_fraction=args.test_fraction, seed=args.seed,
        workers=args.workers, fmt=args.format, quality=args.quality, **_class_args(args))
    if summary:
        _print_summary(summary)
    return 0


@_clear_errors
def _run_imagenet_merge(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.data.imagenet import merge_imagenet_parts

    _print_summary(merge_imagenet_parts(args.out, class_names=args.class_names,
                                        synsets=args.synsets, num_classes=args.num_classes))
    return 0


@_clear_errors
def _run_imagenet_val(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.data.imagenet_val import prepare_imagenet_val

    summary = prepare_imagenet_val(
        out_dir=args.out, val_tar=args.val_tar, val_dir=args.val_dir,
        solution_csv=args.solution_csv, bbox_xml=args.bbox_xml, im_size=args.im_size,
        resize=args.resize, workers=args.workers, fmt=args.format, quality=args.quality,
        **_class_args(args))
    _print_summary(summary)
    return 0


@_clear_errors
def _run_folder(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    from hrcam.data.folder import prepare_folder

    summary = prepare_folder(
        src=args.src, out_dir=args.out, class_names=args.class_names, im_size=args.im_size,
        resize=args.resize, test_fraction=args.test_fraction, seed=args.seed,
        workers=args.workers, fmt=args.format, quality=args.quality, boxes=args.boxes,
        masks=args.masks)
    _print_summary(summary)
    return 0
