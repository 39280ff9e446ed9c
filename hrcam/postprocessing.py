"""Refined-CAM postprocessing: merge a low-resolution and a high-resolution CAM (ICIP 2019).

`pipeline(img, low, high, **params)` runs every step of the paper's postprocessing and returns a
dict with the intermediate results under the seed's keys::

    blurred, low, low_resized, edges, roi, bounds, focal_points, segmented, full_segment,
    merged, result

`steps['merged']` is the refined CAM. Every step is also a public function (`blur`,
`sobel_edges`, `resize_pil`, `resize_bilinear`, `region_of_interest`, `edge_bounds`, `find_focal_points`,
`region_growing`, `fill_segment`, `merge`, `keep_percentage`, `filter_threshold`) so the steps
can be recombined. `pipeline_batch` runs the pipeline over a batch, optionally in worker
processes, and returns only the requested keys.

Conventions
-----------
* Every map is a float64 array in [0, 1] (inputs are min-max normalised by `normalize`). A
  constant map ("blank", no contrast, e.g. an all-zero CAM) carries no localisation
  information and normalises to all zeros; nothing divides by zero.
* `low_resized` is resized exactly as the seed did (PIL's bilinear filter on a float32 image,
  `resize_pil`), then normalised, so ROI and focal-point ties break as in the original; the
  refined CAM equals the straightforward implementation's (benchmarks/bench_postprocessing.py)
  to the last bit on the benchmark's images.
* The image size comes from `img`; non-square images work. `img` may be (1, H, W, C),
  (H, W, C) or (H, W); `low` (h, w) or (1, h, w) with h, w ~ H/s, W/s for one stride s (16 for
  the paper's models); `high` (H, W) or (1, H, W).
* Focal points are (x, y) = (column, row) Python-int tuples, as SimpleITK expects for seeds.

Blank (constant) CAMs give well-defined results:
* constant `high`: `blurred` and `edges` are all zeros, `segmented` and `full_segment` are
  empty, so `merged` is `low_resized`.
* constant `low`: `low`/`low_resized` are all zeros, the ROI is empty, there are no focal
  points, `bounds` are taken over the whole edge map, `segmented` and `full_segment` are empty,
  so `merged` is all zeros and `result` keeps no pixel.

No TensorFlow here: NumPy, SciPy, scikit-image and SimpleITK only.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from skimage import morphology

__all__ = [
    "PIPELINE_DEFAULTS",
    "PIPELINE_CHOICES",
    "PIPELINE_KEYS",
    "validate_pipeline_params",
    "pipeline",
    "pipeline_batch",
    "normalize",
    "is_blank",
    "blur",
    "sobel_edges",
    "resize_bilinear",
    "resize_pil",
    "resize_nearest",
    "region_of_interest",
    "edge_bounds",
    "num_global_points",
    "find_focal_points",
    "region_growing",
    "fill_segment",
    "merge",
    "keep_percentage",
    "filter_threshold",
    "filter_image",
]

#: The seed's `pipeline` keywords and their defaults (the user-facing contract).
PIPELINE_DEFAULTS: dict[str, Any] = {
    "roi_percentile": 85,
    "focal_scope": "global",
    "maxima_areas": "small",
    "merge_type": "blend",
    "merge_alpha": 0.5,
    "filter_type": "percentage",
    "filter_percentage": 15,
    "filter_threshold": 0.6,
}

#: Allowed values of the choice parameters. 'merge' is the seed README's word for 'multiply'.
PIPELINE_CHOICES: dict[str, tuple[str, ...]] = {
    "focal_scope": ("global", "local"),
    "maxima_areas": ("small", "large"),
    "merge_type": ("blend", "multiply", "merge"),
    "filter_type": ("percentage", "threshold"),
}

#: The keys of the dict returned by `pipeline`, in the seed's order.
PIPELINE_KEYS: tuple[str, ...] = (
    "blurred", "low", "low_resized", "edges", "roi", "bounds", "focal_points", "segmented",
    "full_segment", "merged", "result",
)

BLUR_SIZE = 5          # step 1: 5x5 box filter
MAX_HOLE_SIZE = 256    # step 8: holes of up to 256 pixels are filled
EDGE_PERCENTILES = (25.0, 75.0)  # step 5: bounds of the region growing


# --------------------------------------------------------------------------------------------
# Parameter and input validation
# --------------------------------------------------------------------------------------------

def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_pipeline_params(**params: Any) -> dict[str, Any]:
    """Check postprocessing parameters; return the full parameter set (defaults filled in).

    Raises `ValueError` naming the parameter and its allowed values for an unknown parameter
    name, an unknown choice, `roi_percentile` outside (0, 100), `merge_alpha` or
    `filter_threshold` outside [0, 1] and `filter_percentage` outside (0, 100].
    """
    unknown = sorted(set(params) - set(PIPELINE_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown postprocessing parameter(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(PIPELINE_DEFAULTS)}"
        )
    full = {**PIPELINE_DEFAULTS, **params}
    for name, choices in PIPELINE_CHOICES.items():
        if full[name] not in choices:
            raise ValueError(
                f"{name} must be one of {', '.join(map(repr, choices))}; got {full[name]!r}"
            )
    p = full["roi_percentile"]
    if not _is_real(p) or not 0 < p < 100:
        raise ValueError(
            f"roi_percentile must be a number in the open interval (0, 100); got {p!r}")
    for name in ("merge_alpha", "filter_threshold"):
        v = full[name]
        if not _is_real(v) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1]; got {v!r}")
    v = full["filter_percentage"]
    if not _is_real(v) or not 0 < v <= 100:
        raise ValueError(f"filter_percentage must be a number in (0, 100]; got {v!r}")
    return full


def _as_image(img: Any) -> np.ndarray:
    """(1, H, W, C) | (H, W, C) | (H, W) -> (H, W[, C]) array (no copy when possible)."""
    arr = np.asarray(img)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"img must have shape (1, H, W, C), (H, W, C) or (H, W); got {np.shape(img)}"
        )
    return arr


def _as_map(cam: Any, name: str) -> np.ndarray:
    """(h, w) | (1, h, w) | (h, w, 1) | (1, h, w, 1) -> finite float64 (h, w)."""
    arr = np.asarray(cam)
    shape = arr.shape
    if arr.ndim == 4 and shape[0] == 1 and shape[3] == 1:
        arr = arr[0, :, :, 0]
    elif arr.ndim == 3 and shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a 2-D map of shape (h, w) or (1, h, w); got {shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real-valued array; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _stride_interval(full: int, small: int) -> tuple[float, float]:
    """Strides s for which `small` is floor or ceil of full / s."""
    lo = full / (small + 1)
    hi = full / (small - 1) if small > 1 else math.inf
    return lo, hi


def _check_low_fits(low_shape: tuple[int, int], image_shape: tuple[int, int]) -> None:
    (h, w), (H, W) = low_shape, image_shape
    ok = h <= H and w <= W
    if ok:
        a = _stride_interval(H, h)
        b = _stride_interval(W, w)
        ok = max(a[0], b[0]) < min(a[1], b[1])
    if not ok:
        raise ValueError(
            f"low has shape {low_shape}, which does not fit the image size {image_shape}: it "
            f"must be the image size divided by one stride, e.g. "
            f"({max(H // 16, 1)}, {max(W // 16, 1)}) for stride 16"
        )


def _prepare(img: Any, low: Any, high: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = _as_image(img)
    low_arr = _as_map(low, "low")
    high_arr = _as_map(high, "high")
    size = image.shape[:2]
    if high_arr.shape != size:
        raise ValueError(
            f"high has shape {high_arr.shape}, which does not fit the image size {size}: "
            f"it must be (H, W) = {size}"
        )
    _check_low_fits(low_arr.shape, size)
    return image, low_arr, high_arr


# --------------------------------------------------------------------------------------------
# Elementary helpers
# --------------------------------------------------------------------------------------------

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


def _order_stats(values: np.ndarray, ranks: Sequence[int]) -> list[float]:
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


def _percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(values, qs)`` (method 'linear'), bit-identical, via `_order_stats`."""
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
    stats = dict(zip(ordered, _order_stats(values, ordered)))
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


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------

