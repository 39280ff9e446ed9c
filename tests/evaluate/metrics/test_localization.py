"""Localization metrics: PxAP (hand value, scikit-learn), MaxBoxAccV2 with both box conventions
(hand values), the streaming accumulators, and the bootstrap resamples they keep (each resample
equals the metric of the resampled image set)."""

from __future__ import annotations

import numpy as np
import pytest

from hrcam import evaluate as ev
from hrcam.evaluate.metrics import bootstrap
from hrcam.evaluate.metrics.localization import pixel_histograms
from hrcam.maps import center_gaussian


def test_pxap_perfect_and_constant_maps():
    rng = np.random.default_rng(1)
    masks = [rng.random((32, 40)) > 0.7 for _ in range(3)]
    assert ev.pxap([m.astype(np.float32) for m in masks], masks) == pytest.approx(1.0)
    fraction = np.mean([m.mean() for m in masks])
    for value in (0.0, 0.37, 1.0):
        constant = [np.full(m.shape, value, np.float32) for m in masks]
        assert ev.pxap(constant, masks) == pytest.approx(fraction)


def test_pxap_hand_value_and_sklearn():
    # scores 0.9 (fg), 0.6 (bg), 0.3 (fg), 0.1 (bg):
    # P/R going down: (1, .5), (.5, .5), (2/3, 1), (.5, 1) -> AP = .5 + 0 + 1/3 = 5/6
    cam = np.array([[0.9, 0.6], [0.3, 0.1]])
    mask = np.array([[1, 0], [1, 0]])
    assert ev.pxap([cam], [mask]) == pytest.approx(5 / 6)
    from sklearn import metrics as sklearn_metrics
    rng = np.random.default_rng(2)
    cams = [(np.floor(rng.random((16, 16)) * 100) + 0.5) / 100 for _ in range(4)]  # bin centres
    masks = [rng.random((16, 16)) < 0.2 + 0.6 * c for c in cams]
    expected = sklearn_metrics.average_precision_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([c.ravel() for c in cams]))
    assert ev.pxap(cams, masks, interval=0.01) == pytest.approx(expected)


def test_default_grid_is_wsolevaluations():
    assert ev.DEFAULT_CAM_CURVE_INTERVAL == 0.001
    assert len(ev.threshold_grid()) == 1000
    with pytest.raises(ValueError, match="interval"):
        ev.threshold_grid(0)


def test_normalize_and_center_gaussian():
    np.testing.assert_array_equal(ev.normalize_map(np.full((4, 5), 3.0)), np.zeros((4, 5)))
    n = ev.normalize_map(np.array([[1.0, 3.0], [2.0, 5.0]]))
    assert n.min() == 0 and n.max() == 1 and n[1, 0] == pytest.approx(0.25)
    assert ev.normalize_map(np.array([[np.nan, 1.0], [2.0, np.inf]])).tolist() == [
        [0.0, 0.5], [1.0, 0.0]]
    g = center_gaussian(20, 30)
    assert g.shape == (20, 30) and g.min() >= 0 and g.max() == pytest.approx(1.0)
    assert np.unravel_index(g.argmax(), g.shape) in {(9, 14), (9, 15), (10, 14), (10, 15)}


def _crafted_box_maps():
    """Three 10x10 maps and boxes with a hand-computed MaxBoxAccV2 (see the tests)."""
    # image 1: two blobs; the GT object is the *smaller*, weaker blob B.
    cam1 = np.zeros((10, 10))
    cam1[1:4, 1:4] = 0.95   # blob A, 3x3, box (1, 1, 4, 4)
    cam1[6:8, 6:8] = 0.55   # blob B, 2x2, box (6, 6, 8, 8)
    gt1 = np.array([[6, 6, 8, 8]])
    # image 2: nested levels; GT box (2, 2, 8, 8), area 36
    cam2 = np.full((10, 10), 0.25)   # t < .25: whole image, IoU 36/100 = .36
    cam2[2:8, 2:6] = 0.65            # .25 <= t < .65: box (2, 2, 6, 8), IoU 24/36 = .667
    cam2[4:6, 3:5] = 1.0             # .65 <= t < 1: box (3, 4, 5, 6), IoU 4/36 = .11
    gt2 = np.array([[2, 2, 8, 8]])
    # image 3: a blank map never yields a box
    cam3 = np.zeros((10, 10))
    gt3 = np.array([[0, 0, 5, 5], [5, 5, 10, 10]])
    return [cam1, cam2, cam3], [gt1, gt2, gt3]


