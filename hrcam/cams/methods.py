"""Where every CAM method is computed: one small class per method over a shared base, and the
registry the engine, the evaluation and the command line read their choices from.

Two kinds of method:

* `ModelCam`: computed from one layer's activations (and, for gradient methods, their
  gradients) inside the engine's single forward(+backward) pass per batch, in TensorFlow:
  `LowResCam` (the paper's low-res CAM), `HighResCam` (its high-res CAM), `GradCamPlusPlus`,
  `LayerCam`.
* `DerivedCam`: computed on the CPU, per image, from the image and the maps of other methods
  (NumPy only, so it runs in worker processes): `RefinedCam` (the paper's postprocessing) and
  `CenterGaussian` (the image-independent baseline).

Adding a method: write one subclass here (or anywhere) and decorate it with `register`; the
engine, `hrcam evaluate localization --methods` and the report pick it up by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np

from hrcam import models as M

__all__ = ["CamMethod", "ModelCam", "DerivedCam", "CAM_METHODS", "register", "method_names",
           "create_method", "LowResCam", "HighResCam", "GradCamPlusPlus", "LayerCam",
           "RefinedCam", "CenterGaussian", "default_layercam_layer"]


class CamMethod:
    """A CAM method. Subclasses set `name` (the registry key) and `description`, and accept
    their options as keyword arguments (unknown options are an error)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: True when the method needs the full model's expansion network.
    requires_full_model: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        if options:
            raise ValueError(f"CAM method {self.name!r} takes no option(s) "
                             f"{', '.join(sorted(options))}")

    def options(self) -> dict[str, Any]:
        """The method's options (recorded with results)."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


class ModelCam(CamMethod):
    """A method computed from one layer of the model inside the engine's forward pass."""

    #: True when the method needs the gradient of the class score w.r.t. the layer's output.
    gradients: ClassVar[bool] = False

    def layer_name(self, model: Any) -> str:
        """The name of the layer whose output the method reads."""
        raise NotImplementedError

    def compute(self, activations: Any, gradients: Any, class_weights: Any) -> Any:
        """The maps (N, h, w) as a float32 tensor, from the layer's ``activations``
        (N, h, w, K), their ``gradients`` (same shape; None unless `gradients`) and the
        classifier's kernel columns of the chosen classes ``class_weights`` (N, K_cam)."""
        raise NotImplementedError


class DerivedCam(CamMethod):
    """A method computed on the CPU, per image, from the image and other methods' maps."""

    #: Names of the methods whose maps `compute` reads.
    inputs: ClassVar[tuple[str, ...]] = ()

    def compute(self, image: np.ndarray, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        """The map of one image (H, W) from the uint8 ``image`` (H, W, 3) and the maps of
        `inputs` for that image."""
        raise NotImplementedError


#: name -> method class, in registration order (the order of tables and figures).
CAM_METHODS: dict[str, type[CamMethod]] = {}


def register(cls: type[CamMethod]) -> type[CamMethod]:
    """Class decorator: add a CAM method to `CAM_METHODS` under its `name`."""
    if not cls.name or not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name):
        raise ValueError(f"a CAM method needs a lower-case identifier as name, got {cls.name!r}")
    if cls.name in CAM_METHODS and CAM_METHODS[cls.name] is not cls:
        raise ValueError(f"a CAM method named {cls.name!r} is already registered")
    CAM_METHODS[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(CAM_METHODS)


def create_method(name: str | CamMethod, **options: Any) -> CamMethod:
    """An instance of the method registered as ``name`` (an instance passes through)."""
    if isinstance(name, CamMethod):
        if options:
            raise ValueError("options cannot be given with a CAM method instance")
        return name
    if name not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {name!r}; expected one of "
                         f"{', '.join(CAM_METHODS)}")
    try:
        return CAM_METHODS[name](**options)
    except TypeError as error:  # an option the method's constructor does not take
        raise ValueError(f"CAM method {name!r}: {error}") from None


def _class_activation_map(activations: Any, class_weights: Any) -> Any:
    """``sum_k W[k, c_n] * A[n, :, :, k]`` (no bias), float32."""
    import tensorflow as tf

    return tf.einsum("nhwk,nk->nhw", tf.cast(activations, tf.float32), class_weights)


@register
class LowResCam(ModelCam):
    """The paper's low-res CAM: the class's Dense weights times the 16 ``conv_aux`` maps
    (1/16 of the input)."""

    name = "low_res"
    description = "low-res CAM (conv_aux, 1/16 resolution)"

    def layer_name(self, model: Any) -> str:
        return M.LOW_FEATURES_LAYER

    def compute(self, activations: Any, gradients: Any, class_weights: Any) -> Any:
        return _class_activation_map(activations, class_weights)


@register
class HighResCam(ModelCam):
    """The paper's high-res CAM: the same weights times the expansion network's
    full-resolution ``high_res_features``."""

    name = "high_res"
    description = "high-res CAM of the expansion network (full resolution)"
    requires_full_model = True

    def layer_name(self, model: Any) -> str:
        return M.HIGH_FEATURES_LAYER

    def compute(self, activations: Any, gradients: Any, class_weights: Any) -> Any:
        return _class_activation_map(activations, class_weights)


