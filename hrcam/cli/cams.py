"""`hrcam cams`: render the low-res, high-res and refined CAMs of many images (library:
:mod:`hrcam.render`)."""

from __future__ import annotations

import argparse

from hrcam.cli.common import (
    add_model_data_arguments,
    add_output_arguments,
    add_pipeline_arguments,
    add_workers_argument,
    apply_threads,
    configure_logging,
    pipeline_params_from_args,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cams` subcommand."""
    from hrcam.render import CAM_CLASSES

    p = subparsers.add_parser(
        "cams", help="render CAMs (arrays, pipeline figures, overlays, collage) for many images",
        description="One forward pass of the full model per batch gives the predictions and the "
        "low- and high-res CAMs; the refined-CAM postprocessing and the figures run in --workers "
        "processes. Writes OUT/arrays/<class>/<stem>.npz (low, high, refined, prediction, label, "
        "probabilities, cam_class), OUT/figures/<class>/<stem>.png (pipeline figure), "
        "OUT/overlays/<class>/<stem>.png, OUT/collage.png and OUT/cams.csv.")
    add_model_data_arguments(p, model="trained full model",
                             limit="at most N images, taken round-robin over the classes",
                             batch_size=16)
    p.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                   help="only these classes (ids, names or indices; default: all)")
    p.add_argument("--cam-class", choices=CAM_CLASSES, default="predicted",
                   help="class whose CAMs are drawn (default: predicted)")
    p.add_argument("--collage-per-class", type=int, default=2, metavar="N",
                   help="images per class in collage.png (default: 2; 0: no collage)")
    p.add_argument("--no-figures", action="store_true",
                   help="skip the per-image pipeline figures")
    p.add_argument("--no-overlays", action="store_true", help="skip the per-image overlays")
    add_workers_argument(p)
    add_output_arguments(p)
    add_pipeline_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.verbose)
    apply_threads(args)
    from hrcam.render import render_cams

    summary = render_cams(
        args.model, args.data, args.split, args.out, limit=args.limit, classes=args.classes,
        workers=args.workers, batch_size=args.batch_size, cam_class=args.cam_class,
        collage_per_class=args.collage_per_class, figures=not args.no_figures,
        overlays=not args.no_overlays, progress=not args.no_progress,
        **pipeline_params_from_args(args))
    print(f"rendered {summary['num_images']} image(s) of {args.data}/{args.split} into {args.out}/")
    return 0
