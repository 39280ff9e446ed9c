"""Localization metrics (Choe et al., CVPR 2020, "wsolevaluation") as streaming accumulators, in
pure NumPy. Values are fractions in [0, 1], not percentages.

PxAP (needs masks)
    Every CAM is min-max normalised to [0, 1]. Over the threshold grid
    ``t_i = i * interval`` a histogram of the CAM values of the foreground pixels and one of
    the background pixels are accumulated over the dataset (bins ``[t_0, t_1), ...,
    [t_{n-1}, 1), [1, 2), [2, 3]`` as wsolevaluation's ``MaskEvaluator``); TP/FP per threshold
    come from reverse cumulative sums, PxAP = sum_k precision_k (recall_k - recall_{k-1}) from
    the highest threshold down (points without a positive prediction skipped). A perfect map
    scores 1, a constant map the foreground fraction.
MaxBoxAccV2 (needs boxes)
    At every CAM threshold, boxes around the thresholded map's components; an image is correct
    at IoU delta if any estimated box has IoU >= delta with any ground-truth box; BoxAcc(delta)
    is the best accuracy over the thresholds; MaxBoxAccV2 the mean over delta = 30, 50, 70 %.
    ``box_convention="wsol"`` (default) is wsolevaluation's ``BoxEvaluator`` to the bit (uint8
    quantisation, strict threshold, every contour incl. holes, inclusive-pixel IoU, an empty map
    scores the box [0, 0, 0, 0]); ``"exact"`` binarises the float map and uses the exact pixel
    IoU of every 8-connected component (see `hrcam.evaluate.metrics.boxes`).
Top-1 localization
    Class correct AND IoU >= 0.5 at the threshold that maximises BoxAcc(0.5) (the ground-truth
    class CAMs choose the operating threshold); ``gt_known_loc`` is BoxAcc(0.5) itself.

Ground-truth boxes are hrcam's dataset boxes: continuous pixel coordinates ``(xmin, ymin,
xmax, ymax)`` with xmax / ymax exclusive (a box over pixel columns 10..20 is [10, 21));
wsolevaluation's inclusive boxes ``(x0, y0, x1, y1)`` are ``(x0, y0, x1 + 1, y1 + 1)`` here.

Every accumulator can also keep bootstrap resamples (`hrcam.evaluate.metrics.bootstrap`): give
each image's resampling weights and read `replicates()` for confidence intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from hrcam.evaluate.metrics.boxes import (
    BOX_CONVENTIONS,
    DEFAULT_BOX_CONVENTION,
    box_hits,
    wsol_gt_boxes,
)
from hrcam.evaluate.metrics.classification import safe_div

__all__ = ["DEFAULT_CAM_CURVE_INTERVAL", "IOU_THRESHOLDS", "BOX_CONVENTIONS",
           "DEFAULT_BOX_CONVENTION", "threshold_grid", "normalize_map", "pixel_histograms",
           "image_box_hits", "PxAPAccumulator", "BoxAccAccumulator", "pxap", "max_box_acc_v2"]

#: wsolevaluation's default ``cam_curve_interval``.
DEFAULT_CAM_CURVE_INTERVAL = 0.001
IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def threshold_grid(interval: float = DEFAULT_CAM_CURVE_INTERVAL) -> np.ndarray:
    """The CAM thresholds ``np.arange(0, 1, interval)`` (wsolevaluation's cam_curve_interval)."""
    if not 0 < interval < 1:
        raise ValueError(f"the CAM curve interval must lie in (0, 1), got {interval!r}")
    return np.arange(0, 1, interval)


def normalize_map(cam: np.ndarray) -> np.ndarray:
    """Min-max normalise a map to [0, 1] (float32); non-finite values count as 0, and a constant
    map gives zeros."""
    from hrcam.maps import normalize

    values = np.asarray(cam, dtype=np.float64)
    return normalize(np.where(np.isfinite(values), values, 0.0)).astype(np.float32)


def _edges(thresholds: np.ndarray) -> np.ndarray:
    return np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])


