"""Confidence intervals over images by a streaming (Poisson) bootstrap.

Each resample b gives every image i an independent weight ``w[i, b] ~ Poisson(1)`` -- the
streaming form of the nonparametric bootstrap (Hanley & MacGibbon 2006; Chamandy et al. 2012):
the metric accumulators add each image's evidence (pixel histograms, box hits) with these
weights into one accumulator per resample, so memory does not grow with the number of images
and no per-image record is kept. The weights of an image depend only on the seed and the
image's index in the evaluated list (never on batching or worker processes), and are the same
for every method, so the difference of two methods' resampled scores is a PAIRED bootstrap.

Intervals are percentile intervals of the resampled scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_SEED", "CONFIDENCE", "poisson_weights",
           "percentile_interval", "paired_difference"]

DEFAULT_SAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95


def poisson_weights(indices: Sequence[int] | np.ndarray, samples: int = DEFAULT_SAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """The resampling weights ``(len(indices), samples)`` (float64) of the images with these
    indices: row i holds Poisson(1) draws from a generator seeded with ``(seed, indices[i])``."""
    if isinstance(samples, bool) or int(samples) != samples or samples < 0:
        raise ValueError(f"bootstrap samples must be an integer >= 0, got {samples!r}")
    idx = np.asarray(indices, dtype=np.int64).ravel()
    out = np.empty((idx.size, int(samples)), dtype=np.float64)
    for row, index in enumerate(idx):
        out[row] = np.random.default_rng([int(seed), int(index)]).poisson(1.0, int(samples))
    return out


def percentile_interval(replicates: np.ndarray,
                        confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The two-sided percentile interval of resampled scores (NaN resamples ignored; None when
    there is none)."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_difference(value_a: float | None, value_b: float | None, replicates_a: np.ndarray,
                      replicates_b: np.ndarray,
                      confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Method A minus method B on the same images: the difference, its paired percentile
    interval and the share of resamples in which A scores above B."""
    if value_a is None or value_b is None:
        return {"difference": None, "ci_low": None, "ci_high": None, "share_above_zero": None}
    diff = np.asarray(replicates_a, dtype=np.float64) - np.asarray(replicates_b, dtype=np.float64)
    finite = diff[np.isfinite(diff)]
    low, high = percentile_interval(finite, confidence)
    return {"difference": float(value_a - value_b), "ci_low": low, "ci_high": high,
            "share_above_zero": float(np.mean(finite > 0)) if finite.size else None}
