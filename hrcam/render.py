"""Batch CAM rendering: low-res, high-res and refined CAMs of many images, saved as arrays and
figures.

:func:`render_cams` runs the full model once per batch through the CAM engine (predictions and
both CAMs from one forward pass), spreads the refined-CAM postprocessing and the figure drawing
over worker processes (the inference layer of `hrcam.inference`, shared with the evaluation),
and writes, under ``out_dir``::

    arrays/<class>/<stem>.npz      low, high, refined, prediction, label, probabilities, cam_class
    figures/<class>/<stem>.png     the postprocessing pipeline figure (hrcam.plotting.pipeline)
    overlays/<class>/<stem>.png    the refined CAM over the image (hrcam.plotting.overlay)
    collage.png                    image / refined-CAM pairs, a few per class
                                   (hrcam.plotting.collage)
    cams.csv                       one row per image: relpath, label, prediction, probability, files

``<class>/<stem>`` is the image path relative to ``data_dir/split`` without its suffix.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CAM_CLASSES = ("predicted", "label")


def select_images(paths: Sequence[str], labels: Sequence[int], class_ids: Sequence[str],
                  class_names: Sequence[str], classes: Sequence[str] | None = None,
                  limit: int | None = None) -> list[int]:
    """Indices of the images to render, in listing order.

    ``classes``: class ids, class names or class indices (as strings or ints) to keep (None or
    empty: all). ``limit``: at most that many images in total, taken round-robin over the kept
    classes (the first image of every class, then the second, ...) so that every class is shown.
    """
    keep_classes: set[int] | None = None
    if classes:
        keep_classes = set()
        for c in classes:
            token = str(c)
            if token in class_ids:
                keep_classes.add(list(class_ids).index(token))
            elif token in class_names:
                keep_classes.add(list(class_names).index(token))
            elif token.isdigit() and int(token) < len(class_ids):
                keep_classes.add(int(token))
            else:
                raise ValueError(f"unknown class {token!r} (expected a class id, name or index "
                                 f"of {len(class_ids)} classes)")
    per_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        if keep_classes is None or label in keep_classes:
            per_class.setdefault(int(label), []).append(i)
    if limit is None:
        return sorted(i for idx in per_class.values() for i in idx)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(v) for v in per_class.values()):
        for c in sorted(per_class):
            if depth < len(per_class[c]) and len(chosen) < limit:
                chosen.append(per_class[c][depth])
        depth += 1
    return sorted(chosen)


def _stem(relpath: str) -> str:
    """``test/<class>/<name>.jpg`` -> ``<class>/<name>`` (the path inside the split folder)."""
    parts = Path(relpath).with_suffix("").parts
    return "/".join(parts[1:]) if len(parts) > 1 else parts[0]


def _render_chunk(task: Mapping[str, Any]) -> list[np.ndarray]:
    """Worker: refined CAMs (the whole postprocessing pipeline, for the figures), .npz arrays,
    pipeline figures and overlays of a few images (NumPy, SciPy, SimpleITK and matplotlib only).
    Returns the refined CAMs."""
    from PIL import Image

    from hrcam import plotting
    from hrcam.postprocessing import pipeline

    refined = []
    for j, item in enumerate(task["items"]):
        image, low, high = task["images"][j], task["low"][j], task["high"][j]
        steps = pipeline(image, low, high, **task["pipeline_params"])
        merged = np.asarray(steps["merged"], dtype=np.float32)
        refined.append(merged)
        npz = Path(item["npz_path"])
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            npz, low=low.astype(np.float32), high=high.astype(np.float32), refined=merged,
            prediction=np.int64(item["prediction"]), label=np.int64(item["label"]),
            probabilities=item["probabilities"].astype(np.float32),
            cam_class=np.int64(item["cam_class"]))
        if task["figures"]:
            plotting.pipeline(image, low, high, steps=steps, path=item["pipeline_path"],
                              title=item["title"], **task["pipeline_params"])
        if task["overlays"]:
            Path(item["overlay_path"]).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(plotting.overlay(image, merged)).save(item["overlay_path"])
    return refined


def render_cams(model_path: str | Path, data_dir: str | Path, split: str = "test",
                out_dir: str | Path = "cams", limit: int | None = None,
                classes: Sequence[str] | None = None, workers: int = 1, batch_size: int = 16,
                cam_class: str = "predicted", collage_per_class: int = 2,
                figures: bool = True, overlays: bool = True, progress: bool = True,
                **pipeline_params: Any) -> dict[str, Any]:
    """Render the CAMs of a trained full model for the images of ``data_dir/split``.

    :param classes: class ids / names / indices to render (default: all).
    :param limit: at most this many images, round-robin over the classes (default: all).
    :param workers: processes for the postprocessing and the figures (1: in this process).
    :param cam_class: ``'predicted'`` (default, the seed's behaviour) or ``'label'`` (the
                      ground-truth class) -- the class whose CAMs are drawn.
    :param collage_per_class: images per class in ``collage.png`` (0: no collage).
    :param figures, overlays: write the per-image pipeline figures and overlays (the arrays
                              are always written).
    :param pipeline_params: the refined-CAM postprocessing keywords.
    :return: a summary dict (counts, files, parameters).
    """
    from tqdm import tqdm

    from hrcam import plotting
    from hrcam.cams import CamEngine
    from hrcam.cams.engine import PROBABILITIES
    from hrcam.inference import (
        WorkerPool,
        chunks,
        image_batches,
        image_set,
        load_for_images,
        model_input_size,
        positive_int,
    )
    from hrcam.postprocessing import validate_pipeline_params

    if cam_class not in CAM_CLASSES:
        raise ValueError(f"cam_class must be one of {CAM_CLASSES}, got {cam_class!r}")
    batch_size = positive_int(batch_size, "--batch-size")
    workers = positive_int(workers, "--workers")
    limit = None if limit is None else positive_int(limit, "--limit")
    if isinstance(collage_per_class, bool) or int(collage_per_class) < 0:
        raise ValueError(f"collage_per_class must be an integer >= 0, got {collage_per_class!r}")
    params = validate_pipeline_params(**pipeline_params)
    images = image_set(data_dir, split)
    chosen = select_images(images.paths, images.labels, images.class_ids, images.class_names,
                           classes, limit)
    if not chosen:
        raise ValueError(f"no image of {Path(data_dir) / split} matches the selection")
    images = images.subset(chosen)
    rel = images.relpaths
    names = images.class_names
    model = load_for_images(model_path, images, kind="full")
    engine = CamEngine(model, ("low_res", "high_res"), batch_size)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    collage_items: dict[int, list[tuple[np.ndarray, np.ndarray, str]]] = {}

    def collect(task: Mapping[str, Any], refined: list[np.ndarray]) -> None:
        for item, image, merged in zip(task["items"], task["images"], refined):
            bucket = collage_items.setdefault(item["label"], [])
            if len(bucket) < collage_per_class:
                bucket.append((image, merged, item["collage_title"]))

    with WorkerPool(workers, collect) as pool, tqdm(
            total=len(images), desc=f"cams {split}", unit="img", disable=not progress) as bar:
        for batch, y, index, _ in image_batches(images, model_input_size(model), batch_size):
            x = batch.numpy()
            y = y.numpy()
            index = index.numpy()
            # one forward pass per batch: predictions and both CAMs (of the predicted class,
            # or of the label with cam_class='label')
            result = engine(x, y if cam_class == "label" else None)
            probs = result[PROBABILITIES]
            pred = probs.argmax(axis=1)
            items = []
            for j, i in enumerate(index):
                stem = _stem(rel[i])
                cls = int(result["classes"][j])
                items.append({
                    "npz_path": str(out / "arrays" / f"{stem}.npz"),
                    "pipeline_path": str(out / "figures" / f"{stem}.png"),
                    "overlay_path": str(out / "overlays" / f"{stem}.png"),
                    "prediction": int(pred[j]), "label": int(y[j]), "cam_class": cls,
                    "probabilities": probs[j],
                    "title": (f"{rel[i]}: label {names[y[j]]}, predicted {names[pred[j]]} "
                              f"({probs[j, pred[j]]:.2f}), CAM of {names[cls]}"),
                    "collage_title": f"{names[y[j]]} -> {names[pred[j]]}",
                })
                rows.append({
                    "relpath": rel[i], "label": int(y[j]), "label_name": names[y[j]],
                    "prediction": int(pred[j]), "prediction_name": names[pred[j]],
                    "probability": float(probs[j, pred[j]]), "cam_class": cls,
                    "npz": f"arrays/{stem}.npz",
                    "figure": f"figures/{stem}.png" if figures else "",
                    "overlay": f"overlays/{stem}.png" if overlays else "",
                })
            for part in chunks(len(items), workers):
                task = {"items": items[part], "images": x[part],
                        "low": result["low_res"][part], "high": result["high_res"][part],
                        "figures": figures, "overlays": overlays, "pipeline_params": params}
                pool.submit(_render_chunk, task, task)
            bar.update(len(index))

    files = {"table": out / "cams.csv"}
    with open(files["table"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["relpath"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    if collage_per_class > 0 and collage_items:
        ordered = [item for c in sorted(collage_items) for item in collage_items[c]]
        files["collage"] = out / "collage.png"
        plotting.collage([a for a, _, _ in ordered], [b for _, b, _ in ordered],
                         titles=[t for _, _, t in ordered],
                         ncols=max(1, min(collage_per_class * 2, len(ordered))),
                         path=files["collage"])
    skipped = len(images) - len(rows)
    if skipped:
        log.warning("%d unreadable image(s) skipped", skipped)
    return {"model": str(model_path), "data": str(data_dir), "split": split,
            "num_images": len(rows), "skipped": skipped, "cam_class": cam_class,
            "pipeline_params": params, "out_dir": str(out),
            "files": {k: str(v) for k, v in files.items()}}


def variant_figure(models: Mapping[str, str | Path], data_dir: str | Path, out: str | Path,
                   split: str = "test", limit: int = 6, classes: Sequence[str] | None = None,
                   batch_size: int = 16) -> Path:
    """The CAMs of several full models (decoder variants of one half model) on the same images,
    side by side: the image, the low-res CAM (the same for every variant: one half model), then
    each variant's high-res CAM, all for the ground-truth class. ``limit`` images round-robin
    over the classes. Writes the figure to ``out`` and returns its path."""
    from hrcam import plotting
    from hrcam.cams import CamEngine
    from hrcam.inference import (
        image_batches,
        image_set,
        load_for_images,
        model_input_size,
    )

    if not models:
        raise ValueError("variant_figure needs at least one model")
    images = image_set(data_dir, split)
    chosen = select_images(images.paths, images.labels, images.class_ids, images.class_names,
                           classes, limit)
    images = images.subset(chosen)
    columns: dict[str, list[np.ndarray]] = {}
    pixels: list[np.ndarray] = []
    for position, (name, path) in enumerate(models.items()):
        model = load_for_images(path, images, kind="full", what=f"variant {name}")
        engine = CamEngine(model, ("low_res", "high_res"), batch_size)
        highs, lows = [], []
        for batch, labels, _, _ in image_batches(images, model_input_size(model), batch_size):
            result = engine(batch.numpy(), labels.numpy())
            highs.extend(result["high_res"])
            lows.extend(result["low_res"])
            if position == 0:
                pixels.extend(batch.numpy())
        if position == 0:
            columns["low-res CAM"] = lows
        columns[f"high-res: {name}"] = highs
    titles = [images.class_names[label] for label in images.labels]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plotting.cam_grid(pixels, columns, row_titles=titles, path=out)
    return out
