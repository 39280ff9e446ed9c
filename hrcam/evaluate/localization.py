"""Localization evaluation of a saved model on an annotated split: every CAM method of the
registry (or a selection) for the ground-truth class of every image with a mask and/or boxes,
scored with PxAP and MaxBoxAccV2, with bootstrap confidence intervals over images and a paired
comparison of every method against ``low_res`` and ``refined``.

The model-side maps of a batch come from one engine call; the derived maps (refined CAM, centre
baseline), the resizing and the per-image evidence (pixel histograms, box hits) are computed in
worker processes while the next batch goes through the network; the main process folds the
evidence into streaming accumulators, so memory does not grow with the dataset.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.evaluate.metrics import bootstrap
from hrcam.utils import write_csv
from hrcam.evaluate.metrics.localization import (
    DEFAULT_BOX_CONVENTION,
    DEFAULT_CAM_CURVE_INTERVAL,
    IOU_THRESHOLDS,
    BoxAccAccumulator,
    PxAPAccumulator,
    image_box_hits,
    normalize_map,
    pixel_histograms,
    threshold_grid,
)

__all__ = ["LOCALIZATION_COLUMNS", "PAIRED_COLUMNS", "PAIRED_BASELINES", "evaluate_localization",
           "method_options", "write_localization_outputs"]

PAIRED_BASELINES = ("low_res", "refined")
BOX_KEYS = ("MaxBoxAccV2", "BoxAcc_IoU30", "BoxAcc_IoU50", "BoxAcc_IoU70", "gt_known_loc",
            "top1_loc", "best_threshold_IoU50")
LOCALIZATION_COLUMNS = ("method", "PxAP", "PxAP_ci_low", "PxAP_ci_high", "MaxBoxAccV2",
                        "MaxBoxAccV2_ci_low", "MaxBoxAccV2_ci_high", "BoxAcc_IoU30",
                        "BoxAcc_IoU50", "BoxAcc_IoU70", "gt_known_loc", "top1_loc",
                        "best_threshold_IoU50", "n_images", "n_masks", "n_boxes")
PAIRED_COLUMNS = ("metric", "method", "baseline", "difference", "ci_low", "ci_high",
                  "share_above_zero")
METRICS = ("PxAP", "MaxBoxAccV2")


def method_options(gradcam_layer: str | None = None, layercam_layer: str | None = None,
                   **pipeline_params: Any) -> dict[str, dict[str, Any]]:
    """The per-method options of the command line: the layers of Grad-CAM++ and LayerCAM and
    the postprocessing keywords of the refined CAM."""
    return {"gradcam_pp": {"layer": gradcam_layer}, "layercam": {"layer": layercam_layer},
            "refined": dict(pipeline_params)}


def _score_chunk(task: Mapping[str, Any]) -> dict[str, Any]:
    """Worker: the per-image evidence of a chunk for every method (NumPy only)."""
    from hrcam.cams.engine import derive_maps
    from hrcam.data import load_mask
    from hrcam.maps import resize_bilinear, resize_nearest

    maps = dict(task["maps"])
    maps.update(derive_maps(task["derived"], task["images"], maps))
    evidence: dict[str, dict[str, list]] = {
        m: {"mask_index": [], "fg": [], "bg": [], "box_index": [], "hits": []}
        for m in task["methods"]}
    ranges = {m: [math.inf, -math.inf] for m in task["methods"]}
    for i, image in enumerate(task["images"]):
        size = tuple(image.shape[:2])
        ann = task["annotations"][i]
        mask = None
        if ann.get("mask"):
            mask = load_mask(ann["mask"])
            if mask.shape != size:
                mask = resize_nearest(mask, size)
        boxes = np.asarray(ann.get("boxes", ()), dtype=np.float64).reshape(-1, 4)
        oh, ow = task["original_hw"][i]
        if len(boxes) and (oh, ow) != size:  # boxes are in the file's pixels
            boxes = boxes * np.array([size[1] / ow, size[0] / oh, size[1] / ow, size[0] / oh])
        for m in task["methods"]:
            cam = np.asarray(maps[m][i], dtype=np.float64)
            if cam.shape != size:
                cam = resize_bilinear(cam, size)
            cam = normalize_map(cam)
            ranges[m][0] = min(ranges[m][0], float(cam.min()))
            ranges[m][1] = max(ranges[m][1], float(cam.max()))
            if mask is not None:
                fg, bg = pixel_histograms(cam, mask, task["thresholds"])
                evidence[m]["mask_index"].append(i)
                evidence[m]["fg"].append(fg)
                evidence[m]["bg"].append(bg)
            if len(boxes):
                evidence[m]["box_index"].append(i)
                evidence[m]["hits"].append(image_box_hits(
                    cam, boxes, task["thresholds"], task["iou_thresholds"],
                    task["box_convention"]))
    return {"evidence": evidence, "ranges": ranges}


def evaluate_localization(model_path: str | Path, data_dir: str | Path, split: str = "test",
                          out_dir: str | Path | None = None, limit: int | None = None,
                          batch_size: int = 16, workers: int = 1,
                          methods: Sequence[str] | None = None,
                          cam_curve_interval: float = DEFAULT_CAM_CURVE_INTERVAL,
                          iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                          box_convention: str = DEFAULT_BOX_CONVENTION,
                          gradcam_layer: str | None = None, layercam_layer: str | None = None,
                          bootstrap_samples: int = bootstrap.DEFAULT_SAMPLES,
                          bootstrap_seed: int = bootstrap.DEFAULT_SEED,
                          progress: bool = True, **pipeline_params: Any) -> dict[str, Any]:
    """Localization scores of CAM methods of a saved model on an annotated split.

    Only images with a mask and/or boxes (`hrcam.data.load_annotations`) are used (the first
    ``limit`` of them in listing order). CAMs are computed for the ground-truth class, resized to
    the image (bilinear) and min-max normalised per image. ``methods``: names of
    `hrcam.cams.CAM_METHODS` (default: all). ``bootstrap_samples`` resamples (0: none) give
    95 % confidence intervals over images and the paired comparisons. ``pipeline_params`` are the
    refined CAM's postprocessing keywords.

    Returns ``{"methods": {method: row}, "paired": [rows], "curves": [rows], ...}``; with
    ``out_dir`` the files of `write_localization_outputs` are written too.
    """
    from tqdm import tqdm

    from hrcam import data
    from hrcam.cams import CamEngine, create_method, method_names
    from hrcam.cams.engine import CLASSES, PROBABILITIES
    from hrcam.inference import (
        WorkerPool,
        chunks,
        image_batches,
        image_set,
        load_for_images,
        model_input_size,
        positive_int,
    )

    batch_size = positive_int(batch_size, "--batch-size")
    workers = positive_int(workers, "--workers")
    limit = None if limit is None else positive_int(limit, "--limit")
    samples = int(bootstrap_samples)
    if samples < 0:
        raise ValueError(f"bootstrap samples must be >= 0, got {bootstrap_samples!r}")
    names = list(method_names() if methods is None else methods)
    if not names:
        raise ValueError(f"choose at least one CAM method of {', '.join(method_names())}")
    options = method_options(gradcam_layer, layercam_layer, **pipeline_params)
    chosen = [create_method(n, **{k: v for k, v in options.get(n, {}).items() if v is not None})
              for n in names]
    thresholds = threshold_grid(cam_curve_interval)
    BoxAccAccumulator(thresholds, iou_thresholds, box_convention)  # checks the convention

    images = image_set(data_dir, split)
    annotations = data.load_annotations(data_dir, split)
    relpaths = images.relpaths
    keep = [i for i, r in enumerate(relpaths) if r in annotations]
    if not keep:
        raise ValueError(f"{Path(data_dir) / split}: no image has a mask or boxes "
                         "(masks/ or boxes.csv); localization needs annotations")
    images = images.subset(keep[:limit] if limit is not None else keep)
    relpaths = images.relpaths
    model = load_for_images(model_path, images)
    engine = CamEngine(model, chosen, batch_size)
    scored = [m.name for m in chosen]

    pix = {m: PxAPAccumulator(thresholds, samples) for m in scored}
    box = {m: BoxAccAccumulator(thresholds, iou_thresholds, box_convention, samples)
           for m in scored}
    ranges = {m: [math.inf, -math.inf] for m in scored}
    seen = {"n": 0, "correct": 0, "masks": 0, "boxes": 0}

    def collect(context: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        index, correct = context["index"], context["correct"]
        for m in scored:
            ev = result["evidence"][m]
            if ev["mask_index"]:
                rows = np.asarray(ev["mask_index"])
                weights = bootstrap.poisson_weights(index[rows], samples, bootstrap_seed)
                pix[m].add(np.stack(ev["fg"]), np.stack(ev["bg"]), weights if samples else None)
            if ev["box_index"]:
                rows = np.asarray(ev["box_index"])
                weights = bootstrap.poisson_weights(index[rows], samples, bootstrap_seed)
                box[m].add(np.stack(ev["hits"]), correct[rows], weights if samples else None)
            ranges[m][0] = min(ranges[m][0], result["ranges"][m][0])
            ranges[m][1] = max(ranges[m][1], result["ranges"][m][1])
        first = result["evidence"][scored[0]]
        seen["masks"] += len(first["mask_index"])
        seen["boxes"] += len(first["box_index"])

    size = model_input_size(model)
    with WorkerPool(workers, collect) as pool, tqdm(
            total=len(images), desc=f"localization {split}", unit="img",
            disable=not progress) as bar:
        for batch, labels, index, hw in image_batches(images, size, batch_size):
            batch = batch.numpy()
            labels = labels.numpy()
            index = index.numpy()
            out = engine(batch, labels)
            correct = out[PROBABILITIES].argmax(axis=1) == labels
            seen["n"] += len(labels)
            seen["correct"] += int(correct.sum())
            model_maps = {k: v for k, v in out.items() if k not in (PROBABILITIES, CLASSES)}
            for part in chunks(len(labels), workers):
                task = {
                    "images": batch[part], "maps": {k: v[part] for k, v in model_maps.items()},
                    "derived": engine.derived_methods, "methods": scored,
                    "annotations": [annotations[relpaths[i]] for i in index[part]],
                    "original_hw": [tuple(int(v) for v in t) for t in hw.numpy()[part]],
                    "thresholds": thresholds, "iou_thresholds": tuple(iou_thresholds),
                    "box_convention": box_convention,
                }
                pool.submit(_score_chunk, task, {"index": index[part],
                                                 "correct": correct[part]})
            bar.update(len(labels))

    summary = _summarise(scored, pix, box, ranges, seen, samples)
    summary.update({
        "model": str(model_path), "data": str(data_dir), "split": split,
        "num_images": seen["n"], "skipped": len(images) - seen["n"],
        "accuracy": seen["correct"] / max(seen["n"], 1), "cam_class": "ground truth",
        "cam_curve_interval": cam_curve_interval, "iou_thresholds": list(iou_thresholds),
        "box_convention": box_convention,
        "bootstrap": {"samples": samples, "seed": int(bootstrap_seed),
                      "confidence": bootstrap.CONFIDENCE, "kind": "Poisson"},
        "method_options": {m.name: m.options() for m in engine.methods if m.name in scored},
        "gradcam_layer": engine.layer_of("gradcam_pp"),
        "layercam_layer": engine.layer_of("layercam"),
        "pipeline_params": _pipeline_params(engine),
    })
    if out_dir is not None:
        write_localization_outputs(summary, out_dir)
    return summary


def _pipeline_params(engine: Any) -> dict[str, Any]:
    from hrcam.postprocessing import validate_pipeline_params

    for method in engine.methods:
        if method.name == "refined":
            return method.options()
    return validate_pipeline_params()


def _summarise(methods: Sequence[str], pix: Mapping[str, PxAPAccumulator],
               box: Mapping[str, BoxAccAccumulator], ranges: Mapping[str, list],
               seen: Mapping[str, int], samples: int) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    replicates: dict[str, dict[str, np.ndarray]] = {}
    curves: list[dict[str, Any]] = []
    for m in methods:
        row: dict[str, Any] = {"method": m, "n_images": seen["n"], "n_masks": seen["masks"],
                               "n_boxes": seen["boxes"], "min_value": float(ranges[m][0]),
                               "max_value": float(ranges[m][1])}
        reps: dict[str, np.ndarray] = {}
        row["PxAP"] = pix[m].compute() if seen["masks"] else None
        if seen["boxes"]:
            row.update(box[m].compute())
        else:
            row.update({k: None for k in BOX_KEYS})
        if samples and seen["masks"]:
            reps["PxAP"] = pix[m].replicates_values()
        if samples and seen["boxes"]:
            reps["MaxBoxAccV2"] = box[m].replicates_values()
        for metric in METRICS:
            low, high = bootstrap.percentile_interval(reps[metric]) if metric in reps \
                else (None, None)
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = low, high
        rows[m] = row
        replicates[m] = reps
        curves.extend(_curve_rows(m, pix[m] if seen["masks"] else None,
                                  box[m] if seen["boxes"] else None))
    paired = []
    for metric in METRICS:
        for baseline in PAIRED_BASELINES:
            if baseline not in rows or metric not in replicates[baseline]:
                continue
            for m in methods:
                if m == baseline:
                    continue
                diff = bootstrap.paired_difference(rows[m][metric], rows[baseline][metric],
                                                   replicates[m][metric],
                                                   replicates[baseline][metric])
                paired.append({"metric": metric, "method": m, "baseline": baseline, **diff})
    return {"methods": rows, "paired": paired, "curves": curves, "replicates": replicates}


def _curve_rows(method: str, pix: PxAPAccumulator | None,
                box: BoxAccAccumulator | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if pix is not None:
        c = pix.curves()
        for t, p, r in zip(c["threshold"], c["precision"], c["recall"]):
            if t > 1.0:  # the [2, 3] sentinel bin
                continue
            rows.append({"method": method, "metric": "pixel_precision", "threshold": float(t),
                         "value": float(p)})
            rows.append({"method": method, "metric": "pixel_recall", "threshold": float(t),
                         "value": float(r)})
    if box is not None:
        acc = box.accuracy_curves()
        top1 = box.correct_top1 / max(box.count, 1)
        for d, values, top in zip(box.iou_thresholds, acc, top1):
            for t, v in zip(box.thresholds, values):
                rows.append({"method": method, "metric": f"box_acc_IoU{round(d * 100)}",
                             "threshold": float(t), "value": float(v)})
            if abs(d - 0.5) < 1e-9:
                for t, v in zip(box.thresholds, top):
                    rows.append({"method": method, "metric": "top1_loc_IoU50",
                                 "threshold": float(t), "value": float(v)})
    rows.sort(key=lambda r: (r["metric"], r["threshold"]))
    return rows






def write_localization_outputs(summary: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write into ``out_dir``: ``localization.csv`` (one row per method, with 95 % CIs),
    ``localization_paired.csv`` (every method against low_res and refined: difference, paired
    CI, share of resamples above zero), ``localization.json`` (everything but the curves and
    resamples), ``curves.csv`` (long format: method, metric, threshold, value),
    ``bootstrap.npz`` (the resampled PxAP / MaxBoxAccV2 of every method, for pooling runs),
    ``localization.png`` and ``curves.png``."""
    from hrcam import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": out / "localization.csv", "paired": out / "localization_paired.csv",
             "json": out / "localization.json", "curves": out / "curves.csv",
             "bootstrap": out / "bootstrap.npz", "bars": out / "localization.png",
             "curves_figure": out / "curves.png"}
    write_csv(files["table"], LOCALIZATION_COLUMNS, list(summary["methods"].values()))
    write_csv(files["paired"], PAIRED_COLUMNS, summary["paired"])
    with open(files["json"], "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in summary.items() if k not in ("curves", "replicates")}, f,
                  indent=2)
        f.write("\n")
    with open(files["curves"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "metric", "threshold", "value"])
        for row in summary["curves"]:
            writer.writerow([row["method"], row["metric"], f"{row['threshold']:.4f}",
                             f"{row['value']:.6f}"])
    arrays = {f"{m}/{metric}": values for m, reps in summary.get("replicates", {}).items()
              for metric, values in reps.items()}
    np.savez(files["bootstrap"], **arrays)
    plotting.localization_bars(summary["methods"], files["bars"])
    plotting.threshold_curves(summary["curves"], files["curves_figure"])
    return files
