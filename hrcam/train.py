"""Training: the tf.data input pipeline with the paper's augmentation, half-model pretraining,
full-model training with a verified weight transfer.

The paper's original scripts used Keras' deprecated ``ImageDataGenerator`` and imgaug (which no
longer imports under NumPy 2). This module reproduces the same augmentation policy with
TensorFlow ops inside a ``tf.data`` pipeline (so it runs in parallel with training, on whole
batches), and makes both training stages resumable and their outputs explicit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "AugmentConfig", "affine_matrices", "apply_affine", "augment_batch", "augment_image",
    "list_split", "decode_image", "decode_image_uint8", "make_dataset", "dataset_size",
    "ReduceLRConfig", "TrainConfig", "load_config", "TransferCheckError", "class_records",
    "distribution_strategy", "make_optimizer", "train_half", "train_full", "check_images",
    "compare_weights", "verify_transfer", "check_transfer_files", "read_run_config",
    "tensorboard_available",
]

RECONSTRUCTION_OUTPUT = "main_output"  # hrcam.models.RECONSTRUCTION_LAYER
PREDICTIONS_OUTPUT = "predictions"  # hrcam.models.PREDICTIONS_LAYER
TARGETS = ("class", "image", "reconstruction", "index")


# ----------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's augmentation policy (originally imgaug), reproduced with TensorFlow ops.

    With probability ``affine_probability`` an affine transform (independent per-axis scale,
    per-axis translation as a fraction of the image side, rotation and shear in degrees, all
    about the image centre, constant ``fill_value`` outside the image, nearest or bilinear
    interpolation chosen at random per image); then, independently, a horizontal flip with
    probability ``flip_probability``. Both probabilities 0 make the augmentation the identity.
    """

    affine_probability: float = 0.5
    scale: tuple[float, float] = (0.9, 1.1)
    translate: tuple[float, float] = (-0.2, 0.2)
    rotate: tuple[float, float] = (-180.0, 180.0)
    shear: tuple[float, float] = (-5.0, 5.0)
    flip_probability: float = 0.5
    fill_value: float = 0.0
    interpolations: tuple[str, ...] = ("nearest", "bilinear")

    def __post_init__(self) -> None:
        for name in ("affine_probability", "flip_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        bad = set(self.interpolations) - {"nearest", "bilinear"}
        if bad or not self.interpolations:
            raise ValueError(f"interpolations must be a non-empty subset of "
                             f"('nearest', 'bilinear'), got {self.interpolations}")

    @classmethod
    def with_probability(cls, probability: float, **overrides: Any) -> AugmentConfig:
        """The paper's policy with both the affine and the flip probability set to ``probability``."""
        return cls(affine_probability=probability, flip_probability=probability, **overrides)


def _uniform(shape, bounds, seed=None):
    import tensorflow as tf

    low, high = float(bounds[0]), float(bounds[1])
    return tf.random.uniform(shape, low, high, dtype=tf.float32, seed=seed)


def affine_matrices(batch: Any, height: Any, width: Any, config: AugmentConfig = AugmentConfig(),
                    seed: int | None = None) -> Any:
    """Random forward affine matrices ``[batch, 3, 3]`` in pixel coordinates (x = column, y = row).

    The matrix maps an input pixel to its output position: scale, shear and rotation about the
    image centre, then a translation by a fraction of the image side (imgaug's ``Affine``
    parametrisation, as in skimage's ``AffineTransform``).
    """
    import tensorflow as tf

    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    sx = _uniform([batch], config.scale, seed)
    sy = _uniform([batch], config.scale, None if seed is None else seed + 1)
    tx = _uniform([batch], config.translate, None if seed is None else seed + 2) * width
    ty = _uniform([batch], config.translate, None if seed is None else seed + 3) * height
    rot = _uniform([batch], config.rotate, None if seed is None else seed + 4) * (math.pi / 180)
    shear = _uniform([batch], config.shear, None if seed is None else seed + 5) * (math.pi / 180)
    cx = (width - 1.0) / 2.0
    cy = (height - 1.0) / 2.0
    a00 = sx * tf.cos(rot)
    a01 = -sy * tf.sin(rot + shear)
    a10 = sx * tf.sin(rot)
    a11 = sy * tf.cos(rot + shear)
    # p_out = A (p_in - c) + c + t
    b0 = cx + tx - (a00 * cx + a01 * cy)
    b1 = cy + ty - (a10 * cx + a11 * cy)
    zeros = tf.zeros_like(sx)
    ones = tf.ones_like(sx)
    rows = [tf.stack([a00, a01, b0], -1), tf.stack([a10, a11, b1], -1),
            tf.stack([zeros, zeros, ones], -1)]
    return tf.stack(rows, axis=1)


def apply_affine(images: Any, matrices: Any, interpolation: str = "bilinear",
                 fill_value: float = 0.0) -> Any:
    """Warp a batch ``[B, H, W, C]`` with forward affine ``matrices [B, 3, 3]`` (output = M @ input)."""
    import tensorflow as tf

    inverse = tf.linalg.inv(matrices)  # the op maps output coordinates to input coordinates
    flat = tf.reshape(inverse, [-1, 9])[:, :8]
    flat = flat / inverse[:, 2:3, 2]
    shape = tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.cast(flat, tf.float32), output_shape=shape,
        fill_value=tf.constant(fill_value, tf.float32), interpolation=interpolation.upper(),
        fill_mode="CONSTANT")