def test_max_box_acc_v2_hand_value_exact_pixels():
    cams, gts = _crafted_box_maps()
    # correct images per threshold range (IoU 30 / 50 / 70):
    #   t < .25        : img1 (all deltas, via blob B), img2 (.36: delta 30 only) -> 2/3, 1/3, 1/3
    #   .25 <= t < .55 : img1 (all), img2 (.667: 30, 50)                        -> 2/3, 2/3, 1/3
    #   .55 <= t < .65 : img1 only blob A (IoU 0), img2 (30, 50)                -> 1/3, 1/3, 0
    #   t >= .65       : nothing
    result = ev.max_box_acc_v2(cams, gts, interval=0.01, box_convention="exact")
    assert result["BoxAcc_IoU30"] == pytest.approx(2 / 3)
    assert result["BoxAcc_IoU50"] == pytest.approx(2 / 3)
    assert result["BoxAcc_IoU70"] == pytest.approx(1 / 3)
    assert result["MaxBoxAccV2"] == pytest.approx(5 / 9)
    assert result["best_threshold_IoU50"] == pytest.approx(0.25)
    # top-1 localization: class wrong on image 1 -> only image 2 counts at the best threshold
    acc = ev.BoxAccAccumulator(ev.threshold_grid(0.01), convention="exact")
    for cam, gt, ok in zip(cams, gts, [False, True, True]):
        acc.accumulate(cam, gt, class_correct=ok)
    res = acc.compute()
    assert res["gt_known_loc"] == pytest.approx(2 / 3)
    assert res["top1_loc"] == pytest.approx(1 / 3)


def test_max_box_acc_v2_hand_value_wsolevaluation_conventions():
    cams, gts = _crafted_box_maps()
    # wsolevaluation: the map is quantised (floor(255 cam)), a pixel is on when its value is
    # > int(255 t); a box is (x, y, x + w, y + h) clipped to W-1/H-1 and IoU counts inclusive
    # pixels (+1); our exclusive gt boxes become inclusive (xmax - 1).
    #  image 1, blob B: estimated (6, 6, 8, 8) vs gt (6, 6, 7, 7): IoU 4/9 = .444 (30 only)
    #  image 2, t < .25: whole image (0, 0, 9, 9) vs (2, 2, 7, 7): 36/100 -> 30 only;
    #           middle level (2, 2, 6, 8) vs (2, 2, 7, 7): inter 5x6=30, union 35+36-30 -> .73
    #  image 3: no contour -> box [0, 0, 0, 0] vs (0, 0, 4, 4): 1/25 -> never correct
    result = ev.max_box_acc_v2(cams, gts)
    assert result["BoxAcc_IoU30"] == pytest.approx(2 / 3)
    assert result["BoxAcc_IoU50"] == pytest.approx(1 / 3)
    assert result["BoxAcc_IoU70"] == pytest.approx(1 / 3)
    assert result["MaxBoxAccV2"] == pytest.approx(4 / 9)


def test_accumulators_merge_and_add_equal_accumulate():
    cams, gts = _crafted_box_maps()
    full, part1, part2 = ev.BoxAccAccumulator(), ev.BoxAccAccumulator(), ev.BoxAccAccumulator()
    for i, (cam, gt) in enumerate(zip(cams, gts)):
        full.accumulate(cam, gt)
        (part1 if i < 2 else part2).accumulate(cam, gt)
    part1.merge(part2)
    assert part1.compute() == full.compute()
    batched = ev.BoxAccAccumulator()
    batched.add(np.stack([batched.image_hits(c, g) for c, g in zip(cams, gts)]), [True] * 3)
    assert batched.compute() == full.compute()
    p1, p2 = ev.PxAPAccumulator(), ev.PxAPAccumulator()
    p1.accumulate(cams[1], cams[1] > 0.5)
    p2.accumulate(cams[0], cams[0] > 0.5)
    p1.merge(p2)
    assert p1.compute() == pytest.approx(ev.pxap(cams[1::-1], [c > 0.5 for c in cams[1::-1]]))


