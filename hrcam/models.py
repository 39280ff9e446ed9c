"""The paper's two networks: the FC-DenseNet **half model** (classifier + low-res CAM) and the
**full model** (the same encoder and head plus the FC-DenseNet expansion path, for the high-res
CAM), weight transfer between them, freezing, and the classifier weights the CAMs use.

Architecture (all sizes come from an *arch* dict, see `ARCH_PRESETS`)::

    image (0-255) -> rescale (1/255)
    initial_conv 3x3 (initial_filters) -> initial_bn -> initial_relu            stride 1
    early transition down: early_td_bn -> relu -> 1x1 conv (initial_filters)
                           [-> dropout] -> 2x2 max pool                          stride 2
    for k in 1..num_blocks:
        dense block k (layers_per_block x BN-ReLU-Conv3x3(growth_rate)[-dropout],
                       each layer's output concatenated to its input) -> "skip_k" (stride 2**k)
        transition down k: BN-ReLU-1x1 conv (same width)[-dropout]-2x2 max pool
    bottleneck dense block (bottleneck_layers layers); only its NEW feature maps are
        concatenated -> "bottleneck"                                             stride 2**(num_blocks+1)
    head: "conv_aux" 1x1 conv (cam_channels, no bias, linear) -> "gap" -> "predictions"
          (Dense softmax, L2(l2) kernel regulariser)

Full model, in addition (FC-DenseNet up path, "only new features are upsampled")::

    for i in 1..num_blocks (level k = num_blocks - i + 1):
        "up{i}_tconv": 3x3 transposed conv, stride 2, as many filters as the new feature maps it
                       upsamples; concatenated with "skip_k" ("up{i}_concat")
        dense block (layers_per_block layers); for i < num_blocks its new maps go up
    "high_res_features": final transition up (3x3 transposed conv, stride 2, cam_channels
        filters, linear) of the last decoder block's full stack, undoing the early transition
    "main_output": 1x1 conv (no bias, linear) to the input's channel count: reconstruction of
        the rescaled (0-1) image

With ``decoder_upsampling="resize"`` every transposed convolution is replaced by bilinear x2
upsampling ("up{i}_upsample", "high_res_upsample") followed by a 3x3 convolution of the same
name and width, which has no checkerboard artefacts.

The encoder and head layers carry identical names in both models, so weights transfer by name.
Only built-in Keras layers are used: `keras.models.load_model` needs no custom objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# Architecture presets
# --------------------------------------------------------------------------------------------

#: Named architecture parameter sets. ``"paper"`` (the default) is the ICIP 2019 network
#: (FC-DenseNet, 48 initial filters, growth rate 16, 4 layers per block, 3 blocks + bottleneck,
#: dropout 0.2 as in FC-DenseNet, 16 CAM channels, L2 1e-4 on the classifier). ``"small"`` is a
#: fast variant for CPU runs; ``"tiny"`` is for unit tests. All presets have stride 16.
ARCH_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "initial_filters": 48,
        "growth_rate": 16,
        "layers_per_block": 4,
        "num_blocks": 3,
        "bottleneck_layers": 4,
        "cam_channels": 16,
        "dropout": 0.2,
        "l2": 1e-4,
        "decoder_upsampling": "transpose",
    },
    "small": {
        "initial_filters": 16,
        "growth_rate": 8,
        "layers_per_block": 2,
        "num_blocks": 3,
        "bottleneck_layers": 2,
        "cam_channels": 16,
        "dropout": 0.0,
        "l2": 1e-4,
        "decoder_upsampling": "transpose",
    },
    "tiny": {
        "initial_filters": 8,
        "growth_rate": 4,
        "layers_per_block": 1,
        "num_blocks": 3,
        "bottleneck_layers": 2,
        "cam_channels": 8,
        "dropout": 0.0,
        "l2": 1e-4,
        "decoder_upsampling": "transpose",
    },
}
#: How the expansion network upsamples: the paper's 3x3 stride-2 transposed convolutions, or
#: bilinear upsampling followed by a 3x3 convolution (free of checkerboard artefacts).
DECODER_UPSAMPLING = ("transpose", "resize")
DEFAULT_PRESET = "paper"
ARCH_KEYS: tuple[str, ...] = tuple(ARCH_PRESETS[DEFAULT_PRESET])
_INT_KEYS = (
    "initial_filters",
    "growth_rate",
    "layers_per_block",
    "num_blocks",
    "bottleneck_layers",
    "cam_channels",
)

#: Names of the layers the wrappers, the training code and the tests rely on.
RESCALE_LAYER = "rescale"
BOTTLENECK_LAYER = "bottleneck"
LOW_FEATURES_LAYER = "conv_aux"
GAP_LAYER = "gap"
PREDICTIONS_LAYER = "predictions"
HIGH_FEATURES_LAYER = "high_res_features"
RECONSTRUCTION_LAYER = "main_output"
INPUT_NAME = "image"

_DECODER_NAME = re.compile(r"^up\d+_")
HIGH_UPSAMPLE_LAYER = "high_res_upsample"  # the resize decoder's last upsampling
_DECODER_EXACT = frozenset({HIGH_FEATURES_LAYER, RECONSTRUCTION_LAYER, HIGH_UPSAMPLE_LAYER})


def resolve_arch(arch: str | Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """The full architecture dict: a preset name (or a partial dict over the default preset,
    or None for the default ``"paper"``), then keyword overrides. Validated.

    >>> resolve_arch("small", growth_rate=4)["growth_rate"]
    4
    """
    if arch is None:
        base = dict(ARCH_PRESETS[DEFAULT_PRESET])
    elif isinstance(arch, str):
        if arch not in ARCH_PRESETS:
            raise ValueError(
                f"unknown arch preset {arch!r}; allowed values: {sorted(ARCH_PRESETS)}"
            )
        base = dict(ARCH_PRESETS[arch])
    elif isinstance(arch, Mapping):
        arch = dict(arch)
        preset = arch.pop("preset", None)
        base = resolve_arch(preset)
        base.update(arch)
    else:
        raise ValueError(f"arch must be a preset name, a dict or None, not {type(arch).__name__}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    base.update(overrides)
    unknown = sorted(set(base) - set(ARCH_KEYS))
    if unknown:
        raise ValueError(f"unknown arch parameter(s) {unknown}; allowed: {list(ARCH_KEYS)}")
    for key in _INT_KEYS:
        value = base[key]
        if isinstance(value, bool) or int(value) != value or int(value) < 1:
            raise ValueError(f"arch parameter {key!r} must be an integer >= 1, got {value!r}")
        base[key] = int(value)
    if not 0.0 <= float(base["dropout"]) < 1.0:
        raise ValueError(f"arch parameter 'dropout' must be in [0, 1), got {base['dropout']!r}")
    if float(base["l2"]) < 0:
        raise ValueError(f"arch parameter 'l2' must be >= 0, got {base['l2']!r}")
    if base["decoder_upsampling"] not in DECODER_UPSAMPLING:
        raise ValueError(f"arch parameter 'decoder_upsampling' must be one of "
                         f"{DECODER_UPSAMPLING}, got {base['decoder_upsampling']!r}")
    base["dropout"] = float(base["dropout"])
    base["l2"] = float(base["l2"])
    return base


def model_stride(arch: Any = None) -> int:
    """Total downsampling factor of the encoder: ``2 ** (num_blocks + 1)`` (16 by default).

    ``arch`` may be a preset name, an arch dict, None (default preset) or a built Keras model.
    """
    if arch is not None and hasattr(arch, "layers"):
        return 2 ** (infer_arch(arch)["num_blocks"] + 1)
    return 2 ** (resolve_arch(arch)["num_blocks"] + 1)


def _input_shape(input_shape: Any) -> tuple:
    if input_shape is None:
        return (None, None, 3)
    if isinstance(input_shape, int):
        return (input_shape, input_shape, 3)
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = shape + (3,)
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(f"input_shape must be (H, W, C) with a known C, got {input_shape!r}")
    return shape


def _check_divisible(shape: tuple, stride: int) -> None:
    for side in shape[:2]:
        if side is not None and side % stride:
            raise ValueError(
                f"input height and width must be divisible by the model stride {stride}; "
                f"got input_shape {shape}"
            )


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _layers():
    import keras

    return keras.layers


def _conv_unit(x, filters: int, kernel: int, prefix: str, dropout: float):
    """BN -> ReLU -> Conv(kernel, same) [-> Dropout], layers named ``prefix_*``."""
    L = _layers()
    x = L.BatchNormalization(name=f"{prefix}_bn")(x)
    x = L.ReLU(name=f"{prefix}_relu")(x)
    x = L.Conv2D(
        filters, kernel, padding="same", kernel_initializer="he_uniform", name=f"{prefix}_conv"
    )(x)
    if dropout > 0:
        x = L.Dropout(dropout, name=f"{prefix}_dropout")(x)
    return x


def _dense_block(x, num_layers: int, growth_rate: int, prefix: str, dropout: float,
                 stack_name: str | None = None):
    """A dense block. Returns (stack, new): ``stack`` = input + all new maps (its last
    concatenation named ``stack_name`` when given), ``new`` = the list of new feature maps."""
    L = _layers()
    new = []
    stack = x
    for i in range(1, num_layers + 1):
        y = _conv_unit(stack, growth_rate, 3, f"{prefix}_l{i}", dropout)
        new.append(y)
        name = stack_name if (i == num_layers and stack_name) else f"{prefix}_stack{i}"
        stack = L.Concatenate(name=name)([stack, y])
    return stack, new


def _transition_down(x, prefix: str, dropout: float):
    """FC-DenseNet transition down: BN-ReLU-1x1 conv (same width)[-dropout]-2x2 max pool."""
    L = _layers()
    x = _conv_unit(x, int(x.shape[-1]), 1, prefix, dropout)
    return L.MaxPooling2D(2, name=f"{prefix}_pool")(x)


def _encoder_and_head(num_classes: int, input_shape: tuple, arch: dict):
    """Build the shared part. Returns (inputs, predictions, skips, bottleneck_new_maps)."""
    import keras

    L = keras.layers
    dropout = arch["dropout"]
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = L.Rescaling(1.0 / 255.0, name=RESCALE_LAYER)(inputs)
    x = L.Conv2D(
        arch["initial_filters"], 3, padding="same", kernel_initializer="he_uniform",
        name="initial_conv",
    )(x)
    x = L.BatchNormalization(name="initial_bn")(x)
    x = L.ReLU(name="initial_relu")(x)
    # Early transition down (the original's `early_transition=True` of keras-contrib's
    # DenseNetFCN): BN-ReLU-1x1 conv (initial_filters)[-dropout]-2x2 max pool.
    x = _transition_down(x, "early_td", dropout)

    skips = []
    for k in range(1, arch["num_blocks"] + 1):
        x, _ = _dense_block(
            x, arch["layers_per_block"], arch["growth_rate"], f"block{k}", dropout,
            stack_name=f"skip_{k}",
        )
        skips.append(x)
        x = _transition_down(x, f"td{k}", dropout)

    _, new = _dense_block(x, arch["bottleneck_layers"], arch["growth_rate"], "bottleneck", dropout)
    if len(new) == 1:
        bottleneck = L.Identity(name=BOTTLENECK_LAYER)(new[0])
    else:
        bottleneck = L.Concatenate(name=BOTTLENECK_LAYER)(new)

    low = L.Conv2D(
        arch["cam_channels"], 1, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=LOW_FEATURES_LAYER,
    )(bottleneck)
    gap = L.GlobalAveragePooling2D(name=GAP_LAYER)(low)
    predictions = L.Dense(
        num_classes, activation="softmax",
        kernel_regularizer=keras.regularizers.L2(arch["l2"]) if arch["l2"] > 0 else None,
        dtype="float32",  # softmax in float32 under mixed precision
        name=PREDICTIONS_LAYER,
    )(gap)
    return inputs, predictions, skips, bottleneck


def _check_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return int(num_classes)


def build_half_model(num_classes: int, input_shape: Any = (224, 224, 3),
                     arch: str | Mapping[str, Any] | None = None, name: str = "half_model",
                     **arch_overrides: Any):
    """The half model (classifier): image -> ``predictions`` (softmax over ``num_classes``).

    ``input_shape`` is (H, W, C); H and W may be None (any size divisible by the stride).
    ``arch`` is a preset name or dict; further keyword arguments override single parameters,
    e.g. ``build_half_model(10, (64, 64, 3), "small", growth_rate=4)``. Not compiled.
    """
    import keras

    arch = resolve_arch(arch, **arch_overrides)
    shape = _input_shape(input_shape)
    _check_divisible(shape, model_stride(arch))
    inputs, predictions, _, _ = _encoder_and_head(_check_classes(num_classes), shape, arch)
    return keras.Model(inputs, predictions, name=name)


def build_full_model(num_classes: int, input_shape: Any = (224, 224, 3),
                     arch: str | Mapping[str, Any] | None = None, name: str = "full_model",
                     **arch_overrides: Any):
    """The full model: outputs ``[predictions, main_output]`` (in that order, named so that
    the loss can be given per output). Encoder and head layers are named exactly as in
    `build_half_model`. ``high_res_features`` is the cam_channels-wide full-resolution decoder
    map. Not compiled.

    Keras 3 (3.15) rejects a loss dict that names only some outputs of a list-output model, so
    train the decoder with ``compile(loss=[None, "mse"])`` (or
    ``loss={"predictions": None, "main_output": "mse"}`` with list targets ``[dummy, x / 255]``);
    ``fit(x, {"main_output": x / 255})`` works with ``loss=[None, "mse"]``. Alternatively compile
    `reconstruction_model` (same layers, one output) with ``loss="mse"``."""
    import keras

    L = keras.layers
    arch = resolve_arch(arch, **arch_overrides)
    shape = _input_shape(input_shape)
    _check_divisible(shape, model_stride(arch))
    inputs, predictions, skips, bottleneck = _encoder_and_head(
        _check_classes(num_classes), shape, arch
    )
    dropout = arch["dropout"]
    n_blocks = arch["num_blocks"]
    to_upsample = bottleneck
    n_up = arch["bottleneck_layers"] * arch["growth_rate"]
    stack = None
    resize = arch["decoder_upsampling"] == "resize"
    for i in range(1, n_blocks + 1):
        skip = skips[n_blocks - i]
        up = _upsample(to_upsample, n_up, resize, f"up{i}_upsample", f"up{i}_tconv")
        x = L.Concatenate(name=f"up{i}_concat")([up, skip])
        stack, new = _dense_block(x, arch["layers_per_block"], arch["growth_rate"], f"up{i}",
                                  dropout)
        if i < n_blocks:
            to_upsample = new[0] if len(new) == 1 else L.Concatenate(name=f"up{i}_new")(new)
            n_up = arch["layers_per_block"] * arch["growth_rate"]
    high = _upsample(stack, arch["cam_channels"], resize, HIGH_UPSAMPLE_LAYER,
                     HIGH_FEATURES_LAYER)
    reconstruction = L.Conv2D(
        shape[-1], 1, padding="same", use_bias=False, kernel_initializer="he_normal",
        dtype="float32",  # reconstruction loss in float32 under mixed precision
        name=RECONSTRUCTION_LAYER,
    )(high)
    return keras.Model(inputs, [predictions, reconstruction], name=name)


def _upsample(x, filters: int, resize: bool, upsample_name: str, conv_name: str):
    """x2 upsampling of the expansion path: a 3x3 stride-2 transposed convolution (the paper),
    or bilinear upsampling then a 3x3 convolution (``resize``). The convolution carries
    ``conv_name`` either way."""
    L = _layers()
    if not resize:
        return L.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                 kernel_initializer="he_uniform", name=conv_name)(x)
    x = L.UpSampling2D(2, interpolation="bilinear", name=upsample_name)(x)
    return L.Conv2D(filters, 3, padding="same", kernel_initializer="he_uniform",
                    name=conv_name)(x)


def reconstruction_model(full):
    """A single-output view of the full model (image -> ``main_output``) sharing its layers,
    for decoder training with ``compile(loss="mse")``; save the full model afterwards."""
    import keras

    return keras.Model(full.inputs, full.get_layer(RECONSTRUCTION_LAYER).output,
                       name=f"{full.name}_reconstruction")


def infer_arch(model) -> dict[str, Any]:
    """Recover the arch dict from a model built by this module (e.g. after `load_model`)."""
    names = [layer.name for layer in model.layers]
    try:
        arch = {
            "initial_filters": model.get_layer("initial_conv").filters,
            "growth_rate": model.get_layer("block1_l1_conv").filters,
            "layers_per_block": sum(bool(re.fullmatch(r"block1_l\d+_conv", n)) for n in names),
            "num_blocks": sum(bool(re.fullmatch(r"skip_\d+", n)) for n in names),
            "bottleneck_layers": sum(bool(re.fullmatch(r"bottleneck_l\d+_conv", n)) for n in names),
            "cam_channels": model.get_layer(LOW_FEATURES_LAYER).filters,
        }
        dense = model.get_layer(PREDICTIONS_LAYER)
    except ValueError as error:
        raise ValueError(f"model {model.name!r} was not built by hrcam.models: {error}") from None
    dropouts = [layer.rate for layer in model.layers if layer.name.endswith("_dropout")]
    arch["dropout"] = float(dropouts[0]) if dropouts else 0.0
    reg = dense.kernel_regularizer
    arch["l2"] = float(getattr(reg, "l2", 0.0)) if reg is not None else 0.0
    arch["decoder_upsampling"] = "resize" if HIGH_UPSAMPLE_LAYER in names else "transpose"
    return resolve_arch(arch)


def full_model_from_half(half, *, freeze: bool = True, name: str = "full_model"):
    """Build the full model matching a (trained) half model's architecture, input shape and
    class count, copy the shared weights and (by default) freeze them."""
    full = build_full_model(
        int(half.get_layer(PREDICTIONS_LAYER).units), tuple(half.inputs[0].shape[1:]),
        infer_arch(half), name=name,
    )
    transfer_weights(half, full)
    if freeze:
        freeze_shared(full)
    return full


# --------------------------------------------------------------------------------------------
# Weight transfer and freezing
# --------------------------------------------------------------------------------------------


def is_decoder_layer(name: str) -> bool:
    """True for the full model's expansion-path layers (never shared with the half model)."""
    return bool(_DECODER_NAME.match(name)) or name in _DECODER_EXACT


