"""Classification and localization evaluation.

Two layers:

* pure NumPy metrics on arrays (no TensorFlow): classification scores
  (:func:`classification_metrics`, :func:`top_k_accuracy`, :func:`confusion_matrix`), the
  wsolevaluation localization metrics (Choe et al., CVPR 2020) as streaming accumulators
  (:class:`PxAPAccumulator`, :class:`BoxAccAccumulator`) and their helpers;
* dataset-level evaluation of a saved model (:func:`evaluate_classification`,
  :func:`evaluate_localization`) that writes the result files.

Localization metric definitions (all values are fractions in [0, 1], not percentages):

PxAP
    Every CAM is min-max normalised to [0, 1]. Over the fixed threshold grid
    ``t_i = i * interval`` (``np.arange(0, 1, interval)``) a histogram of the CAM values of the
    ground-truth foreground pixels and one of the background pixels are accumulated over the whole
    dataset (bins ``[t_0, t_1), ..., [t_{n-1}, 1), [1, 2), [2, 3]`` as in wsolevaluation's
    ``MaskEvaluator``). A pixel is predicted foreground at threshold t when ``cam >= t``.
    TP/FP per threshold come from reverse cumulative sums; precision = TP / (TP + FP) and
    recall = TP / (TP + FN); PxAP = sum_k precision_k * (recall_k - recall_{k-1}) going from the
    highest threshold to the lowest (points with no positive prediction skipped). A perfect map
    scores 1.0, a constant map scores the foreground fraction.
MaxBoxAccV2
    For every threshold t of ``np.arange(0, 1, interval)`` the map is binarised with
    ``cam > t`` (strict, as OpenCV's THRESH_BINARY in wsolevaluation), a tight box is drawn around
    *every* 8-connected component, and the image counts as correct at IoU delta if any estimated
    box has IoU >= delta with any ground-truth box. BoxAcc(delta) = max over t of the fraction of
    correct images; MaxBoxAccV2 = mean of BoxAcc over delta in {0.3, 0.5, 0.7}.
    Boxes are in continuous pixel coordinates ``(xmin, ymin, xmax, ymax)``: a component covering
    columns c0..c1 and rows r0..r1 gives ``(c0, r0, c1 + 1, r1 + 1)``; area = (xmax - xmin) *
    (ymax - ymin), so IoU equals the IoU of the covered pixel sets.
Top-1 localization
    Class prediction correct AND IoU >= 0.5 at the threshold that maximises the ground-truth-known
    BoxAcc(0.5) (the wsolevaluation convention: the operating threshold is chosen on the
    class-agnostic, ground-truth-class CAMs). ``gt_known_loc`` is BoxAcc(0.5) itself.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CAM_CURVE_INTERVAL = 0.01
IOU_THRESHOLDS = (0.3, 0.5, 0.7)
LOCALIZATION_METHODS = ("low_res", "high_res", "refined", "gradcam_pp", "layercam",
                        "center_gaussian")
CLASSIFICATION_KEYS = (
    "num_images", "num_classes", "top1_accuracy", "top5_accuracy", "top_k",
    "macro_precision", "macro_recall", "macro_f1",
    "micro_precision", "micro_recall", "micro_f1",
)


# --------------------------------------------------------------------------------------------
# Classification metrics (pure NumPy)
# --------------------------------------------------------------------------------------------

def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
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
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
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
    micro_p = float(_safe_div(tp, tp + fp))
    micro_r = float(_safe_div(tp, tp + fn))
    micro_f1 = float(_safe_div(2 * micro_p * micro_r, micro_p + micro_r))
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


# --------------------------------------------------------------------------------------------
# Localization metrics (pure NumPy, streaming)
# --------------------------------------------------------------------------------------------

def threshold_grid(interval: float = DEFAULT_CAM_CURVE_INTERVAL) -> np.ndarray:
    """The CAM thresholds ``np.arange(0, 1, interval)`` (wsolevaluation: cam_curve_interval)."""
    if not 0 < interval < 1:
        raise ValueError("interval must lie in (0, 1)")
    return np.arange(0, 1, interval)


def normalize_map(cam: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to [0, 1] (float32); a constant or non-finite map gives zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    cam = np.where(np.isfinite(cam), cam, 0.0).astype(np.float32)
    lo, hi = float(cam.min()), float(cam.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(cam, dtype=np.float32)
    return ((cam - lo) / (hi - lo)).astype(np.float32)


def center_gaussian(height: int, width: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """The image-independent centre baseline: a Gaussian centred on the image, normalised to [0, 1].

    The standard deviation along each axis is ``sigma_fraction`` times that side.
    """
    ys = (np.arange(height, dtype=np.float64) + 0.5 - height / 2) / (sigma_fraction * height)
    xs = (np.arange(width, dtype=np.float64) + 0.5 - width / 2) / (sigma_fraction * width)
    g = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return normalize_map(g)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of boxes ``(xmin, ymin, xmax, ymax)`` (continuous coords)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return _safe_div(inter, union)


_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def component_boxes(binary: np.ndarray) -> np.ndarray:
    """Tight boxes ``(xmin, ymin, xmax + 1, ymax + 1)`` around every 8-connected component."""
    from scipy import ndimage

    labels, count = ndimage.label(binary, structure=_EIGHT_CONNECTED)
    if count == 0:
        return np.zeros((0, 4))
    slices = ndimage.find_objects(labels)
    return np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices],
                    dtype=np.float64)


def boxes_from_cam(cam: np.ndarray, thresholds: Sequence[float]) -> list[np.ndarray]:
    """The estimated boxes (all connected components of ``cam > t``) for every threshold t."""
    cam = np.asarray(cam)
    return [component_boxes(cam > t) for t in thresholds]


_PLANAR_EIGHT_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_PLANAR_EIGHT_CONNECTED[1] = True  # 8-connectivity inside each slice, none across slices


def best_iou_per_threshold(cam: np.ndarray, gt_boxes: np.ndarray,
                           thresholds: Sequence[float], chunk: int = 20) -> np.ndarray:
    """For each threshold, the best IoU between any estimated box and any ground-truth box.

    Same result as labelling ``cam > t`` for every t with :func:`component_boxes`, computed on
    stacks of ``chunk`` binary maps at once (one ``scipy.ndimage.label`` call per stack, with a
    structure that connects pixels within a slice only), which removes most per-call overhead.
    """
    from scipy import ndimage

    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    out = np.zeros(len(thresholds))
    if len(gt) == 0 or len(thresholds) == 0:
        return out
    cam = np.asarray(cam)
    for start in range(0, len(thresholds), chunk):
        ts = thresholds[start:start + chunk]
        stack = cam[None, :, :] > ts[:, None, None]
        labels, count = ndimage.label(stack, structure=_PLANAR_EIGHT_CONNECTED)
        if count == 0:
            continue
        slices = ndimage.find_objects(labels)
        boxes = np.array([[s[0].start, s[2].start, s[1].start, s[2].stop, s[1].stop]
                          for s in slices], dtype=np.float64)
        ious = box_iou(boxes[:, 1:], gt).max(axis=1)
        np.maximum.at(out, start + boxes[:, 0].astype(np.int64), ious)
    return out


class BoxAccAccumulator:
    """Streaming MaxBoxAccV2 / top-1 localization counts for one method.

    ``accumulate`` keeps only ``len(iou_thresholds) x len(thresholds)`` counters, never the maps.
    """

    def __init__(self, thresholds: Sequence[float] | None = None,
                 iou_thresholds: Sequence[float] = IOU_THRESHOLDS):
        self.thresholds = np.asarray(threshold_grid() if thresholds is None else thresholds)
        self.iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        self.correct = np.zeros((len(self.iou_thresholds), len(self.thresholds)), dtype=np.int64)
        self.correct_top1 = np.zeros_like(self.correct)
        self.count = 0

    def accumulate_ious(self, best_ious: np.ndarray, class_correct: bool = True) -> None:
        """Add one image given its best IoU per threshold (see :func:`best_iou_per_threshold`)."""
        hits = np.asarray(best_ious)[None, :] >= self.iou_thresholds[:, None] - 1e-12
        self.correct += hits
        if class_correct:
            self.correct_top1 += hits
        self.count += 1

    def accumulate(self, cam: np.ndarray, gt_boxes: np.ndarray, class_correct: bool = True) -> None:
        """Add one image: normalised CAM, ground-truth boxes, whether its class was right."""
        self.accumulate_ious(best_iou_per_threshold(cam, gt_boxes, self.thresholds), class_correct)

    def merge(self, other: BoxAccAccumulator) -> None:
        self.correct += other.correct
        self.correct_top1 += other.correct_top1
        self.count += other.count

    def accuracy_curves(self) -> np.ndarray:
        """BoxAcc per (IoU threshold, CAM threshold)."""
        return self.correct / max(self.count, 1)

    def compute(self) -> dict[str, Any]:
        curves = self.accuracy_curves()
        best = curves.max(axis=1)
        result: dict[str, Any] = {
            f"BoxAcc_IoU{round(d * 100)}": float(v) for d, v in zip(self.iou_thresholds, best)
        }
        result.update({
            f"best_threshold_IoU{round(d * 100)}": float(self.thresholds[int(np.argmax(c))])
            for d, c in zip(self.iou_thresholds, curves)
        })
        result["MaxBoxAccV2"] = float(best.mean())
        i50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        t50 = int(np.argmax(curves[i50]))
        result["gt_known_loc"] = float(curves[i50, t50])
        result["top1_loc"] = float(self.correct_top1[i50, t50] / max(self.count, 1))
        return result


class PxAPAccumulator:
    """Streaming pixel average precision (wsolevaluation's MaskEvaluator) for one method."""

    def __init__(self, thresholds: Sequence[float] | None = None):
        self.thresholds = np.asarray(threshold_grid() if thresholds is None else thresholds)
        # bins [t0, t1), ..., [t_{n-1}, 1), [1, 2), [2, 3]
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def _hist(self, values: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.edges, values.ravel(), side="right") - 1
        idx = np.clip(idx, 0, len(self.edges) - 2)
        return np.bincount(idx, minlength=len(self.edges) - 1)

    def accumulate(self, cam: np.ndarray, mask: np.ndarray,
                   ignore: np.ndarray | None = None) -> None:
        """Add one image: its normalised CAM and its binary ground-truth mask (same shape)."""
        cam = np.asarray(cam, dtype=np.float64)
        mask = np.asarray(mask) > 0.5
        if cam.shape != mask.shape:
            raise ValueError(f"CAM shape {cam.shape} != mask shape {mask.shape}")
        valid = np.ones_like(mask) if ignore is None else ~np.asarray(ignore, dtype=bool)
        self.fg_hist += self._hist(cam[mask & valid])
        self.bg_hist += self._hist(cam[~mask & valid])

    def merge(self, other: PxAPAccumulator) -> None:
        self.fg_hist += other.fg_hist
        self.bg_hist += other.bg_hist

    def curves(self) -> dict[str, np.ndarray]:
        """TP/FP based precision and recall, ordered from the highest bin edge to the lowest.

        Index j corresponds to the threshold ``edges[::-1][1:][j]`` i.e. 2.0, 1.0, t_{n-1}, ..., 0.
        """
        tp = self.fg_hist[::-1].cumsum().astype(np.float64)
        fp = self.bg_hist[::-1].cumsum().astype(np.float64)
        num_fg = float(self.fg_hist.sum())
        precision = _safe_div(tp, tp + fp)
        recall = _safe_div(tp, num_fg)
        thresholds = self.edges[:-1][::-1]
        return {"threshold": thresholds, "precision": precision, "recall": recall,
                "tp": tp, "fp": fp}

    def compute(self) -> float:
        """PxAP in [0, 1]; 0.0 when there is no foreground pixel at all."""
        if self.fg_hist.sum() == 0:
            return 0.0
        c = self.curves()
        nonzero = (c["tp"] + c["fp"]) != 0
        return float((c["precision"][1:] * np.diff(c["recall"]))[nonzero[1:]].sum())


def pxap(cams: Iterable[np.ndarray], masks: Iterable[np.ndarray],
         interval: float = DEFAULT_CAM_CURVE_INTERVAL) -> float:
    """PxAP of a set of normalised CAMs against binary masks."""
    acc = PxAPAccumulator(threshold_grid(interval))
    for cam, mask in zip(cams, masks):
        acc.accumulate(cam, mask)
    return acc.compute()


def max_box_acc_v2(cams: Iterable[np.ndarray], gt_boxes: Iterable[np.ndarray],
                   interval: float = DEFAULT_CAM_CURVE_INTERVAL,
                   iou_thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, Any]:
    """MaxBoxAccV2 (and BoxAcc per IoU threshold) of normalised CAMs against their boxes."""
    acc = BoxAccAccumulator(threshold_grid(interval), iou_thresholds)
    for cam, boxes in zip(cams, gt_boxes):
        acc.accumulate(cam, boxes)
    return acc.compute()


# --------------------------------------------------------------------------------------------
# Datasets and models (TensorFlow imported lazily)
# --------------------------------------------------------------------------------------------

def _model_input_size(model, im_size: int | Sequence[int] | None = None) -> tuple[int, int] | None:
    shape = tuple(model.inputs[0].shape[1:3])
    if shape[0] is not None and shape[1] is not None:
        return int(shape[0]), int(shape[1])
    if im_size is None:
        return None
    if isinstance(im_size, (int, np.integer)):
        return int(im_size), int(im_size)
    return int(im_size[0]), int(im_size[1])


def image_dataset(paths: Sequence[str], labels: Sequence[int], size: tuple[int, int] | None,
                  batch_size: int):
    """Deterministic batched tf.data pipeline of ``(images, labels, indices, original_hw)``.

    Images are float32 RGB in [0, 255] (the models rescale internally), decoded in parallel
    (any format ``tf.io.decode_image`` reads, grayscale/RGBA -> RGB) and bilinearly resized to
    ``size`` (H, W) when they differ. The order is the order of ``paths`` (no shuffling);
    unreadable files are dropped (their index is missing from ``indices``), never fatal.
    """
    import tensorflow as tf

    def load(path, label, index):
        raw = tf.io.read_file(path)
        image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        hw = tf.shape(image)[:2]
        image = tf.cast(image, tf.float32)
        if size is not None:
            same = tf.reduce_all(tf.equal(hw, tf.constant(size, tf.int32)))
            image = tf.cond(same, lambda: image,
                            lambda: tf.clip_by_value(
                                tf.image.resize(image, size, method="bilinear"), 0.0, 255.0))
            image.set_shape([size[0], size[1], 3])
        return image, label, index, hw

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(paths), tf.string),
                                             tf.constant(list(labels), tf.int32),
                                             tf.range(len(paths), dtype=tf.int32)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(2).with_options(options)