def blur(high: Any, size: int = BLUR_SIZE, *, normalized: bool = False) -> np.ndarray:
    """Step 1: normalise the high-res CAM, then a `size` x `size` box (mean) filter.

    Border handling is scipy's 'reflect' (the seed's `scipy.ndimage.convolve` default).
    Pass `normalized=True` when `high` is already in [0, 1] to skip the normalisation.
    """
    h = np.asarray(high, dtype=np.float64) if normalized else normalize(high)
    if size % 2 == 0:
        return ndi.uniform_filter(h, size=size, mode="reflect")
    # separable sums of shifted slices over 'reflect' (numpy 'symmetric') padding; equals the
    # seed's ndi.convolve with a size x size mean kernel (no running-sum cancellation, so a
    # non-negative map stays non-negative)
    r = size // 2
    p = np.pad(h, r, mode="symmetric")
    rows = p[: p.shape[0] - 2 * r].copy()
    for i in range(1, size):
        rows += p[i: p.shape[0] - 2 * r + i]
    out = rows[:, : rows.shape[1] - 2 * r].copy()
    for i in range(1, size):
        out += rows[:, i: rows.shape[1] - 2 * r + i]
    out *= 1.0 / (size * size)
    return out


def sobel_edges(blurred: Any) -> np.ndarray:
    """Step 2: Sobel gradient magnitude of the blurred map, normalised to [0, 1].

    Same as `normalize(skimage.filters.sobel(blurred))` ('reflect' borders).
    """
    b = np.asarray(blurred, dtype=np.float64)
    if min(b.shape) < 2:
        return normalize(np.hypot(ndi.sobel(b, axis=1, mode="reflect"),
                                  ndi.sobel(b, axis=0, mode="reflect")))
    # 'reflect' = numpy's 'symmetric' padding; the separable 3x3 kernels as slice sums
    p = np.pad(b, 1, mode="symmetric")
    dx = p[:, 2:] - p[:, :-2]                      # [-1, 0, 1] along columns
    gx = dx[:-2] + dx[2:]
    gx += 2.0 * dx[1:-1]                           # [1, 2, 1] along rows
    dy = p[2:, :] - p[:-2, :]                      # [-1, 0, 1] along rows
    gy = dy[:, :-2] + dy[:, 2:]
    gy += 2.0 * dy[:, 1:-1]                        # [1, 2, 1] along columns
    np.multiply(gx, gx, out=gx)
    np.multiply(gy, gy, out=gy)
    gx += gy
    np.sqrt(gx, out=gx)
    return normalize(gx)


