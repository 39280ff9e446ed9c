"""MaxBoxAccV2 box kernel (hrcam.evaluate.metrics.boxes): hand-computed cases for both
conventions, and parity with wsolevaluation's own algorithm run through OpenCV."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy import ndimage

from hrcam.evaluate import PxAPAccumulator
from hrcam.evaluate.metrics.boxes import (BOX_CONVENTIONS, DEFAULT_BOX_CONVENTION,
                                          best_iou_per_threshold, box_hits, estimated_boxes,
                                          wsol_gt_boxes)

IOU_LIST = (30, 50, 70)  # wsolevaluation's iou_threshold_list (percent)
IOU_THRESHOLDS = (0.3, 0.5, 0.7)


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
# wsolevaluation's algorithm re-typed from repository clovaai/wsolevaluation (evaluation.py:
# compute_bboxes_from_scoremaps with multi_contour_eval=True, calculate_multiple_iou,
# BoxEvaluator.accumulate, MaskEvaluator; MIT licence, NAVER Corp.). Only the torch/file plumbing
# is left out; the arithmetic is theirs. The benchmark uses these as its cv2 baseline.

def wsol_boxes_per_threshold(scoremap: np.ndarray, thresholds) -> tuple[list, list]:
    """compute_bboxes_from_scoremaps(scoremap, thresholds, multi_contour_eval=True)."""
    height, width = scoremap.shape
    scoremap_image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    boxes_at_thresholds, number_of_box_list = [], []
    for threshold in thresholds:
        _, thr_gray_heatmap = cv2.threshold(src=scoremap_image,
                                            thresh=int(threshold * np.max(scoremap_image)),
                                            maxval=255, type=cv2.THRESH_BINARY)
        contours = cv2.findContours(image=thr_gray_heatmap, mode=cv2.RETR_TREE,
                                    method=cv2.CHAIN_APPROX_SIMPLE)[-2]
        if len(contours) == 0:
            boxes_at_thresholds.append(np.asarray([[0, 0, 0, 0]]))
            number_of_box_list.append(1)
            continue
        estimated = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            estimated.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        boxes_at_thresholds.append(np.asarray(estimated))
        number_of_box_list.append(len(contours))
    return boxes_at_thresholds, number_of_box_list


def wsol_multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """calculate_multiple_iou (their np.tile/transpose written as broadcasting)."""
    a, b = box_a[:, None, :], box_b[None, :, :]
    min_x = np.maximum(a[..., 0], b[..., 0])
    min_y = np.maximum(a[..., 1], b[..., 1])
    max_x = np.minimum(a[..., 2], b[..., 2])
    max_y = np.minimum(a[..., 3], b[..., 3])
    area_intersect = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denominator = area_a + area_b - area_intersect
    degenerate = np.where(denominator <= 0)
    denominator[degenerate] = 1
    ious = area_intersect / denominator
    ious[degenerate] = 0
    return ious


def wsol_accumulate(scoremap: np.ndarray, gt_boxes, thresholds,
                    iou_threshold_list=IOU_LIST) -> tuple[np.ndarray, np.ndarray]:
    """BoxEvaluator.accumulate for one image: (best IoU per CAM threshold, hits (D, T))."""
    boxes_at_thresholds, number_of_box_list = wsol_boxes_per_threshold(scoremap, thresholds)
    multiple_iou = wsol_multiple_iou(np.concatenate(boxes_at_thresholds, axis=0),
                                     np.array(gt_boxes))
    idx, sliced_multiple_iou = 0, []
    for nr_box in number_of_box_list:
        sliced_multiple_iou.append(max(multiple_iou.max(1)[idx:idx + nr_box]))
        idx += nr_box
    sliced = np.asarray(sliced_multiple_iou)
    hits = np.array([sliced >= (threshold / 100) for threshold in iou_threshold_list])
    return sliced, hits


class WsolMaskReference:
    """MaskEvaluator's histograms and compute() (PxAP in percent)."""

    def __init__(self, cam_threshold_list):
        self.threshold_list_right_edge = np.append(cam_threshold_list, [1.0, 2.0, 3.0])
        self.gt_true_score_hist = np.zeros(len(cam_threshold_list) + 2, dtype=float)
        self.gt_false_score_hist = np.zeros(len(cam_threshold_list) + 2, dtype=float)

    def accumulate(self, scoremap: np.ndarray, gt_mask: np.ndarray) -> None:
        """``gt_mask``: 1 foreground, 0 background, 255 ignore (their get_mask)."""
        true_hist, _ = np.histogram(scoremap[gt_mask == 1], bins=self.threshold_list_right_edge)
        self.gt_true_score_hist += true_hist.astype(float)
        false_hist, _ = np.histogram(scoremap[gt_mask == 0], bins=self.threshold_list_right_edge)
        self.gt_false_score_hist += false_hist.astype(float)

    def compute(self) -> float:
        num_gt_true = self.gt_true_score_hist.sum()
        tp = self.gt_true_score_hist[::-1].cumsum()
        fn = num_gt_true - tp
        fp = self.gt_false_score_hist[::-1].cumsum()
        non_zero_indices = (tp + fp) != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        return float((precision[1:] * np.diff(recall))[non_zero_indices[1:]].sum() * 100)


