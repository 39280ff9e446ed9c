"""hrcam.cams: the HalfModel / FullModel wrappers (seed API), shapes, custom_class, batch vs
per-image results, the CAM against a manual dot product of the layers' outputs, and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras  # noqa: E402

import hrcam  # noqa: E402
from hrcam import models as M  # noqa: E402
from hrcam.cams import FullModel, HalfModel  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NUM_CLASSES = 5
ARCH = dict(initial_filters=8, growth_rate=4, layers_per_block=1, num_blocks=3,
            bottleneck_layers=2, cam_channels=6, dropout=0.0, l2=1e-4)
TOP = 3  # the class the models are biased to predict (so that custom_class=0 is not it)


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(11)
    half = M.build_half_model(NUM_CLASSES, (None, None, 3), ARCH)
    bias = np.zeros(NUM_CLASSES, np.float32)
    bias[TOP] = 50.0  # every image is predicted as TOP
    half.get_layer("predictions").bias.assign(bias)
    full = M.build_full_model(NUM_CLASSES, (None, None, 3), ARCH)
    M.transfer_weights(half, full)
    M.freeze_shared(full)
    return half, full


@pytest.fixture(scope="module")
def hm(models):
    return HalfModel(model=models[0])


@pytest.fixture(scope="module")
def fm(models):
    return FullModel(model=models[1], batch_size=2)


@pytest.fixture(scope="module")
def features(models):
    """The layers' own outputs, from a separate model (reference for the CAM tests)."""
    full = models[1]
    return keras.Model(full.inputs, [full.get_layer("conv_aux").output,
                                     full.get_layer("high_res_features").output,
                                     full.get_layer("predictions").output])


def _manual_cam(feature_map, kernel, cls):
    """sum_k W[k, c] * A_k, written out."""
    cam = np.zeros(feature_map.shape[:2], np.float64)
    for k in range(feature_map.shape[-1]):
        cam += kernel[k, cls] * feature_map[..., k]
    return cam


def test_package_exports_the_wrappers():
    assert hrcam.HalfModel is HalfModel and hrcam.FullModel is FullModel


