"""The CAM engine and the method registry: every method's map against its definition computed
by hand from the layers' outputs, one engine for several methods, predicted vs chosen classes,
the full-model requirement, and a method added through the registry."""

from __future__ import annotations

import numpy as np
import pytest

import keras  # noqa: E402

from hrcam import models  # noqa: E402
from hrcam.cams import CAM_METHODS, CamEngine, ModelCam, method_names, register  # noqa: E402
from hrcam.cams.methods import CenterGaussian, RefinedCam  # noqa: E402
from hrcam.postprocessing import pipeline  # noqa: E402

IM = 32  # image side of the shared `tiny_run` fixture (conftest.TINY_IM)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, IM, IM, 3)).astype(np.float32)


def _layer_outputs(model, names, x):
    outputs = keras.Model(model.input, [model.get_layer(n).output for n in names])(
        x, training=False)
    return [np.asarray(a) for a in (outputs if len(names) > 1 else [outputs])]


def test_registry_lists_the_paper_methods_and_baselines():
    assert method_names() == ("low_res", "high_res", "gradcam_pp", "layercam", "refined",
                              "center_gaussian")
    assert all(CAM_METHODS[name].description for name in method_names())


def test_model_methods_match_their_definitions(tiny_run):
    model = tiny_run["full_model"]
    x = _images(3)
    classes = np.array([0, 2, 1])
    out = CamEngine(model, method_names())(x, classes)
    assert out["low_res"].shape == (3, IM // 16, IM // 16)
    assert out["high_res"].shape == (3, IM, IM)
    assert out["layercam"].shape == (3, IM // 8, IM // 8)  # skip_3: stride 8
    assert out["gradcam_pp"].shape == (3, IM // 16, IM // 16)
    assert (out["layercam"] >= 0).all() and (out["gradcam_pp"] >= 0).all()
    np.testing.assert_array_equal(out["classes"], classes)
    low, high, probs, bottleneck = _layer_outputs(
        model, ["conv_aux", "high_res_features", "predictions", "bottleneck"], x)
    w = models.class_weights(model)
    for n, c in enumerate(classes):
        # the low/high CAMs are sum_k W[k, c] A_k (no bias)
        np.testing.assert_allclose(out["low_res"][n], low[n] @ w[:, c], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["high_res"][n], high[n] @ w[:, c], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["probabilities"], probs, atol=1e-6)
    # Grad-CAM++ at the bottleneck in closed form: the logit is linear in the bottleneck
    # activations A (1x1 conv_aux, GAP, Dense), so g_k = v_k / (h w) with v = U W[:, c]
    # everywhere, alpha = 1 / (2 + S_k g_k), w_k = h w relu(g_k) alpha_k.
    u = np.asarray(model.get_layer("conv_aux").kernel.numpy())[0, 0]  # (K_b, K)
    hw = bottleneck.shape[1] * bottleneck.shape[2]
    for n, c in enumerate(classes):
        g = (u @ w[:, c]) / hw
        s = bottleneck[n].sum(axis=(0, 1))
        den = 2 * g ** 2 + s * g ** 3
        alpha = np.divide(g ** 2, den, out=np.zeros_like(g), where=np.abs(den) > 1e-12)
        weights = hw * np.maximum(g, 0) * alpha
        expected = np.maximum(bottleneck[n] @ weights, 0)
        np.testing.assert_allclose(out["gradcam_pp"][n], expected, rtol=1e-3, atol=1e-5)


def test_layercam_matches_gradients_by_hand(tiny_run):
    import tensorflow as tf

    model = tiny_run["full_model"]
    x = _images(2, seed=1)
    out = CamEngine(model, ["layercam"])(x, [1, 0])
    sub = keras.Model(model.input, [model.get_layer("skip_3").output,
                                    model.get_layer("gap").output])
    kernel, bias = models.class_weights(model, bias=True)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        act, gap = sub(xt, training=False)
        score = tf.reduce_sum((gap @ kernel + bias) * tf.one_hot([1, 0], kernel.shape[1]))
    grads = tape.gradient(score, act).numpy()
    expected = np.maximum((np.maximum(grads, 0) * act.numpy()).sum(-1), 0)
    np.testing.assert_allclose(out["layercam"], expected, rtol=1e-4, atol=1e-6)


def test_derived_methods_and_predicted_classes(tiny_run):
    model = tiny_run["full_model"]
    x = np.rint(_images(2, seed=2))
    engine = CamEngine(model, ["refined", "center_gaussian"])
    # the refined CAM pulls in the maps it is made from
    assert engine.method_names == ["low_res", "high_res", "refined", "center_gaussian"]
    out = engine(x, derived=True)
    np.testing.assert_array_equal(out["classes"], out["probabilities"].argmax(1))
    for n in range(2):
        expected = pipeline(x[n].astype(np.uint8), out["low_res"][n], out["high_res"][n])
        np.testing.assert_array_equal(out["refined"][n], expected["merged"])
    assert out["center_gaussian"].shape == (2, IM, IM)
    assert out["center_gaussian"][0].max() == 1.0
    assert np.unravel_index(out["center_gaussian"][0].argmax(), (IM, IM)) in {
        (IM // 2 - 1, IM // 2 - 1), (IM // 2, IM // 2), (IM // 2 - 1, IM // 2),
        (IM // 2, IM // 2 - 1)}


def test_method_options_and_requirements(tiny_run):
    half = keras.models.load_model(tiny_run["half"], compile=False)
    with pytest.raises(ValueError, match="full model"):
        CamEngine(half, ["high_res"])
    assert set(CamEngine(half, ["low_res", "gradcam_pp", "layercam"])(
        _images(1)).keys()) >= {"low_res", "gradcam_pp", "layercam"}
    with pytest.raises(ValueError, match="no layer 'nope'"):
        CamEngine(half, [CAM_METHODS["gradcam_pp"](layer="nope")])
    with pytest.raises(ValueError, match="unknown CAM method 'cam9000'"):
        CamEngine(half, ["cam9000"])
    with pytest.raises(ValueError, match="merge_alpha"):
        RefinedCam(merge_alpha=2)
    with pytest.raises(ValueError, match="takes no option"):
        CenterGaussian(sigma=3)
    with pytest.raises(ValueError, match="batch_size"):
        CamEngine(half, ["low_res"], batch_size=0)
    with pytest.raises(ValueError, match="out of range"):
        CamEngine(half, ["low_res"])(_images(1), [7])


def test_a_new_method_is_one_registered_class(tiny_run):
    @register
    class BottleneckEnergy(ModelCam):
        name = "bottleneck_energy"
        description = "sum of squared bottleneck activations (test method)"

        def layer_name(self, model):
            return "bottleneck"

        def compute(self, activations, gradients, class_weights):
            import tensorflow as tf

            return tf.reduce_sum(tf.square(activations), axis=-1)

    try:
        assert "bottleneck_energy" in method_names()
        model = tiny_run["full_model"]
        x = _images(2, seed=3)
        out = CamEngine(model, ["bottleneck_energy", "low_res"])(x)
        (bottleneck,) = _layer_outputs(model, ["bottleneck"], x)
        np.testing.assert_allclose(out["bottleneck_energy"], (bottleneck ** 2).sum(-1),
                                   rtol=1e-5)
        # the command line offers it too
        from hrcam.cli import build_parser

        args = build_parser().parse_args(["evaluate", "localization", "--model", "m.keras",
                                          "--data", "d", "--out", "o", "--methods",
                                          "bottleneck_energy"])
        assert args.methods == ["bottleneck_energy"]
    finally:
        CAM_METHODS.pop("bottleneck_energy")