def augment_batch(images: Any, config: AugmentConfig = AugmentConfig(),
                  seed: int | None = None) -> Any:
    """Apply the augmentation policy to a batch ``[B, H, W, C]`` (any float or integer dtype).

    Shapes and dtype are kept; values stay within the input's range (constant fill is 0, the
    interpolation is nearest or bilinear). Each image draws its own parameters.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if config.affine_probability == 0 and config.flip_probability == 0:
        return images
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    out = images
    if config.affine_probability > 0:
        matrices = affine_matrices(batch, height, width, config, seed)
        do_affine = tf.random.uniform(
            [batch], seed=None if seed is None else seed + 7) < config.affine_probability
        if len(config.interpolations) == 2:
            nearest = tf.random.uniform([batch], seed=None if seed is None else seed + 6) < 0.5
            groups = [(config.interpolations[0], tf.logical_and(do_affine, nearest)),
                      (config.interpolations[1], tf.logical_and(do_affine, ~nearest))]
        else:
            groups = [(config.interpolations[0], do_affine)]
        # warp only the images drawn for the affine, each with its own interpolation, and put
        # them back in place (about 4x less work than warping the whole batch twice)
        for interpolation, selected in groups:
            index = tf.where(selected)
            warped = apply_affine(tf.gather_nd(images, index), tf.gather_nd(matrices, index),
                                  interpolation, config.fill_value)
            out = tf.tensor_scatter_nd_update(out, index, warped)
    if config.flip_probability > 0:
        do_flip = tf.random.uniform(
            [batch], seed=None if seed is None else seed + 8) < config.flip_probability
        index = tf.where(do_flip)
        out = tf.tensor_scatter_nd_update(out, index,
                                          tf.reverse(tf.gather_nd(out, index), axis=[2]))
    return out


def augment_image(image: Any, config: AugmentConfig = AugmentConfig(),
                  seed: int | None = None) -> Any:
    """Apply the augmentation policy to one image ``[H, W, C]``."""
    import tensorflow as tf

    return augment_batch(tf.expand_dims(image, 0), config, seed)[0]


# ----------------------------------------------------------------------------------------------
# Input pipeline
# ----------------------------------------------------------------------------------------------


def list_split(data_dir: str | os.PathLike, split: str) -> tuple[list[str], list[int], list[str]]:
    """Image paths, class indices and the sorted class ids of ``data_dir/split``.

    The class index is the position of the class folder in the sorted list of class folder
    names (the seed's ``ImageDataGenerator`` convention), through ``hrcam.data.list_images``.
    """
    from hrcam import data

    return _normalise_listing(data.list_images(data_dir, split))


def _normalise_listing(listing: Any) -> tuple[list[str], list[int], list[str]]:
    """Accept ``list_images``' result and return ``(paths, labels, class_ids)``."""
    if isinstance(listing, tuple) and len(listing) == 3:
        paths, labels, class_ids = listing
        return [str(p) for p in paths], [int(i) for i in labels], [str(c) for c in class_ids]
    raise TypeError(f"unexpected hrcam.data.list_images result: {type(listing)!r}")


def decode_image_uint8(path: Any, im_size: int) -> Any:
    """Read one image file as uint8 RGB ``[im_size, im_size, 3]``.

    Grayscale and RGBA images become RGB; PNGs saved under a JPEG name decode too
    (``tf.io.decode_image`` sniffs the format). The image is resized (bilinear, rounded back to
    uint8) only when its size differs from ``im_size``. uint8 keeps caches 4x smaller.
    """
    import tensorflow as tf

    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], im_size), tf.equal(shape[1], im_size))

    def resize():
        resized = tf.image.resize(image, [im_size, im_size], method="bilinear")
        return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)

    image = tf.cond(same, lambda: image, resize)
    image.set_shape([im_size, im_size, 3])
    return image


def decode_image(path: Any, im_size: int) -> Any:
    """`decode_image_uint8` as float32 in [0, 255] (the models' input; they rescale inside)."""
    import tensorflow as tf

    return tf.cast(decode_image_uint8(path, im_size), tf.float32)


