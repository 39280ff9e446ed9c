"""NumPy helpers for 2-D maps shared by the postprocessing, the CAM methods and the metrics:
min-max normalisation, exact percentiles, bilinear / PIL / nearest resizing and the
image-independent centre-Gaussian map. No TensorFlow here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["normalize", "is_blank", "order_statistics", "percentiles", "resize_bilinear",
           "resize_pil", "resize_nearest", "center_gaussian"]


def normalize(arr: Any) -> np.ndarray:
    """Min-max normalise to [0, 1] as float64; a constant (blank) array gives all zeros."""
    a = np.asarray(arr, dtype=np.float64)
    lo = a.min()
    rng = a.max() - lo
    if not rng > 0:
        return np.zeros(a.shape, dtype=np.float64)
    out = a - lo
    out /= rng
    return out


def is_blank(arr: Any) -> bool:
    """True for a map without contrast (constant; e.g. all zeros)."""
    a = np.asarray(arr)
    return a.size == 0 or not a.max() > a.min()


def order_statistics(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
    """The values at sorted positions `ranks` of the 1-D array `values` (exact).

    Same result as ``np.partition(values, ranks)[ranks]`` but usually several times faster on
    large arrays: the ranks are bracketed with a strided sample, only the values inside the
    bracket are partitioned, and the bracket is verified (falling back to a full partition).
    """
    n = values.size
    ranks = [int(r) for r in ranks]
    if n <= 4096:
        part = np.partition(values, ranks)
        return [float(part[r]) for r in ranks]
    step = n // 1024
    sample = np.sort(values[step // 2::step])
    m = sample.size
    margin = 40  # sample ranks are within a few sqrt(m) of the target; verified below
    lo_i = max(0, int(min(ranks) / n * m) - margin)
    hi_i = min(m - 1, int(max(ranks) / n * m) + margin)
    a, b = sample[lo_i], sample[hi_i]
    below = int(np.count_nonzero(values < a)) if lo_i > 0 else 0
    if lo_i == 0:
        a = -math.inf
    if hi_i == m - 1:
        b = math.inf
    inside = values[(values >= a) & (values <= b)]
    local = [r - below for r in ranks]
    if min(local) < 0 or max(local) >= inside.size:  # bracket missed: exact fallback
        part = np.partition(values, ranks)
        return [float(part[r]) for r in ranks]
    part = np.partition(inside, sorted(set(local)))
    return [float(part[r]) for r in local]


def percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(values, qs)`` (method 'linear'), bit-identical, via `order_statistics`."""
    values = values.ravel()
    n = values.size
    plan = []
    ranks: set[int] = set()
    for q in qs:
        v = (n - 1) * (float(q) / 100.0)
        k = min(max(int(math.floor(v)), 0), n - 1)
        k1 = min(k + 1, n - 1)
        plan.append((k, k1, v - k))
        ranks.update((k, k1))
    ordered = sorted(ranks)
    stats = dict(zip(ordered, order_statistics(values, ordered)))
    out = []
    for k, k1, g in plan:
        a, b = stats[k], stats[k1]
        d = b - a
        out.append(b - d * (1 - g) if g >= 0.5 else a + d * g)  # numpy's _lerp
    return out


@lru_cache(maxsize=64)
def _bilinear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for a 1-D bilinear resize n_in -> n_out:
    half-pixel centres, edges clamped (PIL's BILINEAR upscaling, which the seed used, OpenCV's
    INTER_LINEAR, tf.image.resize bilinear)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(src).astype(np.intp)
    frac = src - i0
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    i0 = np.clip(i0, 0, n_in - 1)
    for a in (i0, i1, frac):
        a.setflags(write=False)
    return i0, i1, frac


def resize_bilinear(arr: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to `size` = (H, W) (half-pixel centres, clamped edges).

    Done with gathers and lerps (no BLAS call, so no thread pool is woken for a tiny product).
    """
    a = np.asarray(arr, dtype=np.float64)
    H, W = int(size[0]), int(size[1])
    if a.shape == (H, W):
        return a.copy()
    r0, r1, fy = _bilinear_taps(H, a.shape[0])
    c0, c1, fx = _bilinear_taps(W, a.shape[1])
    fy = fy[:, None]
    rows = a[r0] * (1.0 - fy)
    rows += a[r1] * fy
    out = rows[:, c0] * (1.0 - fx)
    out += rows[:, c1] * fx
    return out


def resize_pil(arr: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to `size` = (H, W) exactly as the seed did it: PIL's
    BILINEAR filter on a float32 ('F') image; returned as float64.

    The same interpolation as `resize_bilinear`, rounded to float32. The pipeline uses it for
    `low_resized`, so ROI percentiles and focal-point ties break exactly as in the original.
    """
    from PIL import Image

    a = np.ascontiguousarray(arr, dtype=np.float32)
    H, W = int(size[0]), int(size[1])
    if a.shape == (H, W):
        return a.astype(np.float64)
    resized = Image.fromarray(a).resize((W, H), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def resize_nearest(arr: Any, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array to `size` = (H, W) (PIL NEAREST indexing)."""
    a = np.asarray(arr)
    H, W = int(size[0]), int(size[1])
    rows = np.minimum(((np.arange(H) + 0.5) * (a.shape[0] / H)).astype(np.int64), a.shape[0] - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * (a.shape[1] / W)).astype(np.int64), a.shape[1] - 1)
    return a[np.ix_(rows, cols)]



def center_gaussian(height: int, width: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """The image-independent centre baseline: a Gaussian centred on the image, min-max
    normalised to [0, 1] (float32). The standard deviation along each axis is ``sigma_fraction``
    times that side."""
    ys = (np.arange(height, dtype=np.float64) + 0.5 - height / 2) / (sigma_fraction * height)
    xs = (np.arange(width, dtype=np.float64) + 0.5 - width / 2) / (sigma_fraction * width)
    g = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return normalize(g).astype(np.float32)
