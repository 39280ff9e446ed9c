"""Classification evaluation of a saved model on a split: probabilities in a fixed order, the
metrics of `hrcam.evaluate.metrics.classification`, and the result files (metrics.json,
per_class.csv, predictions.csv, confusion.png)."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.evaluate.metrics.classification import classification_metrics

log = logging.getLogger(__name__)

__all__ = ["predict_split", "evaluate_classification", "write_classification_outputs"]


def predict_split(model_path: str | Path, data_dir: str | Path, split: str = "test",
                  batch_size: int = 32, limit: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Softmax probabilities of a saved model on every image of ``data_dir/split`` (fixed order).

    Returns ``{"relpaths", "labels", "probabilities" (N x C float32), "class_ids",
    "class_names", "skipped"}``. Only the classifier branch runs (a full model's decoder is not
    computed), so the half and full models of one run give bit-identical probabilities.
    """
    from tqdm import tqdm

    from hrcam.cams import CamEngine
    from hrcam.cams.engine import PROBABILITIES
    from hrcam.inference import (
        image_batches,
        image_set,
        load_for_images,
        model_input_size,
        positive_int,
    )

    batch_size = positive_int(batch_size, "--batch-size")
    limit = None if limit is None else positive_int(limit, "--limit")
    images = image_set(data_dir, split)
    if limit is not None:
        images = images.subset(range(min(limit, len(images))))
    if not len(images):
        raise ValueError(f"no images in {Path(data_dir) / split}")
    model = load_for_images(model_path, images)
    engine = CamEngine(model, (), batch_size)
    probs, seen = [], []
    with tqdm(total=len(images), desc=f"classify {split}", unit="img",
              disable=not progress) as bar:
        for batch, _, index, _ in image_batches(images, model_input_size(model), batch_size):
            probs.append(engine(batch.numpy())[PROBABILITIES])
            seen.append(index.numpy())
            bar.update(len(seen[-1]))
    index = np.concatenate(seen)
    skipped = sorted(set(range(len(images))) - set(index.tolist()))
    relpaths = images.relpaths
    for i in skipped:
        log.warning("skipped unreadable image %s", images.paths[i])
    return {
        "relpaths": [relpaths[i] for i in index],
        "labels": np.asarray(images.labels)[index],
        "probabilities": np.concatenate(probs).astype(np.float32),
        "class_ids": list(images.class_ids),
        "class_names": list(images.class_names),
        "skipped": [relpaths[i] for i in skipped],
    }


def evaluate_classification(model_path: str | Path, data_dir: str | Path, split: str = "test",
                            batch_size: int = 32, limit: int | None = None,
                            out_dir: str | Path | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Classification metrics of a saved model on ``data_dir/split`` (see
    `classification_metrics`); with ``out_dir``, also writes the files of
    `write_classification_outputs`. Returns the metrics dict (plus ``model``, ``data``,
    ``split``, ``skipped``)."""
    pred = predict_split(model_path, data_dir, split, batch_size, limit, progress)
    names = [f"{cid} {name}" if name != cid else cid
             for cid, name in zip(pred["class_ids"], pred["class_names"])]
    metrics = classification_metrics(pred["labels"], pred["probabilities"], pred["class_names"])
    for row, cid in zip(metrics["per_class"], pred["class_ids"]):
        row["class"] = cid
    metrics.update({"model": str(model_path), "data": str(data_dir), "split": split,
                    "skipped": pred["skipped"]})
    if out_dir is not None:
        write_classification_outputs(metrics, out_dir, pred, display_names=names)
    return metrics


def write_classification_outputs(metrics: Mapping[str, Any], out_dir: str | Path,
                                 predictions: Mapping[str, Any] | None = None,
                                 display_names: Sequence[str] | None = None) -> dict[str, Path]:
    """Write ``metrics.json``, ``per_class.csv``, ``confusion.png`` and (given the
    predictions of `predict_split`) ``predictions.csv`` into ``out_dir``."""
    from hrcam import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out / "metrics.json", "per_class": out / "per_class.csv",
             "confusion_matrix": out / "confusion.png"}
    with open(files["metrics"], "w", encoding="utf-8") as f:
        json.dump(dict(metrics), f, indent=2)
        f.write("\n")
    with open(files["per_class"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["class_index", "class", "name", "support", "precision", "recall", "f1"])
        for row in metrics["per_class"]:
            writer.writerow([row["class_id"], row.get("class", row["class_id"]), row["name"],
                             row["support"], f"{row['precision']:.6f}", f"{row['recall']:.6f}",
                             f"{row['f1']:.6f}"])
    if predictions is not None:
        files["predictions"] = out / "predictions.csv"
        probs = np.asarray(predictions["probabilities"])
        pred = probs.argmax(axis=1)
        with open(files["predictions"], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["relpath", "label", "predicted", "probability"])
            for rel, label, p, row in zip(predictions["relpaths"], predictions["labels"], pred,
                                          probs):
                writer.writerow([rel, int(label), int(p), f"{float(row[p]):.6f}"])
    plotting.confusion_matrix(np.asarray(metrics["confusion_matrix"]),
                              list(display_names or [r["name"] for r in metrics["per_class"]]),
                              files["confusion_matrix"])
    return files