def pixel_histograms(cam: np.ndarray, mask: np.ndarray, thresholds: np.ndarray,
                     ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One image's PxAP evidence: histograms (over the PxAP bins of ``thresholds``) of the
    normalised CAM's values on the foreground (``mask > 0.5``) and on the background pixels;
    ``ignore`` pixels count in neither."""
    cam = np.asarray(cam, dtype=np.float64)
    mask = np.asarray(mask) > 0.5
    if cam.shape != mask.shape:
        raise ValueError(f"CAM shape {cam.shape} != mask shape {mask.shape}")
    edges = _edges(thresholds)
    valid = np.ones_like(mask) if ignore is None else ~np.asarray(ignore, dtype=bool)
    idx = np.clip(np.searchsorted(edges, cam.ravel(), side="right") - 1, 0, len(edges) - 2)
    fg = (mask & valid).ravel()
    bg = (~mask & valid).ravel()
    bins = len(edges) - 1
    return (np.bincount(idx[fg], minlength=bins).astype(np.int64),
            np.bincount(idx[bg], minlength=bins).astype(np.int64))


def image_box_hits(cam: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray,
                   iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                   convention: str = DEFAULT_BOX_CONVENTION) -> np.ndarray:
    """One image's MaxBoxAccV2 evidence: bool (len(iou_thresholds), len(thresholds)), whether
    it is correct at each IoU and CAM threshold. ``gt_boxes`` in hrcam's (exclusive)
    convention."""
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if convention == "wsol":
        gt = wsol_gt_boxes(gt)
    return box_hits(cam, gt, thresholds, iou_thresholds, convention)


def _weights(weights: np.ndarray | None, n: int, replicates: int) -> np.ndarray | None:
    if replicates == 0:
        return None
    if weights is None:
        raise ValueError("this accumulator keeps bootstrap resamples: give the images' weights")
    w = np.asarray(weights, dtype=np.float64).reshape(n, -1)
    if w.shape[1] != replicates:
        raise ValueError(f"weights have {w.shape[1]} resamples, the accumulator {replicates}")
    return w


class PxAPAccumulator:
    """Streaming pixel average precision (wsolevaluation's MaskEvaluator) for one method.

    ``replicates`` > 0 keeps that many bootstrap resamples of the histograms (each image added
    with its resampling weights)."""

    def __init__(self, thresholds: Sequence[float] | None = None, replicates: int = 0) -> None:
        self.thresholds = np.asarray(threshold_grid() if thresholds is None else thresholds)
        # bins [t0, t1), ..., [t_{n-1}, 1), [1, 2), [2, 3]
        self.edges = _edges(self.thresholds)
        bins = len(self.edges) - 1
        self.fg_hist = np.zeros(bins, dtype=np.int64)
        self.bg_hist = np.zeros(bins, dtype=np.int64)
        self.replicates = int(replicates)
        self.fg_rep = np.zeros((self.replicates, bins))
        self.bg_rep = np.zeros((self.replicates, bins))
        self.count = 0

    def add(self, fg: np.ndarray, bg: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add the histograms of n images ((n, bins) each, see `pixel_histograms`) and, with
        resamples, their weights (n, replicates)."""
        fg = np.asarray(fg, dtype=np.int64).reshape(-1, self.fg_hist.size)
        bg = np.asarray(bg, dtype=np.int64).reshape(-1, self.bg_hist.size)
        w = _weights(weights, len(fg), self.replicates)
        self.fg_hist += fg.sum(axis=0)
        self.bg_hist += bg.sum(axis=0)
        self.count += len(fg)
        if w is not None:
            self.fg_rep += w.T @ fg
            self.bg_rep += w.T @ bg

    def accumulate(self, cam: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None,
                   weights: np.ndarray | None = None) -> None:
        """Add one image: its normalised CAM and its binary ground-truth mask (same shape)."""
        fg, bg = pixel_histograms(cam, mask, self.thresholds, ignore)
        self.add(fg[None], bg[None], None if weights is None else np.asarray(weights)[None])

    def merge(self, other: PxAPAccumulator) -> None:
        self.fg_hist += other.fg_hist
        self.bg_hist += other.bg_hist
        self.fg_rep += other.fg_rep
        self.bg_rep += other.bg_rep
        self.count += other.count

    @staticmethod
    def _curves(fg: np.ndarray, bg: np.ndarray) -> dict[str, np.ndarray]:
        tp = np.cumsum(fg[..., ::-1], axis=-1, dtype=np.float64)
        fp = np.cumsum(bg[..., ::-1], axis=-1, dtype=np.float64)
        num_fg = fg.sum(axis=-1, keepdims=True, dtype=np.float64)
        return {"tp": tp, "fp": fp, "precision": safe_div(tp, tp + fp),
                "recall": safe_div(tp, num_fg)}

    @classmethod
    def _average_precision(cls, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
        c = cls._curves(fg, bg)
        nonzero = (c["tp"] + c["fp"]) != 0
        steps = c["precision"][..., 1:] * np.diff(c["recall"], axis=-1)
        return np.where(nonzero[..., 1:], steps, 0.0).sum(axis=-1)

    def curves(self) -> dict[str, np.ndarray]:
        """TP/FP based precision and recall, ordered from the highest bin edge to the lowest.

        Index j corresponds to the threshold ``edges[::-1][1:][j]`` i.e. 2.0, 1.0, t_{n-1}, ..., 0.
        """
        c = self._curves(self.fg_hist, self.bg_hist)
        c["threshold"] = self.edges[:-1][::-1]
        return c

    def compute(self) -> float:
        """PxAP in [0, 1]; 0.0 when there is no foreground pixel at all. (The masked sum, in
        wsolevaluation's order of operations, so the value is bit-identical to its own.)"""
        if self.fg_hist.sum() == 0:
            return 0.0
        c = self._curves(self.fg_hist, self.bg_hist)
        nonzero = (c["tp"] + c["fp"]) != 0
        return float((c["precision"][1:] * np.diff(c["recall"]))[nonzero[1:]].sum())

    def replicates_values(self) -> np.ndarray:
        """PxAP of every bootstrap resample (NaN where a resample has no foreground pixel)."""
        values = self._average_precision(self.fg_rep, self.bg_rep)
        return np.where(self.fg_rep.sum(axis=1) > 0, values, np.nan)


class BoxAccAccumulator:
    """Streaming MaxBoxAccV2 / top-1 localization counts for one method: only
    ``len(iou_thresholds) x len(thresholds)`` counters (per resample with ``replicates``)."""

    def __init__(self, thresholds: Sequence[float] | None = None,
                 iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                 convention: str = DEFAULT_BOX_CONVENTION, replicates: int = 0) -> None:
        if convention not in BOX_CONVENTIONS:
            raise ValueError(f"box convention must be one of {BOX_CONVENTIONS}, got "
                             f"{convention!r}")
        self.thresholds = np.asarray(threshold_grid() if thresholds is None else thresholds)
        self.iou_thresholds = np.asarray(iou_thresholds, dtype=np.float64)
        self.convention = convention
        shape = (len(self.iou_thresholds), len(self.thresholds))
        self.correct = np.zeros(shape, dtype=np.int64)
        self.correct_top1 = np.zeros(shape, dtype=np.int64)
        self.count = 0
        self.replicates = int(replicates)
        self.correct_rep = np.zeros((self.replicates, *shape))
        self.count_rep = np.zeros(self.replicates)

    def image_hits(self, cam: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
        """One image's hits (see `image_box_hits`) with this accumulator's settings."""
        return image_box_hits(cam, gt_boxes, self.thresholds, self.iou_thresholds,
                              self.convention)

    def add(self, hits: np.ndarray, class_correct: np.ndarray | Sequence[bool],
            weights: np.ndarray | None = None) -> None:
        """Add n images: their hits (n, D, T), whether their class was right (n,) and, with
        resamples, their weights (n, replicates)."""
        hits = np.asarray(hits, dtype=bool).reshape(-1, *self.correct.shape)
        right = np.asarray(class_correct, dtype=bool).reshape(len(hits))
        w = _weights(weights, len(hits), self.replicates)
        self.correct += hits.sum(axis=0)
        self.correct_top1 += hits[right].sum(axis=0)
        self.count += len(hits)
        if w is not None:
            flat = hits.reshape(len(hits), -1).astype(np.float64)
            self.correct_rep += (w.T @ flat).reshape(self.correct_rep.shape)
            self.count_rep += w.sum(axis=0)

    def accumulate(self, cam: np.ndarray, gt_boxes: np.ndarray, class_correct: bool = True,
                   weights: np.ndarray | None = None) -> None:
        """Add one image: normalised CAM, ground-truth boxes, whether its class was right."""
        self.add(self.image_hits(cam, gt_boxes)[None], [class_correct],
                 None if weights is None else np.asarray(weights)[None])

    def merge(self, other: BoxAccAccumulator) -> None:
        self.correct += other.correct
        self.correct_top1 += other.correct_top1
        self.count += other.count
        self.correct_rep += other.correct_rep
        self.count_rep += other.count_rep

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

    def replicates_values(self) -> np.ndarray:
        """MaxBoxAccV2 of every bootstrap resample (NaN where a resample has no image)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            curves = self.correct_rep / self.count_rep[:, None, None]
        values = curves.max(axis=2).mean(axis=1)
        return np.where(self.count_rep > 0, values, np.nan)


def pxap(cams: Iterable[np.ndarray], masks: Iterable[np.ndarray],
         interval: float = DEFAULT_CAM_CURVE_INTERVAL) -> float:
    """PxAP of a set of normalised CAMs against binary masks."""
    acc = PxAPAccumulator(threshold_grid(interval))
    for cam, mask in zip(cams, masks):
        acc.accumulate(cam, mask)
    return acc.compute()


def max_box_acc_v2(cams: Iterable[np.ndarray], gt_boxes: Iterable[np.ndarray],
                   interval: float = DEFAULT_CAM_CURVE_INTERVAL,
                   iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                   box_convention: str = DEFAULT_BOX_CONVENTION) -> dict[str, Any]:
    """MaxBoxAccV2 (and BoxAcc per IoU threshold) of normalised CAMs against their boxes
    (hrcam's exclusive box coordinates); wsolevaluation's conventions by default."""
    acc = BoxAccAccumulator(threshold_grid(interval), iou_thresholds, box_convention)
    for cam, boxes in zip(cams, gt_boxes):
        acc.accumulate(cam, boxes)
    return acc.compute()
