"""hrcam.debug: check_weights / assert_same_weights and get_model_memory_usage."""

from __future__ import annotations

import pytest

import keras  # noqa: E402

from hrcam import models as M  # noqa: E402
from hrcam.debug import (  # noqa: E402
    WeightMismatchError,
    assert_same_weights,
    check_weights,
    get_model_memory_usage,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ARCH = dict(initial_filters=8, growth_rate=4, layers_per_block=1, num_blocks=3,
            bottleneck_layers=1, cam_channels=4, dropout=0.0, l2=1e-4)


@pytest.fixture()
def pair():
    keras.utils.set_random_seed(21)
    half = M.build_half_model(3, (32, 32, 3), ARCH)
    full = M.build_full_model(3, (32, 32, 3), ARCH)
    M.transfer_weights(half, full)
    M.freeze_shared(full)
    return half, full


def test_identical_after_transfer(pair):
    half, full = pair
    report = check_weights(half, full)
    assert set(report) == {"compared", "different", "max_abs_diff"}
    weighted = [layer.name for layer in half.layers if layer.weights]
    assert report["compared"] == weighted
    assert "conv_aux" in weighted and "predictions" in weighted and "initial_bn" in weighted
    assert not any(M.is_decoder_layer(name) for name in report["compared"])
    assert report["different"] == []
    assert all(v == 0.0 for v in report["max_abs_diff"].values())
    assert assert_same_weights(half, full) == report


def test_fresh_models_differ_everywhere():
    keras.utils.set_random_seed(1)
    a = M.build_half_model(3, (32, 32, 3), ARCH)
    b = M.build_full_model(3, (32, 32, 3), ARCH)
    report = check_weights(a, b)
    convs = [n for n in report["compared"] if n.endswith("conv") or n == "conv_aux"]
    assert convs and set(convs) <= set(report["different"])


def test_altered_kernel_is_reported(pair):
    half, full = pair
    layer = full.get_layer("td2_conv")
    kernel, bias = layer.get_weights()
    kernel[0, 0, 1, 2] += 0.5
    layer.set_weights([kernel, bias])
    report = check_weights(half, full)
    assert report["different"] == ["td2_conv"]
    assert report["max_abs_diff"]["td2_conv"] == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(WeightMismatchError, match="td2_conv") as info:
        assert_same_weights(half, full)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, ValueError)
    # a tolerance above the change accepts it
    assert check_weights(half, full, atol=0.6)["different"] == []


def test_altered_batchnorm_statistics_are_reported(pair):
    half, full = pair
    bn = full.get_layer("block3_l1_bn")
    bn.moving_variance.assign(bn.moving_variance.numpy() * 1.5)
    report = check_weights(half, full)
    assert report["different"] == ["block3_l1_bn"]
    assert report["max_abs_diff"]["block3_l1_bn"] == pytest.approx(0.5)


def test_layer_names_restrict_the_comparison(pair):
    half, full = pair
    dense = full.get_layer("predictions")
    dense.bias.assign(dense.bias.numpy() + 1.0)
    report = check_weights(half, full, layer_names=["conv_aux", "initial_conv"])
    assert report["compared"] == ["conv_aux", "initial_conv"] and report["different"] == []
    assert check_weights(half, full, layer_names=["predictions"])["different"] == ["predictions"]
    with pytest.raises(ValueError, match="main_output"):
        check_weights(half, full, layer_names=["main_output"])


def test_shape_mismatch_counts_as_different():
    keras.utils.set_random_seed(2)
    a = M.build_half_model(3, (32, 32, 3), ARCH)
    b = M.build_half_model(4, (32, 32, 3), ARCH)
    report = check_weights(a, b)
    assert "predictions" in report["different"]
    assert report["max_abs_diff"]["predictions"] == float("inf")


def test_nothing_compared_is_an_error():
    a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="a")])
    b = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="b")])
    assert check_weights(a, b)["compared"] == []
    with pytest.raises(WeightMismatchError, match="nothing compared"):
        assert_same_weights(a, b)


# ------------------------------------------------------------------------------------------
# Memory usage
# ------------------------------------------------------------------------------------------


def _conv_model(shape=(128, 128, 8)):
    inputs = keras.Input(shape, name="x")
    y = keras.layers.Conv2D(16, 3, padding="same", name="conv")(inputs)
    y = keras.layers.ReLU(name="relu")(y)
    return keras.Model(inputs, y)


def test_memory_usage_formula():
    model = _conv_model()
    # activations per image: input 128*128*8 + conv 128*128*16 + relu 128*128*16 (float32)
    activations = 4 * 128 * 128 * (8 + 16 + 16)
    params = 4 * (3 * 3 * 8 * 16 + 16)
    for batch in (1, 16, 64):
        expected = round((batch * activations + params) / 1024**3, 3)
        assert get_model_memory_usage(model, batch) == pytest.approx(expected)
    # linear in the batch size
    big, bigger = get_model_memory_usage(model, 256), get_model_memory_usage(model, 512)
    assert bigger == pytest.approx(2 * big - round(params / 1024**3, 3), abs=2e-3)


def test_memory_usage_counts_nested_models():
    inner = _conv_model()
    inputs = keras.Input((128, 128, 8))
    outer = keras.Model(inputs, keras.layers.ReLU()(inner(inputs)))
    alone = get_model_memory_usage(inner, 64)
    assert get_model_memory_usage(outer, 64) > alone > 0


def test_memory_usage_dynamic_shapes_need_input_shape():
    dynamic = M.build_half_model(3, (None, None, 3), ARCH)
    fixed = M.build_half_model(3, (224, 224, 3), ARCH)
    with pytest.raises(ValueError, match="input_shape"):
        get_model_memory_usage(dynamic, 8)
    assert get_model_memory_usage(dynamic, 8, input_shape=(224, 224, 3)) == pytest.approx(
        get_model_memory_usage(fixed, 8))
    assert get_model_memory_usage(fixed, 32) > get_model_memory_usage(fixed, 8) > 0
    with pytest.raises(ValueError, match="batch_size"):
        get_model_memory_usage(fixed, 0)