def shared_layer_names(model, other=None) -> list[str]:
    """Names of the encoder + head layers of ``model`` (every layer except the input and the
    decoder), in model order. With ``other``, only those also present in ``other``."""
    names = [
        layer.name
        for layer in model.layers
        if layer.__class__.__name__ != "InputLayer" and not is_decoder_layer(layer.name)
    ]
    if other is not None:
        present = {layer.name for layer in other.layers}
        names = [n for n in names if n in present]
    return names


def transfer_weights(half, full, layer_names: Iterable[str] | None = None) -> list[str]:
    """Copy every weighted layer of ``half`` (BatchNorm moving statistics included) into the
    layer of the same name in ``full``. Returns the names copied. Raises ValueError when a layer
    is missing in ``full`` or its weight shapes differ (e.g. another arch or class count)."""
    names = list(layer_names) if layer_names is not None else shared_layer_names(half)
    copied = []
    for name in names:
        src = half.get_layer(name)
        if not src.weights:
            continue
        try:
            dst = full.get_layer(name)
        except ValueError:
            raise ValueError(f"transfer_weights: layer {name!r} of {half.name!r} is missing "
                             f"from {full.name!r}") from None
        src_w = src.get_weights()
        dst_w = dst.get_weights()
        shapes_src = [w.shape for w in src_w]
        shapes_dst = [w.shape for w in dst_w]
        if shapes_src != shapes_dst:
            raise ValueError(
                f"transfer_weights: layer {name!r} has weight shapes {shapes_src} in "
                f"{half.name!r} but {shapes_dst} in {full.name!r} (different arch or classes?)"
            )
        dst.set_weights(src_w)
        copied.append(name)
    if not copied:
        raise ValueError("transfer_weights: no weighted layer was shared between the models")
    return copied