@pytest.mark.parametrize("h, w", [(32, 32), (32, 64)])
def test_single_image_shapes(fm, hm, h, w):
    x = _images(1, h, w)
    high, low, pred = fm.generate_cams(x)
    assert high.shape == (h, w) and low.shape == (h // 16, w // 16)
    assert isinstance(pred, int) and pred == TOP
    assert fm.high_res_cam(x).shape == (h, w)
    assert fm.low_res_cam(x).shape == (h // 16, w // 16)
    assert hm.cam(x).shape == (h // 16, w // 16)
    assert hm.predict(x) == TOP and fm.predict(x) == TOP
    assert hm.predictN(x, n=3).shape == (3,)
    cam, pred = hm.generate_cams(x)
    assert cam.shape == (h // 16, w // 16) and pred == TOP
    # an un-batched (H, W, 3) image is accepted too
    np.testing.assert_array_equal(fm.high_res_cam(x[0]), high)


def test_batch_shapes_and_equal_to_per_image(fm, hm):
    x = _images(5, 32, 48, seed=2)  # 5 > batch_size=2: several chunks
    high, low, preds = fm.generate_cams(x)
    assert high.shape == (5, 32, 48) and low.shape == (5, 2, 3) and preds.shape == (5,)
    classes = [0, 1, 2, 3, 4]
    high_c, low_c, _ = fm.generate_cams(x, custom_class=classes)
    for i in range(5):
        h1, l1, p1 = fm.generate_cams(x[i:i + 1])
        np.testing.assert_allclose(high[i], h1, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(low[i], l1, rtol=1e-5, atol=1e-5)
        assert preds[i] == p1
        np.testing.assert_allclose(high_c[i], fm.high_res_cam(x[i:i + 1], classes[i]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(low_c[i], hm.cam(x[i:i + 1], classes[i]), rtol=1e-5,
                                   atol=1e-5)
    np.testing.assert_array_equal(hm.predict(x), preds)
    assert hm.predictN(x, 2).shape == (5, 2)
    np.testing.assert_allclose(hm.cam(x), low, rtol=1e-5, atol=1e-5)


def test_cams_equal_manual_dot_product_of_layer_outputs(fm, features):
    x = _images(2, 32, 64, seed=4)
    low_feats, high_feats, probs = features.predict_on_batch(x)
    kernel = fm.model.get_layer("predictions").get_weights()[0]
    for cls in (None, 0, 2):
        high, low, preds = fm.generate_cams(x, custom_class=cls)
        for i in range(2):
            c = int(np.argmax(probs[i])) if cls is None else cls
            np.testing.assert_allclose(high[i], _manual_cam(high_feats[i], kernel, c),
                                       rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(low[i], _manual_cam(low_feats[i], kernel, c),
                                       rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(preds, np.argmax(probs, axis=1))


def test_custom_class_zero_selects_class_zero(fm, hm):
    x = _images(1, 32, 32, seed=6)
    assert fm.predict(x) == TOP != 0
    kernel = fm.Wk
    low_feats = keras.Model(fm.model.inputs,
                            fm.model.get_layer("conv_aux").output).predict_on_batch(x)[0]
    np.testing.assert_allclose(hm.cam(x, custom_class=0), _manual_cam(low_feats, kernel, 0),
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(hm.cam(x, custom_class=0), hm.cam(x))
    np.testing.assert_allclose(fm.low_res_cam(x, custom_class=0), hm.cam(x, custom_class=0),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(fm.high_res_cam(x, custom_class=0), fm.high_res_cam(x))
    np.testing.assert_allclose(fm.high_res_cam(x, custom_class=np.int64(0)),
                               fm.high_res_cam(x, custom_class=0))


def test_predict_n_is_best_first(hm):
    x = _images(3, 32, 32, seed=7)
    probs = hm.predict_proba(x)
    top = hm.predictN(x, n=NUM_CLASSES)
    assert top.shape == (3, NUM_CLASSES)
    for i in range(3):
        assert top[i, 0] == TOP == hm.predict(x[i:i + 1])
        assert np.all(np.diff(probs[i][top[i]]) <= 0)  # descending probabilities
        assert sorted(top[i].tolist()) == list(range(NUM_CLASSES))
    np.testing.assert_array_equal(hm.predictN(x[:1], n=2), top[0, :2])


def test_probabilities_and_uint8_vs_float(fm):
    x = _images(2, 32, 32, seed=8)
    high_u, low_u, probs_u = fm.generate_cams(x, return_proba=True)
    high_f, low_f, probs_f = fm.generate_cams(x.astype(np.float32), return_proba=True)
    assert probs_u.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(probs_u.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(high_u, high_f)
    np.testing.assert_array_equal(probs_u, probs_f)


@pytest.mark.parametrize(
    "x, kwargs, word",
    [
        (_images(1, 40, 32), {}, "divisible"),
        (np.zeros((1, 32, 32, 1), np.uint8), {}, "channels"),
        (np.zeros((32, 32), np.uint8), {}, "shape"),
        (_images(1, 32, 32), {"custom_class": NUM_CLASSES}, "custom_class"),
        (_images(1, 32, 32), {"custom_class": -1}, "custom_class"),
        (_images(2, 32, 32), {"custom_class": [0, 1, 2]}, "custom_class"),
        (_images(1, 32, 32), {"custom_class": 1.5}, "custom_class"),
    ],
)
def test_bad_inputs_raise(fm, x, kwargs, word):
    with pytest.raises(ValueError, match=word):
        fm.generate_cams(x, **kwargs)


def test_bad_n_raises(hm):
    with pytest.raises(ValueError, match="n must be"):
        hm.predictN(_images(1, 32, 32), n=NUM_CLASSES + 1)


def test_half_model_cannot_be_a_full_model(models):
    with pytest.raises(ValueError, match="high_res_features"):
        FullModel(model=models[0])
    # a full model wrapped as HalfModel gives the same low-res CAMs
    x = _images(1, 32, 32)
    np.testing.assert_allclose(HalfModel(model=models[1]).cam(x), HalfModel(model=models[0]).cam(x),
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------


def _write_classes(directory, n=NUM_CLASSES):
    entries = [{"index": i, "id": f"n0000000{i}", "name": f"class {i}"} for i in range(n)]
    (directory / "classes.json").write_text(json.dumps(entries))


def test_load_keras_file_with_classes(models, tmp_path):
    half, full = models
    full.save(tmp_path / "full.keras")
    half.save(tmp_path / "half.keras")
    _write_classes(tmp_path)
    x = _images(2, 32, 64, seed=10)
    fm = FullModel(tmp_path / "full.keras")
    assert fm.class_names == [f"class {i}" for i in range(NUM_CLASSES)]
    assert fm.class_ids[0] == "n00000000"
    ref = FullModel(model=full).generate_cams(x)
    for a, b in zip(fm.generate_cams(x), ref):
        np.testing.assert_array_equal(a, b)
    hm = HalfModel(str(tmp_path / "half.keras"))
    np.testing.assert_allclose(hm.cam(x), ref[1], rtol=1e-5, atol=1e-6)
    # custom_class by name or id
    np.testing.assert_array_equal(fm.low_res_cam(x, custom_class="class 2"),
                                  fm.low_res_cam(x, custom_class=2))
    np.testing.assert_array_equal(fm.low_res_cam(x, custom_class="n00000001"),
                                  fm.low_res_cam(x, custom_class=1))


def test_load_weights_file_builds_the_model(models, tmp_path):
    _, full = models
    full.save_weights(tmp_path / "best.weights.h5")
    _write_classes(tmp_path)
    x = _images(1, 32, 32, seed=12)
    # num_classes comes from classes.json; the arch must be given
    fm = FullModel(tmp_path / "best.weights.h5", im_size=32, arch=ARCH)
    assert fm.num_classes == NUM_CLASSES and fm.class_names[3] == "class 3"
    for a, b in zip(fm.generate_cams(x), FullModel(model=full).generate_cams(x)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # the input size is fixed when im_size is given
    with pytest.raises(ValueError, match="input"):
        fm.generate_cams(_images(1, 32, 64))
    # im_size=None: any size
    fm_any = FullModel(tmp_path / "best.weights.h5", im_size=None, arch=ARCH)
    assert fm_any.high_res_cam(_images(1, 48, 64)).shape == (48, 64)
    # without arch, the resolved_arch of a train_config.json beside the weights is used
    with pytest.raises(ValueError, match="does not fit"):
        FullModel(tmp_path / "best.weights.h5", im_size=32)  # paper arch: shapes mismatch
    with pytest.raises(ValueError, match="does not fit"):  # other depth: layers missing
        FullModel(tmp_path / "best.weights.h5", im_size=32, arch=dict(ARCH, layers_per_block=2))
    (tmp_path / "train_config.json").write_text(json.dumps({"resolved_arch": ARCH}))
    fm_cfg = FullModel(tmp_path / "best.weights.h5", im_size=32)
    np.testing.assert_array_equal(fm_cfg.high_res_cam(x), fm.high_res_cam(x))


def test_fresh_models_and_presets():
    hm = HalfModel(num_classes=3, im_size=(32, 64), arch="tiny")
    assert hm.num_classes == 3 and hm.stride == 16 and hm.weights is None
    assert hm.cam(_images(1, 32, 64)).shape == (2, 4)
    fm = FullModel(num_classes=3, im_size=None, arch="small", cam_channels=4)
    assert fm.model.get_layer("high_res_features").filters == 4
    assert fm.Wk.shape == (4, 3)


@pytest.mark.parametrize("name", ["weights.h5", "model.pt", "best_weights"])
def test_unsupported_suffix_raises(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported weights file"):
        HalfModel(tmp_path / name)


@pytest.mark.parametrize("name", ["missing.keras", "missing.weights.h5"])
def test_missing_file_raises(tmp_path, name):
    with pytest.raises(ValueError, match="not found"):
        FullModel(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        FullModel(tmp_path / name)


def test_num_classes_must_match(models):
    with pytest.raises(ValueError, match="num_classes"):
        FullModel(model=models[1], num_classes=NUM_CLASSES + 1)


def test_class_names_must_match(models):
    with pytest.raises(ValueError, match="class names"):
        HalfModel(model=models[0], class_names=["a", "b"])