def load_model(model_path: str | Path):
    """Load a saved hrcam model (``.keras``, or ``.weights.h5`` with ``classes.json`` beside it)."""
    from hrcam import cams

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    kind = "full" if "full" in path.parent.name or "full" in path.name else "half"
    return cams.load_keras_model(path, kind=kind)


def dataset_classes(data_dir: str | Path, split: str) -> tuple[list[str], list[int], list[str],
                                                                list[str]]:
    """``(paths, labels, class_ids, class_names)`` of a split, in deterministic listing order."""
    from hrcam import data

    paths, labels, class_ids = data.list_images(data_dir, split)
    try:
        names = dict(data.read_classes(data_dir))
    except FileNotFoundError:
        names = {}
    return list(paths), list(labels), list(class_ids), [names.get(c, c) for c in class_ids]


def _check_model_classes(model, class_ids: Sequence[str]) -> int:
    from hrcam import models

    num = int(model.get_layer(models.PREDICTIONS_LAYER).units)
    if num != len(class_ids):
        raise ValueError(f"the model predicts {num} classes but the dataset has "
                         f"{len(class_ids)} (class index = sorted class folders)")
    return num


def _relpath(path: str, data_dir: str | Path) -> str:
    import os

    return Path(os.path.relpath(path, data_dir)).as_posix()


