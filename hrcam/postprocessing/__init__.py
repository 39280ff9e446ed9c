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

Constants that depend on the image size
---------------------------------------
Three steps use constants the paper tuned for its 224 x 224 images: the box filter of step 1
(5 x 5), the number of global focal points of step 6 (round(sqrt(side)), 15 at 224; side =
sqrt(H * W)) and the largest hole filled in step 8 (256 pixels). `pipeline_constants(size,
constants)` is the one rule for them, chosen by the pipeline parameter `constants`:

* ``'paper'`` (default): these values at every size, the seed's behaviour bit for bit;
* ``'scaled'``: the same fractions of the image as at 224 px. With s = side / 224: blur size =
  the odd integer nearest 5 s (at least 3), hole size = round(256 s^2) (at least 1), global
  focal points = max(1, round(15 s^2)); e.g. 64 px: 3, 21, 1; 128 px: 3, 84, 5.

Layout: `validation` (parameters, defaults, input checks), `steps` (the ten steps),
`pipeline` (one image, batches); the map helpers are in `hrcam.maps`. No TensorFlow here:
NumPy, SciPy, scikit-image and SimpleITK only.
"""

from hrcam.maps import is_blank, normalize, resize_bilinear, resize_nearest, resize_pil
from hrcam.postprocessing.pipeline import pipeline, pipeline_batch
from hrcam.postprocessing.steps import (
                                        blur,
                                        edge_bounds,
                                        fill_segment,
                                        filter_image,
                                        filter_threshold,
                                        find_focal_points,
                                        keep_percentage,
                                        merge,
                                        num_global_points,
                                        pipeline_constants,
                                        region_growing,
                                        region_of_interest,
                                        sobel_edges,
)
from hrcam.postprocessing.validation import (
                                        PIPELINE_CHOICES,
                                        PIPELINE_DEFAULTS,
                                        PIPELINE_KEYS,
                                        validate_pipeline_params,
)

__all__ = [
    "PIPELINE_DEFAULTS", "PIPELINE_CHOICES", "PIPELINE_KEYS", "validate_pipeline_params",
    "pipeline", "pipeline_batch", "normalize", "is_blank", "blur", "sobel_edges",
    "resize_bilinear", "resize_pil", "resize_nearest", "region_of_interest", "edge_bounds",
    "num_global_points", "pipeline_constants", "find_focal_points", "region_growing",
    "fill_segment", "merge", "keep_percentage", "filter_threshold", "filter_image",
]
