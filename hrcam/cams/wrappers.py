"""`HalfModel` and `FullModel`: the seed's CAM wrappers around the Keras models.

One forward pass per batch gives the predictions and both CAMs (the original called `predict`
three times per image). Images are passed as 0-255 values (uint8 or float), shape (1, H, W, 3)
or (H, W, 3) for one image -> un-batched results (the seed's shapes), or (N, H, W, 3) for a
batch -> batched results equal to the per-image ones. H and W must be divisible by the model's
stride (16 by default); non-square images work.

Loading: ``weights`` may be a ``.keras`` file (a whole saved model, loaded with
``keras.models.load_model``) or a ``.weights.h5`` file (the model is built from ``num_classes``,
``im_size``, ``channels`` and the arch, then ``load_weights``). A ``classes.json`` next to the
file (a list of ``{"index", "id", "name"}``) gives ``.class_names`` / ``.class_ids`` (and the
class count when ``num_classes`` is not given).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrcam import models as M

CLASSES_FILE = "classes.json"
TRAIN_CONFIG_FILE = "train_config.json"  # written by hrcam.train next to the weights
DEFAULT_NUM_CLASSES = 398  # the paper's ImageNet animal subset
DEFAULT_BATCH_SIZE = 32


class WeightsFileError(FileNotFoundError, ValueError):
    """A weights file that does not exist (both a FileNotFoundError and a ValueError)."""


def read_classes_json(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``classes.json`` (list of {"index", "id", "name"}), sorted by index."""
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list) or not all(
        isinstance(e, Mapping) and "index" in e for e in entries
    ):
        raise ValueError(f"{path}: expected a list of {{'index', 'id', 'name'}} objects")
    entries = sorted(entries, key=lambda e: int(e["index"]))
    if [int(e["index"]) for e in entries] != list(range(len(entries))):
        raise ValueError(f"{path}: class indices must be 0..{len(entries) - 1}")
    return entries


