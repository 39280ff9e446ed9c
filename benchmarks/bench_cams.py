"""Benchmark: CAM-generation throughput next to the plain forward pass of the same model.

    python benchmarks/bench_cams.py --image-size 224 --batch-size 16 --arch small
    python benchmarks/bench_cams.py --image-size 128x192 --model half --repeats 20

Measures, on the same random uint8 batch (0-255):

* forward (predict_on_batch): ``model.predict_on_batch(x)`` of the Keras model (full model:
  predictions + reconstruction);
* forward (compiled call): ``tf.function(model)(x)`` — the forward pass with the least overhead;
* generate_cams: ``FullModel.generate_cams(x)`` (predictions, low- and high-res CAMs of the
  predicted classes, numpy arrays) or ``HalfModel.generate_cams(x)``.

Each is warmed up (tracing) then timed over ``--repeats`` batches; the median batch time is
reported as images/s, with the time of the CAM arithmetic alone (numpy dot products of the
features with the class column of the Dense kernel). The goal is a CAM overhead of at most 25% over the forward pass
(ratio <= 1.25 against the compiled call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"image size must be N or HxW, got {text!r}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=_size, default=(224, 224),
                        help="N or HxW, divisible by 16 (default 224)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arch", default="small", help="arch preset: paper, small, tiny")
    parser.add_argument("--model", choices=("full", "half"), default="full")
    parser.add_argument("--num-classes", type=int, default=398)
    parser.add_argument("--weights", default=None,
                        help="a .keras / .weights.h5 file (default: random initialisation)")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per method")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-op threads (0: TensorFlow's default)")
    return parser.parse_args(argv)


def _time_interleaved(methods, x, warmup: int, repeats: int) -> list[float]:
    """Median seconds per batch of each method; the methods run round-robin so that load from
    other processes affects all of them alike."""
    for _ in range(warmup):
        for fn in methods:
            fn(x)
    times = [[] for _ in methods]
    for _ in range(repeats):
        for i, fn in enumerate(methods):
            start = time.perf_counter()
            fn(x)
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from hrcam.cams import FullModel, HalfModel

    wrapper_cls = FullModel if args.model == "full" else HalfModel
    h, w = args.image_size
    wrapper = wrapper_cls(args.weights, num_classes=args.num_classes, im_size=(h, w),
                          arch=args.arch, batch_size=args.batch_size)
    model = wrapper.model
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch_size, h, w, 3), dtype=np.uint8)

    compiled = tf.function(lambda t: model(t, training=False), autograph=False)

    def forward_compiled(batch):
        out = compiled(tf.constant(batch.astype(np.float32)))
        return [o.numpy() for o in tf.nest.flatten(out)]

    names = ["forward (predict_on_batch)", "forward (compiled call)",
             f"{wrapper_cls.__name__}.generate_cams"]
    seconds = _time_interleaved(
        [lambda b: model.predict_on_batch(b.astype(np.float32)), forward_compiled,
         wrapper.generate_cams],
        x, args.warmup, args.repeats,
    )
    results = list(zip(names, seconds))
    print(f"model={args.model} arch={args.arch} params={model.count_params():,} "
          f"image={h}x{w} batch={args.batch_size} classes={args.num_classes} "
          f"repeats={args.repeats} tf={tf.__version__} "
          f"device={'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}")
    print(f"{'method':38s} {'batch ms':>10s} {'images/s':>10s}")
    for name, seconds in results:
        print(f"{name:38s} {seconds * 1e3:10.1f} {args.batch_size / seconds:10.1f}")
    # every method of the registry from the same single engine call (gradients included)
    from hrcam.cams import CamEngine, method_names

    engine = CamEngine(model, [m for m in method_names()
                               if args.model == "full" or m not in ("high_res", "refined")],
                       batch_size=args.batch_size)
    every = _time_interleaved([engine], x, args.warmup, args.repeats)[0]
    print(f"{'CamEngine, every model-side method':38s} {every * 1e3:10.1f} "
          f"{args.batch_size / every:10.1f}")
    cams_t = results[2][1]
    print(f"CAM cost / forward (compiled call):     {cams_t / results[1][1]:.3f}  "
          f"(goal <= 1.25)")
    print(f"CAM cost / forward (predict_on_batch):  {cams_t / results[0][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
