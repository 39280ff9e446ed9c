"""hrcam.models: architecture, layer names, shapes, save/load, weight transfer and freezing,
and the CAM arithmetic against the layers' own outputs."""

from __future__ import annotations

import numpy as np
import pytest

import keras  # noqa: E402

# Keras' own numpy conversion warns under NumPy 2; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from hrcam import models as M  # noqa: E402
from hrcam.debug import check_weights  # noqa: E402

NUM_CLASSES = 4
# Small but complete: every block has 2 layers, so concatenations and skips are exercised.
ARCH = dict(initial_filters=8, growth_rate=4, layers_per_block=2, num_blocks=3,
            bottleneck_layers=2, cam_channels=6, dropout=0.0, l2=1e-4)


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def half():
    keras.utils.set_random_seed(1)
    return M.build_half_model(NUM_CLASSES, (None, None, 3), ARCH)


@pytest.fixture(scope="module")
def full():
    keras.utils.set_random_seed(2)
    return M.build_full_model(NUM_CLASSES, (None, None, 3), ARCH)


# ------------------------------------------------------------------------------------------
# Architecture parameters
# ------------------------------------------------------------------------------------------


def test_resolve_arch_presets_and_overrides():
    paper = M.resolve_arch()
    assert paper == M.ARCH_PRESETS["paper"]
    assert paper["initial_filters"] == 48 and paper["growth_rate"] == 16
    assert paper["layers_per_block"] == 4 and paper["cam_channels"] == 16
    small = M.resolve_arch("small", growth_rate=4)
    assert small["growth_rate"] == 4
    assert small["initial_filters"] == M.ARCH_PRESETS["small"]["initial_filters"]
    partial = M.resolve_arch({"preset": "small", "cam_channels": 8})
    assert partial["cam_channels"] == 8 and partial["growth_rate"] == 8
    # a partial dict without preset starts from the paper's values
    assert M.resolve_arch({"dropout": 0.0})["initial_filters"] == 48
    # the presets are not mutated by overrides
    assert M.ARCH_PRESETS["small"]["growth_rate"] == 8


@pytest.mark.parametrize(
    "arch, overrides, word",
    [
        ("huge", {}, "huge"),
        (None, {"depth": 3}, "depth"),
        (None, {"growth_rate": 0}, "growth_rate"),
        (None, {"num_blocks": 2.5}, "num_blocks"),
        (None, {"dropout": 1.0}, "dropout"),
        (None, {"l2": -1.0}, "l2"),
    ],
)
def test_resolve_arch_rejects_bad_values(arch, overrides, word):
    with pytest.raises(ValueError, match=word):
        M.resolve_arch(arch, **overrides)


def test_model_stride():
    assert M.model_stride() == 16
    assert all(M.model_stride(name) == 16 for name in M.ARCH_PRESETS)
    assert M.model_stride({"num_blocks": 2}) == 8
    assert M.model_stride(M.build_half_model(2, (32, 32, 3), ARCH, num_blocks=2)) == 8