def make_dataset(
    data_dir: str | os.PathLike,
    split: str = "train",
    *,
    im_size: int = 224,
    batch_size: int = 16,
    training: bool = False,
    augment: AugmentConfig | bool | None = None,
    cache: bool | str = False,
    balanced: bool = False,
    seed: int | None = 0,
    shuffle_buffer: int | None = None,
    target: str = "class",
    limit: int | None = None,
    drop_remainder: bool = False,
    repeat: bool = False,
) -> Any:
    """A batched ``tf.data.Dataset`` of ``(images, targets)`` from ``data_dir/split/<class>/*``.

    Images are float32 RGB in [0, 255], ``[B, im_size, im_size, 3]`` (the models rescale
    internally). ``target='class'`` gives one-hot labels ``[B, num_classes]``; ``'image'`` gives
    the reconstruction target ``images / 255``; ``'reconstruction'`` the full model's targets
    ``{"predictions": one-hot, "main_output": images / 255}`` (only ``main_output`` has a loss;
    the labels feed an accuracy metric); ``'index'`` the integer class index.

    ``training=True``: the file list is reshuffled every epoch, the paper's augmentation
    (``augment``, default ``AugmentConfig()``) is applied to whole batches after the cache, and
    with ``balanced=True`` the classes are drawn uniformly (``sample_from_datasets`` over one
    shuffled, repeated file list per class; an epoch is as many images as the split holds).
    ``training=False``: fixed order, deterministic, no augmentation. ``cache``: False, True
    (memory) or a file path prefix; decoded uint8 images are cached (not with ``balanced``). ``limit``: use only the first
    ``limit`` files (after a seeded shuffle when training, sorted order otherwise).
    """
    import tensorflow as tf

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    paths, labels, class_ids = list_split(data_dir, split)
    if not paths:
        raise ValueError(f"no images found in {Path(data_dir) / split}")
    num_classes = len(class_ids)
    if limit is not None and limit < len(paths):
        order = np.arange(len(paths))
        if training:
            order = np.random.default_rng(seed).permutation(len(paths))
        order = np.sort(order[:limit]) if not training else order[:limit]
        paths = [paths[i] for i in order]
        labels = [labels[i] for i in order]
    if augment is None or augment is True:
        augment = AugmentConfig()
    elif augment is False:
        augment = None
    if not training or (augment is not None and augment.affine_probability == 0
                        and augment.flip_probability == 0):
        augment = None

    def load(path, label):
        return decode_image_uint8(path, im_size), label

    def finish(images, label):
        if augment is not None:
            images = augment_batch(images, augment)  # on uint8, as imgaug did
        images = tf.cast(images, tf.float32)
        if target == "class":
            return images, tf.one_hot(label, num_classes, dtype=tf.float32)
        if target == "image":
            return images, images / 255.0
        if target == "reconstruction":
            return images, {PREDICTIONS_OUTPUT: tf.one_hot(label, num_classes,
                                                           dtype=tf.float32),
                            RECONSTRUCTION_OUTPUT: images / 255.0}
        if target == "index":
            return images, label
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")

    options = tf.data.Options()
    options.deterministic = not training

    def slices(p, l):
        return tf.data.Dataset.from_tensor_slices((tf.constant(p, tf.string),
                                                   tf.constant(l, tf.int32)))

    if balanced and training:
        # class-balanced oversampling (the original's BalancedGenerator): every class is drawn
        # with the same probability, at the level of file names (cheap), then decoded once
        if cache:
            log.warning("cache is not used with balanced sampling (the stream is resampled)")
        per_class = []
        labels_arr = np.asarray(labels)
        for c in range(num_classes):
            idx = np.flatnonzero(labels_arr == c)
            if len(idx):
                per_class.append(slices([paths[i] for i in idx], [labels[i] for i in idx])
                                 .shuffle(len(idx), seed=None if seed is None else seed + c,
                                          reshuffle_each_iteration=True).repeat())
        ds = tf.data.Dataset.sample_from_datasets(
            per_class, weights=[1.0 / len(per_class)] * len(per_class), seed=seed,
            rerandomize_each_iteration=True)  # a new class sequence every epoch
        ds = ds.take(len(paths))
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    else:
        ds = slices(paths, labels)
        if training and cache:
            # the cache keeps its first order: make that a random one (not sorted by class),
            # then reshuffle the decoded images every epoch through a bounded buffer
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=False)
        elif training:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
        if cache:
            ds = ds.cache("" if cache is True else str(cache))  # uint8 images
            if training:
                buffer = shuffle_buffer or min(len(paths), 4096)
                ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder,
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options)


def dataset_size(data_dir: str | os.PathLike, split: str) -> int:
    """Number of images in ``data_dir/split``."""
    return len(list_split(data_dir, split)[0])


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclass
class ReduceLRConfig:
    """``keras.callbacks.ReduceLROnPlateau`` settings (the original's)."""

    enabled: bool = True
    monitor: str = "loss"
    factor: float = math.sqrt(0.1)
    patience: int = 10
    min_lr: float = 1e-5


