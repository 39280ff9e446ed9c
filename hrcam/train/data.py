"""The training input pipeline (tf.data): images decoded by `hrcam.images` (the same pixels as
evaluation and the API), shuffled, augmented on whole batches, with one-hot labels or the
reconstruction targets.

Reproducible by construction: the stream of a training run is a function of (seed, epoch) only.
Epoch e's order is a permutation drawn from a seed derived from (seed, e) -- or, with a cache,
the cached stream shuffled with that seed --, and batch b of epoch e is augmented with the
stateless seed (seed, e, b). So the same seed gives the same batches in any process, and a run
resumed at epoch k sees exactly the batches an uninterrupted run sees from epoch k on.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from hrcam.train.augment import AugmentConfig, augment_batch

__all__ = ["TARGETS", "list_split", "split_exists", "make_dataset", "training_dataset",
           "steps_per_epoch", "dataset_size"]

PREDICTIONS_OUTPUT = "predictions"  # hrcam.models.PREDICTIONS_LAYER
RECONSTRUCTION_OUTPUT = "main_output"  # hrcam.models.RECONSTRUCTION_LAYER
TARGETS = ("class", "image", "reconstruction", "index")
_EPOCH_STRIDE = 1_000_003  # batches per epoch never reach it: (e, b) -> one stateless seed


def list_split(data_dir: str | os.PathLike, split: str) -> tuple[list[str], list[int], list[str]]:
    """Image paths, class indices and the sorted class ids of ``data_dir/split``
    (`hrcam.data.list_images`: class index = position in the sorted class ids)."""
    from hrcam import data

    paths, labels, class_ids = data.list_images(data_dir, split)
    return [str(p) for p in paths], [int(i) for i in labels], [str(c) for c in class_ids]


def split_exists(data_dir: str | os.PathLike, split: str | None) -> bool:
    """Whether ``data_dir/split`` is a folder holding class folders."""
    if not split:
        return False
    path = Path(data_dir) / split
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def dataset_size(data_dir: str | os.PathLike, split: str) -> int:
    """Number of images in ``data_dir/split``."""
    return len(list_split(data_dir, split)[0])


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    """Batches of one epoch (the last one may be smaller)."""
    return max(1, math.ceil(num_images / batch_size))


def _targets(images: Any, labels: Any, target: str, num_classes: int) -> Any:
    import tensorflow as tf

    if target == "class":
        return tf.one_hot(labels, num_classes, dtype=tf.float32)
    if target == "image":
        return images / 255.0
    if target == "reconstruction":
        return {PREDICTIONS_OUTPUT: tf.one_hot(labels, num_classes, dtype=tf.float32),
                RECONSTRUCTION_OUTPUT: images / 255.0}
    return labels


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def _epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch op seed (Python int) derived from the run's seed."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _load(im_size: int) -> Any:
    from hrcam.images import read_and_resize

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        return read_and_resize(path, im_size), label

    return load


def make_dataset(data_dir: str | os.PathLike, split: str = "test", *, im_size: int = 224,
                 batch_size: int = 16, target: str = "class", cache: bool | str = False,
                 limit: int | None = None) -> Any:
    """A batched, fixed-order ``tf.data.Dataset`` of ``(images, targets)`` for validation and
    checks: float32 RGB images in [0, 255] ``[B, im_size, im_size, 3]`` (the models rescale
    internally) and ``target`` = ``'class'`` (one-hot labels), ``'image'`` (``images / 255``),
    ``'reconstruction'`` (the full model's targets ``{"predictions": one-hot, "main_output":
    images / 255}``) or ``'index'`` (the class index). ``limit``: the first N files."""
    import tensorflow as tf

    _check_target(target)
    paths, labels, class_ids = list_split(data_dir, split)
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise ValueError(f"no images found in {Path(data_dir) / split}")
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string),
                                             tf.constant(labels, tf.int32)))
    ds = ds.map(_load(im_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))

    def finish(images: Any, label: Any) -> tuple[Any, Any]:
        images = tf.cast(images, tf.float32)
        return images, _targets(images, label, target, len(class_ids))

    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def training_dataset(data_dir: str | os.PathLike, split: str = "train", *, im_size: int = 224,
                     batch_size: int = 16, seed: int = 0, first_epoch: int = 0,
                     epochs: int = 1, augment: AugmentConfig | None = AugmentConfig(),
                     balanced: bool = False, cache: bool | str = False,
                     shuffle_buffer: int | None = None, target: str = "class",
                     steps: int | None = None) -> tuple[Any, int]:
    """The training stream of epochs ``first_epoch .. epochs - 1`` and its steps per epoch.

    Every epoch has ``steps`` batches (default: one pass over the split, the last batch
    smaller); epoch e visits the files in an order drawn from (seed, e): a permutation, or with
    ``balanced`` N class-balanced draws with replacement (a class uniformly, then a file of it
    uniformly), so small classes are oversampled. With ``cache`` (True: memory, or a file
    prefix) the decoded images are cached once in a seeded order and each epoch reshuffles
    them through a buffer (``shuffle_buffer``, default the whole split in memory, 4096 for a
    file cache). Batch b of epoch e is augmented with the stateless seed (seed, e, b)
    (``augment`` None: no augmentation). Deterministic: the same arguments give the same
    batches; a stream started at ``first_epoch`` k equals the tail of one started at 0.
    """
    import tensorflow as tf

    _check_target(target)
    paths, labels, class_ids = list_split(data_dir, split)
    if not paths:
        raise ValueError(f"no images found in {Path(data_dir) / split}")
    n, num_classes = len(paths), len(class_ids)
    batches = steps or steps_per_epoch(n, batch_size)
    per_epoch = batches * batch_size if steps else n
    if augment is not None and augment.is_identity:
        augment = None
    seed = int(seed)
    paths_t = tf.constant(paths, tf.string)
    labels_t = tf.constant(labels, tf.int32)
    load = _load(im_size)

    if cache and not balanced:
        order = np.random.default_rng(seed).permutation(n)  # the cache keeps its first order
        cached = tf.data.Dataset.from_tensor_slices((tf.gather(paths_t, order),
                                                     tf.gather(labels_t, order)))
        cached = cached.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        cached = cached.cache("" if cache is True else str(cache))
        buffer = shuffle_buffer or (n if cache is True else min(n, 4096))

        def epoch_images(epoch: int) -> Any:
            ds = cached.shuffle(buffer, seed=_epoch_seed(seed, epoch),
                                reshuffle_each_iteration=False)
            return ds.repeat().take(per_epoch) if steps else ds
    else:
        class_index = np.argsort(np.asarray(labels), kind="stable")
        counts = np.bincount(np.asarray(labels), minlength=num_classes)
        present = np.flatnonzero(counts)
        starts = tf.constant(np.concatenate([[0], np.cumsum(counts)[:-1]])[present], tf.int64)
        sizes = tf.constant(counts[present], tf.int64)
        by_class = tf.constant(class_index, tf.int64)

        def epoch_order(epoch: int) -> Any:
            key = tf.constant([seed, epoch], tf.int64)
            if balanced:
                cls = tf.random.stateless_uniform([per_epoch], key, 0, len(present), tf.int64)
                u = tf.random.stateless_uniform([per_epoch], key + [0, 1], dtype=tf.float64)
                pick = tf.cast(tf.floor(u * tf.cast(tf.gather(sizes, cls), tf.float64)),
                               tf.int64)
                return tf.gather(by_class, tf.gather(starts, cls) + pick)
            rounds = math.ceil(per_epoch / n)
            perms = [tf.argsort(tf.random.stateless_uniform([n], key + [0, r]))
                     for r in range(rounds)]
            return tf.cast(tf.concat(perms, 0)[:per_epoch], tf.int64)

        def epoch_images(epoch: int) -> Any:
            order = epoch_order(epoch)
            ds = tf.data.Dataset.from_tensor_slices((tf.gather(paths_t, order),
                                                     tf.gather(labels_t, order)))
            return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def finish(epoch: Any, batch: Any, images: Any, label: Any) -> tuple[Any, Any]:
        if augment is not None:  # on uint8, as imgaug did
            images = augment_batch(images, augment,
                                   seed=tf.stack([tf.constant(seed, tf.int64),
                                                  epoch * _EPOCH_STRIDE + batch]))
        images = tf.cast(images, tf.float32)
        return images, _targets(images, label, target, num_classes)

    def epoch_batches(epoch: int) -> Any:
        ds = epoch_images(epoch).batch(batch_size)
        return ds.enumerate().map(lambda b, item: (tf.constant(epoch, tf.int64), b, *item))

    # one dataset per epoch, built with Python-int seeds, concatenated: the stream of epoch e
    # depends on (seed, e) only
    if int(first_epoch) >= int(epochs):
        raise ValueError(f"no epoch to train: first_epoch {first_epoch} >= epochs {epochs}")
    stream = epoch_batches(int(first_epoch))
    for epoch in range(int(first_epoch) + 1, int(epochs)):
        stream = stream.concatenate(epoch_batches(epoch))
    stream = stream.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return stream.prefetch(tf.data.AUTOTUNE).with_options(options), batches