def load_keras_model(weights: str | Path, *, kind: str = "half", num_classes: int | None = None,
                     im_size: Any = None, channels: int = 3, arch: Any = None,
                     **arch_overrides: Any):
    """Load a saved model (``.keras``) or build one and load its weights (``.weights.h5``).

    For ``.weights.h5``: ``kind`` ("half" or "full") chooses the builder; the class count is
    ``num_classes``, else the length of ``classes.json`` beside the file, else 398; the arch is
    ``arch`` (+ overrides), else the ``resolved_arch`` of a ``train_config.json`` beside the
    file (written by training), else the paper's. ``im_size`` None accepts any image size.
    """
    import keras

    path = Path(weights)
    name = path.name
    if not (name.endswith(".keras") or name.endswith(".weights.h5")):
        raise ValueError(
            f"unsupported weights file {str(path)!r}: expected a saved model '*.keras' or a "
            "weights file '*.weights.h5' (Keras 3 naming)"
        )
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {str(path)!r}")
    if name.endswith(".keras"):
        return keras.models.load_model(path, compile=False)
    train_config: dict[str, Any] = {}
    if (path.parent / TRAIN_CONFIG_FILE).is_file():
        try:
            train_config = json.loads((path.parent / TRAIN_CONFIG_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            train_config = {}
    if num_classes is None:
        num_classes = train_config.get("num_classes") or DEFAULT_NUM_CLASSES
        classes = path.parent / CLASSES_FILE
        if classes.is_file():
            num_classes = len(read_classes_json(classes))
    if arch is None and not arch_overrides and isinstance(
            train_config.get("resolved_arch"), Mapping):
        arch = dict(train_config["resolved_arch"])
    builder = {"half": M.build_half_model, "full": M.build_full_model}[kind]
    model = builder(num_classes, _shape(im_size, channels), arch, **arch_overrides)
    hint = (f"{str(path)!r} does not fit a {kind} model with {num_classes} classes and arch "
            f"{M.resolve_arch(arch, **arch_overrides)}; pass the arch / num_classes it was "
            "trained with (or use the .keras file)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except (ValueError, KeyError) as error:
            raise ValueError(f"{hint}: {error}") from None
    skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)
               or "Skipping" in str(w.message)]
    if skipped:
        raise ValueError(f"{hint}: {skipped[0]}")
    for w in caught:  # re-emit the unrelated ones
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model


def _shape(im_size: Any, channels: int) -> tuple:
    if im_size is None:
        return (None, None, channels)
    if isinstance(im_size, (int, np.integer)):
        return (int(im_size), int(im_size), channels)
    h, w = im_size
    return (h, w, channels)


class HalfModel:
    """The classifier: predictions and the low-res CAM.

    ``HalfModel(weights=None, num_classes=None, im_size=224, channels=3, arch=None, **arch)``:
    ``weights`` a ``.keras`` / ``.weights.h5`` path, or None for a freshly initialised model;
    ``im_size`` an int, (H, W) or None (any size divisible by the stride) — used when the model
    is built (not for ``.keras`` files, whose saved input shape is kept); ``arch`` a preset name
    ("paper", "small", "tiny") or dict, with keyword overrides. ``model=`` wraps an existing
    Keras model instead. The Keras model is ``.model``.
    """

    kind = "half"

    def __init__(self, weights: str | Path | None = None, num_classes: int | None = None,
                 im_size: Any = 224, channels: int = 3, arch: Any = None, *, model=None,
                 class_names: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 **arch_overrides: Any):
        self.weights = str(weights) if weights is not None else None
        self.class_ids: list[str] | None = None
        self.class_names: list[str] | None = None
        if model is None:
            if weights is not None:
                model = load_keras_model(
                    weights, kind=self.kind, num_classes=num_classes, im_size=im_size,
                    channels=channels, arch=arch, **arch_overrides,
                )
                classes = Path(weights).parent / CLASSES_FILE
                if classes.is_file():
                    entries = read_classes_json(classes)
                    self.class_ids = [str(e.get("id", e["index"])) for e in entries]
                    self.class_names = [str(e.get("name", e.get("id"))) for e in entries]
            else:
                builder = M.build_full_model if self.kind == "full" else M.build_half_model
                model = builder(
                    DEFAULT_NUM_CLASSES if num_classes is None else num_classes,
                    _shape(im_size, channels), arch, **arch_overrides,
                )
        if class_names is not None:
            self.class_names = list(class_names)
        self._check_model(model)
        self.model = model
        self.batch_size = int(batch_size)
        self.stride = M.model_stride(model)
        self.num_classes = int(model.get_layer(M.PREDICTIONS_LAYER).units)
        if num_classes is not None and int(num_classes) != self.num_classes:
            raise ValueError(f"num_classes={num_classes} but the model predicts "
                             f"{self.num_classes} classes")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a model with "
                             f"{self.num_classes} classes")
        self._cam_models: dict[tuple[bool, bool], Any] = {}

    # ----------------------------------------------------------------------------------------
    def _check_model(self, model) -> None:
        names = {layer.name for layer in model.layers}
        missing = {M.PREDICTIONS_LAYER, M.LOW_FEATURES_LAYER} - names
        if missing:
            raise ValueError(f"model {model.name!r} lacks the layer(s) {sorted(missing)}")

    @property
    def Wk(self) -> np.ndarray:  # noqa: N802  (the seed's name)
        """The classifier kernel W (K x C), read from the model (current values)."""
        return M.class_weights(self.model)

    def summary(self) -> None:
        """Print the Keras model summary."""
        self.model.summary()

    def _cam_model(self, low: bool, high: bool):
        """The multi-output Keras model for these outputs and its compiled call (cached)."""
        key = (low, high)
        if key not in self._cam_models:
            import tensorflow as tf

            model = M.build_cam_model(self.model, high=high, low=low)
            call = tf.function(lambda t: model(t, training=False), reduce_retracing=True,
                               autograph=False)
            self._cam_models[key] = (model, call)
        return self._cam_models[key]

    def _prepare(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"expected an image (H, W, C) or a batch (N, H, W, C), got shape "
                             f"{x.shape}")
        expected = self.model.inputs[0].shape
        if x.shape[-1] != expected[-1]:
            raise ValueError(f"expected {expected[-1]} channels, got shape {x.shape}")
        for axis, side in ((1, expected[1]), (2, expected[2])):
            if side is not None and x.shape[axis] != side:
                raise ValueError(f"model input is {tuple(expected[1:])}, got images {x.shape[1:]}")
        if x.shape[1] % self.stride or x.shape[2] % self.stride:
            raise ValueError(f"image height and width must be divisible by {self.stride}, got "
                             f"{x.shape[1:3]}")
        if x.shape[0] == 0:
            raise ValueError("empty batch")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        return x, x.shape[0] == 1

    def _forward(self, x: np.ndarray, low: bool, high: bool) -> dict[str, np.ndarray]:
        """One call of the multi-output model per chunk of ``batch_size`` images."""
        _, call = self._cam_model(low, high)
        parts = [
            {k: v.numpy() for k, v in call(x[i:i + self.batch_size]).items()}
            for i in range(0, len(x), self.batch_size)
        ]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _classes(self, custom_class, probs: np.ndarray) -> np.ndarray:
        n = probs.shape[0]
        if custom_class is None:
            return np.argmax(probs, axis=-1)
        if isinstance(custom_class, str):
            custom_class = self.class_index(custom_class)
        cls = np.asarray(custom_class)
        if cls.ndim == 0:
            cls = np.full(n, cls)
        if cls.shape != (n,) or not np.issubdtype(cls.dtype, np.integer):
            raise ValueError(f"custom_class must be None, a class index, or {n} class indices; "
                             f"got {custom_class!r}")
        if cls.min() < 0 or cls.max() >= self.num_classes:
            raise ValueError(f"custom_class out of range [0, {self.num_classes}): {custom_class!r}")
        return cls.astype(np.int64)

    def class_index(self, name: str) -> int:
        """The index of a class given its name or id (needs ``classes.json`` / class_names)."""
        for table in (self.class_names, self.class_ids):
            if table is not None and name in table:
                return table.index(name)
        raise ValueError(f"unknown class {name!r}")

    @staticmethod
    def _unbatch(value, single: bool):
        if not single:
            return value
        value = value[0]
        return value.item() if isinstance(value, np.generic) else value

    # ----------------------------------------------------------------------------------------
    def predict_proba(self, x) -> np.ndarray:
        """Softmax probabilities: (C,) for one image, (N, C) for a batch."""
        x, single = self._prepare(x)
        probs = self._forward(x, low=False, high=False)[M.PREDICTIONS_LAYER]
        return probs[0] if single else probs

    def predict(self, x):
        """The predicted class index: an int for one image, an (N,) int array for a batch."""
        probs = self.predict_proba(x)
        pred = np.argmax(probs, axis=-1)
        return int(pred) if pred.ndim == 0 else pred.astype(np.int64)

    def predictN(self, x, n: int = 5) -> np.ndarray:  # noqa: N802  (the seed's name)
        """The top-``n`` class indices, best first: (n,) for one image, (N, n) for a batch."""
        if isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= self.num_classes:
            raise ValueError(f"n must be an integer in [1, {self.num_classes}], got {n!r}")
        probs = self.predict_proba(x)
        return np.argsort(-probs, axis=-1, kind="stable")[..., : int(n)]

    def _low_and_preds(self, x, custom_class, high: bool):
        x, single = self._prepare(x)
        out = self._forward(x, low=True, high=high)
        probs = out[M.PREDICTIONS_LAYER]
        cls = self._classes(custom_class, probs)
        w = self.Wk
        low = M.cams_from_features(out["low_features"], w, cls)
        high_cam = M.cams_from_features(out["high_features"], w, cls) if high else None
        return single, probs, cls, low, high_cam

    def cam(self, x, custom_class=None) -> np.ndarray:
        """The low-res CAM (H/16, W/16) of the predicted class, or of ``custom_class`` (an
        index — 0 included —, a class name, or one index per image); (N, h, w) for a batch."""
        single, _, _, low, _ = self._low_and_preds(x, custom_class, high=False)
        return low[0] if single else low

    low_res_cam = cam

    def generate_cams(self, x, custom_class=None, return_proba: bool = False):
        """``(low_res_cam, preds)`` from one forward pass. ``preds`` is the predicted class
        index (int / (N,) array), or the softmax probabilities with ``return_proba=True``."""
        single, probs, _, low, _ = self._low_and_preds(x, custom_class, high=False)
        preds = probs if return_proba else np.argmax(probs, axis=-1).astype(np.int64)
        return self._unbatch(low, single), self._unbatch(preds, single)

    def __repr__(self) -> str:
        shape = tuple(self.model.inputs[0].shape[1:])
        return (f"{type(self).__name__}(weights={self.weights!r}, num_classes={self.num_classes},"
                f" input_shape={shape}, stride={self.stride})")


