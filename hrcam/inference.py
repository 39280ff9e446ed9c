"""The inference layer shared by evaluation and CAM rendering: which images (a split of a prepared
dataset), which model (loaded, of the right kind, with the dataset's class count), the batched
input pipeline (images decoded by `hrcam.images`, in a fixed order, unreadable files skipped)
and the pool of CPU worker processes that scores or draws a batch while the next one goes
through the network.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.utils import worker_context

#: Modules the worker processes of evaluation and rendering import once (NumPy only).
WORKER_MODULES = ("hrcam.postprocessing", "hrcam.evaluate.metrics", "hrcam.cams.methods")

__all__ = ["ImageSet", "image_set", "positive_int", "load_for_images",
           "model_input_size", "image_batches", "WorkerPool", "chunks"]


@dataclass(frozen=True)
class ImageSet:
    """The images of one split of a prepared dataset, in listing order (sorted class, file)."""

    data_dir: Path
    split: str
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def relpaths(self) -> list[str]:
        """Image paths relative to the dataset folder (``<split>/<class>/<file>``)."""
        return [Path(os.path.relpath(p, self.data_dir)).as_posix() for p in self.paths]

    def subset(self, indices: Sequence[int]) -> ImageSet:
        """The images at ``indices``, in that order."""
        return ImageSet(self.data_dir, self.split, tuple(self.paths[i] for i in indices),
                        tuple(self.labels[i] for i in indices), self.class_ids, self.class_names)


def image_set(data_dir: str | os.PathLike, split: str) -> ImageSet:
    """Every image of ``data_dir/split`` with its class index and the dataset's class names."""
    from hrcam import data

    paths, labels, class_ids = data.list_images(data_dir, split)
    names = dict(data.read_classes(data_dir))
    return ImageSet(Path(data_dir), split, tuple(paths), tuple(labels), tuple(class_ids),
                    tuple(names.get(c, c) for c in class_ids))


def positive_int(value: Any, what: str) -> int:
    """``value`` as an int >= 1 (a batch size, a limit, a worker count), else a ValueError
    naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    return int(value)


def load_for_images(model_path: str | os.PathLike, images: ImageSet, kind: str | None = None,
                    what: str = "--model") -> Any:
    """Load a saved model (`hrcam.model_files.load_model`), check its kind and that it predicts
    as many classes as the dataset has (class index = sorted class ids)."""
    from hrcam import models
    from hrcam.model_files import load_model

    model = load_model(model_path, kind=kind, what=f"{what} {model_path}")
    num = int(model.get_layer(models.PREDICTIONS_LAYER).units)
    if num != len(images.class_ids):
        raise ValueError(f"{what} {model_path} predicts {num} classes but "
                         f"{images.data_dir} has {len(images.class_ids)} "
                         "(class index = sorted class ids)")
    return model


def model_input_size(model: Any) -> tuple[int, int] | None:
    """The (H, W) a model was built for, or None when it accepts any size."""
    shape = tuple(model.inputs[0].shape[1:3])
    if shape[0] is None or shape[1] is None:
        return None
    return int(shape[0]), int(shape[1])


def image_batches(images: ImageSet, size: tuple[int, int] | None, batch_size: int) -> Any:
    """A deterministic batched tf.data pipeline of ``(images, labels, indices, original_hw)``:
    uint8 RGB images decoded and resized by `hrcam.images` (as in training), in the set's order;
    ``indices`` are positions in ``images``, ``original_hw`` the decoded size before resizing.
    An unreadable file is skipped (its index is missing), never fatal."""
    import tensorflow as tf

    from hrcam.images import decode, resize

    batch_size = positive_int(batch_size, "batch_size")

    def load(path: Any, label: Any, index: Any) -> tuple[Any, Any, Any, Any]:
        image = decode(tf.io.read_file(path))
        return resize(image, size), label, index, tf.shape(image)[:2]

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(images.paths), tf.string),
                                             tf.constant(list(images.labels), tf.int32),
                                             tf.range(len(images), dtype=tf.int32)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(2).with_options(options)


def chunks(n: int, workers: int) -> list[slice]:
    """``n`` items cut into ``workers`` contiguous slices of near-equal size (fewer if n is
    small)."""
    size = max(1, math.ceil(n / max(1, workers)))
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


class WorkerPool:
    """CPU work of a batch loop in ``workers`` processes (``workers == 1``: in this process),
    with backpressure: at most ``2 * workers`` tasks wait, and results are handed to
    ``on_result(context, result)`` in submission order. Use as a context manager; leaving it
    waits for every task (or cancels them on an error)."""

    def __init__(self, workers: int, on_result: Callable[[Any, Any], None]) -> None:
        self.workers = positive_int(workers, "workers")
        self.on_result = on_result
        self._pool = (ProcessPoolExecutor(self.workers, mp_context=worker_context(WORKER_MODULES))
                      if self.workers > 1 else None)
        self._pending: list[tuple[Any, Future]] = []

    def submit(self, fn: Callable[[Any], Any], task: Any, context: Any = None) -> None:
        """Run ``fn(task)``; its result reaches ``on_result(context, result)``."""
        if self._pool is None:
            self.on_result(context, fn(task))
            return
        self._pending.append((context, self._pool.submit(fn, task)))
        while self._pending and (len(self._pending) > 2 * self.workers
                                 or self._pending[0][1].done()):
            self._collect()

    def _collect(self) -> None:
        context, future = self._pending.pop(0)
        self.on_result(context, future.result())

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:
                while self._pending:
                    self._collect()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
