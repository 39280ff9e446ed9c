"""The expansion network's training objective: a weighted sum of loss terms on top of the frozen
classifier. The paper's objective is ``reconstruction`` alone; the other terms tie the decoder's
16 high-resolution channels to the classifier, so that the high-res CAM becomes a class map.

Terms (``A`` = the ``conv_aux`` maps, ``H`` = the ``high_res_features`` maps, ``W``, ``b`` the
frozen ``predictions`` kernel and bias, ``k`` = the root mean square of ``A`` on the training
images, a constant of the run):

``reconstruction``
    Mean squared error of ``main_output`` against the image in [0, 1] (the paper).
``cam_consistency``
    Mean squared error of ``H`` average-pooled by the model stride against ``A / k``: the
    high-res CAM ``W . H`` then average-pools to the low-res CAM (divided by k), so it is a
    super-resolution of it. (``A`` is large -- mean square about 70 on the default run -- so the
    unscaled error would barely move; min-max normalised CAMs do not change with the scale.)
``classification``
    Kullback-Leibler divergence from the half model's class probabilities to
    ``softmax(k * GAP(H) . W + b)``: global average pooling of the high-res features through the
    frozen classifier reproduces the half model's decision.
``smoothness``
    Edge-aware total variation of ``H``: neighbouring pixels' features differ little except
    across image edges (weights ``exp(-10 |grad image|)``).

The encoder and the head stay frozen whatever the terms: the transfer check still holds bit for
bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DECODER_LOSSES", "DEFAULT_DECODER_LOSS", "parse_decoder_loss", "feature_scale",
           "make_decoder_trainer"]

DECODER_LOSSES = ("reconstruction", "cam_consistency", "classification", "smoothness")
DEFAULT_DECODER_LOSS = {"reconstruction": 1.0}


def parse_decoder_loss(value: str | Mapping[str, Any]) -> dict[str, float]:
    """Loss weights from ``"reconstruction=1,cam_consistency=1"`` or a mapping; every name one of
    `DECODER_LOSSES`, every weight a number >= 0, at least one > 0."""
    if isinstance(value, str):
        pairs: dict[str, Any] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, weight = item.partition("=")
            if not sep:
                raise ValueError(f"decoder loss: expected NAME=WEIGHT items, got {item.strip()!r}")
            pairs[name.strip()] = weight.strip()
        value = pairs
    if not isinstance(value, Mapping):
        raise ValueError(f"decoder loss: expected a mapping of term weights, got {value!r}")
    weights: dict[str, float] = {}
    for name, weight in value.items():
        if name not in DECODER_LOSSES:
            raise ValueError(f"decoder loss: unknown term {name!r}; the terms are "
                             f"{', '.join(DECODER_LOSSES)}")
        try:
            number = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"decoder loss: the weight of {name!r} must be a number, got "
                             f"{weight!r}") from None
        if not np.isfinite(number) or number < 0 or isinstance(weight, bool):
            raise ValueError(f"decoder loss: the weight of {name!r} must be a number >= 0, got "
                             f"{weight!r}")
        weights[name] = number
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"decoder loss: at least one term needs a weight > 0, got {weights}")
    return {name: weights[name] for name in DECODER_LOSSES if name in weights}


def feature_scale(half: Any, images: np.ndarray, batch_size: int = 16) -> float:
    """``k``: the root mean square of the half model's ``conv_aux`` maps on ``images``."""
    import keras

    from hrcam import models

    view = keras.Model(half.input, half.get_layer(models.LOW_FEATURES_LAYER).output)
    total, count = 0.0, 0
    for start in range(0, len(images), batch_size):
        maps = np.asarray(view(images[start:start + batch_size].astype(np.float32),
                               training=False), dtype=np.float64)
        total += float(np.sum(maps ** 2))
        count += maps.size
    scale = float(np.sqrt(total / max(count, 1)))
    return scale if scale > 0 else 1.0


def make_decoder_trainer(full: Any, weights: Mapping[str, float], scale: float) -> Any:
    """A Keras model that trains ``full``'s (trainable) decoder on the weighted loss terms.

    It shares every layer with ``full`` (which is what is saved); fit it on batches of
    ``(images, images / 255)``. Every term with a weight is logged as ``<term>_loss``.
    """
    import keras
    import tensorflow as tf

    from hrcam import models

    weights = parse_decoder_loss(weights)
    stride = models.model_stride(full)
    dense = full.get_layer(models.PREDICTIONS_LAYER)
    outputs = {"reconstruction": full.get_layer(models.RECONSTRUCTION_LAYER).output,
               "high": full.get_layer(models.HIGH_FEATURES_LAYER).output,
               "low": full.get_layer(models.LOW_FEATURES_LAYER).output,
               "probabilities": dense.output}
    view = keras.Model(full.input, outputs, name=f"{full.name}_decoder_terms")
    k = float(scale)

    class DecoderTrainer(keras.Model):
        def __init__(self) -> None:
            super().__init__(name=f"{full.name}_trainer")
            self.view = view
            self.trackers = {name: keras.metrics.Mean(name=f"{name}_loss")
                             for name, w in weights.items() if w > 0}
            # every variable belongs to the already-built full model: without this, loading a
            # resumed run's weights into the trainer is refused as "not yet built"
            self.built = True

        def call(self, inputs: Any, training: bool = False) -> Any:
            return self.view(inputs, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            terms = {}
            high = tf.cast(y_pred["high"], tf.float32)
            if "reconstruction" in self.trackers:
                recon = tf.cast(y_pred["reconstruction"], tf.float32)
                terms["reconstruction"] = tf.reduce_mean(tf.square(recon - tf.cast(y, tf.float32)))
            if "cam_consistency" in self.trackers:
                pooled = tf.nn.avg_pool2d(high, stride, stride, "VALID")
                target = tf.stop_gradient(tf.cast(y_pred["low"], tf.float32)) / k
                terms["cam_consistency"] = tf.reduce_mean(tf.square(pooled - target))
            if "classification" in self.trackers:
                p_half = tf.stop_gradient(tf.cast(y_pred["probabilities"], tf.float32))
                logits = k * tf.reduce_mean(high, axis=[1, 2]) @ tf.cast(dense.kernel, tf.float32)
                if dense.use_bias:
                    logits += tf.cast(dense.bias, tf.float32)
                log_q = tf.nn.log_softmax(logits)
                log_p = tf.math.log(tf.clip_by_value(p_half, 1e-12, 1.0))
                terms["classification"] = tf.reduce_mean(
                    tf.reduce_sum(p_half * (log_p - log_q), axis=-1))
            if "smoothness" in self.trackers:
                image = tf.cast(x, tf.float32) / 255.0
                dx_i = tf.reduce_mean(tf.abs(image[:, :, 1:] - image[:, :, :-1]), -1, True)
                dy_i = tf.reduce_mean(tf.abs(image[:, 1:] - image[:, :-1]), -1, True)
                dx_h = tf.abs(high[:, :, 1:] - high[:, :, :-1])
                dy_h = tf.abs(high[:, 1:] - high[:, :-1])
                terms["smoothness"] = (tf.reduce_mean(dx_h * tf.exp(-10.0 * dx_i))
                                       + tf.reduce_mean(dy_h * tf.exp(-10.0 * dy_i)))
            total = tf.add_n([weights[name] * value for name, value in terms.items()])
            for name, value in terms.items():
                self.trackers[name].update_state(value)
            return total

    return DecoderTrainer()