@dataclass
class TrainConfig:
    """Options of one training stage (``hrcam train half`` / ``hrcam train full``).

    Defaults are the paper's (batch 16, 50 epochs, 224 px, Adadelta with the old Keras
    default learning rate 1.0, ReduceLROnPlateau on the loss). ``arch`` names an architecture
    preset of ``hrcam.models`` and ``arch_overrides`` changes single fields of it.
    """

    batch_size: int = 16
    epochs: int = 50
    im_size: int = 224
    arch: str = "paper"
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    reduce_lr: ReduceLRConfig = field(default_factory=ReduceLRConfig)
    seed: int = 0
    mixed_precision: bool = False
    xla: bool = False
    cache: bool | str = False
    balanced: bool = False
    augment: bool = True
    augment_probability: float = 0.5
    train_split: str = "train"
    val_split: str | None = "test"
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    shuffle_buffer: int | None = None
    check_images: int = 64
    verbose: int | None = None

    OPTIMIZERS = ("adadelta", "adam", "sgd", "rmsprop")

    def __post_init__(self) -> None:
        if isinstance(self.reduce_lr, Mapping):
            self.reduce_lr = _dataclass_from_mapping(ReduceLRConfig, self.reduce_lr, "reduce_lr")
        elif self.reduce_lr is None or self.reduce_lr is False:
            self.reduce_lr = ReduceLRConfig(enabled=False)
        elif self.reduce_lr is True:
            self.reduce_lr = ReduceLRConfig()
        if isinstance(self.val_split, str) and self.val_split.strip().lower() in ("", "none"):
            self.val_split = None
        self.optimizer = str(self.optimizer).lower()
        if self.optimizer not in self.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {self.OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("batch_size", "epochs", "im_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.arch_overrides is None:
            self.arch_overrides = {}
        if not isinstance(self.arch_overrides, Mapping):
            raise ValueError("arch_overrides must be a mapping of architecture fields")
        self.arch_overrides = dict(self.arch_overrides)
        if not 0.0 <= float(self.augment_probability) <= 1.0:
            raise ValueError("augment_probability must lie in [0, 1]")

    @property
    def augment_config(self) -> AugmentConfig | None:
        if not self.augment:
            return None
        return AugmentConfig.with_probability(float(self.augment_probability))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        return _dataclass_from_mapping(cls, values, "training config")

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Load a YAML file (keys = field names), then apply non-``None`` ``overrides``."""
        return load_config(path, **overrides)

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        payload = {**self.to_dict(), **extra}
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n",
                              encoding="utf-8")


def _dataclass_from_mapping(cls: type, values: Mapping[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {what} option(s): {', '.join(map(str, unknown))} "
                         f"(known: {', '.join(sorted(names))})")
    return cls(**dict(values))


def load_config(path: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
    """The training config: defaults, then the YAML file ``path``, then non-``None`` overrides.

    ``reduce_lr`` overrides given as a mapping are merged into the file's ``reduce_lr``;
    ``arch_overrides`` likewise. An unknown key raises ``ValueError`` naming it.
    """
    values: dict[str, Any] = {}
    if path is not None:
        import yaml

        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: a training config must be a mapping of options")
        values.update(loaded)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("reduce_lr", "arch_overrides") and isinstance(value, Mapping):
            base = values.get(key) or {}
            if not isinstance(base, Mapping):
                base = {} if key == "arch_overrides" else {"enabled": bool(base)}
            values[key] = {**base, **value}
        else:
            values[key] = value
    return TrainConfig.from_mapping(values)


# ----------------------------------------------------------------------------------------------
# Helpers shared by both stages
# ----------------------------------------------------------------------------------------------

HALF_MONITOR = ("val_accuracy", "max")
BACKUP_DIR = "backup"
STATE_FILE = "hrcam_state.json"


class TransferCheckError(RuntimeError):
    """The full model's shared layers or predictions differ from the half model's."""

    def __init__(self, message: str, report: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = dict(report or {})


def class_records(data_dir: str | os.PathLike, class_ids: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"index", "id", "name"}]`` for the sorted class ids, names from ``hrcam.data.read_classes``."""
    from hrcam import data

    names: dict[str, str] = {}
    try:
        found = data.read_classes(data_dir)
    except FileNotFoundError:
        found = None
    if isinstance(found, Mapping):
        names = {str(k): str(v) for k, v in found.items()}
    elif found:
        for item in found:
            if isinstance(item, Mapping):
                names[str(item.get("id"))] = str(item.get("name", item.get("id")))
            elif isinstance(item, (tuple, list)) and len(item) >= 2:
                names[str(item[-2])] = str(item[-1])
    return [{"index": i, "id": cid, "name": names.get(cid, cid)} for i, cid in enumerate(class_ids)]


def write_json(path: str | os.PathLike, payload: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)!r}")


def default_verbose() -> int:
    """Keras ``fit`` verbosity: a live progress bar (1) on a terminal, one line per epoch (2)
    when stdout is a file (Snakemake logs)."""
    try:
        return 1 if sys.stdout.isatty() else 2
    except (AttributeError, ValueError):
        return 2


def distribution_strategy() -> Any:
    """``MirroredStrategy`` over all visible GPUs, or TensorFlow's default strategy on CPU."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
        log.info("training on %d GPU(s) with MirroredStrategy", strategy.num_replicas_in_sync)
        return strategy
    log.info("no GPU visible: training on CPU")
    return tf.distribute.get_strategy()


class _precision_policy:
    """Context manager: Keras' global dtype policy ``mixed_float16`` (or float32), restored on exit."""

    def __init__(self, mixed: bool) -> None:
        self.mixed = mixed

    def __enter__(self) -> _precision_policy:
        import keras

        self.previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_float16" if self.mixed else "float32")
        return self

    def __exit__(self, *exc: Any) -> None:
        import keras

        keras.mixed_precision.set_global_policy(self.previous)


def make_optimizer(config: TrainConfig) -> Any:
    import keras

    lr = float(config.learning_rate)
    if config.optimizer == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=lr)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def _val_cache(config: TrainConfig) -> bool | str:
    """The validation split's cache: in memory, or next to the training cache files."""
    if isinstance(config.cache, str) and config.cache:
        return f"{config.cache}.{config.val_split}"
    return bool(config.cache)


