"""The whole refined-CAM pipeline, for one image (`pipeline`) and for batches spread over worker
processes (`pipeline_batch`)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from hrcam.maps import is_blank, normalize, resize_pil
from hrcam.postprocessing.steps import (
    blur,
    edge_bounds,
    fill_segment,
    filter_threshold,
    find_focal_points,
    keep_percentage,
    merge,
    pipeline_constants,
    region_growing,
    region_of_interest,
    sobel_edges,
)
from hrcam.postprocessing.validation import (
    PIPELINE_KEYS,
    check_inputs,
    validate_pipeline_params,
)
from hrcam.utils import worker_context

__all__ = ["pipeline", "pipeline_batch"]


def _run(image: np.ndarray, low: np.ndarray, high: np.ndarray, p: Mapping[str, Any]) -> dict:
    size = image.shape[:2]
    high_blank = is_blank(high)
    constants = pipeline_constants(size, p["constants"])

    # 1-2: high-res processing
    if high_blank:
        blurred = np.zeros(size, dtype=np.float64)
        edges = np.zeros(size, dtype=np.float64)
    else:
        blurred = blur(high, constants["blur_size"])
        edges = sobel_edges(blurred)

    # 3-5: low-res processing (resized as the seed did, then normalised)
    low_n = normalize(low)
    low_resized = normalize(resize_pil(low, size))
    roi = region_of_interest(low_resized, p["roi_percentile"])
    lower, upper = edge_bounds(edges, roi)

    # 6: focal points
    focal_points = find_focal_points(
        low, size, p["focal_scope"], p["maxima_areas"], low_resized=low_resized,
        num_points=constants["num_global_points"],
    )

    # 7-8: region growing and hole filling
    if high_blank:
        segmented = np.zeros(size, dtype=np.float64)
        full_segment = np.zeros(size, dtype=np.float64)
    else:
        segmented = region_growing(edges, focal_points, lower, upper)
        full_segment = fill_segment(segmented, edges, roi, upper, constants["max_hole_size"])

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
    constants: str = "paper",
) -> dict[str, Any]:
    """The whole postprocessing pipeline (steps 1-10), step by step.

    :param img: the image, (1, H, W, C), (H, W, C) or (H, W); it sets the output size.
    :param low: the low-res CAM, (h, w) or (1, h, w) (h, w = H/16, W/16 for the paper's models).
    :param high: the high-res CAM, (H, W) or (1, H, W).
    :param roi_percentile: pixels of the resized low-res CAM above this percentile form the ROI
                           (85: the top 15 %), in (0, 100).
    :param focal_scope: 'global' (the highest pixels of the resized low-res CAM, as many as
                        `constants` says) or 'local' (local maxima).
    :param maxima_areas: 'small' (skeletonised) or 'large' upsampled local maxima ('local' only).
    :param merge_type: 'blend' or 'multiply' ('merge' is accepted as the seed's word for it).
    :param merge_alpha: weight of the filled segment in 'blend', in [0, 1].
    :param filter_type: 'percentage' (keep the top filter_percentage %) or 'threshold'.
    :param filter_percentage: percent of pixels kept by 'percentage', in (0, 100].
    :param filter_threshold: normalised CAM value above which 'threshold' keeps pixels, in [0, 1].
    :param constants: 'paper' (a 5x5 blur, holes of up to 256 px filled, round(sqrt(side))
                      global focal points, at every size) or 'scaled' (the paper's values at
                      224 px, the same fractions of the image at other sizes); see
                      `pipeline_constants`.
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
        constants=constants,
    )
    image, low_arr, high_arr = check_inputs(img, low, high)
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
        steps = _run(*check_inputs(image, low, high), params)
        out.append({k: steps[k] for k in keys})
    return out


# batches handed to forked workers by inheritance (no pickling of the inputs)
_FORK_BATCHES: dict[int, tuple] = {}


def _batch_range(args: tuple[int, int, int]) -> list[dict[str, Any]]:
    token, start, stop = args
    images, lows, highs, keys, params = _FORK_BATCHES[token]
    return _batch_chunk((images[start:stop], lows[start:stop], highs[start:stop], keys, params))


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
        ctx = worker_context(["hrcam.postprocessing"], fork_when_safe=True)
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
