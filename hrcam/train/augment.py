"""The paper's augmentation policy (originally imgaug, which no longer imports under NumPy 2),
reproduced with TensorFlow ops on whole batches inside the tf.data pipeline.

With probability 0.5 an affine transform (scale 0.9-1.1 per axis, translation +-20 % per axis,
rotation +-180 deg, shear +-5 deg, nearest or bilinear interpolation, constant 0 fill), then,
independently, a horizontal flip with probability 0.5.

Randomness: with a ``seed`` (a pair of integers, e.g. (run seed, batch number)) every draw is a
stateless random op, so the same seed gives the same augmented batch in any process, on any
run, resumed or not; without one the draws are TensorFlow's stateful random ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AugmentConfig", "affine_matrices", "apply_affine", "augment_batch", "augment_image"]

# independent streams of one stateless seed: one per random quantity of the policy
_STREAMS = ("scale_x", "scale_y", "translate_x", "translate_y", "rotate", "shear",
            "interpolation", "do_affine", "do_flip")


@dataclass(frozen=True)
class AugmentConfig:
    """The paper's augmentation policy, parametrised.

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
        """The paper's policy with both the affine and the flip probability set to
        ``probability``."""
        return cls(affine_probability=probability, flip_probability=probability, **overrides)

    @property
    def is_identity(self) -> bool:
        return self.affine_probability == 0 and self.flip_probability == 0


class _Draws:
    """Uniform draws of the policy's random quantities, stateless when seeded."""

    def __init__(self, seed: Any) -> None:
        import tensorflow as tf

        self.seeds = None
        if seed is not None:
            base = tf.cast(tf.convert_to_tensor(seed), tf.int64)
            split = tf.random.experimental.stateless_split(base, num=len(_STREAMS))
            self.seeds = dict(zip(_STREAMS, tf.unstack(split)))

    def uniform(self, stream: str, shape: Any, bounds: Sequence[float] = (0.0, 1.0)) -> Any:
        import tensorflow as tf

        low, high = float(bounds[0]), float(bounds[1])
        if self.seeds is None:
            return tf.random.uniform(shape, low, high, dtype=tf.float32)
        return tf.random.stateless_uniform(shape, self.seeds[stream], low, high,
                                           dtype=tf.float32)


def affine_matrices(batch: Any, height: Any, width: Any, config: AugmentConfig = AugmentConfig(),
                    seed: Any = None, *, draws: _Draws | None = None) -> Any:
    """Random forward affine matrices ``[batch, 3, 3]`` in pixel coordinates (x = column,
    y = row).

    The matrix maps an input pixel to its output position: scale, shear and rotation about the
    image centre, then a translation by a fraction of the image side (imgaug's ``Affine``
    parametrisation, as in skimage's ``AffineTransform``).
    """
    import tensorflow as tf

    draws = draws or _Draws(seed)
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    sx = draws.uniform("scale_x", [batch], config.scale)
    sy = draws.uniform("scale_y", [batch], config.scale)
    tx = draws.uniform("translate_x", [batch], config.translate) * width
    ty = draws.uniform("translate_y", [batch], config.translate) * height
    rot = draws.uniform("rotate", [batch], config.rotate) * (math.pi / 180)
    shear = draws.uniform("shear", [batch], config.shear) * (math.pi / 180)
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
    """Warp a batch ``[B, H, W, C]`` with forward affine ``matrices [B, 3, 3]``
    (output = M @ input)."""
    import tensorflow as tf

    inverse = tf.linalg.inv(matrices)  # the op maps output coordinates to input coordinates
    flat = tf.reshape(inverse, [-1, 9])[:, :8]
    flat = flat / inverse[:, 2:3, 2]
    shape = tf.shape(images)[1:3]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.cast(flat, tf.float32), output_shape=shape,
        fill_value=tf.constant(fill_value, tf.float32), interpolation=interpolation.upper(),
        fill_mode="CONSTANT")


def augment_batch(images: Any, config: AugmentConfig = AugmentConfig(), seed: Any = None) -> Any:
    """Apply the augmentation policy to a batch ``[B, H, W, C]`` (any float or integer dtype).

    Shapes and dtype are kept; values stay within the input's range (constant fill is 0, the
    interpolation is nearest or bilinear). Each image draws its own parameters. ``seed``: a
    pair of integers (stateless, reproducible draws) or None.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    if config.is_identity:
        return images
    draws = _Draws(seed)
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    out = images
    if config.affine_probability > 0:
        matrices = affine_matrices(batch, height, width, config, draws=draws)
        do_affine = draws.uniform("do_affine", [batch]) < config.affine_probability
        if len(config.interpolations) == 2:
            nearest = draws.uniform("interpolation", [batch]) < 0.5
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
        do_flip = draws.uniform("do_flip", [batch]) < config.flip_probability
        index = tf.where(do_flip)
        out = tf.tensor_scatter_nd_update(out, index,
                                          tf.reverse(tf.gather_nd(out, index), axis=[2]))
    return out


def augment_image(image: Any, config: AugmentConfig = AugmentConfig(), seed: Any = None) -> Any:
    """Apply the augmentation policy to one image ``[H, W, C]``."""
    import tensorflow as tf

    return augment_batch(tf.expand_dims(image, 0), config, seed)[0]