def _fit(model, train_ds, val_ds, config: "TrainConfig", callbacks: list):
    """`model.fit` with the run's epochs, steps and verbosity (resume is done by the callbacks)."""
    verbose = config.verbose if config.verbose is not None else default_verbose()
    return model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                     steps_per_epoch=config.steps_per_epoch,
                     validation_steps=config.validation_steps, callbacks=callbacks,
                     shuffle=False, verbose=verbose)


def _train_and_val_datasets(data_dir, config: "TrainConfig", target: str):
    """The training dataset (augmented, shuffled) and the validation dataset (None when the
    validation split does not exist) of one training stage."""
    train_ds = make_dataset(
        data_dir, config.train_split, im_size=config.im_size, batch_size=config.batch_size,
        training=True, augment=config.augment_config or False, cache=config.cache,
        balanced=config.balanced, seed=config.seed, shuffle_buffer=config.shuffle_buffer,
        target=target, repeat=config.steps_per_epoch is not None)
    if not _split_exists(data_dir, config.val_split):
        return train_ds, None
    val_ds = make_dataset(data_dir, config.val_split, im_size=config.im_size,
                          batch_size=config.batch_size, training=False,
                          cache=_val_cache(config), target=target)
    return train_ds, val_ds


def _split_exists(data_dir: str | os.PathLike, split: str | None) -> bool:
    if not split:
        return False
    path = Path(data_dir) / split
    return path.is_dir() and any(p.is_dir() for p in path.iterdir())


def _make_callbacks(out_dir: Path, config: TrainConfig, monitor: str, mode: str,
                    extra: Sequence[Any] = ()) -> tuple[list[Any], int]:
    """The callbacks of a stage and the epoch it resumes from (0 for a fresh run)."""
    import keras

    backup_dir = out_dir / BACKUP_DIR
    history = out_dir / "history.csv"
    initial_epoch = 0
    metadata = backup_dir / "training_metadata.json"
    state: dict[str, Any] = {}
    if metadata.exists():
        try:
            initial_epoch = int(json.loads(metadata.read_text())["epoch"])
        except (ValueError, KeyError, json.JSONDecodeError):
            initial_epoch = 0
        if (backup_dir / STATE_FILE).exists():
            state = json.loads((backup_dir / STATE_FILE).read_text())
    resuming = initial_epoch > 0
    if resuming:
        log.info("resuming from %s after epoch %d", backup_dir, initial_epoch)
        _truncate_history(history, initial_epoch)
    elif backup_dir.exists():
        shutil.rmtree(backup_dir)

    checkpoint = keras.callbacks.ModelCheckpoint(
        str(out_dir / "best.keras"), monitor=monitor, mode=mode, save_best_only=True,
        initial_value_threshold=state.get("best"), verbose=0)
    callbacks: list[Any] = [
        keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch",
                                         delete_checkpoint=True),
        checkpoint,
        keras.callbacks.ModelCheckpoint(str(out_dir / "last.keras"), save_best_only=False,
                                        verbose=0),
        keras.callbacks.CSVLogger(str(history), append=resuming),
    ]
    if tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(str(out_dir / "tensorboard"),
                                                     write_graph=False, profile_batch=0))
    else:
        log.warning("the tensorboard package is not installed: no TensorBoard logs "
                    "(pip install tensorboard)")
    reduce_lr = None
    if config.reduce_lr.enabled:
        reduce_lr = keras.callbacks.ReduceLROnPlateau(
            monitor=config.reduce_lr.monitor, factor=config.reduce_lr.factor,
            patience=config.reduce_lr.patience, min_lr=config.reduce_lr.min_lr, verbose=1)
        callbacks.append(reduce_lr)
    callbacks.append(_StateBackup(backup_dir, checkpoint, reduce_lr, state))
    callbacks.extend(extra)
    return callbacks, initial_epoch