# --------------------------------------------------------------------------------------------
# Classification evaluation
# --------------------------------------------------------------------------------------------

def predict_split(model_path: str | Path, data_dir: str | Path, split: str = "test",
                  batch_size: int = 32, limit: int | None = None,
                  progress: bool = True) -> dict[str, Any]:
    """Softmax probabilities of a saved model on every image of ``data_dir/split`` (fixed order).

    Returns ``{"relpaths", "labels", "probabilities" (N x C float32), "class_ids",
    "class_names", "skipped"}``. Only the classifier branch is run (a full model's decoder is
    not computed), so half and full models of one run give bit-identical probabilities.
    """
    import keras
    from tqdm import tqdm

    from hrcam import models

    paths, labels, class_ids, class_names = dataset_classes(data_dir, split)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise ValueError(f"no images in {Path(data_dir) / split}")
    model = load_model(model_path)
    _check_model_classes(model, class_ids)
    classifier = keras.Model(model.input, model.get_layer(models.PREDICTIONS_LAYER).output)
    size = _model_input_size(model)
    probs, seen = [], []
    with tqdm(total=len(paths), desc=f"classify {split}", unit="img", disable=not progress) as bar:
        for images, _, index, _ in image_dataset(paths, labels, size, batch_size):
            probs.append(np.asarray(classifier(images, training=False), dtype=np.float32))
            seen.append(index.numpy())
            bar.update(len(seen[-1]))
    index = np.concatenate(seen)
    skipped = sorted(set(range(len(paths))) - set(index.tolist()))
    for i in skipped:
        log.warning("skipped unreadable image %s", paths[i])
    return {
        "relpaths": [_relpath(paths[i], data_dir) for i in index],
        "labels": np.asarray(labels)[index],
        "probabilities": np.concatenate(probs),
        "class_ids": class_ids,
        "class_names": class_names,
        "skipped": [_relpath(paths[i], data_dir) for i in skipped],
    }


