"""`hrcam evaluate ...`: classification metrics, localization metrics (all CAM methods and
baselines) and the half-vs-full comparison (library: :mod:`hrcam.evaluate`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hrcam.cli.common import (
    add_model_data_arguments,
    add_output_arguments,
    add_pipeline_arguments,
    add_threads_argument,
    add_workers_argument,
    apply_threads,
    configure_logging,
    pipeline_params_from_args,
    positive_int,
)

log = logging.getLogger("hrcam.evaluate")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `evaluate` with its subcommands `classification`, `localization` and `compare`."""
    parser = subparsers.add_parser(
        "evaluate", help="classification and localization metrics of a trained model",
        description="Evaluate a trained model: `classification` (accuracy, top-5, macro/micro "
        "precision, recall, F1, per-class table, confusion matrix), `localization` (PxAP and "
        "MaxBoxAccV2 of the low-res, high-res and refined CAMs and of Grad-CAM++, LayerCAM and a "
        "centre-Gaussian baseline) and `compare` (two metrics.json files must agree exactly).")
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)

    p = sub.add_parser(
        "classification", help="classification metrics on DATA/SPLIT",
        description="Classify every image of DATA/SPLIT (fixed order) and write "
        "OUT/metrics.json, OUT/per_class.csv, OUT/predictions.csv and "
        "OUT/confusion.png. Prints the main numbers.")
    add_model_data_arguments(p, model="trained half or full model",
                             limit="only the first N images of the split", batch_size=32,
                             model_metavar="MODEL.keras")
    add_output_arguments(p)
    p.set_defaults(func=_run_classification)

    from hrcam.cams import CAM_METHODS
    from hrcam.evaluate.metrics import bootstrap
    from hrcam.evaluate.metrics.localization import (
        BOX_CONVENTIONS,
        DEFAULT_BOX_CONVENTION,
        DEFAULT_CAM_CURVE_INTERVAL,
    )

    methods = tuple(CAM_METHODS)
    p = sub.add_parser(
        "localization", help="localization metrics of every CAM method on DATA/SPLIT",
        description="For every image of DATA/SPLIT with a mask and/or boxes, compute the CAMs "
        "of the ground-truth class and score them: PxAP (masks), MaxBoxAccV2 and BoxAcc at IoU "
        "30/50/70 (boxes, every contour, wsolevaluation's conventions by default), gt-known and "
        "top-1 localization, each with a 95%% bootstrap confidence interval over images, and "
        "every method against low_res and refined (paired bootstrap). Methods: " + "; ".join(
            f"{name}: {cls.description}" for name, cls in CAM_METHODS.items()) + ". Writes "
        "OUT/localization.csv (one row per method), OUT/localization_paired.csv, "
        "OUT/localization.json, OUT/curves.csv (per-threshold curves, long format), "
        "OUT/bootstrap.npz, OUT/localization.png and OUT/curves.png.")
    add_model_data_arguments(p, model="trained full model (a half model for methods that do "
                             "not need the expansion network)",
                             limit="only the first N annotated images", batch_size=16)
    p.add_argument("--methods", nargs="+", choices=methods, default=list(methods),
                   metavar="METHOD", help=f"methods to score (default: all of "
                   f"{', '.join(methods)})")
    p.add_argument("--cam-curve-interval", type=float, default=DEFAULT_CAM_CURVE_INTERVAL,
                   help="spacing of the CAM thresholds in [0, 1) (default: "
                   f"{DEFAULT_CAM_CURVE_INTERVAL}, wsolevaluation's)")
    p.add_argument("--box-convention", choices=BOX_CONVENTIONS, default=DEFAULT_BOX_CONVENTION,
                   help="wsol: wsolevaluation's BoxEvaluator to the bit (uint8 map, every "
                   "contour, inclusive-pixel IoU); exact: exact pixel IoU of every 8-connected "
                   f"component (default: {DEFAULT_BOX_CONVENTION})")
    p.add_argument("--bootstrap-samples", type=int, default=bootstrap.DEFAULT_SAMPLES,
                   metavar="N", help="bootstrap resamples for the confidence intervals (0: "
                   f"none; default: {bootstrap.DEFAULT_SAMPLES})")
    p.add_argument("--bootstrap-seed", type=int, default=bootstrap.DEFAULT_SEED,
                   help=f"seed of the resampling (default: {bootstrap.DEFAULT_SEED})")
    p.add_argument("--gradcam-layer", default=None,
                   help="layer of Grad-CAM++ (default: bottleneck)")
    p.add_argument("--layercam-layer", default=None,
                   help="layer of LayerCAM (default: skip_<num_blocks>, the deepest encoder "
                   "block before the bottleneck)")
    add_workers_argument(p)
    add_output_arguments(p)
    add_pipeline_arguments(p)
    p.set_defaults(func=_run_localization)

    p = sub.add_parser(
        "aggregate", help="localization over several training seeds",
        description="Mean, sd, min and max over the seeds of every method's PxAP and "
        "MaxBoxAccV2, and every method against low_res and refined pooled over the seeds (the "
        "difference, its paired-bootstrap 95%% CI over images and the share of resamples above "
        "zero). Reads each seed's localization.csv and bootstrap.npz; writes "
        "OUT/localization_seeds.csv, OUT/localization_seeds_paired.csv and "
        "OUT/localization_seeds.png.")
    p.add_argument("runs", nargs="+", metavar="SEED=DIR",
                   help="a seed and its localization folder (the --out of `hrcam evaluate "
                   "localization`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=_run_aggregate)

    p = sub.add_parser(
        "variants", help="decoder variants of one half model side by side",
        description="One table over the full models of one half model (the paper's decoder and "
        "variants): every method of the main evaluation, then each variant's high_res and "
        "refined CAM, with 95%% bootstrap CIs over images, and every variant against layercam "
        "and low_res (paired bootstrap: every evaluation used the same images and bootstrap "
        "seed). Writes OUT/variants.csv, OUT/variants_paired.csv, OUT/variants.png and, with "
        "--models, OUT/variants_cams.png (each variant's high-res CAM on the same images).")
    p.add_argument("--main", required=True, metavar="DIR",
                   help="localization folder of the main full model (every method)")
    p.add_argument("--main-name", default="paper", help="its name in the table (default: paper)")
    p.add_argument("variants", nargs="*", metavar="NAME=DIR",
                   help="a variant and its localization folder")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME=MODEL",
                   help="full models (the main one first) for the side-by-side CAM figure")
    p.add_argument("--data", default=None, metavar="DIR", help="dataset of the CAM figure")
    p.add_argument("--split", default="test", help="split of the CAM figure (default: test)")
    p.add_argument("--limit", type=positive_int, default=6,
                   help="images in the CAM figure (default: 6)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_threads_argument(p)
    p.set_defaults(func=_run_variants)

    p = sub.add_parser(
        "compare", help="check that two metrics.json files have identical classification scores",
        description="Compare the classification numbers (accuracies, macro/micro scores, "
        "per-class table, confusion matrix) of two metrics.json files, e.g. the half and the "
        "full model of one run. Exit status 0 when identical, 1 otherwise (the differing keys "
        "are printed and written to --out).")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the comparison (JSON: identical, differing keys, values)")
    p.set_defaults(func=_run_compare)


def _run_classification(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    apply_threads(args)
    from hrcam.evaluate import evaluate_classification

    m = evaluate_classification(args.model, args.data, args.split, batch_size=args.batch_size,
                                limit=args.limit, out_dir=args.out,
                                progress=not args.no_progress)
    print(f"{args.model} on {args.data}/{args.split}: {m['num_images']} images, "
          f"{m['num_classes']} classes")
    print(f"  top-1 accuracy {m['top1_accuracy']:.4f}   top-{m['top_k']} accuracy "
          f"{m['top5_accuracy']:.4f}")
    for avg in ("macro", "micro"):
        print(f"  {avg:5s} precision {m[avg + '_precision']:.4f}  recall "
              f"{m[avg + '_recall']:.4f}  F1 {m[avg + '_f1']:.4f}")
    print(f"written to {args.out}/")
    return 0


def _run_localization(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    apply_threads(args)
    from hrcam.evaluate import evaluate_localization

    summary = evaluate_localization(
        args.model, args.data, args.split, out_dir=args.out, limit=args.limit,
        batch_size=args.batch_size, workers=args.workers, methods=args.methods,
        cam_curve_interval=args.cam_curve_interval, box_convention=args.box_convention,
        gradcam_layer=args.gradcam_layer, layercam_layer=args.layercam_layer,
        bootstrap_samples=args.bootstrap_samples, bootstrap_seed=args.bootstrap_seed,
        progress=not args.no_progress, **pipeline_params_from_args(args))
    print(f"{summary['num_images']} images of {args.data}/{args.split} "
          f"(classification accuracy {summary['accuracy']:.4f})")
    print(f"  {'method':16s} {'PxAP [95% CI]':>26s} {'MaxBoxAccV2 [95% CI]':>26s} "
          f"{'top1_loc':>8s}")

    def fmt(row, key, width=26):
        value, low, high = row.get(key), row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
        if value is None:
            return " " * (width - 1) + "-"
        text = f"{value:.4f}" + (f" [{low:.4f}, {high:.4f}]" if low is not None else "")
        return f"{text:>{width}s}"

    for name, row in summary["methods"].items():
        top1 = f"{row['top1_loc']:8.4f}" if row.get("top1_loc") is not None else "       -"
        print(f"  {name:16s} {fmt(row, 'PxAP')} {fmt(row, 'MaxBoxAccV2')} {top1}")
    print(f"written to {args.out}/")
    return 0


def _pairs(items: list[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` items as an ordered dict (a malformed or repeated item is an error)."""
    pairs: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: expected NAME=PATH, got {item!r}")
        if name in pairs:
            raise ValueError(f"{what}: {name!r} given twice")
        pairs[name] = value
    return pairs


def _run_variants(args: argparse.Namespace) -> int:
    configure_logging(False)
    apply_threads(args)
    from hrcam.evaluate.variants import compare_variants

    variants = _pairs(args.variants, "variants")
    summary = compare_variants(args.main, variants, args.main_name, args.out)
    if args.models:
        if args.data is None:
            raise ValueError("--models needs --data (the dataset of the CAM figure)")
        from pathlib import Path

        from hrcam.render import variant_figure

        variant_figure(_pairs(args.models, "--models"), args.data,
                       Path(args.out) / "variants_cams.png", split=args.split, limit=args.limit)
    print(f"{len(summary['variants'])} decoder variant(s): written to {args.out}/")
    return 0


def _run_aggregate(args: argparse.Namespace) -> int:
    from hrcam.evaluate.aggregate import aggregate_seeds

    runs = {}
    for item in args.runs:
        seed, sep, folder = item.partition("=")
        if not sep or not seed.strip().isdigit() or not folder:
            raise ValueError(f"expected SEED=DIR (e.g. 0=results/default/seed0/evaluation/"
                             f"localization), got {item!r}")
        if int(seed) in runs:
            raise ValueError(f"seed {seed} given twice")
        runs[int(seed)] = folder
    summary = aggregate_seeds(runs, args.out)
    print(f"{len(summary['seeds'])} seed(s), {len(summary['methods'])} method(s): written to "
          f"{args.out}/")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from hrcam.evaluate import compare_metrics

    with open(args.a, encoding="utf-8") as f:
        a = json.load(f)
    with open(args.b, encoding="utf-8") as f:
        b = json.load(f)
    differing = compare_metrics(a, b)
    report = {"a": args.a, "b": args.b, "identical": not differing, "differing": differing,
              "values": {k: {"a": a.get(k), "b": b.get(k)} for k in differing
                         if k not in ("per_class", "confusion_matrix")}}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    if differing:
        print(f"classification metrics differ between {args.a} and {args.b}: "
              f"{', '.join(differing)}", file=sys.stderr)
        for k, v in report["values"].items():
            print(f"  {k}: {v['a']} != {v['b']}", file=sys.stderr)
        return 1
    print(f"identical classification metrics: {args.a} == {args.b}")
    return 0
