"""The CAM engine: one batched extractor behind the `HalfModel` / `FullModel` wrappers, the
evaluation and the rendering.

`CamEngine(model, methods)` builds ONE multi-output view of the model (the class probabilities
plus every layer the chosen `ModelCam` methods read) and one compiled step; a call runs one
forward pass per batch -- and one backward pass when a gradient method is chosen -- and returns
the probabilities, the classes the CAMs were computed for and every model-side map.
`derive_maps` computes the `DerivedCam` maps (refined CAM, centre baseline) from those, on the
CPU, per image (it runs in worker processes during evaluation and rendering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hrcam import models as M
from hrcam.cams.methods import (
    CamMethod,
    DerivedCam,
    ModelCam,
    create_method,
    expand_methods,
)
from hrcam.model_files import model_kind

__all__ = ["CamEngine", "class_indices", "derive_maps", "PROBABILITIES", "CLASSES"]

PROBABILITIES = "probabilities"
CLASSES = "classes"


class CamEngine:
    """Predictions and CAMs of a batch from one model call.

    :param model: an hrcam half or full Keras model (the full model for `high_res`, `refined`).
    :param methods: method names (see `hrcam.cams.methods.CAM_METHODS`) or instances; the
        methods a derived method reads are added. Empty: probabilities only (the classifier
        branch alone runs; a full model's decoder is not computed).
    :param batch_size: images per model call.
    """

    def __init__(self, model: Any, methods: Iterable[str | CamMethod] = ("low_res",),
                 batch_size: int = 32) -> None:
        import keras
        import tensorflow as tf

        from hrcam.inference import positive_int

        self.model = model
        self.batch_size = positive_int(batch_size, "batch_size")
        self.methods = expand_methods(create_method(m) for m in methods)
        names = [m.name for m in self.methods]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"CAM method(s) chosen twice: {', '.join(duplicated)}")
        kind = model_kind(model)
        needs_full = [m.name for m in self.methods if m.requires_full_model]
        if needs_full and kind != "full":
            raise ValueError(f"the CAM method(s) {', '.join(needs_full)} need a full model "
                             f"(with {M.HIGH_FEATURES_LAYER!r}); {model.name!r} is a half model")
        self.model_methods = [m for m in self.methods if isinstance(m, ModelCam)]
        self.derived_methods = [m for m in self.methods if isinstance(m, DerivedCam)]
        self._layers = {m.name: m.layer_name(model) for m in self.model_methods}
        self._gradient_layers = sorted({self._layers[m.name] for m in self.model_methods
                                        if m.gradients})
        outputs = {PROBABILITIES: model.get_layer(M.PREDICTIONS_LAYER).output}
        if self._gradient_layers:
            outputs[M.GAP_LAYER] = model.get_layer(M.GAP_LAYER).output
        for layer in sorted(set(self._layers.values())):
            outputs[layer] = model.get_layer(layer).output
        self._view = keras.Model(model.input, outputs, name=f"{model.name}_cam_engine")
        self._dense = model.get_layer(M.PREDICTIONS_LAYER)
        self._step = tf.function(self._compute, reduce_retracing=True)
        self.num_classes = int(self._dense.units)

    @property
    def method_names(self) -> list[str]:
        """Every method this engine gives maps for (derived ones included), in order."""
        return [m.name for m in self.methods]

    def layer_of(self, method: str) -> str | None:
        """The layer a chosen model-side method reads (None when it is not chosen)."""
        return self._layers.get(method)

    def _compute(self, images: Any, classes: Any) -> dict[str, Any]:
        import tensorflow as tf

        x = tf.cast(images, tf.float32)
        kernel = tf.cast(self._dense.kernel, tf.float32)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            out = self._view(x, training=False)
            probs = tf.cast(out[PROBABILITIES], tf.float32)
            chosen = tf.where(classes < 0, tf.argmax(probs, axis=-1, output_type=tf.int32),
                              classes)
            if self._gradient_layers:
                logits = tf.matmul(tf.cast(out[M.GAP_LAYER], tf.float32), kernel)
                if self._dense.use_bias:
                    logits += tf.cast(self._dense.bias, tf.float32)
                score = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
        grads = {}
        if self._gradient_layers:
            watched = [out[name] for name in self._gradient_layers]
            grads = dict(zip(self._gradient_layers, tape.gradient(score, watched)))
        class_weights = tf.transpose(tf.gather(kernel, chosen, axis=1))  # (N, K)
        result = {PROBABILITIES: probs, CLASSES: chosen}
        for method in self.model_methods:
            layer = self._layers[method.name]
            result[method.name] = method.compute(out[layer], grads.get(layer), class_weights)
        return result

    def _classes(self, classes: Any, n: int) -> np.ndarray:
        if classes is None:
            return np.full(n, -1, np.int32)
        return class_indices(classes, n, self.num_classes).astype(np.int32)

    def __call__(self, images: Any, classes: Any = None,
                 derived: bool = False) -> dict[str, np.ndarray]:
        """Probabilities (N, C), the CAM classes (N,) and the map (N, h, w) of every model-side
        method for a batch ``images`` (N, H, W, 3) of 0-255 values.

        ``classes``: None (each image's predicted class), one class index, or one per image.
        ``derived=True`` adds the derived methods' maps, computed here (evaluation and
        rendering compute them in worker processes with `derive_maps` instead).
        """
        import tensorflow as tf

        n = int(np.shape(images)[0])
        cls = self._classes(classes, n)
        parts = []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            out = self._step(tf.convert_to_tensor(images[start:stop]),
                             tf.constant(cls[start:stop]))
            parts.append({k: v.numpy() for k, v in out.items()})
        if not parts:
            raise ValueError("empty batch")
        result = parts[0] if len(parts) == 1 else {
            k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        result[CLASSES] = result[CLASSES].astype(np.int64)
        if derived and self.derived_methods:
            images_u8 = np.clip(np.rint(np.asarray(images, dtype=np.float32)), 0, 255)
            derived_maps = derive_maps(self.derived_methods, images_u8.astype(np.uint8), result)
            result.update({k: np.stack(v) for k, v in derived_maps.items()})
        return result


def class_indices(classes: Any, n: int, num_classes: int, what: str = "classes") -> np.ndarray:
    """One class index per image (int64, (n,)) from one index or n of them; anything else, or
    an index outside [0, num_classes), is a ValueError naming ``what``."""
    cls = np.asarray(classes)
    if cls.ndim == 0:
        cls = np.full(n, cls)
    if cls.shape != (n,) or not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(f"{what} must be None, a class index, or {n} class indices; "
                         f"got {classes!r}")
    if n and (cls.min() < 0 or cls.max() >= num_classes):
        raise ValueError(f"{what} out of range [0, {num_classes}): {classes!r}")
    return cls.astype(np.int64)


def derive_maps(methods: Sequence[DerivedCam], images: np.ndarray,
                maps: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The derived methods' maps of a batch: for image i, ``method.compute(images[i],
    {input: maps[input][i]})``. NumPy only (safe in worker processes)."""
    out: dict[str, list[np.ndarray]] = {m.name: [] for m in methods}
    for i, image in enumerate(images):
        for method in methods:
            inputs = {name: maps[name][i] for name in method.inputs}
            out[method.name].append(np.asarray(method.compute(image, inputs)))
    return out