def region_of_interest(low_resized: Any, roi_percentile: float = 85) -> np.ndarray:
    """Step 4: boolean mask of `low_resized > percentile(low_resized, roi_percentile)`.

    A constant map has an empty ROI (no pixel is strictly above the percentile).
    """
    lr = np.asarray(low_resized, dtype=np.float64)
    return lr > _percentiles(lr, (roi_percentile,))[0]


def edge_bounds(edges: Any, roi: Any) -> tuple[float, float]:
    """Step 5: (25th, 75th) percentile of `edges` inside the ROI (whole map if the ROI is empty)."""
    e = np.asarray(edges, dtype=np.float64)
    r = np.asarray(roi, dtype=bool)
    vals = e[r] if r.any() else e.ravel()
    lower, upper = _percentiles(vals, EDGE_PERCENTILES)
    return lower, upper


def num_global_points(size: tuple[int, int]) -> int:
    """Number of global focal points: round(sqrt(side)), side = geometric mean of H and W."""
    H, W = int(size[0]), int(size[1])
    return max(1, min(H * W, int(round(math.sqrt(math.sqrt(H * W))))))


def _top_k(arr: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of `k` largest values of a 2-D map (ties: any of them), without partitioning
    the whole map: a window around the maximum gives a lower bound for the k-th value."""
    flat = arr.ravel()
    n = flat.size
    if n <= 4 * k or n <= 1024:
        return np.argpartition(flat, n - k)[n - k:]
    H, W = arr.shape
    r, c = divmod(int(flat.argmax()), W)
    half = int(math.ceil(math.sqrt(k))) + 1
    window = arr[max(0, r - half):r + half + 1, max(0, c - half):c + half + 1].ravel()
    if window.size < k:
        return np.argpartition(flat, n - k)[n - k:]
    bound = np.partition(window, window.size - k)[window.size - k]
    candidates = np.flatnonzero(flat >= bound)
    if candidates.size > n // 4:
        return np.argpartition(flat, n - k)[n - k:]
    values = flat[candidates]
    return candidates[np.argpartition(values, values.size - k)[values.size - k:]]


def _skeletonize(mask: np.ndarray) -> np.ndarray:
    """skimage's skeletonize, run on the bounding box of the mask (plus a background margin)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(mask.shape, dtype=bool)
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, mask.shape[0])
    c0, c1 = max(cols[0] - 2, 0), min(cols[-1] + 3, mask.shape[1])
    out = np.zeros(mask.shape, dtype=bool)
    out[r0:r1, c0:c1] = morphology.skeletonize(np.ascontiguousarray(mask[r0:r1, c0:c1]))
    return out


