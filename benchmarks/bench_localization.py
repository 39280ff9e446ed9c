"""MaxBoxAccV2 box scoring speed: hrcam's one-pass kernel against wsolevaluation's cv2 code path.

Per map size and CAM threshold grid, prints ms per map on one core for

* ours: ``hrcam.evaluate.metrics.boxes.box_hits`` (convention "wsol");
* cv2: wsolevaluation's own algorithm (``compute_bboxes_from_scoremaps`` with every contour,
  ``calculate_multiple_iou``, ``BoxEvaluator.accumulate``) re-typed with OpenCV; it is the
  reference of the parity test in ``tests/evaluate/metrics/test_boxes.py`` and imported from there;
* old: hrcam's earlier scipy path (``hrcam.evaluate.best_iou_per_threshold``, one
  ``ndimage.label`` per threshold stack; skipped once that name points to the new kernel);

on the same maps (smoothed random fields and sums of Gaussian blobs, min-max normalised), with
the speedups and a check that ours equals the cv2 baseline on every map. The numba compile (or
cache load) time of the first call is reported separately. Needs the test extra (OpenCV).

    python benchmarks/bench_localization.py --maps 20 --sizes 64 224 --seed 0
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
INTERVALS = (0.01, 0.001)
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "evaluate" / "metrics" / "test_boxes.py"


def _load_reference():
    """The wsolevaluation re-typing of the parity test (one copy of the baseline)."""
    spec = importlib.util.spec_from_file_location("_wsol_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def realistic_maps(rng: np.random.Generator, n: int, size: int) -> list[np.ndarray]:
    """CAM-like maps: half Gaussian-smoothed noise (several blobs, some holes), half sums of
    1-4 Gaussian blobs; min-max normalised float32."""
    from scipy import ndimage

    yy, xx = np.mgrid[0:size, 0:size]
    maps = []
    for i in range(n):
        if i % 2:
            cam = ndimage.gaussian_filter(rng.random((size, size)), sigma=size / 14)
        else:
            cam = np.zeros((size, size))
            for _ in range(rng.integers(1, 5)):
                cy, cx = rng.uniform(0.1, 0.9, 2) * size
                sy, sx = rng.uniform(0.05, 0.3, 2) * size
                cam += rng.uniform(0.3, 1) * np.exp(-0.5 * (((yy - cy) / sy) ** 2
                                                            + ((xx - cx) / sx) ** 2))
        maps.append(((cam - cam.min()) / (cam.max() - cam.min())).astype(np.float32))
    return maps


def random_boxes(rng: np.random.Generator, size: int) -> np.ndarray:
    """1-2 inclusive integer boxes of at least a quarter of the side."""
    boxes = []
    for _ in range(rng.integers(1, 3)):
        w, h = rng.integers(size // 4, size, 2)
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        boxes.append([x0, y0, x0 + w - 1, y0 + h - 1])
    return np.array(boxes)


def _per_map(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(*item) for item in items]
    return (time.perf_counter() - t0) / len(items) * 1e3, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=20, help="maps per size (default 20)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224],
                        help="square map sizes in pixels (default: 64 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true",
                        help="compile from scratch (empty numba cache) to time the compile")
    args = parser.parse_args()
    if args.maps < 1 or any(s < 4 for s in args.sizes):
        parser.error("--maps must be >= 1 and every --sizes value >= 4")
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")

    import cv2

    cv2.setNumThreads(1)
    from hrcam.evaluate.metrics import boxes

    reference = _load_reference()
    try:
        from hrcam.evaluate import best_iou_per_threshold as old_best
    except ImportError:
        old_best = None
    if old_best is not None and old_best.__module__ == boxes.__name__:
        old_best = None  # hrcam.evaluate now exports the new kernel: nothing old to time

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    boxes.box_hits(realistic_maps(rng, 1, 16)[0], [[2, 2, 9, 9]], np.arange(0, 1, 0.01),
                   IOU_THRESHOLDS)
    first = time.perf_counter() - t0
    hits = sum(sum(d.stats.cache_hits.values()) for d in (boxes._sweep, boxes._order_u8))
    how = "loaded from the numba cache" if hits else "compiled"
    print(f"first call (numba kernels {how}): {first * 1e3:.0f} ms")
    print(f"cv2 {cv2.__version__}, one thread; ms per map over {args.maps} maps\n")
    print(f"{'size':>5} {'grid':>6} {'ours':>8} {'cv2':>8} {'old':>8} "
          f"{'cv2/ours':>9} {'old/ours':>9}  ours == cv2")

    def _ours(cam, gt, thresholds):
        return boxes.box_hits(cam, gt, thresholds, IOU_THRESHOLDS)

    def reference_hits(cam, gt, thresholds):
        return reference.wsol_accumulate(cam.astype(np.float64), gt, thresholds)[1]

    all_equal = True
    for size in args.sizes:
        maps = realistic_maps(rng, args.maps, size)
        gts = [random_boxes(rng, size) for _ in maps]
        grid = np.arange(0, 1, INTERVALS[0])  # warm-up: first touch of this size
        _ours(maps[0], gts[0], grid)
        reference_hits(maps[0], gts[0], grid)
        if old_best is not None:
            old_best(maps[0], gts[0] + [0, 0, 1, 1], grid)
        for interval in INTERVALS:
            thresholds = np.arange(0, 1, interval)
            items = [(cam, gt, thresholds) for cam, gt in zip(maps, gts)]
            ours_ms, ours = _per_map(_ours, items)
            cv2_ms, ref = _per_map(reference_hits, items)
            equal = all(np.array_equal(a, b) for a, b in zip(ours, ref))
            all_equal &= equal
            if old_best is not None:  # continuous exclusive boxes for the old path
                old_ms, _ = _per_map(old_best, [(c, g + [0, 0, 1, 1], t) for c, g, t in items])
                old_cols = f"{old_ms:8.2f}"
                old_ratio = f"{old_ms / ours_ms:8.1f}x"
            else:
                old_cols, old_ratio = f"{'n/a':>8}", f"{'n/a':>9}"
            print(f"{size:>5} {interval:>6} {ours_ms:8.2f} {cv2_ms:8.2f} {old_cols} "
                  f"{cv2_ms / ours_ms:8.1f}x {old_ratio}  {'yes' if equal else 'NO'}")
    if not all_equal:
        raise SystemExit("ours differs from the cv2 baseline")


if __name__ == "__main__":
    main()
