"""Classification and localization metrics (hand-computed and scikit-learn references) and an
end-to-end localization / classification evaluation on a tiny random-weights model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hrcam import evaluate as ev

# --------------------------------------------------------------------------------------------
# classification metrics
# --------------------------------------------------------------------------------------------

# 8 samples, 4 classes; argmax predictions: [0, 1, 1, 2, 2, 0, 3, 3]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 3, 2])
PROBS = np.array([
    [0.70, 0.10, 0.15, 0.05],  # true 0, pred 0
    [0.20, 0.50, 0.25, 0.05],  # true 0, pred 1 (true class 3rd)
    [0.10, 0.60, 0.20, 0.10],  # true 1, pred 1
    [0.05, 0.30, 0.40, 0.25],  # true 1, pred 2 (true class 2nd)
    [0.10, 0.20, 0.60, 0.10],  # true 2, pred 2
    [0.40, 0.31, 0.09, 0.20],  # true 2, pred 0 (true class 4th)
    [0.05, 0.05, 0.10, 0.80],  # true 3, pred 3
    [0.02, 0.08, 0.30, 0.60],  # true 2, pred 3 (true class 2nd)
])


def test_classification_metrics_hand_values():
    m = ev.classification_metrics(Y_TRUE, PROBS, ["a", "b", "c", "d"])
    # correct: samples 0, 2, 4, 6 -> 4 / 8
    assert m["top1_accuracy"] == pytest.approx(0.5)
    # micro P = R = F1 = accuracy for single-label multiclass
    for key in ("micro_precision", "micro_recall", "micro_f1"):
        assert m[key] == pytest.approx(0.5)
    # per class: TP, predicted, support
    # class 0: TP 1, pred 2 (samples 0, 5), support 2 -> P 0.5, R 0.5
    # class 1: TP 1, pred 2 (samples 1, 2), support 2 -> P 0.5, R 0.5
    # class 2: TP 1, pred 2 (samples 3, 4), support 3 -> P 0.5, R 1/3
    # class 3: TP 1, pred 2 (samples 6, 7), support 1 -> P 0.5, R 1
    p = [0.5, 0.5, 0.5, 0.5]
    r = [0.5, 0.5, 1 / 3, 1.0]
    f1 = [2 * a * b / (a + b) for a, b in zip(p, r)]
    assert m["macro_precision"] == pytest.approx(np.mean(p))
    assert m["macro_recall"] == pytest.approx(np.mean(r))
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert [row["support"] for row in m["per_class"]] == [2, 2, 3, 1]
    assert [row["name"] for row in m["per_class"]] == ["a", "b", "c", "d"]
    assert m["per_class"][2]["recall"] == pytest.approx(1 / 3)
    # top-k with k = min(5, 4) = 4: everything is a hit
    assert m["top_k"] == 4
    assert m["top5_accuracy"] == pytest.approx(1.0)
    assert ev.top_k_accuracy(Y_TRUE, PROBS, 2) == pytest.approx(6 / 8)
    assert ev.top_k_accuracy(Y_TRUE, PROBS, 3) == pytest.approx(7 / 8)
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == 8 and np.trace(cm) == 4
    assert cm[2].tolist() == [1, 0, 1, 1]


def test_classification_metrics_match_sklearn():
    from sklearn import metrics as sklearn_metrics
    rng = np.random.default_rng(0)
    n, c = 300, 9
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.0  # better than chance, still many errors
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = probs.argmax(1)
    m = ev.classification_metrics(y, probs)
    assert m["top1_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    for avg in ("macro", "micro"):
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y, pred, average=avg, zero_division=0)
        assert m[f"{avg}_precision"] == pytest.approx(p)
        assert m[f"{avg}_recall"] == pytest.approx(r)
        assert m[f"{avg}_f1"] == pytest.approx(f)
    for k in (1, 3, 5):
        assert ev.top_k_accuracy(y, probs, k) == pytest.approx(
            sklearn_metrics.top_k_accuracy_score(y, probs, k=k, labels=np.arange(c)))
    assert m["top5_accuracy"] == pytest.approx(
        sklearn_metrics.top_k_accuracy_score(y, probs, k=5, labels=np.arange(c)))
    np.testing.assert_array_equal(np.array(m["confusion_matrix"]),
                                  sklearn_metrics.confusion_matrix(y, pred, labels=np.arange(c)))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        y, pred, labels=np.arange(c), zero_division=0)
    np.testing.assert_allclose([row["precision"] for row in m["per_class"]], p)
    np.testing.assert_allclose([row["recall"] for row in m["per_class"]], r)
    np.testing.assert_allclose([row["f1"] for row in m["per_class"]], f)
    assert [row["support"] for row in m["per_class"]] == s.tolist()


def test_compare_metrics():
    a = ev.classification_metrics(Y_TRUE, PROBS)
    b = json.loads(json.dumps(a))
    assert ev.compare_metrics(a, b) == []
    b["top1_accuracy"] = 0.4
    b["per_class"][0]["f1"] = 0.0
    assert ev.compare_metrics(a, b) == ["top1_accuracy", "per_class"]


# --------------------------------------------------------------------------------------------
# localization metrics
# --------------------------------------------------------------------------------------------

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
    assert ev.pxap(cams, masks) == pytest.approx(expected)


def test_normalize_and_center_gaussian():
    np.testing.assert_array_equal(ev.normalize_map(np.full((4, 5), 3.0)), np.zeros((4, 5)))
    n = ev.normalize_map(np.array([[1.0, 3.0], [2.0, 5.0]]))
    assert n.min() == 0 and n.max() == 1 and n[1, 0] == pytest.approx(0.25)
    g = ev.center_gaussian(20, 30)
    assert g.shape == (20, 30) and g.min() >= 0 and g.max() == pytest.approx(1.0)
    assert np.unravel_index(g.argmax(), g.shape) in {(9, 14), (9, 15), (10, 14), (10, 15)}


def test_component_boxes_convention_and_iou():
    binary = np.zeros((10, 12), bool)
    binary[2:5, 3:7] = True       # rows 2..4, cols 3..6
    binary[7, 10] = True          # a single pixel
    binary[8, 11] = True          # diagonal neighbour: same 8-connected component
    boxes = ev.component_boxes(binary)
    assert sorted(map(tuple, boxes.tolist())) == [(3, 2, 7, 5), (10, 7, 12, 9)]
    iou = ev.box_iou(np.array([[0, 0, 4, 4]]), np.array([[2, 2, 6, 6], [0, 0, 4, 4], [5, 5, 6, 6]]))
    np.testing.assert_allclose(iou, [[4 / 28, 1.0, 0.0]])


def _crafted_box_maps():
    """Three 10x10 maps and boxes with a hand-computed MaxBoxAccV2 (see the test)."""
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


def test_max_box_acc_v2_hand_value_multi_contour():
    cams, gts = _crafted_box_maps()
    # correct images per threshold range (IoU 30 / 50 / 70):
    #   t < .25        : img1 (all deltas, via blob B), img2 (.36: delta 30 only) -> 2/3, 1/3, 1/3
    #   .25 <= t < .55 : img1 (all), img2 (.667: 30, 50)                        -> 2/3, 2/3, 1/3
    #   .55 <= t < .65 : img1 only blob A (IoU 0), img2 (30, 50)                -> 1/3, 1/3, 0
    #   t >= .65       : nothing
    result = ev.max_box_acc_v2(cams, gts)
    assert result["BoxAcc_IoU30"] == pytest.approx(2 / 3)
    assert result["BoxAcc_IoU50"] == pytest.approx(2 / 3)
    assert result["BoxAcc_IoU70"] == pytest.approx(1 / 3)
    assert result["MaxBoxAccV2"] == pytest.approx(5 / 9)
    assert result["best_threshold_IoU50"] == pytest.approx(0.25)
    # top-1 localization: class wrong on image 1 -> only image 2 counts at the best threshold
    acc = ev.BoxAccAccumulator()
    for cam, gt, ok in zip(cams, gts, [False, True, True]):
        acc.accumulate(cam, gt, class_correct=ok)
    res = acc.compute()
    assert res["gt_known_loc"] == pytest.approx(2 / 3)
    assert res["top1_loc"] == pytest.approx(1 / 3)


def test_accumulators_merge():
    cams, gts = _crafted_box_maps()
    full, part1, part2 = ev.BoxAccAccumulator(), ev.BoxAccAccumulator(), ev.BoxAccAccumulator()
    for i, (cam, gt) in enumerate(zip(cams, gts)):
        full.accumulate(cam, gt)
        (part1 if i < 2 else part2).accumulate(cam, gt)
    part1.merge(part2)
    assert part1.compute() == full.compute()
    p1, p2 = ev.PxAPAccumulator(), ev.PxAPAccumulator()
    p1.accumulate(cams[1], cams[1] > 0.5)
    p2.accumulate(cams[0], cams[0] > 0.5)
    p1.merge(p2)
    assert p1.compute() == pytest.approx(ev.pxap(cams[1::-1], [c > 0.5 for c in cams[1::-1]]))


# --------------------------------------------------------------------------------------------
# end to end on a tiny random-weights model and a tiny generated dataset
# --------------------------------------------------------------------------------------------

IM = 32  # image side of the shared `tiny_run` fixture (conftest.TINY_IM)


def test_cam_extractor_matches_definitions(tiny_run):
    import keras

    from hrcam import models

    model = tiny_run["full_model"]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (3, IM, IM, 3)).astype(np.float32)
    classes = np.array([0, 2, 1])
    out = ev.CamExtractor(model)(x, classes)
    assert out["low"].shape == (3, IM // 16, IM // 16)
    assert out["high"].shape == (3, IM, IM)
    assert out["layercam"].shape == (3, IM // 8, IM // 8)  # skip_3: stride 8
    assert out["gradcam_pp"].shape == (3, IM // 16, IM // 16)
    assert (out["layercam"] >= 0).all() and (out["gradcam_pp"] >= 0).all()
    # the low/high CAMs are A's definition (W of the class, no bias)
    feats = models.build_cam_model(model)(x, training=False)
    w = models.class_weights(model)
    np.testing.assert_allclose(out["low"], models.cams_from_features(
        np.asarray(feats["low_features"]), w, classes), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["high"], models.cams_from_features(
        np.asarray(feats["high_features"]), w, classes), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["probabilities"], np.asarray(feats["predictions"]), atol=1e-6)
    # Grad-CAM++ at the bottleneck in closed form: the logit is linear in the bottleneck
    # activations A (1x1 conv_aux, GAP, Dense), so g_k = v_k / (h w) with v = U W[:, c]
    # everywhere, alpha = 1 / (2 + S_k g_k), w_k = h w relu(g_k) alpha_k.
    bottleneck = np.asarray(keras.Model(model.input, model.get_layer("bottleneck").output)(
        x, training=False))
    u = np.asarray(model.get_layer("conv_aux").kernel.numpy())[0, 0]  # (K_b, K)
    hw = bottleneck.shape[1] * bottleneck.shape[2]
    for n, c in enumerate(classes):
        g = (u @ w[:, c]) / hw
        s = bottleneck[n].sum(axis=(0, 1))
        den = 2 * g ** 2 + s * g ** 3
        alpha = np.divide(g ** 2, den, out=np.zeros_like(g), where=np.abs(den) > 1e-12)
        weights = hw * np.maximum(g, 0) * alpha
        expected = np.maximum(bottleneck[n] @ weights, 0)
        np.testing.assert_allclose(out["gradcam_pp"][n], expected, rtol=1e-3, atol=1e-5)


def _check_localization_outputs(out_dir, summary, methods=ev.LOCALIZATION_METHODS):
    import csv

    for name in ("localization.csv", "localization.json", "curves.csv", "localization.png",
                 "curves.png"):
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name
    with open(out_dir / "localization.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == list(methods)
    for r in rows:
        for key in ("PxAP", "MaxBoxAccV2", "BoxAcc_IoU30", "BoxAcc_IoU50", "BoxAcc_IoU70",
                    "gt_known_loc", "top1_loc"):
            assert 0.0 <= float(r[key]) <= 1.0, (r["method"], key)
        assert float(r["BoxAcc_IoU30"]) >= float(r["BoxAcc_IoU50"]) >= float(r["BoxAcc_IoU70"])
        assert float(r["top1_loc"]) <= float(r["gt_known_loc"])
        assert int(r["n_images"]) == summary["num_images"] > 0
    assert 0 < summary["methods"]["center_gaussian"]["PxAP"] <= 1
    for row in summary["methods"].values():
        assert row["min_value"] >= 0.0 and row["max_value"] <= 1.0
    with open(out_dir / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    metrics = {r["metric"] for r in curves}
    assert {"pixel_precision", "pixel_recall", "box_acc_IoU30", "box_acc_IoU50",
            "box_acc_IoU70"} <= metrics
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in curves)
    assert {r["method"] for r in curves} == set(methods)


def test_evaluate_localization_end_to_end(tiny_run):
    out = tiny_run["root"] / "loc"
    summary = ev.evaluate_localization(tiny_run["full"], tiny_run["data"], "test", out_dir=out,
                                       batch_size=4, workers=1, progress=False)
    _check_localization_outputs(out, summary)
    assert summary["gradcam_layer"] == "bottleneck" and summary["layercam_layer"] == "skip_3"
    # --limit, a method subset, worker processes: same numbers for the same images
    out2 = tiny_run["root"] / "loc2"
    methods = ("low_res", "refined", "center_gaussian")
    limited = ev.evaluate_localization(tiny_run["full"], tiny_run["data"], "test",
                                       out_dir=out2, limit=5, batch_size=2, workers=2,
                                       methods=methods, progress=False)
    assert limited["num_images"] == 5
    _check_localization_outputs(out2, limited, methods)
    again = ev.evaluate_localization(tiny_run["full"], tiny_run["data"], "test", limit=5,
                                     batch_size=5, workers=1, methods=methods, progress=False)
    for m in methods:
        assert again["methods"][m]["PxAP"] == pytest.approx(limited["methods"][m]["PxAP"])
        assert again["methods"][m]["MaxBoxAccV2"] == pytest.approx(
            limited["methods"][m]["MaxBoxAccV2"])


def test_evaluate_localization_rejects_half_model(tiny_run):
    with pytest.raises(ValueError, match="full model"):
        ev.evaluate_localization(tiny_run["half"], tiny_run["data"], "test", progress=False)


def test_evaluate_classification_half_equals_full(tiny_run, capsys):
    import csv

    from hrcam.cli import main

    out_half = tiny_run["root"] / "cls_half"
    out_full = tiny_run["root"] / "cls_full"
    m_half = ev.evaluate_classification(tiny_run["half"], tiny_run["data"], "test",
                                        batch_size=5, out_dir=out_half, progress=False)
    assert main(["evaluate", "classification", "--model", str(tiny_run["full"]), "--data",
                 str(tiny_run["data"]), "--out", str(out_full), "--batch-size", "3",
                 "--no-progress"]) == 0
    for out in (out_half, out_full):
        for name in ("metrics.json", "per_class.csv", "predictions.csv", "confusion.png"):
            assert (out / name).is_file(), name
    with open(out_half / "predictions.csv") as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == m_half["num_images"] == 3 * 8 - len(
        list((tiny_run["data"] / "train").glob("*/*")))
    assert list(preds[0]) == ["relpath", "label", "predicted", "probability"]
    assert m_half["micro_f1"] == m_half["top1_accuracy"]
    with open(out_half / "per_class.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    a, b = out_half / "metrics.json", out_full / "metrics.json"
    assert main(["evaluate", "compare", str(a), str(b), "--out",
                 str(tiny_run["root"] / "cmp.json")]) == 0
    assert json.loads((tiny_run["root"] / "cmp.json").read_text())["identical"] is True
    changed = json.loads(b.read_text())
    changed["top1_accuracy"] += 0.01
    c = tiny_run["root"] / "changed.json"
    c.write_text(json.dumps(changed))
    assert main(["evaluate", "compare", str(a), str(c)]) == 1
    assert "top1_accuracy" in capsys.readouterr().err


def test_cli_localization(tiny_run, capsys):
    from hrcam.cli import main

    out = tiny_run["root"] / "loc_cli"
    assert main(["evaluate", "localization", "--model", str(tiny_run["full"]), "--data",
                 str(tiny_run["data"]), "--out", str(out), "--limit", "4", "--workers", "1",
                 "--methods", "high_res", "refined", "--merge-type", "multiply",
                 "--no-progress"]) == 0
    assert "refined" in capsys.readouterr().out
    summary = json.loads((out / "localization.json").read_text())
    assert summary["num_images"] == 4
    assert summary["pipeline_params"]["merge_type"] == "multiply"
    assert list(summary["methods"]) == ["high_res", "refined"]


def test_stacked_labelling_equals_per_threshold_labelling():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    thresholds = ev.threshold_grid()
    for _ in range(3):
        cam = ev.normalize_map(ndimage.zoom(rng.random((5, 6)), (8, 6), order=1) +
                               0.05 * rng.random((40, 36)))
        gt = np.array([[5, 4, 20, 30], [22, 10, 36, 38]], dtype=float)
        expected = [ev.box_iou(ev.component_boxes(cam > t), gt).max(initial=0.0)
                    for t in thresholds]
        np.testing.assert_allclose(ev.best_iou_per_threshold(cam, gt, thresholds, chunk=7),
                                   expected)
