"""Classification metrics in pure NumPy: confusion matrix, top-k accuracy, per-class and macro /
micro precision, recall and F1, and the exact comparison of two metric sets (half vs full
model)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CLASSIFICATION_KEYS", "safe_div", "confusion_matrix", "top_k_accuracy",
           "per_class_scores", "classification_metrics", "compare_metrics"]

CLASSIFICATION_KEYS = (
    "num_images", "num_classes", "top1_accuracy", "top5_accuracy", "top_k",
    "macro_precision", "macro_recall", "macro_f1",
    "micro_precision", "micro_recall", "micro_f1",
)



def safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den elementwise as float64, 0 where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError("y_true and y_pred must have the same length")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0
                        or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def top_k_accuracy(y_true: Sequence[int], probabilities: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the k highest scores.

    The rank of the true class is the number of classes with a *strictly* higher score, so ties
    count in the sample's favour (exactly-tied scores are rare with float probabilities).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    if probabilities.ndim != 2 or probabilities.shape[0] != y_true.size:
        raise ValueError("probabilities must have shape (num_samples, num_classes)")
    if y_true.size == 0:
        return 0.0
    k = max(1, min(int(k), probabilities.shape[1]))
    true_scores = probabilities[np.arange(y_true.size), y_true]
    rank = (probabilities > true_scores[:, None]).sum(axis=1)
    return float(np.mean(rank < k))


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class support, precision, recall and F1 from a confusion matrix (0 where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = safe_div(tp, predicted)
    recall = safe_div(tp, support)
    f1 = safe_div(2 * precision * recall, precision + recall)
    return {"support": support.astype(np.int64), "predicted": predicted.astype(np.int64),
            "precision": precision, "recall": recall, "f1": f1}


def classification_metrics(y_true: Sequence[int], probabilities: np.ndarray,
                           class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Every classification score of one model on one labelled set.

    * ``top1_accuracy``, ``top5_accuracy`` (top-k with ``k = min(5, num_classes)``, recorded as
      ``top_k``);
    * macro precision / recall / F1: unweighted means over the classes that occur in the labels or
      the predictions (scikit-learn's default label set); macro F1 is the mean of the per-class
      F1 scores (scikit-learn's definition), not the F1 of macro precision and recall;
    * micro precision / recall / F1 from the pooled TP/FP/FN counts: for single-label multiclass
      data every error is one FP and one FN, so all three equal the top-1 accuracy (the original
      scripts got this wrong);
    * ``per_class``: one dict per class (id, name, support, precision, recall, f1);
    * ``confusion_matrix``: list of lists, rows = true class, columns = predicted class.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    if probabilities.ndim != 2 or probabilities.shape[0] != y_true.size:
        raise ValueError("probabilities must have shape (num_samples, num_classes)")
    num_classes = probabilities.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    y_pred = probabilities.argmax(axis=1) if y_true.size else np.zeros(0, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    scores = per_class_scores(cm)
    present = (scores["support"] > 0) | (scores["predicted"] > 0)
    tp = float(np.trace(cm))
    fp = float(cm.sum() - np.trace(cm))  # every wrong prediction is a FP of the predicted class
    fn = fp  # ... and a FN of the true class
    micro_p = float(safe_div(tp, tp + fp))
    micro_r = float(safe_div(tp, tp + fn))
    micro_f1 = float(safe_div(2 * micro_p * micro_r, micro_p + micro_r))
    k = min(5, num_classes)

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "num_images": int(y_true.size),
        "num_classes": int(num_classes),
        "top1_accuracy": float(np.mean(y_pred == y_true)) if y_true.size else 0.0,
        "top5_accuracy": top_k_accuracy(y_true, probabilities, k),
        "top_k": int(k),
        "macro_precision": macro(scores["precision"]),
        "macro_recall": macro(scores["recall"]),
        "macro_f1": macro(scores["f1"]),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f1,
        "per_class": [
            {"class_id": c, "name": str(class_names[c]), "support": int(scores["support"][c]),
             "precision": float(scores["precision"][c]), "recall": float(scores["recall"][c]),
             "f1": float(scores["f1"][c])}
            for c in range(num_classes)
        ],
        "confusion_matrix": cm.tolist(),
    }


def compare_metrics(a: Mapping[str, Any], b: Mapping[str, Any],
                    keys: Iterable[str] | None = None) -> list[str]:
    """Keys whose values differ between two metric dicts (exact comparison, no tolerance).

    By default the scalar classification keys plus ``per_class`` and ``confusion_matrix`` are
    compared; a key missing from one side counts as differing. Used for the half-vs-full check: the
    full model's frozen encoder and head must reproduce the half model's numbers exactly.
    """
    if keys is None:
        keys = [*CLASSIFICATION_KEYS, "per_class", "confusion_matrix"]
    sentinel = object()
    return [key for key in keys if a.get(key, sentinel) != b.get(key, sentinel)
            or (key not in a and key not in b)]