def find_focal_points(
    low: Any,
    size: tuple[int, int] | None = None,
    scope: str = "global",
    maxima_areas: str = "small",
    *,
    low_resized: Any = None,
    num_points: int | None = None,
) -> list[tuple[int, int]]:
    """Step 6: seeds for the region growing, as (x, y) = (column, row) tuples of Python ints.

    * ``scope='global'``: the `num_points` (default `num_global_points(size)`, 15 for 224x224)
      pixels with the highest value of the bilinearly resized low-res CAM (`low_resized`, or
      `resize_pil(low, size)`); ties at the cut are broken arbitrarily.
    * ``scope='local'``: local maxima of the low-res CAM whose value is at least the mean of the
      lowest and highest local maximum (so the highest maximum is always a seed), upsampled
      (nearest) to `size` and, for ``maxima_areas='small'``, skeletonised.

    A constant low-res CAM has no focal points (empty list).
    """
    if scope not in PIPELINE_CHOICES["focal_scope"]:
        raise ValueError(f"scope (focal_scope) must be one of 'global', 'local'; got {scope!r}")
    if maxima_areas not in PIPELINE_CHOICES["maxima_areas"]:
        raise ValueError(f"maxima_areas must be one of 'small', 'large'; got {maxima_areas!r}")
    low_arr = np.asarray(low, dtype=np.float64)
    if size is None:
        size = low_arr.shape if low_resized is None else np.shape(low_resized)
    H, W = int(size[0]), int(size[1])
    if is_blank(low_arr):
        return []
    if scope == "global":
        lr = resize_pil(low_arr, (H, W)) if low_resized is None else np.asarray(low_resized)
        k = num_global_points((H, W)) if num_points is None else int(num_points)
        k = max(1, min(k, lr.size))
        top = _top_k(lr, k)
        rows, cols = np.divmod(top, W)
        return [(int(c), int(r)) for r, c in zip(rows, cols)]
    # local scope
    candidates = morphology.local_maxima(low_arr).astype(bool)
    if not candidates.any():
        return []
    values = low_arr[candidates]
    threshold = (values.max() + values.min()) / 2.0
    points = candidates & (low_arr >= threshold)
    points = resize_nearest(points, (H, W))
    if maxima_areas == "small":
        points = _skeletonize(points)
    rows, cols = np.nonzero(points)
    return [(int(c), int(r)) for r, c in zip(rows, cols)]