def _random_set(n: int, seed: int = 0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cams, masks, boxes = [], [], []
    for _ in range(n):
        cam = ev.normalize_map(ndimage.gaussian_filter(rng.random((24, 24)), 3))
        mask = np.zeros((24, 24), bool)
        r, c = rng.integers(2, 12, 2)
        mask[r:r + 10, c:c + 9] = True
        cams.append(cam)
        masks.append(mask)
        boxes.append(np.array([[c, r, c + 9, r + 10]], float))
    return cams, masks, boxes


def test_bootstrap_resamples_equal_metrics_of_resampled_sets():
    cams, masks, boxes = _random_set(12)
    thresholds = ev.threshold_grid(0.01)
    weights = bootstrap.poisson_weights(range(12), samples=5, seed=3)
    pix = ev.PxAPAccumulator(thresholds, replicates=5)
    box = ev.BoxAccAccumulator(thresholds, replicates=5)
    for i in range(12):
        pix.accumulate(cams[i], masks[i], weights=weights[i])
        box.accumulate(cams[i], boxes[i], weights=weights[i])
    pix_reps, box_reps = pix.replicates_values(), box.replicates_values()
    for b in range(5):
        # resample b = every image repeated as many times as its Poisson weight
        repeat = [i for i in range(12) for _ in range(int(weights[i, b]))]
        assert pix_reps[b] == pytest.approx(
            ev.pxap([cams[i] for i in repeat], [masks[i] for i in repeat], interval=0.01),
            rel=1e-12)
        assert box_reps[b] == pytest.approx(
            ev.max_box_acc_v2([cams[i] for i in repeat], [boxes[i] for i in repeat],
                              interval=0.01)["MaxBoxAccV2"], rel=1e-12)
    # the main value is the plain (unweighted) metric
    assert pix.compute() == ev.pxap(cams, masks, interval=0.01)


def test_bootstrap_weights_depend_on_the_image_only():
    all_at_once = bootstrap.poisson_weights(range(10), samples=50, seed=1)
    piecewise = np.concatenate([bootstrap.poisson_weights([i], samples=50, seed=1)
                                for i in range(10)])
    np.testing.assert_array_equal(all_at_once, piecewise)
    assert not np.array_equal(all_at_once, bootstrap.poisson_weights(range(10), 50, seed=2))
    assert abs(all_at_once.mean() - 1.0) < 0.15  # Poisson(1)
    with pytest.raises(ValueError, match="samples"):
        bootstrap.poisson_weights([0], samples=-1)


def test_paired_difference_and_intervals():
    cams, masks, _ = _random_set(30, seed=4)
    weights = bootstrap.poisson_weights(range(30), samples=400)
    thresholds = ev.threshold_grid(0.01)
    good, noisy = ev.PxAPAccumulator(thresholds, 400), ev.PxAPAccumulator(thresholds, 400)
    rng = np.random.default_rng(0)
    for i in range(30):
        good.accumulate(0.7 * masks[i] + 0.3 * cams[i], masks[i], weights=weights[i])
        noisy.accumulate(cams[i] + 0.5 * rng.random(cams[i].shape), masks[i],
                         weights=weights[i])
    low, high = bootstrap.percentile_interval(good.replicates_values())
    assert low <= good.compute() <= high
    diff = bootstrap.paired_difference(good.compute(), noisy.compute(),
                                       good.replicates_values(), noisy.replicates_values())
    assert diff["difference"] > 0 and diff["ci_low"] > 0 and diff["share_above_zero"] == 1.0
    same = bootstrap.paired_difference(good.compute(), good.compute(), good.replicates_values(),
                                       good.replicates_values())
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    assert bootstrap.paired_difference(None, 0.5, np.zeros(3), np.zeros(3))["ci_low"] is None


def test_pixel_histograms_ignore_and_shape_check():
    cam = np.array([[0.0, 0.5], [0.999, 1.0]])
    mask = np.array([[0, 1], [1, 0]])
    fg, bg = pixel_histograms(cam, mask, ev.threshold_grid(0.5))  # bins [0,.5) [.5,1) [1,2) [2,3]
    assert fg.tolist() == [0, 2, 0, 0] and bg.tolist() == [1, 0, 1, 0]
    fg, bg = pixel_histograms(cam, mask, ev.threshold_grid(0.5), ignore=np.eye(2, dtype=bool))
    assert fg.sum() + bg.sum() == 2
    with pytest.raises(ValueError, match="mask shape"):
        pixel_histograms(cam, mask[:1], ev.threshold_grid(0.5))
