"""Model files: loading a saved hrcam model (``.keras``, or ``.weights.h5`` into a freshly built
network), its ``classes.json`` and ``train_config.json``, and the model's kind (half or full),
read from its layers -- never guessed from a file name.

Every failure is a ValueError (or `WeightsFileError`, also a FileNotFoundError) naming the file
and what was expected, so the command line can report it in one line.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hrcam import models as M

__all__ = ["CLASSES_FILE", "TRAIN_CONFIG_FILE", "DEFAULT_NUM_CLASSES", "MODEL_KINDS",
           "WeightsFileError", "model_kind", "check_kind", "read_classes_json",
           "read_train_config", "load_model"]

CLASSES_FILE = "classes.json"
TRAIN_CONFIG_FILE = "train_config.json"
DEFAULT_NUM_CLASSES = 398  # the paper's ImageNet animal subset
MODEL_KINDS = ("half", "full")


class WeightsFileError(FileNotFoundError, ValueError):
    """A model file that does not exist (both a FileNotFoundError and a ValueError)."""


def model_kind(model: Any) -> str:
    """``"full"`` when the model has the expansion network (``high_res_features``), else
    ``"half"``; a model without hrcam's classifier head is an error."""
    names = {layer.name for layer in model.layers}
    missing = {M.PREDICTIONS_LAYER, M.LOW_FEATURES_LAYER} - names
    if missing:
        raise ValueError(f"model {model.name!r} is not an hrcam model: it lacks the layer(s) "
                         f"{sorted(missing)}")
    return "full" if M.HIGH_FEATURES_LAYER in names else "half"


def check_kind(model: Any, expected: str, what: str) -> None:
    """Raise a ValueError naming ``what`` (e.g. "--half results/.../best.keras") when the model
    is not of the ``expected`` kind."""
    if expected not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {expected!r}")
    kind = model_kind(model)
    if kind != expected:
        hint = ("the half model is the classifier written by `hrcam train half`"
                if expected == "half" else
                "the full model, with the expansion network (layer 'high_res_features'), is written by "
                "`hrcam train full`")
        raise ValueError(f"{what} is a {kind} model, but a {expected} model is expected ({hint})")


def read_classes_json(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a ``classes.json`` (list of {"index", "id", "name"}), sorted by index."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable classes.json ({error})") from None
    if not isinstance(entries, list) or not all(
            isinstance(e, Mapping) and "index" in e for e in entries):
        raise ValueError(f"{path}: expected a list of {{'index', 'id', 'name'}} objects")
    entries = sorted(entries, key=lambda e: int(e["index"]))
    if [int(e["index"]) for e in entries] != list(range(len(entries))):
        raise ValueError(f"{path}: class indices must be 0..{len(entries) - 1}")
    return entries


def read_train_config(model_path: str | os.PathLike) -> dict[str, Any]:
    """The ``train_config.json`` written by training next to a model file ({} when absent)."""
    path = Path(model_path).parent / TRAIN_CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable training config ({error})") from None
    return payload if isinstance(payload, dict) else {}


def _shape(im_size: Any, channels: int) -> tuple:
    if im_size is None:
        return (None, None, channels)
    if isinstance(im_size, int):
        return (im_size, im_size, channels)
    height, width = im_size
    return (height, width, channels)


def _weights_kind(path: Path, train_config: Mapping[str, Any]) -> str:
    """The kind of network a ``.weights.h5`` file holds: the training stage recorded beside it,
    else whether the file stores upsampling layers (only the expansion network has them)."""
    stage = train_config.get("stage")
    if stage in MODEL_KINDS:
        return str(stage)
    import h5py

    with h5py.File(path, "r") as handle:
        groups = list(handle.get("layers", {}).keys())
    return "full" if any(name.startswith(("conv2d_transpose", "up_sampling2d"))
                         for name in groups) else "half"


def load_model(path: str | os.PathLike, *, kind: str | None = None,
               num_classes: int | None = None, im_size: Any = None, channels: int = 3,
               arch: Any = None, what: str | None = None, **arch_overrides: Any) -> Any:
    """Load a saved model (``.keras``) or build one and load its weights (``.weights.h5``).

    ``kind`` ("half" / "full"): the kind the caller needs; a model of the other kind is an
    error naming ``what`` (default: the path). For ``.weights.h5`` files the network is built
    from the class count (``num_classes``, else ``classes.json`` beside the file, else 398),
    the arch (``arch`` + overrides, else the ``resolved_arch`` of ``train_config.json`` beside
    the file, else the paper's) and ``im_size`` (None: any size divisible by the stride).
    """
    import keras

    path = Path(path)
    what = what or repr(str(path))
    name = path.name
    if not (name.endswith(".keras") or name.endswith(".weights.h5")):
        raise ValueError(f"{what}: unsupported weights file; expected a saved model '*.keras' or "
                         "a weights file '*.weights.h5' (Keras 3 naming)")
    if not path.is_file():
        raise WeightsFileError(f"{what}: model file not found")
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{what}: not a Keras model file (a .keras file is a zip archive "
                             "written by model.save); the file is damaged or of another kind")
        try:
            model = keras.models.load_model(path, compile=False)
        except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as error:
            raise ValueError(f"{what}: cannot be loaded as a Keras model ({error})") from None
    else:
        model = _load_weights_file(path, kind, num_classes, im_size, channels, arch, what,
                                   arch_overrides)
    if kind is not None:
        check_kind(model, kind, what)
    else:
        model_kind(model)
    return model


def _load_weights_file(path: Path, kind: str | None, num_classes: int | None, im_size: Any,
                       channels: int, arch: Any, what: str,
                       arch_overrides: Mapping[str, Any]) -> Any:
    import h5py

    if not h5py.is_hdf5(path):
        raise ValueError(f"{what}: not a Keras weights file (an HDF5 file written by "
                         "model.save_weights); the file is damaged or of another kind")
    train_config = read_train_config(path)
    stored_kind = _weights_kind(path, train_config)
    if kind is not None and stored_kind != kind:
        raise ValueError(f"{what} holds the weights of a {stored_kind} model, but a {kind} model "
                         "is expected")
    if num_classes is None:
        classes = path.parent / CLASSES_FILE
        if classes.is_file():
            num_classes = len(read_classes_json(classes))
        else:
            num_classes = int(train_config.get("num_classes") or DEFAULT_NUM_CLASSES)
    if arch is None and not arch_overrides and isinstance(train_config.get("resolved_arch"),
                                                          Mapping):
        arch = dict(train_config["resolved_arch"])
    builder = M.build_full_model if stored_kind == "full" else M.build_half_model
    model = builder(num_classes, _shape(im_size, channels), arch, **arch_overrides)
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"{what} does not fit a {stored_kind} model with {num_classes} classes and arch "
            f"{M.resolve_arch(arch, **arch_overrides)}; pass the arch / num_classes it was "
            f"trained with (or use the .keras file): {str(error).splitlines()[0]}") from None
    return model
