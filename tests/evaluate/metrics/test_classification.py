"""Classification metrics: hand-computed values, scikit-learn as reference, the exact comparison."""

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