def region_growing(
    edges: Any, seeds: Iterable[Sequence[int]], lower: float, upper: float
) -> np.ndarray:
    """Step 7: SimpleITK ConnectedThreshold region growing on `edges` from `seeds`.

    Keeps the pixels 4-connected to a seed whose value lies in [lower, upper]. Seeds are
    (x, y) = (column, row). The threshold test is done here in float64 and the flood fill by
    SimpleITK on the uint8 mask, which gives exactly ConnectedThreshold(edges, lower, upper)
    without converting the float map. Returns a float64 0/1 map (all zeros without seeds).
    """
    e = np.asarray(edges, dtype=np.float64)
    seed_list = [(int(s[0]), int(s[1])) for s in seeds]
    H, W = e.shape
    seed_list = [(x, y) for x, y in seed_list if 0 <= x < W and 0 <= y < H]
    if not seed_list:
        return np.zeros(e.shape, dtype=np.float64)
    inside = ((e >= lower) & (e <= upper)).view(np.uint8)
    image = sitk.GetImageFromArray(inside)
    grow = sitk.ConnectedThresholdImageFilter()
    grow.SetSeedList(seed_list)
    grow.SetLower(1)
    grow.SetUpper(1)
    grow.SetReplaceValue(1)
    grow.SetNumberOfThreads(1)  # a flood fill: threads only add overhead (batches use processes)
    seg = grow.Execute(image)
    return sitk.GetArrayViewFromImage(seg).astype(np.float64)


def fill_segment(
    segmented: Any, edges: Any, roi: Any, upper: float, max_hole_size: int = MAX_HOLE_SIZE
) -> np.ndarray:
    """Step 8: (`segmented` + (`edges >= upper` inside the ROI)) > 0, holes up to
    `max_hole_size` pixels filled (4-connected holes, as skimage's remove_small_holes), float."""
    mask = np.asarray(segmented) > 0
    mask |= (np.asarray(edges) >= upper) & np.asarray(roi, dtype=bool)
    if max_hole_size > 0:
        _fill_small_holes(mask, int(max_hole_size))
    return mask.astype(np.float64)


def _fill_small_holes(mask: np.ndarray, max_size: int) -> None:
    """In place: fill the 4-connected background components of at most `max_size` pixels
    (skimage.morphology.remove_small_holes(mask, max_size=max_size)).

    Only the bounding box of the foreground, grown by one background pixel, is labelled. A
    background component that reaches that margin on a side facing the rest of the image
    continues outside the box, through a slab of at least `max_size` pixels (checked; otherwise
    the whole image is labelled), so it is no hole.
    """
    H, W = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, H)
    c0, c1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, W)
    # slabs beyond each inner side of the box (lower bounds of the outer component's size)
    slabs = []
    if r0 > 0:
        slabs.append(r0 * W)
    if r1 < H:
        slabs.append((H - r1) * W)
    if c0 > 0:
        slabs.append(c0 * H)
    if c1 < W:
        slabs.append((W - c1) * H)
    if slabs and min(slabs) < max_size:
        r0, r1, c0, c1 = 0, H, 0, W
    crop = mask[r0:r1, c0:c1]
    labels, n = ndi.label(~crop)
    if n == 0:
        return
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = sizes <= max_size
    small[0] = False
    # components touching an inner side continue outside the box: never holes
    if r0 > 0:
        small[labels[0]] = False
    if r1 < H:
        small[labels[-1]] = False
    if c0 > 0:
        small[labels[:, 0]] = False
    if c1 < W:
        small[labels[:, -1]] = False
    small[0] = False
    crop |= small[labels]


def merge(
    full_segment: Any,
    low_resized: Any,
    method: str = "blend",
    alpha: float = 0.5,
    *,
    normalized: bool = False,
) -> np.ndarray:
    """Step 9: the refined CAM from the filled segment and the resized low-res CAM.

    Both maps are normalised; ``'blend'``: ``alpha * full_segment + (1 - alpha) * low_resized``;
    ``'multiply'`` (the seed's ``'merge'``): their product. If one map is blank (constant) the
    other (normalised) is returned; if both are, all zeros. Pass `normalized=True` when both
    maps are already min-max normalised (or blank zeros) to skip the normalisation.
    """
    if method not in PIPELINE_CHOICES["merge_type"]:
        raise ValueError(f"merge_type must be one of 'blend', 'multiply', 'merge'; got {method!r}")
    if not _is_real(alpha) or not 0 <= alpha <= 1:
        raise ValueError(f"merge_alpha must be a number in [0, 1]; got {alpha!r}")
    if normalized:
        a = np.array(full_segment, dtype=np.float64)
        b = np.asarray(low_resized, dtype=np.float64)
    else:
        a = normalize(full_segment)
        b = normalize(low_resized)
    a_blank, b_blank = is_blank(a), is_blank(b)
    if a_blank or b_blank:
        return b if a_blank else a
    if method == "blend":
        a *= alpha
        a += (1.0 - alpha) * b
        return a
    a *= b
    return a


