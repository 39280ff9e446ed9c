"""Localization evaluation throughput: where the time goes.

Prints, for one image size, the per-map cost of the two metrics (MaxBoxAccV2 connected
components over the threshold grid, PxAP histograms), the refined-CAM pipeline, and the batched
network pass of :class:`hrcam.evaluate.CamExtractor` (forward + gradients for Grad-CAM++ and
LayerCAM) on a random-weights model, then the implied images/s per CPU worker.

    python benchmarks/bench_localization.py --im-size 224 --arch paper --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--im-size", type=int, default=224)
    parser.add_argument("--arch", default="small", help="hrcam.models preset (default: small)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-model", action="store_true", help="skip the network timing")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from hrcam import evaluate as ev
    from hrcam.postprocessing import pipeline, resize_bilinear

    size = args.im_size
    rng = np.random.default_rng(0)
    low = rng.random((size // 16, size // 16))
    smooth = ev.normalize_map(resize_bilinear(low, (size, size)))
    noisy = ev.normalize_map(rng.random((size, size)))
    gt = np.array([[size * 0.2, size * 0.25, size * 0.7, size * 0.8]])
    mask = np.zeros((size, size), bool)
    mask[int(size * 0.25):int(size * 0.8), int(size * 0.2):int(size * 0.7)] = True
    thresholds = ev.threshold_grid()
    image = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)

    box_smooth = _timeit(lambda: ev.best_iou_per_threshold(smooth, gt, thresholds), args.repeat)
    box_noisy = _timeit(lambda: ev.best_iou_per_threshold(noisy, gt, thresholds), args.repeat)
    acc = ev.PxAPAccumulator(thresholds)
    pxap = _timeit(lambda: acc.accumulate(smooth, mask), args.repeat)
    refine = _timeit(lambda: pipeline(image, low, rng.random((size, size))), args.repeat)
    print(f"image size {size}x{size}, {len(thresholds)} CAM thresholds")
    print(f"  MaxBoxAccV2 per map (smooth CAM)   {box_smooth * 1e3:8.2f} ms")
    print(f"  MaxBoxAccV2 per map (pixel noise)  {box_noisy * 1e3:8.2f} ms")
    print(f"  PxAP histograms per map            {pxap * 1e3:8.2f} ms")
    print(f"  refined-CAM pipeline per image     {refine * 1e3:8.2f} ms")
    per_image = 6 * (box_smooth + pxap) + refine
    print(f"  CPU per image, 6 methods           {per_image * 1e3:8.2f} ms "
          f"(~{1 / per_image:.1f} images/s per worker)")

    if args.no_model:
        return
    from hrcam import models

    model = models.build_full_model(10, (size, size, 3), args.arch)
    extractor = ev.CamExtractor(model)
    x = rng.uniform(0, 255, (args.batch_size, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, args.batch_size)
    net = _timeit(lambda: extractor(x, y), args.repeat)
    print(f"  network (forward + gradients), batch {args.batch_size}, arch {args.arch}: "
          f"{net * 1e3:.1f} ms/batch = {args.batch_size / net:.1f} images/s")


if __name__ == "__main__":
    main()