def tensorboard_available() -> bool:
    """Whether TensorBoard summaries can be written (TensorFlow needs the tensorboard package)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _truncate_history(history: Path, epochs: int) -> None:
    """Keep the header and the rows of the first ``epochs`` epochs (a kill may leave one more)."""
    if not history.exists():
        return
    lines = history.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return
    keep = [lines[0]]
    for line in lines[1:]:
        try:
            epoch = int(line.split(",", 1)[0])
        except ValueError:
            continue
        if epoch < epochs:
            keep.append(line)
    history.write_text("".join(keep), encoding="utf-8")


def _make_state_backup_class():
    import keras

    class StateBackup(keras.callbacks.Callback):
        """Saves (with BackupAndRestore's checkpoint) what Keras' own backup forgets: the best
        monitored value of ModelCheckpoint and ReduceLROnPlateau's patience counters."""

        def __init__(self, backup_dir, checkpoint, reduce_lr, state):
            super().__init__()
            self.backup_dir = Path(backup_dir)
            self.checkpoint = checkpoint
            self.reduce_lr = reduce_lr
            self.state = dict(state)

        def on_train_begin(self, logs=None):
            # runs after ReduceLROnPlateau.on_train_begin (which resets its counters)
            if self.reduce_lr is not None and "reduce_lr" in self.state:
                saved = self.state["reduce_lr"]
                self.reduce_lr.wait = int(saved["wait"])
                self.reduce_lr.cooldown_counter = int(saved["cooldown_counter"])
                self.reduce_lr.best = float(saved["best"])

        def on_epoch_end(self, epoch, logs=None):
            payload = {"epoch": epoch + 1, "best": _finite(self.checkpoint.best)}
            if self.reduce_lr is not None:
                payload["reduce_lr"] = {"wait": int(self.reduce_lr.wait),
                                        "cooldown_counter": int(self.reduce_lr.cooldown_counter),
                                        "best": float(self.reduce_lr.best)}
            if self.backup_dir.exists():
                write_json(self.backup_dir / STATE_FILE, payload)

    return StateBackup


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _StateBackup(*args: Any) -> Any:
    return _make_state_backup_class()(*args)


def _set_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(int(seed))


def _finish_run(out_dir: Path) -> None:
    backup = out_dir / BACKUP_DIR
    if backup.exists():
        shutil.rmtree(backup, ignore_errors=True)


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from hrcam import __version__

    return {"hrcam": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}


# ----------------------------------------------------------------------------------------------
# Stage 1: the half model
# ----------------------------------------------------------------------------------------------


def train_half(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
               config: TrainConfig | None = None, *, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train the half model (classifier) on ``data_dir/<train_split>``.

    Writes into ``out_dir``: ``best.keras`` (best validation accuracy; training accuracy when
    there is no validation split), ``last.keras``, ``history.csv``, ``tensorboard/``,
    ``classes.json`` and ``train_config.json``. Resumable: when ``out_dir/backup`` holds a
    checkpoint of an interrupted run, training continues after its last finished epoch.
    Returns a summary dict (paths, epochs, final metrics).
    """
    import keras

    from hrcam import models

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _set_seed(config.seed)
    paths, _, class_ids = list_split(data_dir, config.train_split)
    classes = class_records(data_dir, class_ids)
    write_json(out_dir / "classes.json", classes)
    arch = models.resolve_arch(config.arch, **config.arch_overrides)
    config.save(out_dir / "train_config.json", stage="half", data_dir=str(data_dir),
                num_classes=len(class_ids), resolved_arch=arch, versions=_versions())

    train_ds, val_ds = _train_and_val_datasets(data_dir, config, target="class")
    monitor, mode = HALF_MONITOR if val_ds is not None else ("accuracy", "max")
    if val_ds is None:
        log.warning("no validation split %r in %s: best.keras is chosen by training accuracy",
                    config.val_split, data_dir)

    with _precision_policy(config.mixed_precision):
        strategy = distribution_strategy()
        with strategy.scope():
            model = models.build_half_model(len(class_ids), (config.im_size, config.im_size, 3),
                                            arch)
            _check_output_dtype(model, config)
            metrics = ["accuracy"]
            if len(class_ids) > 5:
                metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5_accuracy"))
            model.compile(optimizer=make_optimizer(config), loss="categorical_crossentropy",
                          metrics=metrics, jit_compile=bool(config.xla))
        cbs, initial_epoch = _make_callbacks(out_dir, config, monitor, mode, callbacks)
        history = _fit(model, train_ds, val_ds, config, cbs)
    _finish_run(out_dir)
    return {
        "stage": "half", "out_dir": str(out_dir), "best": str(out_dir / "best.keras"),
        "last": str(out_dir / "last.keras"), "history": str(out_dir / "history.csv"),
        "classes": str(out_dir / "classes.json"), "monitor": monitor,
        "initial_epoch": initial_epoch, "n_train_images": len(paths),
        "final": {k: float(v[-1]) for k, v in history.history.items() if v},
    }


def _check_output_dtype(model: Any, config: TrainConfig) -> None:
    if not config.mixed_precision:
        return
    names = list(getattr(model, "output_names", None) or [])
    for i, output in enumerate(model.outputs):
        if str(output.dtype) not in ("float32", "<dtype: 'float32'>"):
            log.warning("mixed precision: model output %r is %s, not float32 (softmax and loss "
                        "then run in float16)", names[i] if i < len(names) else i, output.dtype)


# ----------------------------------------------------------------------------------------------
# The transfer check (the seed README's section 3.3, automatic)
# ----------------------------------------------------------------------------------------------

PROB_TOLERANCE = 1e-6


def check_images(data_dir: str | os.PathLike, split: str = "test", n_images: int = 64,
                 im_size: int = 224) -> tuple[np.ndarray, list[str]]:
    """A fixed sample of ``n_images`` images of ``data_dir/split`` (evenly spaced over the
    sorted file list, so every class is represented when n_images >= classes) as float32
    ``[N, im_size, im_size, 3]`` in [0, 255], and their paths."""
    import tensorflow as tf

    if not _split_exists(data_dir, split):
        split = "train" if _split_exists(data_dir, "train") else split
    paths, _, _ = list_split(data_dir, split)
    if not paths:
        raise ValueError(f"no images in {Path(data_dir) / split} for the transfer check")
    n = min(int(n_images), len(paths))
    idx = np.unique(np.linspace(0, len(paths) - 1, n).round().astype(int))
    chosen = [paths[i] for i in idx]
    images = np.stack([decode_image(tf.constant(p), im_size).numpy() for p in chosen])
    return images.astype(np.float32), chosen


def _predictions_of(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities of a half or full model (the ``predictions`` output)."""
    import tensorflow as tf

    from hrcam import models

    out = []
    for start in range(0, len(images), batch_size):
        result = model(tf.constant(images[start:start + batch_size]), training=False)
        if isinstance(result, Mapping):
            result = result[models.PREDICTIONS_LAYER]
        elif isinstance(result, (list, tuple)):
            names = list(getattr(model, "output_names", []) or [])
            result = result[names.index(models.PREDICTIONS_LAYER)] \
                if models.PREDICTIONS_LAYER in names else result[0]
        out.append(np.asarray(result, dtype=np.float32))
    return np.concatenate(out)


def compare_weights(half: Any, full: Any) -> dict[str, Any]:
    """Compare every weighted layer of the half model with the same-named layer of the full one.

    Returns ``{"layers_checked", "identical", "max_abs_diff", "different_layers",
    "missing_layers"}``; identical means bit-for-bit equal arrays (BatchNorm moving statistics
    included)."""
    from hrcam import models

    different: list[str] = []
    missing: list[str] = []
    checked = 0
    max_diff = 0.0
    full_names = {layer.name for layer in full.layers}
    for name in models.shared_layer_names(half):
        layer = half.get_layer(name)
        if not layer.weights:
            continue
        if name not in full_names:
            missing.append(name)
            continue
        checked += 1
        a = layer.get_weights()
        b = full.get_layer(name).get_weights()
        if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
            different.append(name)
            max_diff = math.inf
            continue
        diff = max((float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
                    if x.size else 0.0) for x, y in zip(a, b)) if a else 0.0
        if not all(np.array_equal(x, y) for x, y in zip(a, b)):
            different.append(name)
        max_diff = max(max_diff, diff)
    return {"layers_checked": checked, "identical": not different and not missing,
            "max_abs_diff": max_diff if math.isfinite(max_diff) else None,
            "different_layers": different, "missing_layers": missing}


def verify_transfer(half: Any, full: Any, images: np.ndarray, *, stage: str = "check",
                    batch_size: int = 16, tolerance: float = PROB_TOLERANCE,
                    out: str | os.PathLike | None = None, raise_on_failure: bool = True
                    ) -> dict[str, Any]:
    """Check that ``full`` carries ``half``'s classifier unchanged.

    Every shared weighted layer must hold bit-identical weights, and on ``images`` both models
    must predict the same classes with class probabilities within ``tolerance`` (max abs diff).
    Writes the report to ``out`` (JSON) when given; raises `TransferCheckError` naming the
    differing layers when the check fails (unless ``raise_on_failure=False``).
    """
    weights = compare_weights(half, full)
    p_half = _predictions_of(half, images, batch_size)
    p_full = _predictions_of(full, images, batch_size)
    max_prob = float(np.max(np.abs(p_half.astype(np.float64) - p_full.astype(np.float64))))
    same_classes = bool(np.array_equal(p_half.argmax(-1), p_full.argmax(-1)))
    ok = bool(weights["identical"] and same_classes and max_prob <= tolerance)
    report = {
        "ok": ok,
        "stage": stage,
        "weights": {k: weights[k] for k in ("layers_checked", "identical", "max_abs_diff",
                                            "missing_layers")},
        "different_layers": weights["different_layers"],
        "max_abs_prob_diff": max_prob,
        "same_classes": same_classes,
        "n_images": int(len(images)),
        "n_different_classes": int(np.sum(p_half.argmax(-1) != p_full.argmax(-1))),
        "tolerance": tolerance,
    }
    if out is not None:
        write_json(out, report)
    if not ok and raise_on_failure:
        raise TransferCheckError(transfer_failure_message(report), report)
    return report


def transfer_failure_message(report: Mapping[str, Any]) -> str:
    parts = [f"transfer check ({report.get('stage')}) failed:"]
    layers = list(report.get("different_layers") or [])
    missing = list((report.get("weights") or {}).get("missing_layers") or [])
    if layers:
        parts.append(f"weights differ in layer(s) {', '.join(layers)};")
    if missing:
        parts.append(f"layer(s) missing from the full model: {', '.join(missing)};")
    if not report.get("same_classes", True):
        parts.append(f"predicted classes differ on {report.get('n_different_classes')} of "
                     f"{report.get('n_images')} images;")
    parts.append(f"max abs probability difference {report.get('max_abs_prob_diff'):.3g} "
                 f"(tolerance {report.get('tolerance', PROB_TOLERANCE):.0e})")
    return " ".join(parts)


def check_transfer_files(half_path: str | os.PathLike, full_path: str | os.PathLike,
                         data_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                         split: str = "test", n_images: int = 64, batch_size: int = 16,
                         tolerance: float = PROB_TOLERANCE) -> dict[str, Any]:
    """`verify_transfer` on two saved models (``hrcam train check``); raises on failure."""
    import keras

    half = keras.models.load_model(half_path, compile=False)
    full = keras.models.load_model(full_path, compile=False)
    im_size = int(half.inputs[0].shape[1] or 224)
    images, _ = check_images(data_dir, split, n_images, im_size)
    report = verify_transfer(half, full, images, stage="check", batch_size=batch_size,
                             tolerance=tolerance, raise_on_failure=False)
    report["half"] = str(half_path)
    report["full"] = str(full_path)
    if out is not None:
        write_json(out, report)
    if not report["ok"]:
        raise TransferCheckError(transfer_failure_message(report), report)
    return report


# ----------------------------------------------------------------------------------------------
# Stage 2: the full model
# ----------------------------------------------------------------------------------------------


def read_run_config(model_path: str | os.PathLike) -> dict[str, Any]:
    """The ``train_config.json`` saved next to a model by `train_half` / `train_full` ({} if none)."""
    path = Path(model_path).parent / "train_config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def train_full(data_dir: str | os.PathLike, out_dir: str | os.PathLike,
               half_path: str | os.PathLike, config: TrainConfig | None = None, *,
               callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train the full model's decoder on image reconstruction, on top of the frozen half model.

    Builds the full model with the half model's architecture (from the half run's
    ``train_config.json``, else inferred from the model), copies every shared layer's weights,
    freezes encoder + head (frozen BatchNorm runs in inference mode), and trains the decoder
    with MSE against ``images / 255``. The best weights are chosen by validation loss (training
    loss when there is no validation split). The transfer is verified before and after
    training (``transfer_check_before.json``, ``transfer_check.json``); a failure raises
    `TransferCheckError`. Other outputs as in `train_half`.
    """
    import keras

    from hrcam import models

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    half_path = Path(half_path)
    if not half_path.is_file():
        raise FileNotFoundError(f"half model not found: {half_path}")
    _set_seed(config.seed)
    half_run = read_run_config(half_path)

    with _precision_policy(config.mixed_precision):
        strategy = distribution_strategy()
        with strategy.scope():
            half = keras.models.load_model(half_path, compile=False)
            im_size = half.inputs[0].shape[1]
            if im_size is not None and int(im_size) != config.im_size:
                log.warning("image size %s of the half model overrides im_size=%d",
                            im_size, config.im_size)
                config.im_size = int(im_size)
            arch = half_run.get("resolved_arch") or models.infer_arch(half)
            # the architecture is the half model's, whatever the config says
            config.arch = str(half_run.get("arch", "inferred"))
            config.arch_overrides = dict(half_run.get("arch_overrides") or {})
            num_classes = int(half.get_layer(models.PREDICTIONS_LAYER).units)
            full = models.build_full_model(num_classes, (config.im_size, config.im_size, 3),
                                           arch)
            models.transfer_weights(half, full)
            models.freeze_shared(full)
            _check_output_dtype(full, config)
            full.compile(optimizer=make_optimizer(config),
                         loss={models.PREDICTIONS_LAYER: None,
                               models.RECONSTRUCTION_LAYER: "mse"},
                         metrics={models.PREDICTIONS_LAYER: ["accuracy"]},
                         jit_compile=bool(config.xla))

        paths, _, class_ids = list_split(data_dir, config.train_split)
        if len(class_ids) != num_classes:
            raise ValueError(f"{data_dir} has {len(class_ids)} classes but the half model "
                             f"predicts {num_classes}")
        write_json(out_dir / "classes.json", class_records(data_dir, class_ids))
        config.save(out_dir / "train_config.json", stage="full", data_dir=str(data_dir),
                    half_model=str(half_path), num_classes=num_classes,
                    resolved_arch=arch, versions=_versions())

        check_split = config.val_split if _split_exists(data_dir, config.val_split) \
            else config.train_split
        images, _ = check_images(data_dir, check_split, config.check_images, config.im_size)
        verify_transfer(half, full, images, stage="before", batch_size=config.batch_size,
                        out=out_dir / "transfer_check_before.json")

        train_ds, val_ds = _train_and_val_datasets(data_dir, config, target="reconstruction")
        monitor, mode = ("val_loss", "min") if val_ds is not None else ("loss", "min")
        cbs, initial_epoch = _make_callbacks(out_dir, config, monitor, mode, callbacks)
        history = _fit(full, train_ds, val_ds, config, cbs)

        best = keras.models.load_model(out_dir / "best.keras", compile=False)
        report = verify_transfer(half, best, images, stage="after",
                                 batch_size=config.batch_size, raise_on_failure=False)
        report["model"] = str(out_dir / "best.keras")
        report["half"] = str(half_path)
        write_json(out_dir / "transfer_check.json", report)
        if not report["ok"]:
            raise TransferCheckError(transfer_failure_message(report), report)
    _finish_run(out_dir)
    return {
        "stage": "full", "out_dir": str(out_dir), "best": str(out_dir / "best.keras"),
        "last": str(out_dir / "last.keras"), "history": str(out_dir / "history.csv"),
        "classes": str(out_dir / "classes.json"),
        "transfer_check": str(out_dir / "transfer_check.json"), "monitor": monitor,
        "initial_epoch": initial_epoch, "n_train_images": len(paths),
        "max_abs_prob_diff": report["max_abs_prob_diff"],
        "final": {k: float(v[-1]) for k, v in history.history.items() if v},
    }
