"""`HalfModel` and `FullModel`: the seed's CAM wrappers (its API names and defaults), over the
CAM engine.

One forward pass per batch gives the predictions and both CAMs (the original called `predict`
three times per image). Images are passed as 0-255 values (uint8 or float), shape (1, H, W, 3)
or (H, W, 3) for one image -> un-batched results (the seed's shapes), or (N, H, W, 3) for a
batch -> batched results equal to the per-image ones. H and W must be divisible by the model's
stride (16 by default); non-square images work.

Loading: ``weights`` may be a ``.keras`` file (a whole saved model) or a ``.weights.h5`` file
(the model is built from ``num_classes``, ``im_size``, ``channels`` and the arch, then its
weights are loaded; see `hrcam.model_files.load_model`). A ``classes.json`` next to the file
gives ``.class_names`` / ``.class_ids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrcam import models as M
from hrcam.cams.engine import CLASSES, PROBABILITIES, CamEngine, class_indices
from hrcam.model_files import (
    CLASSES_FILE,
    DEFAULT_NUM_CLASSES,
    check_kind,
    load_model,
    model_kind,
    read_classes_json,
)

__all__ = ["HalfModel", "FullModel"]

DEFAULT_BATCH_SIZE = 32


def _shape(im_size: Any, channels: int) -> tuple:
    if im_size is None:
        return (None, None, channels)
    if isinstance(im_size, (int, np.integer)):
        return (int(im_size), int(im_size), channels)
    height, width = im_size
    return (height, width, channels)


class HalfModel:
    """The classifier: predictions and the low-res CAM.

    ``HalfModel(weights=None, num_classes=None, im_size=224, channels=3, arch=None, **arch)``:
    ``weights`` a ``.keras`` / ``.weights.h5`` path, or None for a freshly initialised model;
    ``im_size`` an int, (H, W) or None (any size divisible by the stride) -- used when the model
    is built (not for ``.keras`` files, whose saved input shape is kept); ``arch`` a preset name
    ("paper", "small", "tiny") or dict, with keyword overrides. ``model=`` wraps an existing
    Keras model instead. The Keras model is ``.model``. A full model works as a HalfModel too
    (same classifier, same low-res CAM).
    """

    kind = "half"
    _cam_methods: tuple[str, ...] = ("low_res",)

    def __init__(self, weights: str | Path | None = None, num_classes: int | None = None,
                 im_size: Any = 224, channels: int = 3, arch: Any = None, *, model: Any = None,
                 class_names: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 **arch_overrides: Any) -> None:
        self.weights = str(weights) if weights is not None else None
        self.class_ids: list[str] | None = None
        self.class_names: list[str] | None = None
        required = "full" if self.kind == "full" else None
        if model is None:
            if weights is not None:
                model = load_model(weights, kind=required, num_classes=num_classes,
                                   im_size=im_size, channels=channels, arch=arch,
                                   **arch_overrides)
                classes = Path(weights).parent / CLASSES_FILE
                if classes.is_file():
                    entries = read_classes_json(classes)
                    self.class_ids = [str(e.get("id", e["index"])) for e in entries]
                    self.class_names = [str(e.get("name", e.get("id"))) for e in entries]
            else:
                builder = M.build_full_model if self.kind == "full" else M.build_half_model
                model = builder(DEFAULT_NUM_CLASSES if num_classes is None else num_classes,
                                _shape(im_size, channels), arch, **arch_overrides)
        elif required is not None:
            check_kind(model, required, f"model {model.name!r}")
        else:
            model_kind(model)
        if class_names is not None:
            self.class_names = list(class_names)
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
        self._engines: dict[tuple[str, ...], CamEngine] = {}

    # ----------------------------------------------------------------------------------------
    @property
    def Wk(self) -> np.ndarray:  # noqa: N802  (the seed's name)
        """The classifier kernel W (K x C), read from the model (current values)."""
        return M.class_weights(self.model)

    def summary(self) -> None:
        """Print the Keras model summary."""
        self.model.summary()

    def _engine(self, methods: tuple[str, ...]) -> CamEngine:
        if methods not in self._engines:
            self._engines[methods] = CamEngine(self.model, methods, self.batch_size)
        return self._engines[methods]

    def _prepare(self, x: Any) -> tuple[np.ndarray, bool]:
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
        return x, x.shape[0] == 1

    def _custom_classes(self, custom_class: Any, n: int) -> Any:
        """None, or the class index per image (names and ids resolved, checked)."""
        if custom_class is None:
            return None
        if isinstance(custom_class, str):
            custom_class = self.class_index(custom_class)
        return class_indices(custom_class, n, self.num_classes, "custom_class")

    def _run(self, x: Any, custom_class: Any, methods: tuple[str, ...]
             ) -> tuple[dict[str, np.ndarray], bool]:
        x, single = self._prepare(x)
        out = self._engine(methods)(x, self._custom_classes(custom_class, len(x)))
        return out, single

    def class_index(self, name: str) -> int:
        """The index of a class given its name or id (needs ``classes.json`` / class_names)."""
        for table in (self.class_names, self.class_ids):
            if table is not None and name in table:
                return table.index(name)
        raise ValueError(f"unknown class {name!r}")

    @staticmethod
    def _unbatch(value: Any, single: bool) -> Any:
        if not single:
            return value
        value = value[0]
        return value.item() if isinstance(value, np.generic) else value

    # ----------------------------------------------------------------------------------------
    def predict_proba(self, x: Any) -> np.ndarray:
        """Softmax probabilities: (C,) for one image, (N, C) for a batch."""
        out, single = self._run(x, None, ())
        probs = out[PROBABILITIES]
        return probs[0] if single else probs

    def predict(self, x: Any) -> Any:
        """The predicted class index: an int for one image, an (N,) int array for a batch."""
        out, single = self._run(x, None, ())
        return self._unbatch(out[CLASSES], single)

    def predictN(self, x: Any, n: int = 5) -> np.ndarray:  # noqa: N802  (the seed's name)
        """The top-``n`` class indices, best first: (n,) for one image, (N, n) for a batch."""
        if isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= self.num_classes:
            raise ValueError(f"n must be an integer in [1, {self.num_classes}], got {n!r}")
        probs = self.predict_proba(x)
        return np.argsort(-probs, axis=-1, kind="stable")[..., : int(n)]

    def cam(self, x: Any, custom_class: Any = None) -> np.ndarray:
        """The low-res CAM (H/16, W/16) of the predicted class, or of ``custom_class`` (an
        index -- 0 included --, a class name, or one index per image); (N, h, w) for a batch."""
        out, single = self._run(x, custom_class, ("low_res",))
        return self._unbatch(out["low_res"], single)

    low_res_cam = cam

    def generate_cams(self, x: Any, custom_class: Any = None, return_proba: bool = False) -> Any:
        """``(low_res_cam, preds)`` from one forward pass. ``preds`` is the predicted class
        index (int / (N,) array), or the softmax probabilities with ``return_proba=True``."""
        out, single = self._run(x, custom_class, ("low_res",))
        preds = out[PROBABILITIES] if return_proba else np.argmax(out[PROBABILITIES], axis=-1)
        return self._unbatch(out["low_res"], single), self._unbatch(preds, single)

    def __repr__(self) -> str:
        shape = tuple(self.model.inputs[0].shape[1:])
        return (f"{type(self).__name__}(weights={self.weights!r}, num_classes={self.num_classes},"
                f" input_shape={shape}, stride={self.stride})")


class FullModel(HalfModel):
    """The full model: predictions, low-res CAM (``low_res_cam`` / ``cam``) and high-res CAM
    (``high_res_cam``), all from one forward pass with ``generate_cams``. Same constructor as
    `HalfModel`; the model must have the expansion network."""

    kind = "full"

    def high_res_cam(self, x: Any, custom_class: Any = None) -> np.ndarray:
        """The high-res CAM (H, W) of the predicted class or ``custom_class``; (N, H, W) for a
        batch."""
        out, single = self._run(x, custom_class, ("high_res",))
        return self._unbatch(out["high_res"], single)

    def generate_cams(self, x: Any, custom_class: Any = None, return_proba: bool = False) -> Any:
        """``(high_res_cam, low_res_cam, preds)`` from one forward pass (the seed's order).
        ``preds``: predicted class index (int / (N,) array) or, with ``return_proba=True``, the
        softmax probabilities. The CAMs are for ``custom_class`` when given."""
        out, single = self._run(x, custom_class, ("low_res", "high_res"))
        preds = out[PROBABILITIES] if return_proba else np.argmax(out[PROBABILITIES], axis=-1)
        return (self._unbatch(out["high_res"], single), self._unbatch(out["low_res"], single),
                self._unbatch(preds, single))
