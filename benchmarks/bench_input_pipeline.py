"""Benchmark: is the tf.data input pipeline the bottleneck of training?

Usage::

    python benchmarks/bench_input_pipeline.py [--size 224] [--classes 6] [--per-class 64]
        [--batch-size 16] [--arch paper] [--batches 40] [--data DIR] [--cache] [--json OUT]

Generates (or reads, with ``--data``) a dataset in hrcam's layout, then measures

* pipeline images/s: iterating ``hrcam.train.training_dataset`` (file read, JPEG
  decode, the epoch's seeded order, batching and the paper's augmentation with probability 0.5, prefetch) with no
  model attached, plus the same without augmentation;
* training-step images/s: ``model.train_on_batch`` of the half model (compiled as
  ``hrcam train half`` compiles it) on one batch held in memory, so no input work at all;

and prints their ratio. A ratio above 1 means the pipeline delivers images faster than the
model consumes them (tf.data prefetches in parallel with the step, so it is hidden). On a CPU
machine both compete for the same cores, so the ratio understates what a GPU run sees.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=224, help="image side (default: 224)")
    p.add_argument("--classes", type=int, default=6, help="generated classes (default: 6)")
    p.add_argument("--per-class", type=int, default=64, help="generated images per class")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--arch", default="paper", help="architecture preset (default: paper)")
    p.add_argument("--optimizer", default="adadelta")
    p.add_argument("--batches", type=int, default=40, help="timed batches (default: 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (default: 5)")
    p.add_argument("--data", default=None, help="existing dataset (default: generate one)")
    p.add_argument("--cache", action="store_true", help="cache decoded images in memory")
    p.add_argument("--xla", action="store_true", help="jit_compile the train step")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p.parse_args(argv)


def time_pipeline(ds, batches: int, warmup: int) -> float:
    """Images per second over ``batches`` batches of a repeating dataset."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    n = 0
    t0 = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def time_train_steps(model, x, y, batches: int, warmup: int) -> float:
    for _ in range(warmup):
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(x, y)
    return batches * int(x.shape[0]) / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import tensorflow as tf

    from hrcam import models
    from hrcam import train as T

    tmp = None
    data = args.data
    if data is None:
        from hrcam.data import generate_synthetic

        tmp = tempfile.TemporaryDirectory(prefix="hrcam_bench_")
        data = tmp.name
        t0 = time.perf_counter()
        generate_synthetic(data, classes=args.classes, per_class=args.per_class,
                           im_size=args.size, seed=0)
        print(f"generated {args.classes * args.per_class} images of {args.size} px in "
              f"{time.perf_counter() - t0:.1f} s")
    n_images = T.dataset_size(data, "train")
    print(f"dataset: {data} ({n_images} training images), batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs, GPUs: {len(tf.config.list_physical_devices('GPU'))}")

    epochs = -(-(args.batches + args.warmup) * args.batch_size // max(n_images, 1)) + 1
    common = dict(im_size=args.size, batch_size=args.batch_size, cache=args.cache,
                  epochs=epochs)
    pipe_aug = time_pipeline(T.training_dataset(data, "train", augment=T.AugmentConfig(),
                                                **common)[0], args.batches, args.warmup)
    pipe_plain = time_pipeline(T.training_dataset(data, "train", augment=None, **common)[0],
                               args.batches, args.warmup)

    config = T.TrainConfig(batch_size=args.batch_size, im_size=args.size, arch=args.arch,
                           optimizer=args.optimizer,
                           learning_rate=1.0 if args.optimizer == "adadelta" else 1e-3,
                           xla=args.xla)
    x, y = next(iter(T.training_dataset(data, "train", augment=None, **common)[0]))
    num_classes = int(y.shape[-1])
    model = models.build_half_model(num_classes, (args.size, args.size, 3), args.arch)
    model.compile(optimizer=T.make_optimizer(config), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=args.xla)
    steps = max(5, args.batches // 4)
    train_rate = time_train_steps(model, x, y, steps, max(2, args.warmup // 2))

    result = {
        "size": args.size, "batch_size": args.batch_size, "arch": args.arch,
        "cache": args.cache, "xla": args.xla, "cpus": os.cpu_count(),
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "pipeline_images_per_s": round(pipe_aug, 1),
        "pipeline_no_augment_images_per_s": round(pipe_plain, 1),
        "train_step_images_per_s": round(train_rate, 1),
        "ratio_pipeline_over_train": round(pipe_aug / train_rate, 2),
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    verdict = ("the input pipeline is NOT the bottleneck" if pipe_aug > train_rate
               else "the input pipeline IS the bottleneck (try --cache, more CPUs)")
    print(verdict)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