def freeze_shared(full, layer_names: Iterable[str] | None = None) -> list[str]:
    """Set ``trainable = False`` on the shared (encoder + head) layers of ``full`` (or on
    ``layer_names``). Keras 3 BatchNormalization layers that are not trainable always run in
    inference mode, so the frozen classifier's outputs stay identical to the half model's.
    Recompile the model afterwards. Returns the names frozen."""
    names = list(layer_names) if layer_names is not None else shared_layer_names(full)
    for name in names:
        full.get_layer(name).trainable = False
    return names


# --------------------------------------------------------------------------------------------
# CAM helpers
# --------------------------------------------------------------------------------------------


def class_weights(model, bias: bool = False):
    """The classifier's Dense kernel W (K x C) as float32 numpy; with ``bias=True`` the pair
    (W, b). The CAM of class c is ``sum_k W[k, c] * A_k`` (no bias)."""
    dense = model.get_layer(PREDICTIONS_LAYER)
    kernel = np.asarray(dense.kernel.numpy(), dtype=np.float32)
    if not bias:
        return kernel
    b = np.asarray(dense.bias.numpy(), dtype=np.float32) if dense.use_bias else np.zeros(
        kernel.shape[1], np.float32)
    return kernel, b


__all__ = [
    "ARCH_PRESETS",
    "DECODER_UPSAMPLING",
    "ARCH_KEYS",
    "DEFAULT_PRESET",
    "resolve_arch",
    "model_stride",
    "build_half_model",
    "build_full_model",
    "infer_arch",
    "reconstruction_model",
    "full_model_from_half",
    "is_decoder_layer",
    "shared_layer_names",
    "transfer_weights",
    "freeze_shared",
    "class_weights",
]