def exact_reference(cam: np.ndarray, gt_boxes, thresholds) -> np.ndarray:
    """hrcam's original definition: scipy labelling of ``cam > t`` (float64), a continuous box
    around every 8-connected component, area IoU."""
    cam = np.asarray(cam, dtype=np.float64)
    b = np.asarray(gt_boxes, dtype=np.float64)
    out = []
    for t in thresholds:
        labels, _ = ndimage.label(cam > t, structure=np.ones((3, 3), bool))
        a = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop]
                      for s in ndimage.find_objects(labels)], dtype=np.float64).reshape(-1, 4)
        ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                     - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
        iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                     - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
        inter = ix * iy
        area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
        area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
        union = area_a[:, None] + area_b[None, :] - inter
        iou = np.zeros_like(inter)
        np.divide(inter, union, out=iou, where=union != 0)
        out.append(iou.max(initial=0.0))
    return np.array(out)


def cv2_boxes(scoremap: np.ndarray, threshold: float) -> list[list[int]]:
    boxes, _ = wsol_boxes_per_threshold(scoremap, [threshold])
    return sorted(boxes[0].tolist())


# --------------------------------------------------------------------------------------------
# Random maps
# --------------------------------------------------------------------------------------------

def _normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _blobs(rng, h, w, n):
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w))
    for _ in range(n):
        cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
        sy, sx = rng.uniform(0.03, 0.3) * h, rng.uniform(0.03, 0.3) * w
        out += rng.uniform(0.2, 1) * np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    return out