def filter_image(img: Any, keep: np.ndarray) -> np.ndarray:
    """Copy of the image (leading batch axis dropped) with every pixel outside `keep` zeroed."""
    image = _as_image(img)
    keep = np.asarray(keep, dtype=bool)
    if image.ndim == 2:
        return np.multiply(image, keep, dtype=image.dtype)
    H, W, C = image.shape
    # multiply contiguous (H, W*C) rows: much faster than broadcasting over a length-C axis
    flat = np.ascontiguousarray(image).reshape(H, W * C)
    out = np.multiply(flat, np.repeat(keep, C, axis=1), dtype=image.dtype)
    return out.reshape(H, W, C)


def keep_percentage(img: Any, cam: Any, percentage: float = 15) -> np.ndarray:
    """Step 10 ('percentage'): keep the image pixels with the top `percentage` % CAM values.

    The threshold is the CAM value at sorted position int((1 - percentage/100) * n) (the
    seed's rule, via `np.partition`); pixels strictly above it are kept.
    """
    if not _is_real(percentage) or not 0 < percentage <= 100:
        raise ValueError(f"filter_percentage must be a number in (0, 100]; got {percentage!r}")
    c = np.asarray(cam, dtype=np.float64)
    flat = c.ravel()
    position = min(int((1.0 - percentage / 100.0) * flat.size), flat.size - 1)
    threshold = _order_stats(flat, (position,))[0]
    return filter_image(img, c > threshold)


def filter_threshold(img: Any, cam: Any, threshold: float = 0.6) -> np.ndarray:
    """Step 10 ('threshold'): keep the image pixels whose normalised CAM value exceeds
    `threshold` (a blank CAM keeps nothing)."""
    if not _is_real(threshold) or not 0 <= threshold <= 1:
        raise ValueError(f"filter_threshold must be a number in [0, 1]; got {threshold!r}")
    return filter_image(img, normalize(cam) > threshold)


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------

def _run(image: np.ndarray, low: np.ndarray, high: np.ndarray, p: Mapping[str, Any]) -> dict:
    size = image.shape[:2]
    high_blank = is_blank(high)

    # 1-2: high-res processing
    if high_blank:
        blurred = np.zeros(size, dtype=np.float64)
        edges = np.zeros(size, dtype=np.float64)
    else:
        blurred = blur(high)
        edges = sobel_edges(blurred)

    # 3-5: low-res processing (resized as the seed did, then normalised)
    low_n = normalize(low)
    low_resized = normalize(resize_pil(low, size))
    roi = region_of_interest(low_resized, p["roi_percentile"])
    lower, upper = edge_bounds(edges, roi)

    # 6: focal points
    focal_points = find_focal_points(
        low, size, p["focal_scope"], p["maxima_areas"], low_resized=low_resized
    )

    # 7-8: region growing and hole filling
    if high_blank:
        segmented = np.zeros(size, dtype=np.float64)
        full_segment = np.zeros(size, dtype=np.float64)
    else:
        segmented = region_growing(edges, focal_points, lower, upper)
        full_segment = fill_segment(segmented, edges, roi, upper)

    # 9: merge
    method = "multiply" if p["merge_type"] == "merge" else p["merge_type"]
    merged = merge(full_segment, low_resized, method, p["merge_alpha"], normalized=True)

    # 10: result
    if p["filter_type"] == "percentage":
        result = keep_percentage(image, merged, p["filter_percentage"])
    else:
        result = filter_threshold(image, merged, p["filter_threshold"])

    return {
        "blurred": blurred,
        "low": low_n,
        "low_resized": low_resized,
        "edges": edges,
        "roi": roi,
        "bounds": (lower, upper),
        "focal_points": focal_points,
        "segmented": segmented,
        "full_segment": full_segment,
        "merged": merged,
        "result": result,
    }