def default_layercam_layer(model: Any) -> str:
    """LayerCAM's default layer: ``skip_{num_blocks}``, the deepest encoder dense-block output
    before the bottleneck (stride 8 for the paper's stride-16 models: 28x28 for 224 px)."""
    skips = sorted(int(m.group(1)) for layer in model.layers
                   if (m := re.fullmatch(r"skip_(\d+)", layer.name)))
    if not skips:
        raise ValueError(f"model {model.name!r} has no skip_<k> layer for LayerCAM")
    return f"skip_{skips[-1]}"


class _LayerMethod(ModelCam):
    """A gradient method on a chosen layer (``layer`` option; None: the method's default)."""

    gradients = True
    default_layer: ClassVar[str | None] = None

    def __init__(self, layer: str | None = None) -> None:
        super().__init__()
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"{self.name}: layer must be a layer name, got {layer!r}")
        self.layer = layer

    def options(self) -> dict[str, Any]:
        return {"layer": self.layer}

    def layer_name(self, model: Any) -> str:
        layer = self.layer or self.default_layer or default_layercam_layer(model)
        names = {item.name for item in model.layers}
        if layer not in names:
            raise ValueError(f"{self.name}: the model has no layer {layer!r}")
        return layer


@register
class GradCamPlusPlus(_LayerMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018, exponential-score closed form) on the pre-softmax
    class score: with g = dY_c/dA, alpha = g^2 / (2 g^2 + sum_xy(A) g^3) (0 where the
    denominator is 0), w_k = sum_xy alpha relu(g), map = relu(sum_k w_k A_k). Default layer:
    ``bottleneck``. (For a GAP + Dense head plain Grad-CAM equals CAM.)"""

    name = "gradcam_pp"
    description = "Grad-CAM++ (default layer: bottleneck)"
    default_layer = M.BOTTLENECK_LAYER

    def compute(self, activations: Any, gradients: Any, class_weights: Any) -> Any:
        import tensorflow as tf

        a = tf.cast(activations, tf.float32)
        g = tf.cast(gradients, tf.float32)
        g2 = tf.square(g)
        g3 = g2 * g
        sum_a = tf.reduce_sum(a, axis=[1, 2], keepdims=True)
        denom = 2.0 * g2 + sum_a * g3
        alpha = tf.math.divide_no_nan(g2, tf.where(tf.abs(denom) > 1e-12, denom,
                                                   tf.zeros_like(denom)))
        weights = tf.reduce_sum(alpha * tf.nn.relu(g), axis=[1, 2])  # (N, K)
        return tf.nn.relu(tf.einsum("nhwk,nk->nhw", a, weights))


@register
class LayerCam(_LayerMethod):
    """LayerCAM (Jiang et al. 2021): relu(sum_k relu(g_k) * A_k) on the pre-softmax class
    score. Default layer: ``skip_<num_blocks>`` (stride 8)."""

    name = "layercam"
    description = "LayerCAM (default layer: the deepest encoder block, stride 8)"

    def compute(self, activations: Any, gradients: Any, class_weights: Any) -> Any:
        import tensorflow as tf

        a = tf.cast(activations, tf.float32)
        g = tf.cast(gradients, tf.float32)
        return tf.nn.relu(tf.reduce_sum(tf.nn.relu(g) * a, axis=-1))


@register
class RefinedCam(DerivedCam):
    """The paper's refined CAM: the postprocessing pipeline's ``merged`` map from the image,
    the low-res and the high-res CAM. Options: the pipeline's keywords."""

    name = "refined"
    description = "refined CAM (the paper's postprocessing of the low- and high-res CAMs)"
    requires_full_model = True
    inputs = ("low_res", "high_res")

    def __init__(self, **pipeline_params: Any) -> None:
        from hrcam.postprocessing import validate_pipeline_params

        super().__init__()
        self.params = validate_pipeline_params(**pipeline_params)

    def options(self) -> dict[str, Any]:
        return dict(self.params)

    def compute(self, image: np.ndarray, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        from hrcam.postprocessing import pipeline

        return pipeline(image, maps["low_res"], maps["high_res"], **self.params)["merged"]


@register
class CenterGaussian(DerivedCam):
    """The image-independent baseline: a Gaussian centred on the image (sigma = 1/4 of each
    side). A method that beats it uses the image."""

    name = "center_gaussian"
    description = "image-independent centred Gaussian (sigma = 1/4 of each side)"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def compute(self, image: np.ndarray, maps: Mapping[str, np.ndarray]) -> np.ndarray:
        from hrcam.maps import center_gaussian

        size = (int(image.shape[0]), int(image.shape[1]))
        if size not in self._cache:
            self._cache[size] = center_gaussian(*size)
        return self._cache[size]


def expand_methods(methods: Iterable[CamMethod]) -> list[CamMethod]:
    """The methods plus, in front, default instances of every method a derived one reads."""
    chosen = list(methods)
    names = {m.name for m in chosen}
    extra: list[CamMethod] = []
    for method in chosen:
        for needed in getattr(method, "inputs", ()):
            if needed not in names:
                names.add(needed)
                extra.append(create_method(needed))
    return extra + chosen