def _rings(rng, h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        radius = rng.uniform(0.08, 0.45) * min(h, w)
        width = rng.uniform(0.02, 0.1) * min(h, w)
        out += rng.uniform(0.3, 1) * np.exp(-0.5 * ((np.hypot(yy - cy, xx - cx) - radius)
                                                     / width) ** 2)
    return out


MAP_KINDS = ("blobs", "components", "rings", "noise", "blocky", "ties", "binary", "empty",
             "constant")


def random_map(rng: np.random.Generator, h: int, w: int, kind: str) -> np.ndarray:
    """One varied test map in [0, 1] (float32 or float64; max sometimes below 1)."""
    if kind == "blobs":
        cam = _normalise(_blobs(rng, h, w, rng.integers(1, 5)))
    elif kind == "components":  # separate islands on an exact-zero background
        b = _normalise(_blobs(rng, h, w, rng.integers(2, 6)))
        cam = np.where(b > rng.uniform(0.2, 0.6), b, 0.0)
    elif kind == "rings":
        cam = _normalise(_rings(rng, h, w))
    elif kind == "noise":
        cam = rng.random((h, w))
    elif kind == "blocky":  # upsampled coarse noise: plateaus, nested holes, exact ties
        k = int(rng.integers(2, 9)) * max(1, h // 64)
        coarse = rng.random((h // k + 1, w // k + 1))
        cam = _normalise(np.kron(coarse, np.ones((k, k)))[:h, :w])
    elif kind == "ties":  # few distinct values, some exactly at grid thresholds
        levels = int(rng.choice([3, 5, 10, 20, 100, 255]))
        cam = np.round(_normalise(_blobs(rng, h, w, rng.integers(1, 4))) * levels) / levels
    elif kind == "binary":  # 8-connected foreground / 4-connected holes stress test
        cam = (rng.random((h, w)) < rng.uniform(0.3, 0.8)).astype(np.float64)
        cam *= rng.choice([1.0, 0.5, 0.2])
    elif kind == "empty":
        cam = np.zeros((h, w))
    elif kind == "constant":
        cam = np.full((h, w), rng.choice([1.0, 0.5, 0.003, 1 / 255]))
    else:
        raise AssertionError(kind)
    if kind not in ("empty", "constant") and rng.random() < 0.3:
        cam = cam * rng.uniform(0.05, 0.95)  # max below 1
    return cam.astype(np.float32) if rng.random() < 0.5 else cam


def random_gt(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """1-3 inclusive integer boxes; sometimes one covering pixel (0, 0)."""
    boxes = []
    for _ in range(rng.integers(1, 4)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        boxes.append([x0, y0, rng.integers(x0, w), rng.integers(y0, h)])
    if rng.random() < 0.1:
        boxes.append([0, 0, rng.integers(0, 3), rng.integers(0, 3)])
    return np.array(boxes)


# --------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------

def test_conventions():
    assert BOX_CONVENTIONS == ("wsol", "exact") and DEFAULT_BOX_CONVENTION == "wsol"


def test_component_touching_the_border():
    cam = np.zeros((8, 10))
    cam[0:3, 6:10] = 1.0  # rows 0..2, columns 6..9: touches the top and right borders
    # wsol: (x, y, x + w, y + h) = (6, 0, 10, 3), x1 clipped to W - 1 = 9
    assert estimated_boxes(cam, 0.5).tolist() == [[6, 0, 9, 3]]
    # IoU with the component's own pixels (6, 0, 9, 2): 12 / 16 (the +1 convention)
    assert best_iou_per_threshold(cam, [[6, 0, 9, 2]], [0.5]).tolist() == [0.75]
    assert estimated_boxes(cam, 0.5, "exact").tolist() == [[6, 0, 10, 3]]
    assert best_iou_per_threshold(cam, [[6, 0, 10, 3]], [0.5], "exact").tolist() == [1.0]


def test_ring_with_a_hole():
    cam = np.zeros((9, 9))
    cam[1:8, 1:8] = 1.0
    cam[3:6, 3:6] = 0.0  # hole: rows and columns 3..5
    # wsol: outer contour (1, 1, 8, 8); hole contour runs over columns/rows 2..6 -> (2, 2, 7, 7)
    assert estimated_boxes(cam, 0.5).tolist() == [[1, 1, 8, 8], [2, 2, 7, 7]]
    assert cv2_boxes(cam, 0.5) == [[1, 1, 8, 8], [2, 2, 7, 7]]
    # gt = the hole's pixels (3, 3, 5, 5): hole box 9 / 36, outer box 9 / 64
    assert best_iou_per_threshold(cam, [[3, 3, 5, 5]], [0.5]).tolist() == [0.25]
    # exact: one box around the ring, area IoU with the continuous hole box 9 / 49
    assert estimated_boxes(cam, 0.5, "exact").tolist() == [[1, 1, 8, 8]]
    assert best_iou_per_threshold(cam, [[3, 3, 6, 6]], [0.5], "exact").tolist() == [9 / 49]


def test_empty_map():
    cam = np.zeros((6, 6))
    thresholds = np.arange(0, 1, 0.25)
    assert estimated_boxes(cam, 0.0).tolist() == [[0, 0, 0, 0]]
    # wsolevaluation scores the box [0, 0, 0, 0] = pixel (0, 0): IoU 1 / 4 with (0, 0, 1, 1)
    assert best_iou_per_threshold(cam, [[0, 0, 1, 1]], thresholds).tolist() == [0.25] * 4
    assert best_iou_per_threshold(cam, [[2, 2, 4, 4]], thresholds).tolist() == [0.0] * 4
    assert estimated_boxes(cam, 0.0, "exact").shape == (0, 4)
    assert best_iou_per_threshold(cam, [[0, 0, 1, 1]], thresholds, "exact").tolist() == [0.0] * 4


def test_constant_map():
    cam = np.full((8, 10), 0.5)
    thresholds = np.arange(0, 1, 0.25)
    # wsol: q = 127 everywhere, on when 127 > int(t * 127): every t < 1 keeps the whole image,
    # box (0, 0, 10, 8) clipped to (0, 0, 9, 7)
    assert estimated_boxes(cam, 0.75).tolist() == [[0, 0, 9, 7]]
    assert best_iou_per_threshold(cam, [[0, 0, 9, 7]], thresholds).tolist() == [1.0] * 4
    # exact: on while t < 0.5 only
    assert best_iou_per_threshold(cam, [[0, 0, 10, 8]], thresholds,
                                  "exact").tolist() == [1.0, 1.0, 0.0, 0.0]


def test_ties_exactly_at_a_threshold_are_off():
    cam = np.zeros((6, 6))
    cam[1, 1] = 1.0         # q = 255, so the wsol level is int(t * 255)
    cam[3:5, 3:5] = 0.2     # q = int(0.2 * 255) = 51 = int(0.2 * 255): off at t = 0.2
    hits = box_hits(cam, [[3, 3, 4, 4]], [0.19, 0.2], IOU_THRESHOLDS)
    # t = 0.19: block box (3, 3, 5, 5), IoU 4 / 9 -> only IoU 30; t = 0.2: pixel (1, 1) only
    assert best_iou_per_threshold(cam, [[3, 3, 4, 4]], [0.19, 0.2]).tolist() == [4 / 9, 0.0]
    assert hits.tolist() == [[True, False], [False, False], [False, False]]
    assert best_iou_per_threshold(cam, [[3, 3, 5, 5]], [0.19, 0.2],
                                  "exact").tolist() == [1.0, 0.0]


def test_several_components_best_one_wins():
    cam = np.zeros((12, 12))
    cam[1:4, 1:4] = 0.9     # A: rows/columns 1..3
    cam[6:8, 6:10] = 0.6    # B: rows 6..7, columns 6..9
    cam[10, 0] = 1.0        # C: one pixel on the border
    gt = [[6, 6, 9, 7]]     # B's pixels
    thresholds = [0.0, 0.5, 0.65]
    assert estimated_boxes(cam, 0.5).tolist() == [[0, 10, 1, 11], [1, 1, 4, 4], [6, 6, 10, 8]]
    # t = 0: the zero background is off too (q > 0); B's box (6, 6, 10, 8): IoU 8 / 15
    # t = 0.65: level int(0.65 * 255) = 165 > q(B) = 153: B is off, A and C miss the gt
    assert best_iou_per_threshold(cam, gt, thresholds).tolist() == [8 / 15, 8 / 15, 0.0]
    assert box_hits(cam, gt, thresholds, IOU_THRESHOLDS).tolist() == [
        [True, True, False], [True, True, False], [False, False, False]]
    assert best_iou_per_threshold(cam, [[6, 6, 10, 8]], thresholds,
                                  "exact").tolist() == [1.0, 1.0, 0.0]


def test_max_below_one_thresholds_relative_to_the_quantised_max():
    cam = np.zeros((8, 8))
    cam[1:3, 1:3] = 0.5     # q = 127: the map's maximum
    cam[1:3, 3:6] = 0.3     # q = 76 > int(0.5 * 127) = 63: on at t = 0.5
    cam[6, 6] = 0.2         # q = 51: off
    assert estimated_boxes(cam, 0.5).tolist() == [[1, 1, 6, 3]]
    assert best_iou_per_threshold(cam, [[1, 1, 5, 2]], [0.5]).tolist() == [10 / 18]
    # exact thresholds are absolute: nothing is above 0.5
    assert best_iou_per_threshold(cam, [[1, 1, 6, 3]], [0.5], "exact").tolist() == [0.0]


def test_wsol_gt_boxes_rule():
    boxes = np.array([[10, 5, 21, 9], [10.5, 5.2, 20.01, 8.99], [0, 0, 0.4, 1]])
    assert wsol_gt_boxes(boxes).tolist() == [[10, 5, 20, 8], [10, 5, 20, 8], [0, 0, 0, 0]]
    assert wsol_gt_boxes(boxes[0]).shape == (1, 4)


@pytest.mark.parametrize("call, match", [
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[0, 0, 1, 1]], [0.5], "voc"),
     "convention"),
    (lambda: best_iou_per_threshold(np.zeros(4), [[0, 0, 1, 1]], [0.5]), "cam must be"),
    (lambda: best_iou_per_threshold(np.full((4, 4), np.nan), [[0, 0, 1, 1]], [0.5]), "NaN"),
    (lambda: best_iou_per_threshold(np.full((4, 4), 2.0), [[0, 0, 1, 1]], [0.5]), r"\[0, 1\]"),
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[0, 0, 1]], [0.5]), "gt_boxes"),
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[0, 0, 1.5, 1]], [0.5]), "wsol_gt_boxes"),
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[2, 0, 1, 1]], [0.5]), "x1 >= x0"),
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[0, 0, 1, 1]], [[0.5]]), "thresholds"),
    (lambda: best_iou_per_threshold(np.zeros((4, 4)), [[0, 0, 1, 1]], [np.nan]), "thresholds"),
    (lambda: box_hits(np.zeros((4, 4)), [[0, 0, 1, 1]], [0.5], [np.nan]), "iou_thresholds"),
    (lambda: wsol_gt_boxes([[3, 0, 3, 1]]), "xmax > xmin"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_importing_the_kernel_does_not_import_tensorflow():
    code = ("import sys, hrcam.evaluate.metrics.boxes; "
            "sys.exit('tensorflow' in sys.modules or 'cv2' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_no_gt_box_scores_zero():
    assert best_iou_per_threshold(np.ones((4, 4)), np.zeros((0, 4)), [0.1, 0.2]).tolist() == [0, 0]


# --------------------------------------------------------------------------------------------
# Randomized parity
# --------------------------------------------------------------------------------------------

SMOOTH_KINDS = ("blobs", "components", "rings", "blocky", "ties", "empty", "constant")
# (height, width, interval, kinds, number of maps): many small maps, a few 224-px ones; pixel
# noise has hundreds of contours per threshold (slow in the reference), so only on small maps
PARITY_SETS = [(64, 64, 0.01, SMOOTH_KINDS, 1000), (16, 20, 0.01, MAP_KINDS, 900),
               (64, 64, 0.001, SMOOTH_KINDS, 21), (224, 224, 0.01, SMOOTH_KINDS, 56),
               (224, 224, 0.001, ("blobs", "components", "rings", "ties"), 8)]


@pytest.mark.parametrize("h, w, interval, kinds, n_maps", PARITY_SETS)
def test_wsol_parity_with_opencv_reference(h, w, interval, kinds, n_maps):
    rng = np.random.default_rng(h * 1000 + w + round(1 / interval))
    thresholds = np.arange(0, 1, interval)
    for i in range(n_maps):
        kind = kinds[i % len(kinds)]
        cam = random_map(rng, h, w, kind)
        gt = random_gt(rng, h, w)
        ref_best, ref_hits = wsol_accumulate(cam.astype(np.float64), gt, thresholds)
        best = best_iou_per_threshold(cam, gt, thresholds)
        assert np.array_equal(best, ref_best), (i, kind)
        assert np.array_equal(box_hits(cam, gt, thresholds, IOU_THRESHOLDS), ref_hits), (i, kind)
        t = thresholds[rng.integers(len(thresholds))]
        assert estimated_boxes(cam, t).tolist() == cv2_boxes(cam.astype(np.float64), t), (i, kind)


def test_exact_parity_with_original_definition():
    rng = np.random.default_rng(7)
    thresholds = np.arange(0, 1, 0.01)
    for i in range(120):
        kind = MAP_KINDS[i % len(MAP_KINDS)]
        h, w = (40, 40) if i % 2 else (23, 31)
        cam = random_map(rng, h, w, kind)
        gt = random_gt(rng, h, w) + rng.uniform(0, 1, 4) * np.array([1, 1, 1, 1])
        gt[:, 2:] += 1
        assert np.array_equal(best_iou_per_threshold(cam, gt, thresholds, "exact"),
                              exact_reference(cam, gt, thresholds)), (i, kind)


@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_pxap_parity_with_wsol_mask_evaluator(interval):
    rng = np.random.default_rng(round(1 / interval))
    thresholds = np.arange(0, 1, interval)
    for trial in range(20):
        ours, ref = PxAPAccumulator(thresholds), WsolMaskReference(list(thresholds))
        for _ in range(int(rng.integers(1, 6))):
            h, w = rng.integers(8, 48, 2)
            cam = random_map(rng, h, w, MAP_KINDS[rng.integers(len(MAP_KINDS))])
            if rng.random() < 0.3:  # values exactly on the bin edges
                cam = rng.choice(np.append(thresholds, 1.0), size=(h, w))
            mask = (rng.random((h, w)) < rng.uniform(0.1, 0.6)).astype(np.uint8)
            mask[rng.random((h, w)) < 0.1] = 255  # ignore region
            mask[0, 0] = 1
            ours.accumulate(cam, mask == 1, ignore=mask == 255)
            ref.accumulate(cam.astype(np.float64), mask)
        assert ours.compute() * 100 == ref.compute(), trial
