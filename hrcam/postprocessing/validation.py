"""Parameters and inputs of the refined-CAM postprocessing: the seed's `pipeline` keywords and
their defaults (the user-facing contract), the pipeline's constants, and the checks of
parameter values and of image / map shapes (each error names the parameter and what is
allowed)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["PIPELINE_DEFAULTS", "PIPELINE_CHOICES", "PIPELINE_KEYS", "BLUR_SIZE",
           "MAX_HOLE_SIZE", "GLOBAL_POINTS", "PAPER_SIDE", "EDGE_PERCENTILES", "is_real",
           "validate_pipeline_params", "as_image", "as_map", "check_inputs"]

#: The seed's `pipeline` keywords and their defaults (the user-facing contract), plus
#: `constants` (how the fixed constants below follow the image size: `pipeline_constants`).
PIPELINE_DEFAULTS: dict[str, Any] = {
    "roi_percentile": 85,
    "focal_scope": "global",
    "maxima_areas": "small",
    "merge_type": "blend",
    "merge_alpha": 0.5,
    "filter_type": "percentage",
    "filter_percentage": 15,
    "filter_threshold": 0.6,
    "constants": "paper",
}

#: Allowed values of the choice parameters. 'merge' is the seed README's word for 'multiply'.
PIPELINE_CHOICES: dict[str, tuple[str, ...]] = {
    "focal_scope": ("global", "local"),
    "maxima_areas": ("small", "large"),
    "merge_type": ("blend", "multiply", "merge"),
    "filter_type": ("percentage", "threshold"),
    "constants": ("paper", "scaled"),
}

#: The keys of the dict returned by `pipeline`, in the seed's order.
PIPELINE_KEYS: tuple[str, ...] = (
    "blurred", "low", "low_resized", "edges", "roi", "bounds", "focal_points", "segmented",
    "full_segment", "merged", "result",
)

BLUR_SIZE = 5          # step 1: 5x5 box filter
MAX_HOLE_SIZE = 256    # step 8: holes of up to 256 pixels are filled
GLOBAL_POINTS = 15     # step 6: global focal points at the paper's 224 x 224
PAPER_SIDE = 224       # the paper's image side, where 'scaled' constants equal the paper's
EDGE_PERCENTILES = (25.0, 75.0)  # step 5: bounds of the region growing

def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_pipeline_params(**params: Any) -> dict[str, Any]:
    """Check postprocessing parameters; return the full parameter set (defaults filled in).

    Raises `ValueError` naming the parameter and its allowed values for an unknown parameter
    name, an unknown choice (`focal_scope`, `maxima_areas`, `merge_type`, `filter_type`,
    `constants`), `roi_percentile` outside (0, 100), `merge_alpha` or `filter_threshold`
    outside [0, 1] and `filter_percentage` outside (0, 100].
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
    if not is_real(p) or not 0 < p < 100:
        raise ValueError(
            f"roi_percentile must be a number in the open interval (0, 100); got {p!r}")
    for name in ("merge_alpha", "filter_threshold"):
        v = full[name]
        if not is_real(v) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1]; got {v!r}")
    v = full["filter_percentage"]
    if not is_real(v) or not 0 < v <= 100:
        raise ValueError(f"filter_percentage must be a number in (0, 100]; got {v!r}")
    return full


def as_image(img: Any) -> np.ndarray:
    """(1, H, W, C) | (H, W, C) | (H, W) -> (H, W[, C]) array (no copy when possible)."""
    arr = np.asarray(img)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"img must have shape (1, H, W, C), (H, W, C) or (H, W); got {np.shape(img)}"
        )
    return arr


def as_map(cam: Any, name: str) -> np.ndarray:
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


def check_inputs(img: Any, low: Any, high: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = as_image(img)
    low_arr = as_map(low, "low")
    high_arr = as_map(high, "high")
    size = image.shape[:2]
    if high_arr.shape != size:
        raise ValueError(
            f"high has shape {high_arr.shape}, which does not fit the image size {size}: "
            f"it must be (H, W) = {size}"
        )
    _check_low_fits(low_arr.shape, size)
    return image, low_arr, high_arr