def pipeline(
    img: Any,
    low: Any,
    high: Any,
    roi_percentile: float = 85,
    focal_scope: str = "global",
    maxima_areas: str = "small",
    merge_type: str = "blend",
    merge_alpha: float = 0.5,
    filter_type: str = "percentage",
    filter_percentage: float = 15,
    filter_threshold: float = 0.6,
) -> dict[str, Any]:
    """The whole postprocessing pipeline (DESIGN.md section 1, steps 1-10), step by step.

    :param img: the image, (1, H, W, C), (H, W, C) or (H, W); it sets the output size.
    :param low: the low-res CAM, (h, w) or (1, h, w) (h, w = H/16, W/16 for the paper's models).
    :param high: the high-res CAM, (H, W) or (1, H, W).
    :param roi_percentile: pixels of the resized low-res CAM above this percentile form the ROI
                           (85: the top 15 %), in (0, 100).
    :param focal_scope: 'global' (the round(sqrt(side)) highest pixels) or 'local' (local maxima).
    :param maxima_areas: 'small' (skeletonised) or 'large' upsampled local maxima ('local' only).
    :param merge_type: 'blend' or 'multiply' ('merge' is accepted as the seed's word for it).
    :param merge_alpha: weight of the filled segment in 'blend', in [0, 1].
    :param filter_type: 'percentage' (keep the top filter_percentage %) or 'threshold'.
    :param filter_percentage: percent of pixels kept by 'percentage', in (0, 100].
    :param filter_threshold: normalised CAM value above which 'threshold' keeps pixels, in [0, 1].
    :return: dict with keys `PIPELINE_KEYS`: 'blurred', 'low' (normalised low-res CAM),
             'low_resized', 'edges', 'roi' (bool), 'bounds' ((lower, upper) floats),
             'focal_points' (list of (x, y)), 'segmented', 'full_segment', 'merged' (the
             refined CAM), 'result' (the image, (H, W, C), with non-kept pixels zeroed).
             Maps are float64 (H, W) in [0, 1].
    :raises ValueError: bad parameter values or input shapes, NaN/inf in a map.
    """
    params = validate_pipeline_params(
        roi_percentile=roi_percentile, focal_scope=focal_scope, maxima_areas=maxima_areas,
        merge_type=merge_type, merge_alpha=merge_alpha, filter_type=filter_type,
        filter_percentage=filter_percentage, filter_threshold=filter_threshold,
    )
    image, low_arr, high_arr = _prepare(img, low, high)
    return _run(image, low_arr, high_arr, params)


# --------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------

def _check_keys(keys: Iterable[str] | str | None) -> tuple[str, ...]:
    if keys is None:
        return PIPELINE_KEYS
    if isinstance(keys, str):
        keys = (keys,)
    keys = tuple(keys)
    bad = [k for k in keys if k not in PIPELINE_KEYS]
    if bad or not keys:
        raise ValueError(
            f"keys must be a non-empty selection of {', '.join(PIPELINE_KEYS)}; got {keys!r}"
        )
    return keys


def _batch_chunk(args: tuple) -> list[dict[str, Any]]:
    images, lows, highs, keys, params = args
    out = []
    for image, low, high in zip(images, lows, highs):
        steps = _run(*_prepare(image, low, high), params)
        out.append({k: steps[k] for k in keys})
    return out


# batches handed to forked workers by inheritance (no pickling of the inputs)
_FORK_BATCHES: dict[int, tuple] = {}