# ------------------------------------------------------------------------------------------
# Shapes and layer names
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w", [(32, 32), (32, 64), (48, 80)])
def test_half_model_shapes(half, h, w):
    x = _images(2, h, w)
    features = keras.Model(
        half.inputs,
        [half.get_layer(n).output for n in ("skip_1", "skip_2", "skip_3", "bottleneck",
                                            "conv_aux", "gap", "predictions")],
    )
    skip1, skip2, skip3, bottleneck, low, gap, probs = features.predict_on_batch(x)
    g, k, L = ARCH["growth_rate"], ARCH["initial_filters"], ARCH["layers_per_block"]
    # skip_k is the dense block output before transition k, at stride 2**k
    assert skip1.shape == (2, h // 2, w // 2, k + L * g)
    assert skip2.shape == (2, h // 4, w // 4, k + 2 * L * g)
    assert skip3.shape == (2, h // 8, w // 8, k + 3 * L * g)
    # only the bottleneck block's new feature maps are concatenated
    assert bottleneck.shape == (2, h // 16, w // 16, ARCH["bottleneck_layers"] * g)
    assert low.shape == (2, h // 16, w // 16, ARCH["cam_channels"])
    assert gap.shape == (2, ARCH["cam_channels"])
    np.testing.assert_allclose(gap, low.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert probs.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_paper_default_sizes():
    model = M.build_half_model(398, (224, 224, 3))
    assert model.get_layer("bottleneck").output.shape[1:] == (14, 14, 64)
    assert [model.get_layer(f"skip_{i}").output.shape[1:3] for i in (1, 2, 3)] == [
        (112, 112), (56, 56), (28, 28)]
    assert model.get_layer("conv_aux").output.shape[1:] == (14, 14, 16)
    assert model.get_layer("predictions").output.shape[1:] == (398,)
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts and set(dropouts) == {0.2}


def test_head_layers(half):
    conv_aux = half.get_layer("conv_aux")
    assert conv_aux.kernel_size == (1, 1) and not conv_aux.use_bias
    assert conv_aux.filters == ARCH["cam_channels"]
    assert isinstance(half.get_layer("gap"), keras.layers.GlobalAveragePooling2D)
    dense = half.get_layer("predictions")
    assert dense.activation is keras.activations.softmax
    assert float(dense.kernel_regularizer.l2) == pytest.approx(1e-4)
    rescale = half.get_layer("rescale")
    assert rescale.scale == pytest.approx(1 / 255)


@pytest.mark.parametrize("h, w", [(32, 32), (32, 64)])
def test_full_model_shapes_and_outputs(full, h, w):
    x = _images(2, h, w)
    assert full.output_names == ["predictions", "main_output"]
    probs, recon = full.predict_on_batch(x)
    assert probs.shape == (2, NUM_CLASSES) and recon.shape == (2, h, w, 3)
    high = keras.Model(full.inputs, full.get_layer("high_res_features").output)
    assert high.predict_on_batch(x).shape == (2, h, w, ARCH["cam_channels"])
    main = full.get_layer("main_output")
    assert main.kernel_size == (1, 1) and not main.use_bias and main.filters == 3


def test_full_and_half_share_encoder_names(half, full):
    half_names = [layer.name for layer in half.layers if layer.name != "image"]
    assert M.shared_layer_names(half) == half_names
    assert M.shared_layer_names(full) == half_names  # same names, same order
    decoder = [layer.name for layer in full.layers if M.is_decoder_layer(layer.name)]
    assert "high_res_features" in decoder and "main_output" in decoder
    assert all(layer.name.startswith("up") for layer in full.layers
               if M.is_decoder_layer(layer.name) and layer.name not in
               ("high_res_features", "main_output"))
    assert not set(decoder) & set(half_names)


def test_fixed_input_shape_must_be_divisible():
    with pytest.raises(ValueError, match="divisible"):
        M.build_half_model(3, (40, 32, 3), ARCH)
    model = M.build_full_model(3, (32, 48, 3), ARCH)
    assert model.predict_on_batch(_images(1, 32, 48))[1].shape == (1, 32, 48, 3)


def test_uint8_and_float_inputs_agree(half):
    x = _images(2, 32, 32)
    np.testing.assert_array_equal(half.predict_on_batch(x),
                                  half.predict_on_batch(x.astype(np.float32)))


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        M.build_half_model(0, (32, 32, 3), ARCH)


# ------------------------------------------------------------------------------------------
# Save / load
# ------------------------------------------------------------------------------------------


def test_keras_round_trip_without_custom_objects(full, tmp_path):
    x = _images(2, 32, 64)
    path = tmp_path / "full.keras"
    full.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    for a, b in zip(full.predict_on_batch(x), loaded.predict_on_batch(x)):
        np.testing.assert_array_equal(a, b)
    assert M.infer_arch(loaded) == M.resolve_arch(ARCH)


def test_weights_h5_round_trip(half, tmp_path):
    x = _images(2, 32, 32)
    path = tmp_path / "half.weights.h5"
    half.save_weights(path)
    rebuilt = M.build_half_model(NUM_CLASSES, (32, 32, 3), ARCH)
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(half.predict_on_batch(x), rebuilt.predict_on_batch(x))


# ------------------------------------------------------------------------------------------
# Transfer and freezing
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_pair():
    """A half model trained for a few steps (so BatchNorm statistics are not the initial ones),
    with dropout to exercise the inference path, and a full model with the transferred, frozen
    encoder and head."""
    keras.utils.set_random_seed(3)
    arch = dict(ARCH, dropout=0.2)
    half = M.build_half_model(NUM_CLASSES, (None, None, 3), arch)
    half.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0),
                 loss="categorical_crossentropy")
    x = _images(8, 32, 48, seed=5)
    y = keras.utils.to_categorical(np.arange(8) % NUM_CLASSES, NUM_CLASSES)
    half.fit(x, y, epochs=2, batch_size=4, verbose=0)
    full = M.build_full_model(NUM_CLASSES, (None, None, 3), arch)
    copied = M.transfer_weights(half, full)
    frozen = M.freeze_shared(full)
    return half, full, copied, frozen, x


def test_transfer_copies_every_weighted_shared_layer(trained_pair):
    half, full, copied, frozen, _ = trained_pair
    weighted = [layer.name for layer in half.layers if layer.weights]
    assert copied == weighted
    assert "conv_aux" in copied and "predictions" in copied and "initial_bn" in copied
    assert frozen == M.shared_layer_names(full)
    assert all(not full.get_layer(n).trainable for n in frozen)
    assert all(layer.trainable for layer in full.layers
               if M.is_decoder_layer(layer.name) and layer.weights)
    # the BatchNorm moving statistics were trained and copied
    bn = half.get_layer("block1_l1_bn")
    assert not np.allclose(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(),
                                  full.get_layer("block1_l1_bn").moving_mean.numpy())
    report = check_weights(half, full)
    assert report["different"] == [] and report["compared"] == weighted


def test_frozen_full_model_predicts_like_half_even_after_decoder_training(trained_pair):
    half, full, _, _, x = trained_pair
    expected = half.predict_on_batch(x)
    np.testing.assert_array_equal(full.predict_on_batch(x)[0], expected)
    shared_before = {n: [w.copy() for w in full.get_layer(n).get_weights()]
                     for n in M.shared_layer_names(full) if full.get_layer(n).weights}
    decoder_before = full.get_layer("high_res_features").get_weights()[0].copy()

    full.compile(optimizer=keras.optimizers.Adam(1e-2), loss=[None, "mse"])
    full.fit(x, {"main_output": x.astype(np.float32) / 255.0}, epochs=1, batch_size=4,
             verbose=0)

    # the decoder trained ...
    assert not np.array_equal(full.get_layer("high_res_features").get_weights()[0],
                              decoder_before)
    # ... while every shared weight (BatchNorm statistics included) and the predictions did not
    for name, weights in shared_before.items():
        for a, b in zip(weights, full.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(full.predict_on_batch(x)[0], expected)
    assert check_weights(half, full)["different"] == []


def test_frozen_batchnorm_runs_in_inference_mode():
    keras.utils.set_random_seed(4)
    half = M.build_half_model(3, (32, 32, 3), ARCH)
    bn = half.get_layer("initial_bn")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 0.3, np.float32))
    bn.moving_variance.assign(np.full(bn.moving_variance.shape, 2.0, np.float32))
    full = M.build_full_model(3, (32, 32, 3), ARCH)
    M.transfer_weights(half, full)
    M.freeze_shared(full)
    x = _images(4, 32, 32, seed=9)
    probs_training = full(x.astype(np.float32), training=True)[0].numpy()
    np.testing.assert_allclose(probs_training, half.predict_on_batch(x), rtol=1e-5, atol=1e-6)


def test_transfer_rejects_mismatched_models(half):
    other = M.build_full_model(NUM_CLASSES + 1, (None, None, 3), ARCH)
    with pytest.raises(ValueError, match="predictions"):
        M.transfer_weights(half, other)
    wider = M.build_full_model(NUM_CLASSES, (None, None, 3), ARCH, initial_filters=12)
    with pytest.raises(ValueError, match="initial_conv"):
        M.transfer_weights(half, wider)


def test_full_model_from_half(trained_pair):
    half, _, _, _, x = trained_pair
    full = M.full_model_from_half(half)
    np.testing.assert_array_equal(full.predict_on_batch(x)[0], half.predict_on_batch(x))
    assert not full.get_layer("conv_aux").trainable
    assert full.get_layer("high_res_features").trainable


def test_reconstruction_model_shares_layers(full):
    recon = M.reconstruction_model(full)
    x = _images(1, 32, 32)
    np.testing.assert_array_equal(recon.predict_on_batch(x), full.predict_on_batch(x)[1])
    assert recon.get_layer("main_output") is full.get_layer("main_output")


# ------------------------------------------------------------------------------------------
# CAM arithmetic
# ------------------------------------------------------------------------------------------


def test_low_cam_mean_plus_bias_gives_the_logits(full):
    """GAP and the Dense layer are linear: mean_space(CAM_c) + b_c is the logit of class c."""
    from hrcam.cams import CamEngine

    x = _images(3, 32, 64, seed=3)
    dense = full.get_layer("predictions")
    dense.bias.assign(np.linspace(-0.5, 0.5, NUM_CLASSES).astype(np.float32))
    engine = CamEngine(full, ["low_res"])
    w, b = M.class_weights(full, bias=True)
    assert w.shape == (ARCH["cam_channels"], NUM_CLASSES) and b.shape == (NUM_CLASSES,)
    cams = np.stack([engine(x, c)["low_res"] for c in range(NUM_CLASSES)], axis=-1)
    assert cams.shape == (3, 2, 4, NUM_CLASSES)
    logits = cams.mean(axis=(1, 2)) + b
    gap = keras.Model(full.inputs, full.get_layer("gap").output).predict_on_batch(x)
    np.testing.assert_allclose(logits, gap @ w + b, rtol=1e-5, atol=1e-5)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, engine(x)["probabilities"], rtol=1e-4, atol=1e-6)