class FullModel(HalfModel):
    """The full model: predictions, low-res CAM (``low_res_cam`` / ``cam``) and high-res CAM
    (``high_res_cam``), all from one forward pass with ``generate_cams``. Same constructor as
    `HalfModel`."""

    kind = "full"

    def _check_model(self, model) -> None:
        super()._check_model(model)
        if not M.has_high_res(model):
            raise ValueError(f"model {model.name!r} has no {M.HIGH_FEATURES_LAYER!r} layer: "
                             "a half model cannot give high-res CAMs (use HalfModel)")

    def high_res_cam(self, x, custom_class=None) -> np.ndarray:
        """The high-res CAM (H, W) of the predicted class or ``custom_class``; (N, H, W) for a
        batch."""
        single, _, _, _, high = self._low_and_preds(x, custom_class, high=True)
        return high[0] if single else high

    def generate_cams(self, x, custom_class=None, return_proba: bool = False):
        """``(high_res_cam, low_res_cam, preds)`` from one forward pass (the seed's order).
        ``preds``: predicted class index (int / (N,) array) or, with ``return_proba=True``, the
        softmax probabilities. The CAMs are for ``custom_class`` when given."""
        single, probs, _, low, high = self._low_and_preds(x, custom_class, high=True)
        preds = probs if return_proba else np.argmax(probs, axis=-1).astype(np.int64)
        return (self._unbatch(high, single), self._unbatch(low, single),
                self._unbatch(preds, single))


__all__ = ["HalfModel", "FullModel", "load_keras_model", "read_classes_json", "WeightsFileError"]
