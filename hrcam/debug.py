"""Debug tools (the seed's section 5.2): compare the weights of two models layer by layer, and
estimate the memory a model needs for a batch size.

>>> report = check_weights(half, full)        # layers with weights present in both models
>>> report["different"]                       # [] after a correct transfer_weights
>>> assert_same_weights(half, full)           # raises WeightMismatchError naming the layers
>>> get_model_memory_usage(model, 16)         # GB
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class WeightMismatchError(AssertionError, ValueError):
    """Shared layers whose weights differ (both an AssertionError and a ValueError)."""


def _weighted_layers(model) -> dict[str, Any]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def check_weights(model1, model2, layer_names: Iterable[str] | None = None, atol: float = 0.0,
                  verbose: bool = False) -> dict[str, Any]:
    """Compare the weights of the layers the two models share (by name).

    ``layer_names`` restricts the comparison (every name must exist in both models, else
    ValueError); by default every layer with weights that exists in both is compared.
    Returns ``{"compared": [names], "different": [names], "max_abs_diff": {name: float}}``;
    a layer is different when any of its weights (BatchNorm moving statistics included)
    differs by more than ``atol`` or has another shape (max_abs_diff inf).
    With ``verbose`` a line per layer is printed (as the seed did).
    """
    layers1 = _weighted_layers(model1)
    layers2 = _weighted_layers(model2)
    if layer_names is None:
        names = [n for n in layers1 if n in layers2]
    else:
        names = list(layer_names)
        all1 = {layer.name: layer for layer in model1.layers}
        all2 = {layer.name: layer for layer in model2.layers}
        missing = [n for n in names if n not in all1 or n not in all2]
        if missing:
            raise ValueError(f"check_weights: layer(s) {missing} not in both "
                             f"{model1.name!r} and {model2.name!r}")
        layers1, layers2 = all1, all2
    compared, different, diffs = [], [], {}
    for name in names:
        w1 = layers1[name].get_weights()
        w2 = layers2[name].get_weights()
        if len(w1) != len(w2) or any(a.shape != b.shape for a, b in zip(w1, w2)):
            diff = float("inf")
        elif not w1:
            diff = 0.0
        else:
            diff = max(
                float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                if a.size else 0.0
                for a, b in zip(w1, w2)
            )
            if any(np.isnan(a).any() != np.isnan(b).any() for a, b in zip(w1, w2)):
                diff = float("nan")
        compared.append(name)
        diffs[name] = diff
        if not diff <= atol:  # also true for nan
            different.append(name)
        if verbose:
            state = "DIFFERENT" if name in different else "same"
            print(f"{name:40s} {state:9s} max |diff| = {diff:.3g}")
    return {"compared": compared, "different": different, "max_abs_diff": diffs}


def assert_same_weights(model1, model2, layer_names: Iterable[str] | None = None,
                        atol: float = 0.0) -> dict[str, Any]:
    """`check_weights` as a hard check: raises `WeightMismatchError` naming every differing
    layer (and when no layer at all was compared). Returns the report otherwise."""
    report = check_weights(model1, model2, layer_names, atol=atol)
    if not report["compared"]:
        raise WeightMismatchError(
            f"no weighted layer shared by {model1.name!r} and {model2.name!r}: nothing compared"
        )
    if report["different"]:
        details = ", ".join(f"{n} (max |diff| {report['max_abs_diff'][n]:.3g})"
                            for n in report["different"])
        raise WeightMismatchError(
            f"{len(report['different'])} of {len(report['compared'])} shared layers differ "
            f"between {model1.name!r} and {model2.name!r}: {details}"
        )
    return report


def _itemsize(dtype: Any) -> int:
    try:
        return int(np.dtype(str(dtype)).itemsize)
    except TypeError:
        return 4


def get_model_memory_usage(model, batch_size: int, input_shape: Any = None) -> float:
    """Memory (GB, rounded to 3 decimals) to train ``model`` with ``batch_size``: the seed's
    estimate, modernised — every layer's output activations for the batch plus all weights
    (trainable and not), each at its own dtype size (float32: 4 bytes, mixed precision
    activations: 2), nested models counted recursively.

    Models with unknown spatial dimensions (input (None, None, 3)) need ``input_shape``
    ((H, W, C) without the batch axis) to size the activations.
    """
    import keras

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = int(batch_size)

    # Per-layer output shapes; for dynamic inputs, infer them from a concrete symbolic input.
    shapes_model = model
    if input_shape is not None:
        inner = keras.Model(model.inputs, [layer.output for layer in model.layers
                                           if not isinstance(layer, keras.Model)])
        spec = inner.compute_output_spec(
            keras.KerasTensor((1,) + tuple(input_shape), dtype=model.inputs[0].dtype)
        )
        outputs = [(s.shape, s.dtype) for s in keras.tree.flatten(spec)]
    else:
        outputs = []
        for layer in shapes_model.layers:
            if isinstance(layer, keras.Model):
                continue
            try:
                tensors = keras.tree.flatten(layer.output)
            except (AttributeError, ValueError):
                continue
            outputs.extend((t.shape, t.dtype) for t in tensors)

    activations = 0
    for shape, dtype in outputs:
        dims = tuple(shape[1:])
        if any(d is None for d in dims):
            raise ValueError(
                f"model {model.name!r} has unknown dimensions {tuple(shape)}; pass "
                "input_shape=(H, W, C) to get_model_memory_usage"
            )
        activations += int(np.prod(dims, dtype=np.int64)) * _itemsize(dtype)

    nested = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            nested += get_model_memory_usage(layer, batch_size)

    params = sum(int(np.prod(w.shape, dtype=np.int64)) * _itemsize(w.dtype)
                 for w in model.weights)
    total_bytes = batch_size * activations + params
    return float(np.round(total_bytes / 1024.0**3, 3) + nested)


__all__ = ["check_weights", "assert_same_weights", "WeightMismatchError",
           "get_model_memory_usage"]
