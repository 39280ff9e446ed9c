"""Evaluation: classification and localization metrics, and the drivers that evaluate a saved
model on a dataset and write the result files.

* `hrcam.evaluate.metrics`: pure NumPy (importing it never imports TensorFlow) --
  `classification` (top-k, macro / micro scores, confusion matrix), `localization` (PxAP,
  MaxBoxAccV2 and top-1 localization as streaming accumulators), `boxes` (the one-pass box
  kernel, wsolevaluation's conventions or exact pixels), `bootstrap` (confidence intervals);
* `hrcam.evaluate.classification`: `evaluate_classification` (metrics.json, per_class.csv,
  predictions.csv, confusion.png);
* `hrcam.evaluate.localization`: `evaluate_localization` (every CAM method, bootstrap CIs and
  paired comparisons).

Importing any of it does not import TensorFlow (the drivers import it when they run).
"""

from __future__ import annotations

from hrcam.evaluate.classification import (
                                           evaluate_classification,
                                           predict_split,
                                           write_classification_outputs,
)
from hrcam.evaluate.localization import (
                                           evaluate_localization,
                                           write_localization_outputs,
)
from hrcam.evaluate.metrics.classification import (
                                           CLASSIFICATION_KEYS,
                                           classification_metrics,
                                           compare_metrics,
                                           confusion_matrix,
                                           per_class_scores,
                                           top_k_accuracy,
)
from hrcam.evaluate.metrics.localization import (
                                           BOX_CONVENTIONS,
                                           DEFAULT_BOX_CONVENTION,
                                           DEFAULT_CAM_CURVE_INTERVAL,
                                           IOU_THRESHOLDS,
                                           BoxAccAccumulator,
                                           PxAPAccumulator,
                                           max_box_acc_v2,
                                           normalize_map,
                                           pxap,
                                           threshold_grid,
)

__all__ = [
    "CLASSIFICATION_KEYS", "classification_metrics", "compare_metrics", "confusion_matrix",
    "per_class_scores", "top_k_accuracy", "BOX_CONVENTIONS", "DEFAULT_BOX_CONVENTION",
    "DEFAULT_CAM_CURVE_INTERVAL", "IOU_THRESHOLDS", "BoxAccAccumulator", "PxAPAccumulator",
    "max_box_acc_v2", "normalize_map", "pxap", "threshold_grid", "evaluate_classification",
    "predict_split", "write_classification_outputs", "evaluate_localization",
    "write_localization_outputs",
]