def _batch_range(args: tuple[int, int, int]) -> list[dict[str, Any]]:
    token, start, stop = args
    images, lows, highs, keys, params = _FORK_BATCHES[token]
    return _batch_chunk((images[start:stop], lows[start:stop], highs[start:stop], keys, params))


def _mp_context():
    """'fork' (fastest) unless TensorFlow is loaded in this process, whose threads make forking
    unsafe; then 'forkserver' (workers fork from a clean server that preloads this module) or
    'spawn'."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hrcam.postprocessing"])
        return ctx
    return multiprocessing.get_context("spawn")


def _batched(x: Any, n: int, name: str) -> Sequence:
    if isinstance(x, np.ndarray):
        if x.shape[0] != n:
            raise ValueError(f"{name} has {x.shape[0]} items, images has {n}")
        return x
    x = list(x)
    if len(x) != n:
        raise ValueError(f"{name} has {len(x)} items, images has {n}")
    return x


def pipeline_batch(
    images: Any,
    lows: Any,
    highs: Any,
    keys: Iterable[str] | str | None = ("merged",),
    workers: int | None = 1,
    chunksize: int | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run `pipeline` over a batch; return only the requested `keys`.

    :param images: (N, H, W, C) array or a sequence of images.
    :param lows: (N, h, w) array or a sequence of low-res CAMs.
    :param highs: (N, H, W) array or a sequence of high-res CAMs.
    :param keys: which `pipeline` outputs to return (default: only 'merged'); None for all.
    :param workers: worker processes; 1 runs in this process, None or 0 uses every available CPU.
    :param chunksize: images per task sent to a worker (default: about 4 tasks per worker).
    :param params: the `pipeline` keywords (validated once, up front).
    :return: dict key -> results in batch order: array keys are stacked into one array
             ((N, H, W) maps, (N, H, W, C) 'result'; a list of arrays when the images differ
             in size), 'bounds' is an (N, 2) array and 'focal_points' a list of N lists.
             Identical to calling `pipeline` per image.
    """
    keys = _check_keys(keys)
    full = validate_pipeline_params(**params)
    n = len(images)
    lows = _batched(lows, n, "lows")
    highs = _batched(highs, n, "highs")
    if workers is None or workers == 0:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            workers = os.cpu_count() or 1
    if not isinstance(workers, numbers.Integral) or workers < 0:
        raise ValueError(
            f"workers must be a positive integer (or 0/None for all CPUs); got {workers!r}")
    workers = max(1, min(int(workers), n)) if n else 1

    if workers == 1:
        rows = _batch_chunk((images, lows, highs, keys, full))
    else:
        if chunksize is None:
            chunksize = max(1, math.ceil(n / (workers * 4)))
        if not isinstance(chunksize, numbers.Integral) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer; got {chunksize!r}")
        ctx = _mp_context()
        rows = []
        if ctx.get_start_method() == "fork":
            # forked workers inherit the batch: only index ranges and results cross the pipe
            token = id(images) ^ os.getpid() ^ len(_FORK_BATCHES)
            _FORK_BATCHES[token] = (images, lows, highs, keys, full)
            try:
                tasks = [(token, i, min(i + chunksize, n)) for i in range(0, n, chunksize)]
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    for part in pool.map(_batch_range, tasks):
                        rows.extend(part)
            finally:
                _FORK_BATCHES.pop(token, None)
        else:
            tasks = [
                (images[i:i + chunksize], lows[i:i + chunksize], highs[i:i + chunksize], keys,
                 full)
                for i in range(0, n, chunksize)
            ]
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for part in pool.map(_batch_chunk, tasks):
                    rows.extend(part)

    out: dict[str, Any] = {}
    for k in keys:
        values = [r[k] for r in rows]
        if k == "focal_points":
            out[k] = values
        elif k == "bounds":
            out[k] = np.asarray(values, dtype=np.float64).reshape(len(values), 2)
        elif not values:
            out[k] = np.empty((0,))
        elif all(np.shape(v) == np.shape(values[0]) for v in values):
            out[k] = np.stack(values)
        else:  # images of different sizes: a list of arrays
            out[k] = values
    return out