def evaluate_classification(model_path: str | Path, data_dir: str | Path, split: str = "test",
                            batch_size: int = 32, limit: int | None = None,
                            out_dir: str | Path | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Classification metrics of a saved model on ``data_dir/split`` (see
    :func:`classification_metrics`); with ``out_dir``, also writes the files of
    :func:`write_classification_outputs`. Returns the metrics dict (plus ``model``, ``data``,
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
    predictions of :func:`predict_split`) ``predictions.csv`` into ``out_dir``."""
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
    _plot_confusion_matrix(np.asarray(metrics["confusion_matrix"]),
                           list(display_names or [r["name"] for r in metrics["per_class"]]),
                           files["confusion_matrix"])
    return files


def _plot_confusion_matrix(cm: np.ndarray, names: Sequence[str], path: Path) -> None:
    from hrcam import plotting

    plotting.confusion_matrix(cm, names, path)


# --------------------------------------------------------------------------------------------
# CAM extraction for localization (one forward + backward pass per batch)
# --------------------------------------------------------------------------------------------

def default_layercam_layer(model) -> str:
    """LayerCAM's layer: ``skip_{num_blocks}``, the deepest encoder dense-block output before
    the bottleneck (stride 8 for the paper's stride-16 models: 28x28 for a 224 input)."""
    import re

    skips = sorted(int(m.group(1)) for layer in model.layers
                   if (m := re.fullmatch(r"skip_(\d+)", layer.name)))
    if not skips:
        raise ValueError(f"model {model.name!r} has no skip_<k> layer for LayerCAM")
    return f"skip_{skips[-1]}"


class CamExtractor:
    """Every model-based map of a batch from one forward pass (and one gradient pass).

    ``__call__(images, classes)`` returns a dict of float32 numpy arrays:

    * ``probabilities`` (N, C);
    * ``low`` (N, h, w): low-res CAM ``sum_k W[k, c] A_k`` of conv_aux (no bias);
    * ``high`` (N, H, W): high-res CAM (same W on high_res_features), full models only;
    * ``gradcam_pp`` (N, h', w'): Grad-CAM++ (Chattopadhay et al. 2018, exponential-score closed
      form) at ``gradcam_layer``: with g = dY_c/dA for the pre-softmax score
      Y_c = gap . W[:, c] + b_c, alpha = g^2 / (2 g^2 + sum_xy(A) g^3) (0 where the denominator
      is 0), w_k = sum_xy alpha relu(g), map = relu(sum_k w_k A_k);
    * ``layercam`` (N, h'', w''): LayerCAM (Jiang et al. 2021) at ``layercam_layer``:
      relu(sum_k relu(g_k) * A_k).

    ``classes`` (N,) chooses the class of every CAM (the ground truth in evaluation).
    """

    def __init__(self, model, gradcam_layer: str | None = "bottleneck",
                 layercam_layer: str | None = None, high: bool | None = None):
        import keras
        import tensorflow as tf

        from hrcam import models

        self.model = model
        self.high = models.has_high_res(model) if high is None else bool(high)
        self.gradcam_layer = gradcam_layer
        self.layercam_layer = (default_layercam_layer(model) if layercam_layer is None
                               else layercam_layer) if layercam_layer != "" else None
        outputs = {
            "probabilities": model.get_layer(models.PREDICTIONS_LAYER).output,
            "gap": model.get_layer(models.GAP_LAYER).output,
            "low_features": model.get_layer(models.LOW_FEATURES_LAYER).output,
        }
        if self.high:
            outputs["high_features"] = model.get_layer(models.HIGH_FEATURES_LAYER).output
        if self.gradcam_layer:
            outputs["gradcam_act"] = model.get_layer(self.gradcam_layer).output
        if self.layercam_layer:
            outputs["layercam_act"] = model.get_layer(self.layercam_layer).output
        self._multi = keras.Model(model.input, outputs, name="hrcam_localization")
        kernel, bias = models.class_weights(model, bias=True)
        self._kernel = tf.constant(kernel)
        self._bias = tf.constant(bias)
        self._fn = tf.function(self._compute, reduce_retracing=True)

    def _compute(self, images, classes):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = self._multi(images, training=False)
            watched = [out[k] for k in ("gradcam_act", "layercam_act") if k in out]
            logits = tf.matmul(out["gap"], self._kernel) + self._bias
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = dict(zip([k for k in ("gradcam_act", "layercam_act") if k in out],
                         tape.gradient(score, watched))) if watched else {}
        w = tf.transpose(tf.gather(self._kernel, classes, axis=1))  # (N, K)
        result = {
            "probabilities": out["probabilities"],
            "low": tf.einsum("nhwk,nk->nhw", out["low_features"], w),
        }
        if "high_features" in out:
            result["high"] = tf.einsum("nhwk,nk->nhw", out["high_features"], w)
        if "gradcam_act" in grads:
            a, g = out["gradcam_act"], grads["gradcam_act"]
            g2 = tf.square(g)
            g3 = g2 * g
            sum_a = tf.reduce_sum(a, axis=[1, 2], keepdims=True)
            denom = 2.0 * g2 + sum_a * g3
            alpha = tf.math.divide_no_nan(g2, tf.where(tf.abs(denom) > 1e-12, denom,
                                                       tf.zeros_like(denom)))
            weights = tf.reduce_sum(alpha * tf.nn.relu(g), axis=[1, 2])  # (N, K)
            result["gradcam_pp"] = tf.nn.relu(tf.einsum("nhwk,nk->nhw", a, weights))
        if "layercam_act" in grads:
            a, g = out["layercam_act"], grads["layercam_act"]
            result["layercam"] = tf.nn.relu(tf.reduce_sum(tf.nn.relu(g) * a, axis=-1))
        return result

    def __call__(self, images, classes) -> dict[str, np.ndarray]:
        import tensorflow as tf

        out = self._fn(tf.convert_to_tensor(images, tf.float32),
                       tf.convert_to_tensor(np.asarray(classes), tf.int32))
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Scoring (runs in worker processes; NumPy only)
# --------------------------------------------------------------------------------------------

_GAUSSIAN_CACHE: dict[tuple[int, int], np.ndarray] = {}


def method_maps(method: str, i: int, size: tuple[int, int], batch: Mapping[str, Any]) -> np.ndarray:
    """The normalised [0, 1] map of ``method`` for image ``i`` of a batch, at image ``size``."""
    from hrcam.postprocessing import resize_bilinear

    if method == "center_gaussian":
        if size not in _GAUSSIAN_CACHE:
            _GAUSSIAN_CACHE[size] = center_gaussian(*size)
        return _GAUSSIAN_CACHE[size]
    key = {"low_res": "low", "high_res": "high", "refined": "refined",
           "gradcam_pp": "gradcam_pp", "layercam": "layercam"}[method]
    cam = np.asarray(batch[key][i], dtype=np.float64)
    if cam.shape != size:
        cam = resize_bilinear(cam, size)
    return normalize_map(cam)


def _score_chunk(task: Mapping[str, Any]) -> dict[str, Any]:
    """Score one chunk of images for every method; returns per-method accumulators."""
    from hrcam.data import load_mask
    from hrcam.postprocessing import pipeline_batch, resize_nearest

    methods = task["methods"]
    thresholds = task["thresholds"]
    n = len(task["images"])
    batch = dict(task["maps"])
    if "refined" in methods:
        batch["refined"] = pipeline_batch(task["images"], batch["low"], batch["high"],
                                          keys=("merged",), workers=1,
                                          **task["pipeline_params"])["merged"]
    pix = {m: PxAPAccumulator(thresholds) for m in methods}
    box = {m: BoxAccAccumulator(thresholds, task["iou_thresholds"]) for m in methods}
    ranges = {m: [np.inf, -np.inf] for m in methods}
    for i in range(n):
        size = tuple(task["images"][i].shape[:2])
        ann = task["annotations"][i]
        mask = None
        if ann is not None and ann.get("mask"):
            mask = load_mask(ann["mask"])
            if mask.shape != size:
                mask = resize_nearest(mask, size)
        boxes = None
        if ann is not None and len(ann.get("boxes", ())):
            boxes = np.asarray(ann["boxes"], dtype=np.float64).reshape(-1, 4)
            oh, ow = task["original_hw"][i]
            if (oh, ow) != size:  # boxes are in the file's pixels; scale to the model input
                boxes = boxes * np.array([size[1] / ow, size[0] / oh, size[1] / ow, size[0] / oh])
        for m in methods:
            cam = method_maps(m, i, size, batch)
            ranges[m][0] = min(ranges[m][0], float(cam.min()))
            ranges[m][1] = max(ranges[m][1], float(cam.max()))
            if mask is not None:
                pix[m].accumulate(cam, mask)
            if boxes is not None:
                box[m].accumulate(cam, boxes, bool(task["class_correct"][i]))
    return {"pix": pix, "box": box, "ranges": ranges,
            "n_masks": sum(1 for a in task["annotations"] if a is not None and a.get("mask")),
            "n_boxes": sum(1 for a in task["annotations"]
                           if a is not None and len(a.get("boxes", ())))}


def _mp_context():
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hrcam.evaluate", "hrcam.postprocessing"])
        return ctx
    return multiprocessing.get_context("spawn")


# --------------------------------------------------------------------------------------------
# Localization evaluation
# --------------------------------------------------------------------------------------------

LOCALIZATION_COLUMNS = ("method", "PxAP", "MaxBoxAccV2", "BoxAcc_IoU30", "BoxAcc_IoU50",
                        "BoxAcc_IoU70", "gt_known_loc", "top1_loc", "best_threshold_IoU50",
                        "n_images", "n_masks", "n_boxes")


def evaluate_localization(model_path: str | Path, data_dir: str | Path, split: str = "test",
                          out_dir: str | Path | None = None, limit: int | None = None,
                          batch_size: int = 16, workers: int = 1,
                          methods: Sequence[str] = LOCALIZATION_METHODS,
                          cam_curve_interval: float = DEFAULT_CAM_CURVE_INTERVAL,
                          iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                          gradcam_layer: str = "bottleneck", layercam_layer: str | None = None,
                          progress: bool = True, **pipeline_params: Any) -> dict[str, Any]:
    """Localization scores of every CAM method of a saved (full) model on an annotated split.

    Only images with a mask and/or boxes in ``hrcam.data.load_annotations`` are used (the first
    ``limit`` of them in listing order). CAMs are computed for the ground-truth class; every map
    is resized to the model input size (bilinear) and min-max normalised per image. Scores are
    accumulated batch by batch (per-threshold counts only), so memory does not grow with the
    dataset; the CPU work (refined-CAM pipeline, connected components) runs in ``workers``
    processes while the next batch goes through the network. ``pipeline_params`` are the
    postprocessing keywords for the refined CAM.

    Returns ``{"methods": {method: metrics}, "curves": [rows], "num_images", "accuracy", ...}``;
    with ``out_dir`` the files of :func:`write_localization_outputs` are written too.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from hrcam import data, models
    from hrcam.postprocessing import validate_pipeline_params

    params = validate_pipeline_params(**pipeline_params)
    methods = list(methods)
    unknown = [m for m in methods if m not in LOCALIZATION_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of {LOCALIZATION_METHODS}; "
                         f"got {methods}")
    thresholds = threshold_grid(cam_curve_interval)
    paths, labels, class_ids, class_names = dataset_classes(data_dir, split)
    annotations = data.load_annotations(data_dir, split)
    rel = [_relpath(p, data_dir) for p in paths]
    keep = [i for i, r in enumerate(rel) if r in annotations]
    if not keep:
        raise ValueError(f"{Path(data_dir) / split}: no image has a mask or boxes "
                         "(masks/ or boxes.csv); localization needs annotations")
    if limit is not None:
        keep = keep[:limit]
    paths = [paths[i] for i in keep]
    labels = [labels[i] for i in keep]
    rel = [rel[i] for i in keep]

    model = load_model(model_path)
    _check_model_classes(model, class_ids)
    needs_high = any(m in methods for m in ("high_res", "refined"))
    if needs_high and not models.has_high_res(model):
        raise ValueError("high_res and refined CAMs need a full model (with high_res_features)")
    extractor = CamExtractor(
        model, gradcam_layer=gradcam_layer if "gradcam_pp" in methods else None,
        layercam_layer=layercam_layer if "layercam" in methods else "",
        high=needs_high)
    size = _model_input_size(model)

    pix = {m: PxAPAccumulator(thresholds) for m in methods}
    box = {m: BoxAccAccumulator(thresholds, iou_thresholds) for m in methods}
    ranges = {m: [np.inf, -np.inf] for m in methods}
    counts = {"n_masks": 0, "n_boxes": 0}
    n_seen, n_correct = 0, 0

    def collect(result):
        for m in methods:
            pix[m].merge(result["pix"][m])
            box[m].merge(result["box"][m])
            ranges[m][0] = min(ranges[m][0], result["ranges"][m][0])
            ranges[m][1] = max(ranges[m][1], result["ranges"][m][1])
        counts["n_masks"] += result["n_masks"]
        counts["n_boxes"] += result["n_boxes"]

    workers = max(1, int(workers or 1))
    pool = ProcessPoolExecutor(workers, mp_context=_mp_context()) if workers > 1 else None
    pending: list = []
    try:
        with tqdm(total=len(paths), desc=f"localization {split}", unit="img",
                  disable=not progress) as bar:
            for images, y, index, hw in image_dataset(paths, labels, size, batch_size):
                y = y.numpy()
                index = index.numpy()
                out = extractor(images, y)
                pred = out.pop("probabilities").argmax(axis=1)
                correct = pred == y
                n_seen += len(y)
                n_correct += int(correct.sum())
                imgs = np.clip(np.rint(images.numpy()), 0, 255).astype(np.uint8)
                chunk = max(1, math.ceil(len(y) / workers))
                for s in range(0, len(y), chunk):
                    sl = slice(s, s + chunk)
                    task = {
                        "images": imgs[sl], "maps": {k: v[sl] for k, v in out.items()},
                        "annotations": [annotations[rel[i]] for i in index[sl]],
                        "original_hw": [tuple(int(v) for v in t) for t in hw.numpy()[sl]],
                        "class_correct": correct[sl], "methods": methods,
                        "thresholds": thresholds, "iou_thresholds": tuple(iou_thresholds),
                        "pipeline_params": params,
                    }
                    if pool is None:
                        collect(_score_chunk(task))
                    else:
                        pending.append(pool.submit(_score_chunk, task))
                while pending and (len(pending) > 2 * workers or pending[0].done()):
                    collect(pending.pop(0).result())
                bar.update(len(y))
            while pending:
                collect(pending.pop(0).result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    results: dict[str, Any] = {}
    curves: list[dict[str, Any]] = []
    for m in methods:
        row: dict[str, Any] = {"method": m, "n_images": n_seen, "n_masks": counts["n_masks"],
                               "n_boxes": counts["n_boxes"],
                               "min_value": float(ranges[m][0]), "max_value": float(ranges[m][1])}
        row["PxAP"] = pix[m].compute() if counts["n_masks"] else None
        if counts["n_boxes"]:
            row.update(box[m].compute())
        else:
            row.update({k: None for k in ("MaxBoxAccV2", "BoxAcc_IoU30", "BoxAcc_IoU50",
                                          "BoxAcc_IoU70", "gt_known_loc", "top1_loc",
                                          "best_threshold_IoU50")})
        results[m] = row
        curves.extend(_curve_rows(m, pix[m] if counts["n_masks"] else None,
                                  box[m] if counts["n_boxes"] else None))
    summary = {
        "model": str(model_path), "data": str(data_dir), "split": split,
        "num_images": n_seen, "skipped": len(paths) - n_seen,
        "accuracy": n_correct / max(n_seen, 1),
        "cam_class": "ground truth", "cam_curve_interval": cam_curve_interval,
        "iou_thresholds": list(iou_thresholds),
        "gradcam_layer": extractor.gradcam_layer, "layercam_layer": extractor.layercam_layer,
        "pipeline_params": params, "methods": results, "curves": curves,
    }
    if out_dir is not None:
        write_localization_outputs(summary, out_dir)
    return summary


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


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def write_localization_outputs(summary: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``localization.csv`` (one row per method), ``localization.json`` (everything but the
    curves), ``curves.csv`` (long format: method, metric, threshold, value),
    ``localization.png`` and ``curves.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"table": out / "localization.csv", "json": out / "localization.json",
             "curves": out / "curves.csv", "bars": out / "localization.png",
             "curves_figure": out / "curves.png"}
    with open(files["table"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LOCALIZATION_COLUMNS)
        for row in summary["methods"].values():
            writer.writerow([_fmt(row.get(c)) for c in LOCALIZATION_COLUMNS])
    with open(files["json"], "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in summary.items() if k != "curves"}, f, indent=2)
        f.write("\n")
    with open(files["curves"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "metric", "threshold", "value"])
        for row in summary["curves"]:
            writer.writerow([row["method"], row["metric"], f"{row['threshold']:.4f}",
                             f"{row['value']:.6f}"])
    _plot_localization(summary, files["bars"], files["curves_figure"])
    return files


def _plot_localization(summary: Mapping[str, Any], bars: Path, curves: Path) -> None:
    from hrcam import plotting

    plotting.localization_bars(summary["methods"], bars)
    plotting.threshold_curves(summary["curves"], curves)
