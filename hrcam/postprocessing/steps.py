"""The steps of the refined-CAM postprocessing (1-10), each a public function so that the
steps can be recombined: blur, Sobel edges, region of interest, edge bounds, focal points,
region growing (SimpleITK ConnectedThreshold), hole filling, merging and filtering."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from skimage import morphology

from hrcam.maps import (
    is_blank,
    normalize,
    order_statistics,
    percentiles,
    resize_nearest,
    resize_pil,
)
from hrcam.postprocessing.validation import (
    BLUR_SIZE,
    EDGE_PERCENTILES,
    GLOBAL_POINTS,
    MAX_HOLE_SIZE,
    PAPER_SIDE,
    PIPELINE_CHOICES,
    as_image,
    is_real,
)

__all__ = ["blur", "sobel_edges", "region_of_interest", "edge_bounds", "num_global_points",
           "pipeline_constants", "find_focal_points", "region_growing", "fill_segment", "merge",
           "filter_image", "keep_percentage", "filter_threshold"]


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
    return lr > percentiles(lr, (roi_percentile,))[0]


def edge_bounds(edges: Any, roi: Any) -> tuple[float, float]:
    """Step 5: (25th, 75th) percentile of `edges` inside the ROI (whole map if the ROI is empty)."""
    e = np.asarray(edges, dtype=np.float64)
    r = np.asarray(roi, dtype=bool)
    vals = e[r] if r.any() else e.ravel()
    lower, upper = percentiles(vals, EDGE_PERCENTILES)
    return lower, upper


def num_global_points(size: tuple[int, int]) -> int:
    """Number of global focal points: round(sqrt(side)), side = geometric mean of H and W."""
    H, W = int(size[0]), int(size[1])
    return max(1, min(H * W, int(round(math.sqrt(math.sqrt(H * W))))))


def _half_up(x: float) -> int:
    return math.floor(x + 0.5)


def pipeline_constants(size: tuple[int, int], constants: str = "paper") -> dict[str, int]:
    """The size-dependent constants of steps 1, 6 and 8 for an image of `size` = (H, W).

    Returns ``{"blur_size": ..., "max_hole_size": ..., "num_global_points": ...}``:

    * ``'paper'``: the paper's fixed values whatever the size: a 5 x 5 blur, holes of up to
      256 pixels filled, round(sqrt(side)) global focal points (`num_global_points`; 15 at 224);
    * ``'scaled'``: the paper's values at 224 x 224 and the same fractions of the image
      elsewhere: with s = side / 224 (side = sqrt(H * W)), the odd integer nearest 5 s
      (ties up, at least 3), round(256 s^2) pixels (at least 1) and max(1, round(15 s^2))
      points (rounding half up). 64 px: 3, 21, 1; 128 px: 3, 84, 5; 448 px: 11, 1024, 60.
    """
    if constants not in PIPELINE_CHOICES["constants"]:
        raise ValueError(f"constants must be one of 'paper', 'scaled'; got {constants!r}")
    H, W = int(size[0]), int(size[1])
    if H < 1 or W < 1:
        raise ValueError(f"size must be (H, W) with H, W >= 1; got {tuple(size)!r}")
    if constants == "paper":
        return {"blur_size": BLUR_SIZE, "max_hole_size": MAX_HOLE_SIZE,
                "num_global_points": num_global_points((H, W))}
    area = H * W / PAPER_SIDE ** 2  # s^2
    return {
        "blur_size": max(3, 2 * math.floor(BLUR_SIZE * math.sqrt(area) / 2) + 1),
        "max_hole_size": max(1, _half_up(MAX_HOLE_SIZE * area)),
        "num_global_points": max(1, min(H * W, _half_up(GLOBAL_POINTS * area))),
    }


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
    if not is_real(alpha) or not 0 <= alpha <= 1:
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
    image = as_image(img)
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
    if not is_real(percentage) or not 0 < percentage <= 100:
        raise ValueError(f"filter_percentage must be a number in (0, 100]; got {percentage!r}")
    c = np.asarray(cam, dtype=np.float64)
    flat = c.ravel()
    position = min(int((1.0 - percentage / 100.0) * flat.size), flat.size - 1)
    threshold = order_statistics(flat, (position,))[0]
    return filter_image(img, c > threshold)


def filter_threshold(img: Any, cam: Any, threshold: float = 0.6) -> np.ndarray:
    """Step 10 ('threshold'): keep the image pixels whose normalised CAM value exceeds
    `threshold` (a blank CAM keeps nothing)."""
    if not is_real(threshold) or not 0 <= threshold <= 1:
        raise ValueError(f"filter_threshold must be a number in [0, 1]; got {threshold!r}")
    return filter_image(img, normalize(cam) > threshold)

